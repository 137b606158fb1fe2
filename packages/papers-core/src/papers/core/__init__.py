"""papers-core: the shared core of the ``papers`` packages.

Experiment protocol (:class:`Paper`, :class:`Experiment`, :class:`Check`, :class:`Result`,
:class:`RunContext`), devices and seeding, the supervised :class:`Trainer`, checkpoints with atomic
writes, metric logs, progress bars, plots and DDP helpers. Names are imported on first use so that
``import papers.core`` stays cheap.
"""

from importlib import import_module

_EXPORTS = {
    "Paper": "experiment",
    "Experiment": "experiment",
    "Check": "experiment",
    "Result": "experiment",
    "PapersError": "errors",
    "RunContext": "runner",
    "run_experiment": "runner",
    "select_device": "device",
    "seed_everything": "seeding",
    "save_checkpoint": "io",
    "load_checkpoint": "io",
    "Trainer": "trainer",
    "EarlyStopping": "trainer",
    "MetricLogger": "metrics",
    "ProgressBar": "progress",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"papers.core.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'papers.core' has no attribute {name!r}")
