"""Reproduction (toy scale): error vs per-batch size for BN, GN, LN and IN (Wu & He 2018, Fig. 1, Table 1).

Data: scikit-learn's 8 x 8 digits (1,797 images), a stratified train/test split. Model: a small CNN
(conv3x3 → norm → ReLU, ×2, pooling, linear); only the normalization layer changes. Each (norm, batch
size, seed) is trained from the same initialisation for the same number of epochs, with the paper's
linear learning-rate scaling lr = base_lr · B / base_batch, SGD with momentum and weight decay, and one
×0.1 step decay at ``decay_at`` of training. BN uses batch statistics in training and its running
statistics at test (torch's ``nn.BatchNorm2d``); GN, LN (G = 1) and IN (G = C) compute the same
per-sample statistics in training and at test.

Measured: test error (and train error in evaluation mode) per norm and batch size, mean over seeds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import NORMS, SmallCNN

LABELS = {"batch": "BatchNorm", "group": "GroupNorm", "layer": "LayerNorm", "instance": "InstanceNorm"}


@dataclass
class Config:
    # data
    size: int = 8
    test_fraction: float = 0.25
    # model: the paper's default is G = 32 groups on ResNet widths; 32-channel layers take G = 8 here
    channels: tuple[int, ...] = (32, 32)
    groups: int = 8
    norms: tuple[str, ...] = NORMS
    # training: per-batch sizes as in Fig. 1, the same number of epochs for all
    batch_sizes: tuple[int, ...] = (32, 8, 4, 2)
    epochs: int = 3
    seeds: int = 1
    base_lr: float = 0.1
    base_batch: int = 32
    momentum: float = 0.9
    weight_decay: float = 1e-4
    decay_at: float = 0.75
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        for name in ("size", "groups", "epochs", "seeds", "base_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not self.channels or any(c % self.groups for c in self.channels):
            raise ValueError(f"channels {self.channels} must all be divisible by groups={self.groups}")
        unknown = set(self.norms) - set(NORMS)
        if unknown or not {"batch", "group"} <= set(self.norms):
            raise ValueError(f"norms must include 'batch' and 'group' and come from {NORMS}, "
                             f"got {self.norms}")
        if len(self.batch_sizes) < 2 or min(self.batch_sizes) < 2:
            raise ValueError(f"batch_sizes needs at least two sizes >= 2 (BN needs 2), "
                             f"got {self.batch_sizes}")
        for name in ("base_lr", "weight_decay", "momentum"):
            if getattr(self, name) < 0 or (name == "base_lr" and self.base_lr == 0):
                raise ValueError(f"{name} must be {'> 0' if name == 'base_lr' else '>= 0'}, "
                                 f"got {getattr(self, name)}")
        if not 0 < self.decay_at <= 1:
            raise ValueError(f"decay_at must lie in (0, 1], got {self.decay_at}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"epochs": 1, "seeds": 1, "batch_sizes": (16, 4), "channels": (8,), "groups": 2,
              "test_fraction": 0.8},
    "default": {},
    "full": {"size": 16, "epochs": 10, "seeds": 3, "batch_sizes": (32, 16, 8, 4, 2)},
}


def error_rate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction misclassified in evaluation mode (BN with its running statistics)."""
    model.eval()
    with torch.no_grad():
        return (model(images).argmax(-1) != labels).float().mean().item()


def train_one(norm: str, batch: int, seed: int, data: dict, config: Config, ctx) -> dict:
    """SGD for ``config.epochs`` epochs at lr = base_lr·B/base_batch, ×0.1 after ``decay_at`` of the steps."""
    torch.manual_seed(seed)
    model = SmallCNN(norm, image_size=config.size, channels=config.channels, groups=config.groups)
    lr = config.base_lr * batch / config.base_batch
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    x, y = data["x_train"], data["y_train"]
    steps_per_epoch = len(x) // batch
    decay_step = round(config.decay_at * config.epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(seed)
    step, losses, start = 0, [], time.perf_counter()
    model.train()
    for _ in range(config.epochs):
        for xb, yb in data["batches"](x, y, batch_size=batch, drop_last=True, generator=generator):
            if step == decay_step:
                for group in optimizer.param_groups:
                    group["lr"] = lr * 0.1
            loss = nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{norm} at batch {batch}, seed {seed}: non-finite loss at step {step}")
            losses.append(loss.item())
            step += 1
    tag = f"{norm}_b{batch}_s{seed}"
    ctx.log({f"{tag}_final_loss": sum(losses[-50:]) / len(losses[-50:])}, step=step)
    return {"test_error": error_rate(model, data["x_test"], data["y_test"]),
            "train_error": error_rate(model, x, y), "steps": step, "lr": lr,
            "train_time_s": time.perf_counter() - start}


def run(config: Config, ctx) -> Result:
    from papers.vision.data import batches, load_digits

    if config.threads:
        torch.set_num_threads(config.threads)
    digits = load_digits(size=None if config.size == 8 else config.size)
    train, test = digits.split(config.test_fraction, seed=ctx.seed)
    data = {"x_train": train.images, "y_train": train.labels, "x_test": test.images, "y_test": test.labels,
            "batches": batches}
    seeds = [ctx.seed + k for k in range(config.seeds)]
    runs = {}
    jobs = [(norm, batch, seed) for seed in seeds for batch in config.batch_sizes for norm in config.norms]
    with ctx.progress_bar(len(jobs), "training") as bar:
        for norm, batch, seed in jobs:
            runs[norm, batch, seed] = ctx.stage(
                f"train_{norm}_b{batch}_s{seed}",
                lambda n=norm, b=batch, s=seed: train_one(n, b, s, data, config, ctx))
            bar.update(1)

    def mean_error(norm: str, batch: int, part: str = "test_error") -> float:
        return sum(runs[norm, batch, s][part] for s in seeds) / len(seeds)

    small, large = min(config.batch_sizes), max(config.batch_sizes)
    metrics = {}
    for norm in config.norms:
        for batch in config.batch_sizes:
            metrics[f"{norm}_test_error_b{batch}"] = mean_error(norm, batch)
            metrics[f"{norm}_train_error_b{batch}"] = mean_error(norm, batch, "train_error")
    bn, gn = "batch", "group"

    def spread(norm: str) -> float:
        """max − min of the test error over the batch sizes: 0 for a perfectly flat curve."""
        errors = [mean_error(norm, b) for b in config.batch_sizes]
        return max(errors) - min(errors)

    metrics.update(bn_error_spread=spread(bn), gn_error_spread=spread(gn),
                   train_time_s=sum(r["train_time_s"] for r in runs.values()))
    checks = [
        Check(f"BN test error grows from batch {large} to batch {small}", mean_error(bn, small), ">",
              mean_error(bn, large), f"BN error at batch {large}"),
        Check(f"GN beats BN at batch {small}", mean_error(gn, small), "<", mean_error(bn, small),
              f"BN error at batch {small}"),
        Check("GN error is flatter across batch sizes than BN error (max - min)", spread(gn), "<",
              spread(bn), "BN error spread"),
        Check(f"BN matches or beats GN at batch {large} (paper: 23.6 vs 24.1 % error at 32)",
              mean_error(bn, large), "<=", mean_error(gn, large), f"GN error at batch {large}"),
    ]
    for other in ("layer", "instance"):
        if other in config.norms:
            mean_other = sum(mean_error(other, b) for b in config.batch_sizes) / len(config.batch_sizes)
            mean_gn = sum(mean_error(gn, b) for b in config.batch_sizes) / len(config.batch_sizes)
            metrics[f"{other}_mean_test_error"] = mean_other
            checks.append(Check(f"GN beats {LABELS[other]} (test error averaged over batch sizes)", mean_gn,
                                "<", mean_other, f"{LABELS[other]} mean error"))
    metrics["group_mean_test_error"] = sum(mean_error(gn, b) for b in config.batch_sizes) / len(
        config.batch_sizes)
    figures(config, ctx, mean_error)

    def steps(batch: int) -> int:
        return runs[bn, batch, seeds[0]]["steps"]

    notes = (
        f"{len(seeds)} seed(s), {config.epochs} epoch(s) at every batch size, {len(train)} training and "
        f"{len(test)} test digits ({config.size} x {config.size}); GN uses G = {config.groups} groups "
        f"(channels {config.channels}; the paper's G = 32 suits its wider layers). One test digit is "
        f"{100 / len(test):.2f} % error. Matched epochs give {steps(large)} SGD steps at batch {large} and "
        f"{steps(small)} at batch {small}; train error (evaluation mode) at batch {large} vs {small}: "
        f"BN {mean_error(bn, large, 'train_error'):.3f} vs {mean_error(bn, small, 'train_error'):.3f}, "
        f"GN {mean_error(gn, large, 'train_error'):.3f} vs {mean_error(gn, small, 'train_error'):.3f} "
        f"(a high train error at batch {large} means the run is not yet converged, not a BN/GN effect)."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, mean_error) -> None:
    from papers.core.plots import figure, plot_lines

    sizes = sorted(config.batch_sizes, reverse=True)
    fig, (ax_test, ax_train) = figure(ncols=2)
    for ax, part, title in ((ax_test, "test_error", "test error"), (ax_train, "train_error",
                                                                    "train error (evaluation mode)")):
        series = {LABELS[n]: [100 * mean_error(n, b, part) for b in sizes] for n in config.norms}
        plot_lines(ax, sizes, series, xlabel="images per batch", ylabel="error (%)", title=title, logx=True)
        ax.minorticks_off()
        ax.set_xticks(sizes, [str(b) for b in sizes])
        ax.invert_xaxis()
    ctx.save_figure(fig, "error_vs_batch")
