"""The experiment protocol: paper metadata, claim checks, results, presets and config overrides.

An experiment is an :class:`Experiment` object (id, papers, claim, config dataclass, presets and a
``run(config, ctx) -> Result`` function) exported by a domain package through the
``papers.experiments`` entry-point group. Presets are overrides of the config dataclass defaults:
``smoke`` (seconds, used by tests), ``default`` (at most 5 minutes on 2 CPU cores, the one recorded
in ``results/``) and optionally ``full`` (closer to the paper).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from .errors import PapersError

PRESETS = ("smoke", "default", "full")
COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Paper:
    """Bibliographic metadata of a paper, with the catalogue ids it covers."""

    title: str
    authors: str
    year: int
    venue: str = ""
    arxiv: str | None = None
    doi: str | None = None
    catalog_ids: tuple[str, ...] = ()

    def citation(self) -> str:
        where = f", {self.venue}" if self.venue else ""
        link = f", arXiv:{self.arxiv}" if self.arxiv else (f", doi:{self.doi}" if self.doi else "")
        return f"{self.authors} ({self.year}). {self.title}{where}{link}."


@dataclass
class Check:
    """A claim check: ``measured <comparison> reference``, both measured in the same run.

    ``reference`` is another measured quantity (a baseline's loss, the same model at another
    setting), or a threshold stated by the paper; ``reference_label`` says which.
    A non-finite measured value never passes.
    """

    name: str
    measured: float
    comparison: str
    reference: float
    reference_label: str = ""
    note: str = ""
    passed: bool = field(init=False)

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {sorted(COMPARISONS)}, got {self.comparison!r}")
        self.measured = float(self.measured)
        self.reference = float(self.reference)
        finite = math.isfinite(self.measured) and not math.isnan(self.reference)
        self.passed = bool(finite and COMPARISONS[self.comparison](self.measured, self.reference))

    def describe(self) -> str:
        label = f" ({self.reference_label})" if self.reference_label else ""
        return f"{self.measured:.4g} {self.comparison} {self.reference:.4g}{label}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Check:
        data = {k: v for k, v in data.items() if k != "passed"}
        return cls(**{k: (float(v) if k in ("measured", "reference") else v) for k, v in data.items()})


@dataclass
class Result:
    """What ``run`` returns: metrics, claim checks, figures; the runner fills in the rest."""

    metrics: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    notes: str = ""
    # Filled in by the runner.
    experiment: str = ""
    preset: str = ""
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    cpu_time_s: float = 0.0  # CPU seconds of the run (its process and children): the cost on an idle machine
    date: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    hardware: dict[str, Any] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if not self.checks:
            return "no checks"
        passed = sum(c.passed for c in self.checks)
        if passed == len(self.checks):
            return "holds"
        return "does not hold" if passed == 0 else f"partly holds ({passed}/{len(self.checks)})"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["checks"] = [c.to_dict() for c in self.checks]
        data["verdict"] = self.verdict
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Result:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["checks"] = [Check.from_dict(c) for c in data.get("checks", [])]
        return cls(**kwargs)


@dataclass
class Experiment:
    """A reproduction: which papers, which claim, how to configure it and how to run it.

    A paper package declares it in its ``__init__.py`` with ``module`` naming the module that holds
    ``Config`` (a dataclass), ``PRESETS`` and ``run(config, ctx) -> Result``; that module (and so
    torch) is imported only when the config or the run is first needed, so listing stays fast.
    ``config``, ``run`` and ``presets`` may instead be given directly.
    """

    id: str
    papers: tuple[Paper, ...]
    claim: str
    module: str = ""
    summary: str = ""
    config: type | None = None
    run: Callable[[Any, Any], Result] | None = None
    presets: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.papers, Paper):
            self.papers = (self.papers,)
        if not self.module and None in (self.config, self.run, self.presets):
            raise TypeError(f"{self.id}: give module=, or config=, run= and presets=")
        if not self.module:
            self._validate()

    def __getattribute__(self, name: str) -> Any:
        get = object.__getattribute__
        if name in ("config", "run", "presets") and get(self, name) is None and get(self, "module"):
            self._load()
        return object.__getattribute__(self, name)

    def _load(self) -> None:
        """Import ``module`` and take its ``Config``, ``PRESETS`` and ``run``."""
        module = import_module(self.module)
        for attribute, name in (("config", "Config"), ("presets", "PRESETS"), ("run", "run")):
            if not hasattr(module, name):
                raise PapersError(f"{self.id}: {self.module} defines no {name}")
            object.__setattr__(self, attribute, getattr(module, name))
        self._validate()

    def _validate(self) -> None:
        if not dataclasses.is_dataclass(self.config):
            raise TypeError(f"{self.id}: config must be a dataclass type")
        missing = {"smoke", "default"} - set(self.presets)
        if missing:
            raise ValueError(f"{self.id}: presets {sorted(missing)} are required")
        for preset, overrides in self.presets.items():
            if preset not in PRESETS:
                raise ValueError(f"{self.id}: unknown preset name {preset!r}; use {PRESETS}")
            self._check_keys(overrides)

    @property
    def catalog_ids(self) -> tuple[str, ...]:
        return tuple(i for p in self.papers for i in p.catalog_ids)

    @property
    def domain(self) -> str:
        parts = (self.module or self.run.__module__).split(".")
        return parts[1] if len(parts) > 1 and parts[0] == "papers" else "?"

    @property
    def package(self) -> str:
        """The paper's package (``papers.theory.neural_ode``): its folder holds the README."""
        return (self.module or self.run.__module__).rsplit(".", 1)[0]

    def make_config(self, preset: str = "default", overrides: dict[str, str] | None = None) -> Any:
        """The config of ``preset`` with ``key=value`` string overrides parsed by field type."""
        if preset not in self.presets:
            raise PapersError(
                f"unknown preset {preset!r} for {self.id}; available: {', '.join(self.presets)}"
            )
        values = dict(self.presets[preset])
        hints = typing.get_type_hints(self.config)
        for key, text in (overrides or {}).items():
            self._check_keys({key: text})
            values[key] = parse_value(text, hints[key], key)
        config = self.config(**values)
        validate = getattr(config, "validate", None)
        if callable(validate):
            try:
                validate()
            except ValueError as exc:
                raise PapersError(f"invalid config for {self.id}: {exc}") from None
        return config

    def _check_keys(self, values: dict) -> None:
        names = [f.name for f in dataclasses.fields(self.config)]
        for key in values:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f"; valid keys: {', '.join(names)}"
                raise PapersError(f"unknown config key {key!r} for {self.id}{hint}")


def parse_value(text: str, annotation: Any, key: str) -> Any:
    """Parse a ``--set`` string into the type a config field declares."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if text.lower() in ("none", "null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], key)
    if origin in (tuple, list):
        item_type = args[0] if args else str
        items = [parse_value(t.strip(), item_type, key) for t in text.split(",") if t.strip()]
        return tuple(items) if origin is tuple else items
    if typing.get_origin(annotation) is typing.Literal:
        if text not in [str(a) for a in args]:
            raise PapersError(f"bad value {text!r} for {key!r}: choose one of {', '.join(map(str, args))}")
        return text
    try:
        if annotation is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if annotation in (int, float, str):
            return annotation(text)
    except ValueError:
        raise PapersError(f"bad value {text!r} for {key!r}: expected {annotation.__name__}") from None
    raise PapersError(f"config key {key!r} has a type ({annotation}) that --set cannot parse")
