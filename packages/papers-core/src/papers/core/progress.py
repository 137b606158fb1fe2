"""Progress bars for long work (rich), quiet when output is not a terminal or PAPERS_PROGRESS=0."""

from __future__ import annotations

import os
import sys


def progress_enabled() -> bool:
    flag = os.environ.get("PAPERS_PROGRESS")
    if flag is not None:
        return flag not in ("0", "false", "no", "")
    return sys.stderr.isatty()


class ProgressBar:
    """``with ProgressBar(total, "training") as bar: bar.update(1, loss=0.3)``."""

    def __init__(self, total: int | None, description: str, enabled: bool | None = None):
        self.enabled = progress_enabled() if enabled is None else enabled
        self._progress = None
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[info]}"),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(description, total=total, info="")

    def update(self, advance: int = 1, **info: float) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            self._progress.update(self._task, advance=advance, info=text)

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
