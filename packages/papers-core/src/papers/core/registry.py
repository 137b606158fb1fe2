"""Discovery of installed domains and experiments through entry points.

A domain package declares itself in ``papers.domains`` and its experiments in
``papers.experiments``; installing one domain makes only its experiments appear. Listing reads
entry-point metadata only; an experiment module is imported when it is asked for.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib.metadata import EntryPoint, entry_points

from .errors import PapersError
from .experiment import Experiment


@cache
def _experiment_entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group="papers.experiments")}


def installed_domains() -> list[str]:
    """Names of the installed domain packages (``theory``, ``chem``, ...)."""
    return sorted({ep.name for ep in entry_points(group="papers.domains")})


def experiment_ids() -> list[str]:
    return sorted(_experiment_entry_points())


def experiment_domain(experiment_id: str) -> str:
    """The domain of an experiment, read from its entry point without importing it."""
    return _entry_point(experiment_id).value.split(".")[1]


def get_experiment(experiment_id: str) -> Experiment:
    experiment = _entry_point(experiment_id).load()
    if not isinstance(experiment, Experiment):
        raise PapersError(f"entry point {experiment_id!r} does not point at an Experiment")
    return experiment


def _entry_point(experiment_id: str) -> EntryPoint:
    points = _experiment_entry_points()
    if experiment_id not in points:
        close = difflib.get_close_matches(experiment_id, list(points), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; `papers list` shows the installed ones"
        raise PapersError(f"unknown experiment {experiment_id!r}{hint}")
    return points[experiment_id]
