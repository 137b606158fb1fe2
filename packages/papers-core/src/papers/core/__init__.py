"""papers-core: the shared core of the ``papers`` packages.

Experiment protocol (:class:`Paper`, :class:`Experiment`, :class:`Check`, :class:`Result`,
:class:`RunContext`), devices and seeding, the supervised :class:`Trainer`, checkpoints with atomic
writes, metric logs, progress bars, plots and DDP helpers. Names are imported on first use so that
``import papers.core`` stays cheap.
"""

from .lazy import lazy_exports

__getattr__, __all__ = lazy_exports(
    "papers.core",
    {
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
        "lazy_exports": "lazy",
    },
)
