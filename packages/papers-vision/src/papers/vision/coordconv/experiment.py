"""Reproduction (toy scale): supervised coordinate regression from one-hot pixel images (Liu et al. 2018,
Sec. 4, Fig. 1b and Fig. 3/5 left).

Data: every position of a ``size`` × ``size`` canvas as an image with one active pixel; the target is
its (i, j), regressed in normalised units (2 i / (size − 1) − 1) with the mean squared error. Splits: a
seeded uniform split and the quadrant split (the lower-right quadrant held out).

Models, all trained alike (Adam, cosine-decayed learning rate, same seed and batches):
  coordconv   3×3 CoordConv → 1×1 convs → 1×1 conv to 2 maps → global max (fully convolutional)
  conv        the same with a plain 3×3 conv first (two input channels fewer, otherwise identical)
  conv_dense  a plain conv net that can fit the data: 3×3 stride-2 convs → linear layer

Measured: train and test RMSE in pixels, √mean((î − i)² + (ĵ − j)²), for every model on both splits,
and parameter counts; a figure of predicted vs true positions on the held-out quadrant.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.vision.data import batches

from .data import one_hot_pixels, quadrant_split, uniform_split
from .model import CoordinateRegressor, n_params

MODELS = ("coordconv", "conv", "conv_dense")
SPLITS = ("uniform", "quadrant")


@dataclass
class Config:
    size: int = 32
    uniform_test_fraction: float = 0.25
    channels: int = 8
    depth: int = 3
    with_r: bool = False
    epochs: int = 25
    batch_size: int = 32
    lr: float = 5e-3
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if self.size < 4 or self.size % 2:
            raise ValueError(f"size must be an even number >= 4, got {self.size}")
        if not 0.0 < self.uniform_test_fraction < 1.0:
            raise ValueError(f"uniform_test_fraction must be in (0, 1), got {self.uniform_test_fraction}")
        for name in ("channels", "depth", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"size": 8, "epochs": 3, "channels": 4, "depth": 2},
    "default": {},
    "full": {"size": 64, "epochs": 40, "channels": 16},
}


def make_model(name: str, config: Config) -> CoordinateRegressor:
    options = {"coordconv": {"coords": True, "head": "max"}, "conv": {"coords": False, "head": "max"},
               "conv_dense": {"coords": False, "head": "dense"}}[name]
    return CoordinateRegressor(channels=config.channels, depth=config.depth, image_size=config.size,
                               with_r=config.with_r, **options)


def rmse_pixels(predicted: Tensor, target: Tensor, size: int) -> float:
    """√mean(Δi² + Δj²) in pixels, for predictions and targets in normalised units."""
    return (((predicted - target) * ((size - 1) / 2)) ** 2).sum(1).mean().sqrt().item()


def train_and_test(name: str, split: str, data: dict, config: Config, ctx) -> dict:
    images, targets, size = data["images"], data["targets"], config.size
    train_idx, test_idx = data[split]
    torch.manual_seed(ctx.seed)
    model = make_model(name, config)
    steps = config.epochs * math.ceil(len(train_idx) / config.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    start, step = time.perf_counter(), 0
    with ctx.progress_bar(steps, f"{name} ({split})") as bar:
        for _ in range(config.epochs):
            for (batch,) in batches(train_idx, batch_size=config.batch_size, generator=generator):
                loss = (model(images[batch]) - targets[batch]).pow(2).mean()
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{name} ({split}): non-finite loss at step {step}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1, loss=loss.item())
                step += 1
            ctx.log({f"{name}_{split}_loss": loss.item()}, step=step)
    with torch.no_grad():
        train_pred, test_pred = model(images[train_idx]), model(images[test_idx])
    return {
        "train_rmse": rmse_pixels(train_pred, targets[train_idx], size),
        "test_rmse": rmse_pixels(test_pred, targets[test_idx], size),
        "params": n_params(model),
        "train_time_s": time.perf_counter() - start,
        "test_predicted_ij": (test_pred * ((size - 1) / 2) + (size - 1) / 2).tolist(),
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    images, positions = one_hot_pixels(config.size)
    data = {
        "images": images,
        "targets": positions.float() * (2.0 / (config.size - 1)) - 1.0,
        "uniform": uniform_split(len(images), config.uniform_test_fraction, seed=ctx.seed),
        "quadrant": quadrant_split(positions, config.size),
    }
    parts = {(name, split): ctx.stage(f"{name}_{split}",
                                      lambda n=name, s=split: train_and_test(n, s, data, config, ctx))
             for split in SPLITS for name in MODELS}

    metrics = {f"{name}_params": parts[name, "uniform"]["params"] for name in MODELS}
    for (name, split), part in parts.items():
        metrics[f"{name}_{split}_train_rmse"] = part["train_rmse"]
        metrics[f"{name}_{split}_test_rmse"] = part["test_rmse"]
        metrics[f"{name}_{split}_train_time_s"] = part["train_time_s"]
    m = metrics
    checks = [
        Check("CoordConv beats the same-size conv on the held-out quadrant",
              m["coordconv_quadrant_test_rmse"], "<", m["conv_quadrant_test_rmse"],
              "conv quadrant test RMSE (px)"),
        Check("CoordConv beats the dense conv on the held-out quadrant", m["coordconv_quadrant_test_rmse"],
              "<", m["conv_dense_quadrant_test_rmse"], "dense conv quadrant test RMSE (px)"),
        Check("dense conv errs more on the held-out quadrant than on uniformly held-out positions",
              m["conv_dense_quadrant_test_rmse"], ">", m["conv_dense_uniform_test_rmse"],
              "dense conv uniform test RMSE (px)"),
        Check("CoordConv beats the same-size conv on the uniform split", m["coordconv_uniform_test_rmse"],
              "<", m["conv_uniform_test_rmse"], "conv uniform test RMSE (px)"),
        Check("CoordConv locates held-out-quadrant pixels to within one pixel",
              m["coordconv_quadrant_test_rmse"], "<", 1.0, "1 px (paper: perfect generalisation)"),
    ]
    figure_quadrant(parts, data, config, ctx)
    notes = (
        f"{config.size}x{config.size} canvas, {config.epochs} epochs. Held-out quadrant test RMSE: CoordConv "
        f"{m['coordconv_quadrant_test_rmse']:.2f} px ({m['coordconv_params']} parameters), same-size conv "
        f"{m['conv_quadrant_test_rmse']:.2f} px ({m['conv_params']}), dense conv "
        f"{m['conv_dense_quadrant_test_rmse']:.2f} px ({m['conv_dense_params']}, train "
        f"{m['conv_dense_quadrant_train_rmse']:.2f} px). The fully convolutional plain conv sees position "
        f"only through the zero padding, so it fails on both splits; the dense conv fits the training "
        f"positions but its linear read-out has never seen the held-out quadrant."
    )
    spread = rmse_pixels(data["targets"], data["targets"].mean(0, keepdim=True), config.size)
    collapsed = [f"{name} ({split})" for (name, split), part in parts.items()
                 if part["train_rmse"] > 0.9 * spread]
    if collapsed:
        notes += (f" Collapsed to (nearly) a constant prediction, train RMSE within 10% of the "
                  f"{spread:.2f} px spread of the positions: {', '.join(collapsed)}.")
    return Result(metrics=metrics, checks=checks, notes=notes)


def figure_quadrant(parts: dict, data: dict, config: Config, ctx) -> None:
    from matplotlib.patches import Rectangle

    from papers.core.plots import figure

    true_ij = data["targets"][data["quadrant"][1]] * ((config.size - 1) / 2) + (config.size - 1) / 2
    labels = {"coordconv": "CoordConv", "conv": "conv (same size)", "conv_dense": "conv + dense head"}
    fig, axes = figure(ncols=len(MODELS), width=3.6, height=3.6)
    for ax, name in zip(axes, MODELS, strict=True):
        predicted = torch.tensor(parts[name, "quadrant"]["test_predicted_ij"])
        corner = config.size / 2 - 0.5  # the held-out quadrant, shaded
        ax.add_patch(Rectangle((corner, corner), config.size / 2, config.size / 2, color="0.9", zorder=0))
        ax.scatter(true_ij[:, 1], true_ij[:, 0], s=4, c="0.5", label="true")
        ax.scatter(predicted[:, 1], predicted[:, 0], s=4, c="C3", label="predicted")
        ax.set_xlim(-1, config.size)
        ax.set_ylim(config.size, -1)
        ax.set_aspect("equal")
        ax.set_xlabel("j (column)")
        ax.set_ylabel("i (row)")
        ax.set_title(f"{labels[name]}: {parts[name, 'quadrant']['test_rmse']:.2f} px")
    axes[0].legend(loc="upper left", fontsize=7)
    ctx.save_figure(fig, "quadrant_predictions")
