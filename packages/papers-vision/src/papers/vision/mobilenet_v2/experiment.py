"""Reproduction (toy scale): linear bottlenecks and inverted residuals (Sandler et al. 2018, Fig. 1, Sec. 3,
Fig. 6).

(a) The Figure 1 toy: a 2-D spiral embedded into R^n by a random T, ReLU, mapped back with T⁺; the
    reconstruction errors of ``manifold.py`` for n in ``dims``, medians over ``trials`` random T.
(b) Ablation on a small classification task: scikit-learn's 8 × 8 digits upsampled to ``image_size``,
    a stratified 80/20 split. A reduced MobileNetV2 (``TINY_SETTINGS``: stem 16, bottlenecks 8-12-16-24,
    t = 6, last 1×1 to 128 channels; times the width multiplier, 0.5 by default) trained with every
    variant alike (same initial seed, same batches, Adam with cosine decay, equal steps):
        linear              MobileNetV2: linear bottleneck, shortcut between bottlenecks
        relu                ReLU6 after the projection (non-linear bottleneck), Fig. 6a
        expansion_shortcut  linear bottleneck, shortcut between the expanded tensors, Fig. 6b
        no_residual         linear bottleneck, no shortcut, Fig. 6b
    Test accuracy and loss every ``eval_every`` steps; training loss at every step.
(c) Cost: multiply-adds and parameters of every block of the reduced net, from the paper's formula
    h·w·d·t·(d + k² + d') (checked against a count from the layer shapes), vs a standard k×k conv
    between the same widths d → d' (h·w·d·d'·k²), and vs a standard k×k conv as wide as the block's
    inside (t·d → t·d').
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.vision.data import load_digits

from .manifold import manifold_sweep, relu_roundtrip, spiral
from .model import (
    TINY_SETTINGS,
    MobileNetV2,
    count_madds,
    inverted_residual_madds,
    inverted_residual_params,
    n_params,
    standard_conv_madds,
    standard_conv_params,
)

VARIANTS = {
    "linear": {"bottleneck": "linear", "shortcut": "bottleneck"},
    "relu": {"bottleneck": "relu", "shortcut": "bottleneck"},
    "expansion_shortcut": {"bottleneck": "linear", "shortcut": "expansion"},
    "no_residual": {"bottleneck": "linear", "shortcut": "none"},
}
LABELS = {
    "linear": "linear bottleneck (MobileNetV2)",
    "relu": "ReLU6 bottleneck",
    "expansion_shortcut": "shortcut between expansions",
    "no_residual": "no residual",
}


@dataclass
class Config:
    # (a) the Figure 1 toy
    dims: tuple[int, ...] = (2, 3, 5, 10, 15, 30)
    trials: int = 200
    spiral_points: int = 1000
    spiral_turns: float = 2.0
    # (b) the classification ablation
    variants: tuple[str, ...] = ("linear", "relu", "expansion_shortcut")
    image_size: int = 16
    # 0.5: bottlenecks of 4-12 channels, the low-dimensional regime the paper's argument is about (an
    # exploratory run at 1.0 put every variant at ~99 %, one test image apart)
    width_mult: float = 0.5
    expansion: int = 6
    last_channels: int = 128
    steps: int = 240
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 4e-5
    eval_every: int = 40
    test_fraction: float = 0.2
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if len(self.dims) < 2 or any(n < 2 for n in self.dims) or list(self.dims) != sorted(set(self.dims)):
            raise ValueError(f"dims must be at least two increasing ints >= 2, got {self.dims}")
        for name in ("trials", "steps", "batch_size", "eval_every", "expansion", "last_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.spiral_points < 2:
            raise ValueError(f"spiral_points must be >= 2, got {self.spiral_points}")
        if not self.spiral_turns > 0:
            raise ValueError(f"spiral_turns must be > 0, got {self.spiral_turns}")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"variants must be distinct names of {tuple(VARIANTS)}, got {self.variants}")
        if "linear" not in self.variants:
            raise ValueError(f"variants must include 'linear' (the reference), got {self.variants}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be >= 8, got {self.image_size}")
        if not self.width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {self.width_mult}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "dims": (2, 3, 15),
        "trials": 3,
        "spiral_points": 200,
        "steps": 4,
        "batch_size": 16,
        "eval_every": 2,
        "last_channels": 16,
        "image_size": 8,
        "variants": ("linear", "relu"),
    },
    "default": {},
    "full": {
        "image_size": 32,
        "width_mult": 1.0,
        "steps": 1500,
        "eval_every": 100,
        "trials": 1000,
        "variants": ("linear", "relu", "expansion_shortcut", "no_residual"),
    },
}


def make_model(variant: str, config: Config) -> MobileNetV2:
    settings = tuple((t if t == 1 else config.expansion, c, n, s) for t, c, n, s in TINY_SETTINGS)
    return MobileNetV2(
        num_classes=10,
        in_channels=1,
        width_mult=config.width_mult,
        settings=settings,
        stem_channels=16,
        last_channels=config.last_channels,
        stem_stride=1,
        divisor=4,
        dropout=0.0,
        **VARIANTS[variant],
    )


# ---- (a) the Figure 1 toy ----------------------------------------------------------------------------


def toy(config: Config, seed: int) -> dict:
    sweep = manifold_sweep(
        config.dims, trials=config.trials, points=config.spiral_points, turns=config.spiral_turns, seed=seed
    )
    summary = {}
    for n, measures in sweep.items():
        for key, values in measures.items():
            q1, median, q3 = (
                statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else (values[0],) * 3
            )
            summary.setdefault(key, {})[str(n)] = {"median": statistics.median(values), "q1": q1, "q3": q3}
    return summary


# ---- (b) the ablation --------------------------------------------------------------------------------


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        logits = model(images)
    model.train()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return accuracy, nn.functional.cross_entropy(logits, labels).item()


def train_variant(variant: str, data: dict, config: Config, ctx) -> dict:
    torch.manual_seed(ctx.seed)
    model = make_model(variant, config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    generator = torch.Generator().manual_seed(ctx.seed + 1)  # the same batches for every variant
    x, y = data["x_train"], data["y_train"]
    history = {"loss": [], "eval_step": [], "test_accuracy": [], "test_loss": []}
    start = time.perf_counter()
    with ctx.progress_bar(config.steps, f"training {variant}") as bar:
        for step in range(1, config.steps + 1):
            batch = torch.randint(len(x), (config.batch_size,), generator=generator)
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            if not math.isfinite(loss.item()):
                raise PapersError(f"{variant}: non-finite loss at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            history["loss"].append(loss.item())
            bar.update(1, loss=loss.item())
            if step % config.eval_every == 0 or step == config.steps:
                accuracy, test_loss = evaluate(model, data["x_test"], data["y_test"])
                history["eval_step"].append(step)
                history["test_accuracy"].append(accuracy)
                history["test_loss"].append(test_loss)
                ctx.log({f"{variant}_loss": loss.item(), f"{variant}_test_accuracy": accuracy}, step=step)
    train_time = time.perf_counter() - start
    train_accuracy, _ = evaluate(model, x, y)
    tail = max(1, config.steps // 10)
    return {
        "history": history,
        "test_accuracy": history["test_accuracy"][-1],
        "test_loss": history["test_loss"][-1],
        "mean_test_accuracy": sum(history["test_accuracy"]) / len(history["test_accuracy"]),
        "train_accuracy": train_accuracy,
        "final_train_loss": sum(history["loss"][-tail:]) / tail,
        "params": n_params(model),
        "madds": count_madds(model, (1, config.image_size, config.image_size)),
        "train_time_s": train_time,
    }


# ---- (c) cost ----------------------------------------------------------------------------------------


def cost_table(config: Config) -> dict:
    """Per block of the reduced net: MAdds and parameters from the formulas, and the hook count."""
    model = make_model("linear", config)
    side = config.image_size  # the stem has stride 1
    rows = []
    for index, block in enumerate(model.blocks):
        d, d_out, t, k, s = (
            block.in_channels,
            block.out_channels,
            block.expansion,
            block.kernel_size,
            block.stride,
        )
        counted = count_madds(block, (d, side, side))
        wide_in, wide_out = d * t, d_out * t
        rows.append(
            {
                "block": index,
                "side": side,
                "d": d,
                "d_out": d_out,
                "t": t,
                "stride": s,
                "ir_madds": inverted_residual_madds(
                    side, side, d, d_out, expansion=t, kernel_size=k, stride=s
                ),
                "ir_madds_counted": counted,
                "std_madds": standard_conv_madds(side, side, d, d_out, kernel_size=k, stride=s),
                "std_wide_madds": standard_conv_madds(side, side, wide_in, wide_out, kernel_size=k, stride=s),
                "ir_params": inverted_residual_params(d, d_out, expansion=t, kernel_size=k),
                "ir_params_counted": n_params(block),
                "std_params": standard_conv_params(d, d_out, kernel_size=k),
                "std_wide_params": standard_conv_params(wide_in, wide_out, kernel_size=k),
            }
        )
        side = (side - 1) // s + 1
    totals = {
        key: sum(row[key] for row in rows) for key in rows[0] if key.endswith(("madds", "params", "counted"))
    }
    return {"rows": rows, "totals": totals}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    manifold = ctx.stage("manifold", lambda: toy(config, ctx.seed))
    cost = ctx.stage("cost", lambda: cost_table(config))

    digits = load_digits(config.image_size)
    train_set, test_set = digits.split(config.test_fraction, seed=ctx.seed)
    data = {
        "x_train": train_set.images,
        "y_train": train_set.labels,
        "x_test": test_set.images,
        "y_test": test_set.labels,
    }
    parts = {
        v: ctx.stage(f"train_{v}", lambda v=v: train_variant(v, data, config, ctx)) for v in config.variants
    }

    lo, hi = str(config.dims[0]), str(config.dims[-1])
    pinv = {n: manifold["pinv_error"][str(n)]["median"] for n in config.dims}
    lost = {n: manifold["lost_fraction"][str(n)]["median"] for n in config.dims}
    ratios = [pinv[b] / pinv[a] for a, b in zip(config.dims, config.dims[1:], strict=False)]
    totals = cost["totals"]
    metrics: dict = {}
    for key in ("pinv_error", "scaled_error", "linear_error", "lost_fraction"):
        for n in config.dims:
            metrics[f"toy_{key}_n{n}"] = manifold[key][str(n)]["median"]
    metrics["toy_max_consecutive_pinv_ratio"] = max(ratios)
    for v, part in parts.items():
        for key in (
            "test_accuracy",
            "mean_test_accuracy",
            "test_loss",
            "train_accuracy",
            "final_train_loss",
            "params",
            "madds",
            "train_time_s",
        ):
            metrics[f"{v}_{key}"] = part[key]
    metrics.update({f"cost_{key}": value for key, value in totals.items()})
    metrics["cost_ir_over_std_madds"] = totals["ir_madds"] / totals["std_madds"]
    metrics["cost_ir_over_std_wide_madds"] = totals["ir_madds"] / totals["std_wide_madds"]
    metrics["cost_ir_over_std_params"] = totals["ir_params"] / totals["std_params"]
    metrics["cost_blocks"] = cost["rows"]

    lin = parts["linear"]
    checks = [
        Check(
            f"toy: pseudo-inverse reconstruction error falls from n={lo} to n={hi}",
            pinv[config.dims[-1]],
            "<",
            pinv[config.dims[0]],
            f"median relative error at n={lo}",
        ),
        Check(
            "toy: the error falls at every step of the n sweep",
            max(ratios),
            "<",
            1.0,
            "1 (ratio of consecutive medians)",
        ),
        Check(
            f"toy: fewer spiral points collapsed (< 2 active ReLUs) at n={hi} than at n={lo}",
            lost[config.dims[-1]],
            "<",
            lost[config.dims[0]],
            f"collapsed fraction at n={lo}",
        ),
    ]
    if "relu" in parts:
        checks += [
            Check(
                "linear bottleneck test accuracy >= ReLU6 bottleneck at equal steps",
                lin["test_accuracy"],
                ">=",
                parts["relu"]["test_accuracy"],
                "ReLU6-bottleneck test accuracy",
            ),
            Check(
                "linear bottleneck trains to a lower loss than ReLU6 bottleneck",
                lin["final_train_loss"],
                "<",
                parts["relu"]["final_train_loss"],
                "ReLU6-bottleneck train loss (last 10 %)",
            ),
        ]
    for other in ("expansion_shortcut", "no_residual"):
        if other in parts:
            checks.append(
                Check(
                    f"shortcut between bottlenecks test accuracy >= {LABELS[other]}",
                    lin["test_accuracy"],
                    ">=",
                    parts[other]["test_accuracy"],
                    f"{LABELS[other]} test accuracy",
                )
            )
    checks.append(
        Check(
            "inverted residuals cost fewer MAdds than standard 3x3 convs as wide as their inside",
            totals["ir_madds"],
            "<",
            totals["std_wide_madds"],
            "standard conv t*d -> t*d' MAdds (all blocks)",
        )
    )

    figure_manifold(config, ctx.seed, manifold, ctx)
    figure_training(config, parts, ctx)
    figure_cost(cost, ctx)

    accs = ", ".join(
        f"{LABELS[v]} {p['test_accuracy']:.3f} (mean over the curve {p['mean_test_accuracy']:.3f}, "
        f"train loss {p['final_train_loss']:.4f})"
        for v, p in parts.items()
    )
    shortcut_note = ""
    for other in ("expansion_shortcut", "no_residual"):
        if other in parts:
            gap = round((lin["test_accuracy"] - parts[other]["test_accuracy"]) * len(data["y_test"]))
            verdict = "as in" if gap > 0 else ("a tie, not the gain of" if gap == 0 else "unlike")
            shortcut_note += (
                f"Shortcut between bottlenecks vs {LABELS[other]}: {gap:+d} test images, {verdict} the "
                f"paper's Fig. 6b (ImageNet); the training losses differ by "
                f"{lin['final_train_loss'] - parts[other]['final_train_loss']:+.4f}. "
            )
    lin_err = manifold["linear_error"]
    ratio = metrics["cost_ir_over_std_madds"]
    cheaper = "cheaper than" if ratio < 1 else "not cheaper than"
    notes = (
        f"Toy (Fig. 1): the median relative error of T+ ReLU(T x) falls from {pinv[config.dims[0]]:.3g} "
        f"(n={lo}) to {pinv[config.dims[-1]]:.3g} (n={hi}). It tends to 1/4, not 0, since T+ ReLU(T x) -> "
        f"x/2 for large n (each unit is active on half of the directions); the best linear decoder of "
        f"ReLU(T x) reaches {lin_err[hi]['median']:.2g} at n={hi} vs {lin_err[lo]['median']:.2g} at n={lo}, "
        f"and the share of points left with < 2 active units (unrecoverable by any decoder) falls from "
        f"{lost[config.dims[0]]:.2f} to {lost[config.dims[-1]]:.3f}. "
        f"Ablation: digits upsampled to {config.image_size}x{config.image_size}, reduced MobileNetV2 "
        f"({lin['params']} parameters, {lin['madds'] / 1e6:.2f}M MAdds), {config.steps} steps, one seed; "
        f"test accuracy: {accs}. With {len(data['y_test'])} test images one image is "
        f"{100 / len(data['y_test']):.2f} points of accuracy; with one seed, gaps of a few images are "
        f"noise. {shortcut_note}"
        f"Cost over the {len(cost['rows'])} blocks: inverted residuals {totals['ir_madds'] / 1e6:.2f}M "
        f"MAdds (formula = layer-shape count: {totals['ir_madds'] == totals['ir_madds_counted']}), "
        f"{ratio:.2f}x a standard 3x3 conv between the same widths d -> d' and "
        f"{metrics['cost_ir_over_std_wide_madds']:.3f}x one as wide as the block's inside (t*d -> t*d'): "
        f"with t = {config.expansion} the block is {cheaper} a plain conv between its narrow ends; its "
        f"point is a t times wider inside at about that cost (the paper: small input and output dims)."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


# ---- figures -----------------------------------------------------------------------------------------


def figure_manifold(config: Config, seed: int, manifold: dict, ctx) -> None:
    from papers.core.plots import figure

    from .manifold import random_embedding

    x = spiral(config.spiral_points, turns=config.spiral_turns)
    shown = [n for n in (2, 3, 5, 15, 30) if n in config.dims] or list(config.dims)
    fig, axes = figure(ncols=len(shown) + 1, width=2.6, height=2.8)
    colour = torch.linspace(0, 1, len(x))
    axes[0].scatter(x[:, 0], x[:, 1], c=colour, s=2, cmap="viridis")
    axes[0].set_title("input spiral")
    for ax, n in zip(axes[1:], shown, strict=False):
        generator = torch.Generator().manual_seed(seed * 1000 + n)  # the first embedding of the sweep
        _, x_hat = relu_roundtrip(x, random_embedding(n, generator=generator))
        ax.scatter(x_hat[:, 0], x_hat[:, 1], c=colour, s=2, cmap="viridis")
        ax.set_title(f"n = {n}: T⁺ReLU(Tx)")
    for ax in axes:
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.save_figure(fig, "manifold")

    fig, (ax,) = figure(width=5.0, height=3.6)
    dims = list(config.dims)
    for key, label in (
        ("pinv_error", "T⁺ReLU(Tx)"),
        ("scaled_error", "best scale · T⁺ReLU(Tx)"),
        ("linear_error", "best linear decoder"),
        ("lost_fraction", "share < 2 active"),
    ):
        stats = [manifold[key][str(n)] for n in dims]
        ax.plot(dims, [s["median"] for s in stats], marker="o", markersize=3, label=label)
        ax.fill_between(dims, [s["q1"] for s in stats], [s["q3"] for s in stats], alpha=0.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_xticks(dims, [str(n) for n in dims])
    ax.set_xlabel("embedding dimension n")
    ax.set_ylabel("relative error or share (median, IQR)")
    ax.set_title(f"spiral in R^n through ReLU ({config.trials} random T per n)")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "manifold_errors")


def figure_training(config: Config, parts: dict, ctx) -> None:
    from papers.core.plots import figure, moving_average

    fig, (ax_acc, ax_loss) = figure(ncols=2, width=4.6)
    for v, part in parts.items():
        history = part["history"]
        ax_acc.plot(history["eval_step"], history["test_accuracy"], marker="o", markersize=3, label=LABELS[v])
        ax_loss.plot(range(1, len(history["loss"]) + 1), moving_average(history["loss"], 20), label=LABELS[v])
    ax_acc.set_xlabel("training step")
    ax_acc.set_ylabel("test accuracy")
    ax_acc.set_title(f"digits {config.image_size}x{config.image_size}")
    ax_acc.legend(fontsize=7)
    ax_loss.set_yscale("log")
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("training loss (moving average)")
    ctx.save_figure(fig, "training")


def figure_cost(cost: dict, ctx) -> None:
    from papers.core.plots import figure

    rows = cost["rows"]
    fig, (ax_madds, ax_params) = figure(ncols=2, width=5.0)
    width = 0.27
    index = torch.arange(len(rows)).float()
    kinds = (("ir", "inverted residual"), ("std", "std 3x3 conv d→d'"), ("std_wide", "std 3x3 conv td→td'"))
    for ax, unit in ((ax_madds, "madds"), (ax_params, "params")):
        for j, (kind, label) in enumerate(kinds):
            ax.bar(index + (j - 1) * width, [row[f"{kind}_{unit}"] for row in rows], width, label=label)
        ax.set_yscale("log")
        ax.set_xticks(
            index.tolist(), [f"{r['d']}→{r['d_out']}\n{r['side']}px s{r['stride']}" for r in rows], fontsize=6
        )
        ax.set_xlabel("block (d → d', input side, stride)")
    ax_madds.set_ylabel("multiply-adds")
    ax_params.set_ylabel("parameters")
    ax_madds.legend(fontsize=7)
    ctx.save_figure(fig, "cost")
