"""Plot helpers: matplotlib with the non-interactive Agg backend, one consistent style."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path


def figure(ncols: int = 1, nrows: int = 1, width: float = 4.2, height: float = 3.4):
    """A figure and a flat list of axes sized ``width`` x ``height`` inches per panel."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    return fig, list(axes.flat)


def plot_lines(
    ax,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str = "",
    logx: bool = False,
    logy: bool = False,
    marker: str = "o",
) -> None:
    """One line per named series against a shared x."""
    for name, ys in series.items():
        ax.plot(x, ys, marker=marker, markersize=3, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save as PNG atomically and close the figure."""
    import matplotlib.pyplot as plt

    from .io import atomic_write_bytes

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return atomic_write_bytes(path, buffer.getvalue())


def moving_average(values: Sequence[float], window: int = 20) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start), for noisy training curves."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v - (values[i - window] if i >= window else 0.0)
        out.append(total / min(i + 1, window))
    return out
