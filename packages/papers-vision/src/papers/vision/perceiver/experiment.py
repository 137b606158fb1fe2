"""Reproduction (reduced scale): permutation invariance and linear cost (Jaegle et al. 2021, Table 2, Sec. 2).

Data: scikit-learn's 8 × 8 digits (1,797), a stratified train/test split. Every image becomes a byte
array of M = 64 pixels, each [value, FF(row, col)] with K Fourier bands up to the 8-pixel Nyquist rate.
"Permuted" applies one fixed random permutation to the 64 elements of every image, each pixel moved
together with its position features (Table 2, "Perm."): the Perceiver sees the same set, a ConvNet
(pixels + FF channels laid on the 8 × 8 grid, the paper's "ResNet-50 (FF)") loses its local structure.

Models, each trained on raw and on permuted inputs from the same initialisation and batch order:
  perceiver  N latents of width D, R repeats of cross-attention + latent Transformer, weights shared
  convnet    three 3×3 convs on the (C, 8, 8) grid of pixels + FF channels, average pool, linear
  mlp        two hidden layers on the 64 pixel values (no prior, so insensitive to a fixed permutation)

Cost: digits upsampled to side s ∈ ``cost_sides`` (M = s² inputs, up to 4,096). The forward time
(minimum over repeats, no grad) and matmul FLOPs (torch's FlopCounterMode) of one latent
cross-attention (N queries) and of one full self-attention over the M inputs, and the log-log slope of
each against M; the paper's claim is O(M N) (slope 1) vs O(M²) (slope 2).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.vision.data import batches, load_digits, resize, stratified_split

from .model import (
    ConvNet,
    FullSelfAttention,
    LatentCrossAttention,
    MLPClassifier,
    Perceiver,
    attention_flops,
    image_inputs,
    inputs_to_grid,
    n_params,
)

MODELS = ("perceiver", "convnet", "mlp")
VARIANTS = ("raw", "permuted")
LABELS = {"perceiver": "Perceiver", "convnet": "ConvNet (FF)", "mlp": "MLP"}


@dataclass
class Config:
    # data
    test_fraction: float = 0.25
    num_bands: int = 4  # f_k = 1, 2, 3, 4 on an 8-pixel grid (Nyquist 4)
    # Perceiver (paper, ImageNet: N=512, D=1024, R=8, L=6, 8 heads, widening 1)
    num_latents: int = 16
    latent_dim: int = 32
    repeats: int = 2
    self_per_cross: int = 2
    self_heads: int = 4
    widening: int = 2
    share_weights: bool = True
    # baselines
    conv_width: int = 16
    mlp_hidden: int = 128
    # training (paper: LAMB, 120 epochs; here AdamW with cosine decay)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 2e-3  # Perceiver
    baseline_lr: float = (
        5e-3  # ConvNet, MLP (one trial each of 2e-3, 5e-3: ConvNet best at 5e-3, Perceiver at 2e-3)
    )
    weight_decay: float = 1e-4
    # cost vs input size
    cost_sides: tuple[int, ...] = (8, 12, 16, 24, 32, 48, 64)
    cost_dim: int = 64
    cost_batch: int = 2
    cost_repeats: int = 5
    n_attention_maps: int = 4
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in (
            "num_bands",
            "num_latents",
            "latent_dim",
            "repeats",
            "self_heads",
            "widening",
            "conv_width",
            "mlp_hidden",
            "epochs",
            "batch_size",
            "cost_dim",
            "cost_batch",
            "cost_repeats",
            "n_attention_maps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.self_per_cross < 0:
            raise ValueError(f"self_per_cross must be >= 0, got {self.self_per_cross}")
        if self.latent_dim % self.self_heads:
            raise ValueError(
                f"latent_dim={self.latent_dim} must be divisible by self_heads={self.self_heads}"
            )
        for name in ("lr", "baseline_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if (
            len(self.cost_sides) < 2
            or min(self.cost_sides) < 2
            or len(set(self.cost_sides)) != len(self.cost_sides)
        ):
            raise ValueError(f"cost_sides needs at least two distinct sides >= 2, got {self.cost_sides}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "epochs": 1,
        "batch_size": 128,
        "num_latents": 4,
        "latent_dim": 16,
        "self_per_cross": 1,
        "self_heads": 2,
        "conv_width": 4,
        "mlp_hidden": 16,
        "cost_sides": (4, 8),
        "cost_repeats": 1,
        "n_attention_maps": 2,
        "test_fraction": 0.5,
    },
    "default": {},
    "full": {
        "num_latents": 32,
        "latent_dim": 64,
        "conv_width": 32,
        "repeats": 4,
        "self_per_cross": 4,
        "epochs": 60,
        "cost_sides": (8, 12, 16, 24, 32, 48, 64, 96),
        "cost_batch": 1,
    },
}


def make_model(name: str, config: Config, input_dim: int, pixels: int) -> nn.Module:
    if name == "perceiver":
        return Perceiver(
            input_dim,
            10,
            num_latents=config.num_latents,
            latent_dim=config.latent_dim,
            repeats=config.repeats,
            self_per_cross=config.self_per_cross,
            self_heads=config.self_heads,
            widening=config.widening,
            share_weights=config.share_weights,
        )
    if name == "convnet":
        return ConvNet(input_dim, 10, width=config.conv_width)
    return MLPClassifier(pixels, 10, hidden=config.mlp_hidden)


def model_view(name: str, inputs: Tensor, side: int) -> Tensor:
    """What each model is fed from a byte array ``(B, M, C)``: the array, its grid, or its pixel values."""
    if name == "perceiver":
        return inputs
    if name == "convnet":
        return inputs_to_grid(inputs, side, side)
    return inputs[..., 0]


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def train_one(name: str, variant: str, data: dict, config: Config, ctx) -> dict:
    side = data["side"]
    x_train = model_view(name, data[variant][data["train"]], side)
    x_test = model_view(name, data[variant][data["test"]], side)
    y_train, y_test = data["labels"][data["train"]], data["labels"][data["test"]]
    torch.manual_seed(ctx.seed)  # the same initialisation for raw and permuted
    model = make_model(name, config, data["input_dim"], side * side)
    steps = config.epochs * math.ceil(len(x_train) / config.batch_size)
    lr = config.lr if name == "perceiver" else config.baseline_lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    generator = torch.Generator().manual_seed(ctx.seed + 1)  # the same batches for raw and permuted
    start, step = time.perf_counter(), 0
    with ctx.progress_bar(steps, f"{name} ({variant})") as bar:
        for _ in range(config.epochs):
            model.train()
            for xb, yb in batches(x_train, y_train, batch_size=config.batch_size, generator=generator):
                loss = nn.functional.cross_entropy(model(xb), yb)
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{name} ({variant}): non-finite loss at step {step}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                bar.update(1, loss=loss.item())
                step += 1
            ctx.log({f"{name}_{variant}_loss": loss.item()}, step=step)
    part = {
        "test_acc": accuracy(model, x_test, y_test),
        "train_acc": accuracy(model, x_train, y_train),
        "params": n_params(model),
        "train_time_s": time.perf_counter() - start,
    }
    if name == "perceiver":
        part.update(perceiver_probes(model, variant, data, config))
    return part


def perceiver_probes(model: Perceiver, variant: str, data: dict, config: Config) -> dict:
    """The trained Perceiver on the other ordering of its own test set, and its first cross-attention maps
    (weights of every latent over the 64 pixels, put back in raw pixel order) for a few test digits."""
    other = "permuted" if variant == "raw" else "raw"
    test = data["test"]
    model.eval()
    with torch.no_grad():
        logits = model(data[variant][test])
        logits_other = model(data[other][test])
        shown = test[: config.n_attention_maps]
        _, maps = model(data[variant][shown], return_attention=True)
    weights = maps[0][:, 0]  # (n, N, M): the first cross-attention, its one head
    if variant == "permuted":  # column j is raw pixel perm[j]
        restored = torch.empty_like(weights)
        restored[..., data["perm"]] = weights
        weights = restored
    return {
        "other_order_agreement": (logits.argmax(-1) == logits_other.argmax(-1)).float().mean().item(),
        "other_order_max_logit_diff": (logits - logits_other).abs().max().item(),
        "attention_maps": weights.tolist(),
        "attention_row_sum_max_error": (weights.sum(-1) - 1).abs().max().item(),
    }


def time_forward(module: nn.Module, inputs: Tensor, repeats: int) -> float:
    """Minimum wall time of ``module(inputs)`` over ``repeats`` runs after one warm-up (seconds)."""
    with torch.no_grad():
        module(inputs)
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            module(inputs)
            best = min(best, time.perf_counter() - start)
    return best


def counted_flops(module: nn.Module, inputs: Tensor) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:  # (its module tracker needs autograd on)
        module(inputs)
    return counter.get_total_flops()


def loglog_slope(x: list[float], y: list[float]) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = torch.tensor(x, dtype=torch.float64).log(), torch.tensor(y, dtype=torch.float64).log()
    lx = lx - lx.mean()
    return float((lx * (ly - ly.mean())).sum() / (lx * lx).sum())


def measure_cost(data: dict, config: Config, ctx) -> dict:
    torch.manual_seed(ctx.seed)
    input_dim = data["input_dim"]
    cross = LatentCrossAttention(input_dim, config.cost_dim, num_latents=config.num_latents).eval()
    full = FullSelfAttention(input_dim, config.cost_dim).eval()
    images = data["images"][: config.cost_batch]
    out = {
        "sizes": [],
        "cross_time_s": [],
        "self_time_s": [],
        "cross_flops": [],
        "self_flops": [],
        "cross_flops_formula": [],
        "self_flops_formula": [],
    }
    with ctx.progress_bar(len(config.cost_sides), "cost vs M") as bar:
        for side in sorted(config.cost_sides):
            inputs = image_inputs(resize(images, side), num_bands=config.num_bands, max_resolution=side)
            m = side * side
            out["sizes"].append(m)
            out["cross_time_s"].append(time_forward(cross, inputs, config.cost_repeats))
            out["self_time_s"].append(time_forward(full, inputs, config.cost_repeats))
            out["cross_flops"].append(counted_flops(cross, inputs) // config.cost_batch)
            out["self_flops"].append(counted_flops(full, inputs) // config.cost_batch)
            d = config.cost_dim
            out["cross_flops_formula"].append(attention_flops(config.num_latents, m, d, input_dim, d, d))
            out["self_flops_formula"].append(2 * m * input_dim * d + attention_flops(m, m, d, d, d, d))
            bar.update(1)
    for key in ("cross_time_s", "self_time_s", "cross_flops", "self_flops"):
        out[f"{key.removesuffix('_s')}_slope"] = loglog_slope(out["sizes"], out[key])
    return out


def prepare_data(config: Config, seed: int) -> dict:
    digits = load_digits()
    side = digits.images.shape[-1]
    raw = image_inputs(digits.images, num_bands=config.num_bands)  # (1797, 64, 1 + 2 (2K + 1))
    perm = torch.randperm(side * side, generator=torch.Generator().manual_seed(seed + 12345))
    train, test = stratified_split(digits.labels, config.test_fraction, seed=seed)
    return {
        "images": digits.images,
        "labels": digits.labels,
        "raw": raw,
        "permuted": raw[:, perm],
        "perm": perm,
        "train": train,
        "test": test,
        "side": side,
        "input_dim": raw.shape[-1],
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = prepare_data(config, ctx.seed)
    parts = {
        (name, variant): ctx.stage(
            f"{name}_{variant}", lambda n=name, v=variant: train_one(n, v, data, config, ctx)
        )
        for name in MODELS
        for variant in VARIANTS
    }
    cost = ctx.stage("cost", lambda: measure_cost(data, config, ctx))

    m: dict[str, float] = {}
    for (name, variant), part in parts.items():
        m[f"{name}_{variant}_test_acc"] = part["test_acc"]
        m[f"{name}_{variant}_train_acc"] = part["train_acc"]
        m[f"{name}_{variant}_train_time_s"] = part["train_time_s"]
    for name in MODELS:
        m[f"{name}_params"] = parts[name, "raw"]["params"]
        m[f"{name}_permutation_drop"] = m[f"{name}_raw_test_acc"] - m[f"{name}_permuted_test_acc"]
    probe = parts["perceiver", "raw"]
    m["perceiver_trained_raw_on_permuted_agreement"] = probe["other_order_agreement"]
    m["perceiver_trained_raw_on_permuted_max_logit_diff"] = probe["other_order_max_logit_diff"]
    for key in ("cross_time_slope", "self_time_slope", "cross_flops_slope", "self_flops_slope"):
        m[key] = cost[key]
    big = len(cost["sizes"]) - 1
    m["largest_m"] = cost["sizes"][big]
    m["cross_time_at_largest_m_s"] = cost["cross_time_s"][big]
    m["self_time_at_largest_m_s"] = cost["self_time_s"][big]
    m["cross_flops_at_largest_m"] = cost["cross_flops"][big]
    m["self_flops_at_largest_m"] = cost["self_flops"][big]
    m["flop_counter_matches_formula"] = float(
        cost["cross_flops"] == cost["cross_flops_formula"]
        and cost["self_flops"] == cost["self_flops_formula"]
    )

    checks = [
        Check(
            "trained Perceiver gives the same predictions on permuted test pixels (exact invariance)",
            m["perceiver_trained_raw_on_permuted_agreement"],
            ">=",
            1.0,
            "1 = all test predictions unchanged (paper: permutation invariant)",
        ),
        Check(
            "Perceiver loses less accuracy to the pixel permutation than the ConvNet",
            m["perceiver_permutation_drop"],
            "<",
            m["convnet_permutation_drop"],
            "ConvNet (FF) accuracy drop raw → permuted",
        ),
        Check(
            "ConvNet (FF) loses accuracy on permuted pixels",
            m["convnet_permuted_test_acc"],
            "<",
            m["convnet_raw_test_acc"],
            "ConvNet (FF) raw-pixel test accuracy",
        ),
        Check(
            "Perceiver on permuted pixels beats the ConvNet on permuted pixels",
            m["perceiver_permuted_test_acc"],
            ">",
            m["convnet_permuted_test_acc"],
            "ConvNet (FF) permuted test accuracy",
        ),
        Check(
            "Perceiver on raw pixels is competitive: at least the prior-free MLP's accuracy",
            m["perceiver_raw_test_acc"],
            ">=",
            m["mlp_raw_test_acc"],
            "MLP raw test accuracy",
        ),
        Check(
            "cross-attention time grows linearly in M (log-log slope closer to 1 than to 2)",
            m["cross_time_slope"],
            "<",
            1.5,
            "1.5, midway between linear and quadratic",
        ),
        Check(
            "full self-attention time grows quadratically in M (slope closer to 2 than to 1)",
            m["self_time_slope"],
            ">",
            1.5,
            "1.5, midway between linear and quadratic",
        ),
    ]
    figure_accuracy(m, ctx)
    figure_cost(cost, config, ctx)
    figure_attention(parts, data, config, ctx)
    max_diff = m["perceiver_trained_raw_on_permuted_max_logit_diff"]
    failed = [c.name for c in checks if not c.passed]
    notes = (
        f"8x8 digits, M = 64 pixels with {config.num_bands} Fourier bands; Perceiver N={config.num_latents}, "
        f"D={config.latent_dim}, R={config.repeats} repeats x {config.self_per_cross} self-attention blocks, "
        f"weights shared={config.share_weights}, {config.epochs} epochs. Test accuracy raw / permuted: "
        f"Perceiver {m['perceiver_raw_test_acc']:.3f} / {m['perceiver_permuted_test_acc']:.3f}, ConvNet (FF) "
        f"{m['convnet_raw_test_acc']:.3f} / {m['convnet_permuted_test_acc']:.3f}, MLP "
        f"{m['mlp_raw_test_acc']:.3f} / {m['mlp_permuted_test_acc']:.3f} (train accuracy on raw pixels "
        f"{m['perceiver_raw_train_acc']:.3f}, {m['convnet_raw_train_acc']:.3f}, "
        f"{m['mlp_raw_train_acc']:.3f}). "
        f"The raw-trained Perceiver's "
        f"logits on permuted test inputs differ by at most {max_diff:.1e} "
        f"(float summation order); trained from scratch on permuted inputs (same initialisation and batches) "
        f"it loses {m['perceiver_permutation_drop']:+.3f} accuracy, the ConvNet "
        f"{m['convnet_permutation_drop']:+.3f}, the MLP {m['mlp_permutation_drop']:+.3f}: its forward pass "
        f"is invariant, but the gradient sums over the M inputs run in another floating-point order "
        f"(differences ~1e-7), which training amplifies, so the two Perceiver runs differ by seed-like "
        f"noise. "
        f"Cost over M = {cost['sizes'][0]}..{cost['sizes'][-1]}: forward-time log-log slope "
        f"{m['cross_time_slope']:.2f} (cross-attention, N={config.num_latents}) vs "
        f"{m['self_time_slope']:.2f} "
        f"(self-attention); counted FLOP slopes {m['cross_flops_slope']:.2f} vs {m['self_flops_slope']:.2f} "
        f"(the M-independent latent projections and the M-linear projections of self-attention pull the "
        f"fitted slopes below 1 and 2 at small M). Times are minima over {config.cost_repeats} runs on a "
        f"shared CPU. Reduced from the paper: tiny latent array and depth, AdamW instead of LAMB, no "
        f"augmentation, no audio/point-cloud tasks."
    )
    if m["perceiver_raw_test_acc"] < min(m["convnet_raw_test_acc"], m["mlp_raw_test_acc"]):
        notes += (
            f" With neither a locality prior nor augmentation (the paper crops ImageNet images) the "
            f"Perceiver fits the {len(data['train'])} training digits (train accuracy "
            f"{m['perceiver_raw_train_acc']:.3f}) but generalises worse than both baselines at this scale."
        )
    if failed:
        notes += " Did not hold: " + "; ".join(failed) + "."
    return Result(metrics=m, checks=checks, notes=notes)


def figure_accuracy(m: dict, ctx) -> None:
    from papers.core.plots import figure

    fig, (ax,) = figure(width=5.0, height=3.4)
    width = 0.38
    for i, variant in enumerate(VARIANTS):
        values = [m[f"{name}_{variant}_test_acc"] for name in MODELS]
        xs = [k + (i - 0.5) * width for k in range(len(MODELS))]
        bars = ax.bar(xs, values, width, label=f"{variant} pixels", color=f"C{i}")
        for bar, value in zip(bars, values, strict=True):
            ax.text(bar.get_x() + bar.get_width() / 2, value + 0.01, f"{value:.3f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(MODELS)), [LABELS[name] for name in MODELS])
    low = min(m[f"{name}_{v}_test_acc"] for name in MODELS for v in VARIANTS)
    ax.set_ylim(max(0.0, low - 0.1), 1.05)
    ax.set_ylabel("test accuracy")
    ax.set_title("8x8 digits: raw vs fixed pixel permutation")
    ax.legend(fontsize=8, loc="lower left")
    ctx.save_figure(fig, "accuracy")


def figure_cost(cost: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    fig, (ax_time, ax_flops) = figure(ncols=2, width=4.2, height=3.4)
    sizes = cost["sizes"]
    for ax, key, unit in ((ax_time, "time_s", "forward time (s)"), (ax_flops, "flops", "matmul FLOPs")):
        slope_key = key.removesuffix("_s")
        ax.loglog(
            sizes,
            cost[f"cross_{key}"],
            "o-",
            ms=3,
            label=f"latent cross-attention, N={config.num_latents} "
            f"(slope {cost[f'cross_{slope_key}_slope']:.2f})",
        )
        ax.loglog(
            sizes,
            cost[f"self_{key}"],
            "s-",
            ms=3,
            label=f"self-attention over inputs (slope {cost[f'self_{slope_key}_slope']:.2f})",
        )
        ax.set_xlabel("number of inputs M")
        ax.set_ylabel(unit)
        ax.legend(fontsize=7)
    ax_time.set_title("cost vs input size (1 thread)")
    ax_flops.set_title("FLOPs vs input size")
    ctx.save_figure(fig, "cost_vs_inputs")


def figure_attention(parts: dict, data: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    side, test = data["side"], data["test"]
    n_images = min(config.n_attention_maps, len(test))
    n_latents = min(4, config.num_latents)
    fig, axes = figure(ncols=1 + 2 * n_latents, nrows=n_images, width=1.3, height=1.3)
    for row in range(n_images):
        cells = axes[row * (1 + 2 * n_latents) : (row + 1) * (1 + 2 * n_latents)]
        cells[0].imshow(data["images"][test[row], 0].numpy(), cmap="gray_r")
        cells[0].set_title(f"digit {int(data['labels'][test[row]])}" if row == 0 else "", fontsize=7)
        for j, variant in enumerate(VARIANTS):
            maps = torch.tensor(parts["perceiver", variant]["attention_maps"][row])
            for k in range(n_latents):
                ax = cells[1 + j * n_latents + k]
                ax.imshow(maps[k].view(side, side).numpy(), cmap="viridis")
                if row == 0:
                    ax.set_title(f"{variant[:4]}. latent {k}", fontsize=7)
        for ax in cells:
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
    fig.suptitle(
        "first cross-attention of a few latents over the pixels (permuted model's maps un-permuted)",
        fontsize=8,
    )
    ctx.save_figure(fig, "attention_maps")
