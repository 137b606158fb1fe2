"""Reproduction (toy scale): SupCon-L_out vs SupCon-L_in vs cross-entropy (Khosla et al. 2020, Tables 1-2,
Sec. 4.1 robustness).

Data: scikit-learn's 8 x 8 digits, a stratified train/test split. Every step takes a batch of images and
draws two augmented views of each (random resized crop, rotation, brightness/contrast jitter from
``papers.vision.data.augment``; no noise or blur, which are kept for the corruption test).

Methods, all from the same initialisation, the same batches and the same augmented views, for the same
number of epochs (Adam with cosine decay):
  supcon_out  encoder + projection head trained with L_out (τ = 0.1); then the head is discarded and a
              linear classifier is trained on the frozen encoder's representations of the training images
  supcon_in   the same with L_in
  ce          the same encoder with a linear layer, trained end to end by cross-entropy on both views

Measured: test accuracy (every ``eval_every`` epochs: the curves), accuracy on test images corrupted by
Gaussian noise and Gaussian blur at three strengths each, and a PCA of the test representations.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import DigitEncoder, ProjectionHead, SupConNet, supcon_loss

METHODS = ("supcon_out", "supcon_in", "ce")
LABELS = {"supcon_out": "SupCon L_out", "supcon_in": "SupCon L_in", "ce": "cross-entropy"}


@dataclass
class Config:
    # data
    test_fraction: float = 0.75  # a small training set (450 digits) keeps the task off its ceiling
    # augmentations (two views per image)
    crop_scale: float = 0.6  # RandomResizedCrop area fraction in [crop_scale, 1]
    rotation: float = 15.0  # degrees, uniform in [-rotation, rotation]
    jitter: float = 0.4  # brightness and contrast jitter, applied with probability 0.8
    # model: a small CNN instead of ResNet-50; head 64 -> 64 -> 32 instead of 2048 -> 2048 -> 128
    channels: tuple[int, ...] = (16, 32)
    dim: int = 64
    proj_hidden: int = 64
    proj_dim: int = 32
    temperature: float = 0.1
    # training (all three methods alike)
    epochs: int = 40
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    eval_every: int = 4
    seeds: int = 2  # independent initialisations and augmentation streams, averaged (same split)
    # linear classifier on the frozen encoder (full batch Adam on standardised representations)
    probe_steps: int = 300
    probe_lr: float = 1e-2
    # corruptions at test time
    noise_stds: tuple[float, ...] = (0.1, 0.2, 0.3)
    blur_sigmas: tuple[float, ...] = (0.5, 0.75, 1.0)
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        if not 0 < self.crop_scale <= 1:
            raise ValueError(f"crop_scale must lie in (0, 1], got {self.crop_scale}")
        for name in ("rotation", "jitter", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.channels) != 2 or min(self.channels) < 1:
            raise ValueError(f"channels must be two positive ints, got {self.channels}")
        for name in ("dim", "proj_hidden", "proj_dim", "epochs", "eval_every", "seeds", "probe_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        for name in ("temperature", "lr", "probe_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.noise_stds or min(self.noise_stds) <= 0:
            raise ValueError(f"noise_stds must be a non-empty list of values > 0, got {self.noise_stds}")
        if not self.blur_sigmas or min(self.blur_sigmas) <= 0:
            raise ValueError(f"blur_sigmas must be a non-empty list of values > 0, got {self.blur_sigmas}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "epochs": 2,
        "eval_every": 1,
        "channels": (8, 8),
        "dim": 16,
        "proj_hidden": 16,
        "proj_dim": 8,
        "probe_steps": 20,
        "seeds": 1,
        "test_fraction": 0.8,
        "batch_size": 64,
        "noise_stds": (0.2,),
        "blur_sigmas": (0.75,),
    },
    "default": {},
    "full": {
        "test_fraction": 0.25,
        "epochs": 100,
        "eval_every": 5,
        "channels": (32, 64),
        "dim": 128,
        "proj_hidden": 128,
        "proj_dim": 64,
        "batch_size": 256,
    },
}


def make_augment(config: Config):
    from papers.vision.data import ColorJitter, Compose, RandomApply, RandomResizedCrop, RandomRotation

    return Compose(
        [
            RandomResizedCrop(8, scale=(config.crop_scale, 1.0), ratio=(0.8, 1.25)),
            RandomRotation(config.rotation),
            RandomApply(ColorJitter(brightness=config.jitter, contrast=config.jitter), p=0.8),
        ]
    )


def representations(encoder: nn.Module, images: Tensor) -> Tensor:
    encoder.eval()
    with torch.no_grad():
        r = encoder(images)
    encoder.train()
    return r


class LinearProbe:
    """A linear classifier on standardised frozen representations (full-batch Adam, cross-entropy)."""

    def __init__(self, features: Tensor, labels: Tensor, *, classes: int, steps: int, lr: float, seed: int):
        self.mean, self.std = features.mean(0), features.std(0) + 1e-6
        torch.manual_seed(seed)
        self.linear = nn.Linear(features.shape[1], classes)
        optimizer = torch.optim.Adam(self.linear.parameters(), lr=lr)
        x = (features - self.mean) / self.std
        for _ in range(steps):
            loss = F.cross_entropy(self.linear(x), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def __call__(self, features: Tensor) -> Tensor:
        with torch.no_grad():
            return self.linear((features - self.mean) / self.std)


def accuracy(logits: Tensor, labels: Tensor) -> float:
    return (logits.argmax(-1) == labels).float().mean().item()


def corruptions(config: Config) -> dict:
    from papers.vision.data import GaussianBlur, GaussianNoise

    named = {f"noise_{s:g}": GaussianNoise(std=s) for s in config.noise_stds}
    named.update({f"blur_{s:g}": GaussianBlur(sigma=(s, s)) for s in config.blur_sigmas})
    return named


def train_method(method: str, seed: int, data: dict, config: Config, ctx) -> dict:
    """Train one method for ``config.epochs`` epochs; the test accuracy every ``eval_every`` epochs."""
    from papers.vision.data import batches

    torch.manual_seed(seed)  # the same encoder initialisation for every method
    encoder = DigitEncoder(channels=tuple(config.channels), dim=config.dim)
    if method == "ce":
        head: nn.Module = nn.Linear(config.dim, data["classes"])
    else:
        head = ProjectionHead(config.dim, config.proj_hidden, config.proj_dim)
    net = nn.Sequential(encoder, head) if method == "ce" else SupConNet(encoder, head)
    augment = make_augment(config)
    x, y = data["x_train"], data["y_train"]
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.epochs * steps_per_epoch)
    batch_generator = torch.Generator().manual_seed(seed + 1)  # same batches and views for every method
    view_generator = torch.Generator().manual_seed(seed + 2)

    def evaluate() -> tuple[float, float, object]:
        """(test accuracy, train accuracy, classifier on representations)."""
        r_train, r_test = representations(encoder, x), representations(encoder, data["x_test"])
        if method == "ce":
            head.eval()
            classify = head
        else:
            classify = LinearProbe(
                r_train,
                y,
                classes=data["classes"],
                steps=config.probe_steps,
                lr=config.probe_lr,
                seed=seed + 3,
            )
        with torch.no_grad():
            return accuracy(classify(r_test), data["y_test"]), accuracy(classify(r_train), y), classify

    curve = {"epoch": [], "test_acc": [], "train_acc": [], "loss": []}
    start, step = time.perf_counter(), 0
    net.train()
    with ctx.progress_bar(config.epochs * steps_per_epoch, LABELS[method]) as bar:
        for epoch in range(1, config.epochs + 1):
            total, seen = 0.0, 0
            for xb, yb in batches(x, y, batch_size=config.batch_size, generator=batch_generator):
                views = torch.cat([augment(xb, view_generator), augment(xb, view_generator)])
                if method == "ce":
                    loss = F.cross_entropy(net(views), yb.repeat(2))
                else:
                    z = net(views)
                    z = torch.stack([z[: len(xb)], z[len(xb) :]], dim=1)  # (B, 2, D)
                    loss = supcon_loss(
                        z, yb, temperature=config.temperature, variant=method.removeprefix("supcon_")
                    )
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{method}: non-finite loss at step {step}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total, seen, step = total + loss.item() * len(xb), seen + len(xb), step + 1
                bar.update(1, loss=loss.item())
            if epoch % config.eval_every == 0 or epoch == config.epochs:
                test_acc, train_acc, _ = evaluate()
                curve["epoch"].append(epoch)
                curve["test_acc"].append(test_acc)
                curve["train_acc"].append(train_acc)
                curve["loss"].append(total / seen)
                ctx.log({f"{method}_loss": total / seen, f"{method}_test_acc": test_acc}, step=epoch)
    train_time = time.perf_counter() - start
    test_acc, train_acc, classify = evaluate()
    corrupted = {}
    for index, (name, corrupt) in enumerate(corruptions(config).items()):
        images = corrupt(data["x_test"], torch.Generator().manual_seed(seed + 100 + index))
        with torch.no_grad():
            corrupted[name] = accuracy(classify(representations(encoder, images)), data["y_test"])
    r_test = representations(encoder, data["x_test"])
    centred = (r_test - r_test.mean(0)) / (r_test.std(0) + 1e-6)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    pca = centred @ v[:2].T
    out = {
        "test_acc": test_acc,
        "train_acc": train_acc,
        "curve": curve,
        "corrupted": corrupted,
        "pca": [[round(a, 4), round(b, 4)] for a, b in pca.tolist()],
        "train_time_s": train_time,
    }
    if method == "ce":  # the CE encoder with a linear probe, for reference
        probe = LinearProbe(
            representations(encoder, x),
            y,
            classes=data["classes"],
            steps=config.probe_steps,
            lr=config.probe_lr,
            seed=seed + 3,
        )
        out["probe_test_acc"] = accuracy(probe(r_test), data["y_test"])
    return out


def average_runs(parts: list[dict]) -> dict:
    """Accuracies, corrupted accuracies and curves averaged over seeds; the PCA of the first seed."""

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values)

    first = parts[0]
    out = {key: mean(p[key] for p in parts) for key in ("test_acc", "train_acc", "train_time_s")}
    out["corrupted"] = {name: mean(p["corrupted"][name] for p in parts) for name in first["corrupted"]}
    out["curve"] = {"epoch": first["curve"]["epoch"]}
    for key in ("test_acc", "train_acc", "loss"):
        out["curve"][key] = [mean(values) for values in zip(*(p["curve"][key] for p in parts), strict=True)]
    out["pca"], out["pca_test_acc"] = first["pca"], first["test_acc"]
    if "probe_test_acc" in first:
        out["probe_test_acc"] = mean(p["probe_test_acc"] for p in parts)
    return out


def run(config: Config, ctx) -> Result:
    from papers.vision.data import load_digits

    if config.threads:
        torch.set_num_threads(config.threads)
    digits = load_digits()
    train, test = digits.split(config.test_fraction, seed=ctx.seed)
    data = {
        "x_train": train.images,
        "y_train": train.labels,
        "x_test": test.images,
        "y_test": test.labels,
        "classes": len(digits.classes),
    }
    seeds = [ctx.seed + 10 * k for k in range(config.seeds)]
    runs = {
        (m, seed): ctx.stage(f"train_{m}_s{seed}", lambda m=m, s=seed: train_method(m, s, data, config, ctx))
        for seed in seeds
        for m in METHODS
    }
    parts = {m: average_runs([runs[m, seed] for seed in seeds]) for m in METHODS}

    metrics = {}
    for m in METHODS:
        part = parts[m]
        metrics[f"{m}_test_acc"] = part["test_acc"]
        metrics[f"{m}_train_acc"] = part["train_acc"]
        if len(seeds) > 1:
            for seed in seeds:
                metrics[f"{m}_test_acc_s{seed}"] = runs[m, seed]["test_acc"]
        for name, value in part["corrupted"].items():
            metrics[f"{m}_{name}_acc"] = value
        metrics[f"{m}_corrupted_mean_acc"] = sum(part["corrupted"].values()) / len(part["corrupted"])
        metrics[f"{m}_train_time_s"] = sum(runs[m, seed]["train_time_s"] for seed in seeds)
    metrics["ce_probe_test_acc"] = parts["ce"]["probe_test_acc"]
    m = metrics
    checks = [
        Check(
            "SupCon L_out beats L_in (linear-probe test accuracy; paper 78.7 vs 67.4 % top-1)",
            m["supcon_out_test_acc"],
            ">",
            m["supcon_in_test_acc"],
            "L_in test accuracy",
        ),
        Check(
            "SupCon L_out matches or beats cross-entropy (test accuracy)",
            m["supcon_out_test_acc"],
            ">=",
            m["ce_test_acc"],
            "cross-entropy test accuracy",
        ),
        Check(
            "SupCon L_out matches or beats cross-entropy on corrupted test images (mean over noise and blur)",
            m["supcon_out_corrupted_mean_acc"],
            ">=",
            m["ce_corrupted_mean_acc"],
            "cross-entropy corrupted accuracy",
        ),
    ]
    figures(parts, data, config, ctx)
    one = 100 / len(test)
    gap_in = 100 * (m["supcon_out_test_acc"] - m["supcon_in_test_acc"])
    gap_ce = 100 * (m["supcon_out_test_acc"] - m["ce_test_acc"])

    def pct(key: str) -> str:
        return f"{100 * m[key]:.2f} %"

    notes = (
        f"{config.epochs} epochs for every method, batches of {config.batch_size} images (2 views each), "
        f"tau = {config.temperature}, {len(train)} training and {len(test)} test digits (one test digit = "
        f"{one:.2f} %), mean over {len(seeds)} seed(s). Test accuracy: L_out "
        f"{pct('supcon_out_test_acc')}, L_in {pct('supcon_in_test_acc')}, cross-entropy "
        f"{pct('ce_test_acc')} (a linear probe on the CE encoder: {pct('ce_probe_test_acc')}); "
        f"L_out - L_in = {gap_in:+.2f} points, L_out - CE = {gap_ce:+.2f} points. Mean accuracy "
        f"under noise and blur: L_out {pct('supcon_out_corrupted_mean_acc')}, "
        f"L_in {pct('supcon_in_corrupted_mean_acc')}, CE {pct('ce_corrupted_mean_acc')}."
    )
    spread = max(
        100
        * (
            max(runs[k, seed]["test_acc"] for seed in seeds)
            - min(runs[k, seed]["test_acc"] for seed in seeds)
        )
        for k in METHODS
    )
    if len(seeds) > 1:
        notes += f" The largest spread of one method's test accuracy between seeds is {spread:.2f} points" + (
            ", larger than both gaps: at this scale the clean accuracies are not distinguishable."
            if spread > max(abs(gap_in), abs(gap_ce))
            else "."
        )

        def corrupted(k: str, seed: int) -> float:
            values = runs[k, seed]["corrupted"].values()
            return 100 * sum(values) / len(values)

        per_seed = ", ".join(
            f"{corrupted('supcon_out', seed) - corrupted('ce', seed):+.2f}" for seed in seeds
        )
        notes += f" Corrupted accuracy L_out - CE per seed: {per_seed} points."
    accs = [100 * m[f"{k}_test_acc"] for k in METHODS]
    notes += (
        " The paper's L_out vs L_in gap is 11 points on ImageNet and its SupCon vs CE gap under 1 point; "
        f"8 x 8 digits with a small CNN are far easier (the three methods reach {min(accs):.1f}-"
        f"{max(accs):.1f} %)."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(parts: dict, data: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    fig, (ax_acc, ax_loss) = figure(ncols=2)
    for m in METHODS:
        curve = parts[m]["curve"]
        ax_acc.plot(
            curve["epoch"], [100 * a for a in curve["test_acc"]], marker="o", markersize=3, label=LABELS[m]
        )
        ax_loss.plot(curve["epoch"], curve["loss"], marker="o", markersize=3, label=LABELS[m])
    ax_acc.set(
        xlabel="epoch",
        ylabel="test accuracy (%)",
        title=f"test accuracy, mean of {config.seeds} seed(s) (SupCon: linear probe)",
    )
    ax_loss.set(xlabel="epoch", ylabel="training loss (epoch mean)", yscale="log", title="training loss")
    ax_acc.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    ctx.save_figure(fig, "accuracy_curves")

    fig, axes = figure(ncols=2)
    for ax, kind, values in ((axes[0], "noise", config.noise_stds), (axes[1], "blur", config.blur_sigmas)):
        for m in METHODS:
            accs = [100 * parts[m]["test_acc"]] + [
                100 * parts[m]["corrupted"][f"{kind}_{v:g}"] for v in values
            ]
            ax.plot([0.0, *values], accs, marker="o", markersize=3, label=LABELS[m])
        ax.set(
            xlabel="noise std" if kind == "noise" else "blur sigma (pixels)",
            ylabel="test accuracy (%)",
            title=f"corrupted test images: Gaussian {kind}",
        )
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "robustness")

    fig, axes = figure(ncols=len(METHODS), width=3.6, height=3.6)
    labels = data["y_test"].tolist()
    for ax, m in zip(axes, METHODS, strict=True):
        pca = torch.tensor(parts[m]["pca"])
        scatter = ax.scatter(pca[:, 0], pca[:, 1], c=labels, cmap="tab10", s=5, vmin=-0.5, vmax=9.5)
        ax.set(
            xlabel="PC 1",
            ylabel="PC 2",
            title=f"{LABELS[m]}: {100 * parts[m]['pca_test_acc']:.1f} % (seed {ctx.seed})",
        )
    fig.colorbar(scatter, ax=axes[-1], ticks=range(10), label="digit")
    ctx.save_figure(fig, "embeddings_pca")
