"""Running an experiment: the run folder, the context handed to ``run``, the result and resume.

A run writes ``<out>/<experiment id>/<stamp>/``::

    run.json        what was asked: experiment, preset, seed, device, overrides, resolved config
    result.json     the Result (metrics, checks, verdict, figures, wall time, versions, hardware)
    metrics.jsonl   metric rows logged during the run (and metrics.csv)
    stages/         finished parts of a multi-part experiment (reused by ``papers resume``)
    checkpoints/    training checkpoints (reused by ``papers resume``)
    figures/        PNG figures

Every file is written atomically, so a crash or a kill never leaves a half-written file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import torch

from .device import select_device
from .errors import PapersError
from .experiment import Experiment, Result
from .io import atomic_write_json, read_json, restore_non_finite
from .progress import ProgressBar
from .seeding import seed_everything


class RunContext:
    """What an experiment's ``run`` gets besides its config: seed, device, folders, logging."""

    def __init__(
        self,
        run_dir: Path,
        seed: int = 0,
        device: str | torch.device = "cpu",
        progress: bool | None = None,
        resuming: bool = False,
    ):
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.device = device if isinstance(device, torch.device) else select_device(device)
        self.progress = progress
        self.resuming = resuming
        self.figures: list[str] = []
        self._logger = None

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def logger(self):
        """The run's :class:`~papers.core.metrics.MetricLogger` (``metrics.jsonl`` and ``.csv``)."""
        if self._logger is None:
            from .metrics import MetricLogger

            self._logger = MetricLogger(self.run_dir)
        return self._logger

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.logger.log(metrics, step=step)

    def progress_bar(self, total: int | None, description: str) -> ProgressBar:
        return ProgressBar(total, description, enabled=self.progress)

    def save_figure(self, fig, name: str) -> str:
        """Save a matplotlib figure as ``figures/<name>.png``; it is listed in the result."""
        from .plots import save_figure

        relative = f"figures/{name}.png"
        save_figure(fig, self.run_dir / relative)
        if relative not in self.figures:
            self.figures.append(relative)
        return relative

    def stage(self, name: str, compute: Callable[[], dict]) -> dict:
        """Run one part of an experiment once: its JSON result is kept in ``stages/<name>.json``
        and reused when the run is resumed. The value comes back as JSON reads it (tensors as lists,
        tuples as lists), with NaN and infinities as floats, the same on a fresh and a resumed run."""
        path = self.run_dir / "stages" / f"{name}.json"
        if self.resuming and path.is_file():
            return restore_non_finite(read_json(path))
        value = compute()
        atomic_write_json(path, value)
        return restore_non_finite(read_json(path))


def _cpu_seconds() -> float:
    """CPU time (user + system) of this process and its finished children."""
    try:
        import resource
    except ImportError:  # not on Windows: this process only
        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def environment_info(device: torch.device) -> tuple[dict[str, str], dict[str, Any]]:
    """Versions of the software and a description of the hardware a result came from."""
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for dist in (
        "numpy",
        "papers-core",
        "papers-theory",
        "papers-vision",
        "papers-language",
        "papers-rl",
        "papers-chem",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            pass
    hardware = {
        "machine": platform.machine(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        hardware["gpu"] = torch.cuda.get_device_name(device)
    return versions, hardware


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def new_run_dir(out: str | Path, experiment_id: str) -> Path:
    """Create ``<out>/<id>/<stamp>/``, failing with a clear error if it cannot be written."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / experiment_id
    run_dir = base / stamp
    suffix = 1
    while run_dir.exists():
        suffix += 1
        run_dir = base / f"{stamp}-{suffix}"
    try:
        run_dir.mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise PapersError(f"cannot write to output directory {out!s}: {exc.strerror or exc}") from None
    return run_dir


def run_experiment(
    experiment: Experiment,
    preset: str = "default",
    seed: int = 0,
    device: str = "auto",
    overrides: dict[str, str] | None = None,
    out: str | Path = "runs",
    run_dir: Path | None = None,
    progress: bool | None = None,
    threads: int | None = None,
) -> tuple[Result, Path]:
    """Configure, run and record an experiment; returns the result and its run folder.

    With ``run_dir`` given, the run continues in that folder (``papers resume``): finished stages
    and training checkpoints found there are reused.
    """
    config = experiment.make_config(preset, overrides)
    try:
        torch_device = select_device(device)
    except ValueError as exc:
        raise PapersError(str(exc)) from None
    if threads is not None:
        if threads < 1:
            raise PapersError(f"threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    resuming = run_dir is not None
    if run_dir is None:
        run_dir = new_run_dir(out, experiment.id)
        atomic_write_json(
            run_dir / "run.json",
            {
                "experiment": experiment.id,
                "preset": preset,
                "seed": seed,
                "device": device,
                "threads": threads,
                "overrides": dict(overrides or {}),
                "config": dataclasses.asdict(config),
            },
        )
    seed_everything(seed)
    ctx = RunContext(run_dir, seed=seed, device=torch_device, progress=progress, resuming=resuming)
    start, cpu_start = time.perf_counter(), _cpu_seconds()
    result = experiment.run(config, ctx)
    wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
    if not isinstance(result, Result):
        raise TypeError(f"{experiment.id}: run() must return a Result, got {type(result).__name__}")
    versions, hardware = environment_info(torch_device)
    result.experiment = experiment.id
    result.preset = preset
    result.seed = seed
    result.config = dataclasses.asdict(config)
    result.wall_time_s = round(wall, 2)
    result.cpu_time_s = round(cpu, 2)
    result.date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    result.versions = versions
    result.hardware = hardware
    for figure in ctx.figures:
        if figure not in result.figures:
            result.figures.append(figure)
    atomic_write_json(run_dir / "result.json", result_record(experiment, result))
    return result, run_dir


def resume_run(run_dir: str | Path, progress: bool | None = None) -> tuple[Result, Path]:
    """Continue a run from its folder with the settings it was started with."""
    from .registry import get_experiment

    run_dir = Path(run_dir)
    spec_path = run_dir / "run.json"
    if not spec_path.is_file():
        raise PapersError(f"{run_dir} is not a run folder (no run.json)")
    spec = read_json(spec_path)
    experiment = get_experiment(spec["experiment"])
    return run_experiment(
        experiment,
        preset=spec["preset"],
        seed=spec["seed"],
        device=spec["device"],
        overrides=spec["overrides"],
        run_dir=run_dir,
        progress=progress,
        threads=spec.get("threads"),
    )


def result_record(experiment: Experiment, result: Result) -> dict:
    """The JSON record of a result: the experiment's identity followed by the result itself."""
    return {
        "id": experiment.id,
        "domain": experiment.domain,
        "claim": experiment.claim,
        "papers": [dataclasses.asdict(p) for p in experiment.papers],
        **result.to_dict(),
    }
