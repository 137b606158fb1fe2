"""Reproduction (toy scale): SimCLR and debiased contrastive learning on scikit-learn's 8 × 8 digits.

Data: the 1,797 digits, a stratified split (``test_fraction`` held out for testing). The training
images, without their labels, are the unlabelled pool; a "mixed" pool adds as many generated shapes
(out of domain, Cole et al. 2022) to it.

Pre-training (same seed, steps, batches and augmentations for every objective): two views per image
from crop (RandomResizedCrop), brightness/contrast jitter, Gaussian blur and Gaussian noise; encoder f,
projection head g; Adam with cosine decay.
  biased      NT-Xent (SimCLR) with temperature t over the 2N views
  debiased    Chuang et al.'s debiased loss with class prior τ+ (0.1 = the true prior of 10 balanced
              classes) and the same 2N − 2 negatives
  mixed       NT-Xent on the mixed pool (as many steps, so it sees fewer digits)

Evaluation: a linear probe (multinomial logistic regression on standardised features) of the frozen
encoder output h, trained on ``labels_per_class`` labelled training images per class (0 = all of
them), scored on the test split. Baselines with the same labelled subsets: the same encoder trained
end to end with cross-entropy (supervised), a probe of a randomly initialised encoder, a probe of the
raw pixels; and the probe of the projection output z = g(h) instead of h.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import Encoder, SimCLR, contrastive_loss, nt_xent

OBJECTIVES = ("biased", "debiased")


@dataclass
class Config:
    test_fraction: float = 0.25
    labels_per_class: tuple[int, ...] = (10, 50, 0)  # 0: every training label
    # pre-training
    epochs: int = 50
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-6
    temperature: float = 0.5
    tau_plus: float = 0.1
    width: int = 16
    features: int = 128
    projection: int = 64
    crop_scale: float = 0.5  # RandomResizedCrop scale (crop_scale, 1)
    jitter: float = 0.4
    blur_p: float = 0.5
    noise_std: float = 0.05
    seeds: int = 2  # pre-training seeds for biased vs debiased
    mixed_pool: bool = True  # also pre-train on digits + generated shapes
    # baselines and probe
    supervised_steps: int = 1000
    probe_c: float = 1.0  # inverse L2 strength of the logistic-regression probe
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not self.labels_per_class or any(k < 0 for k in self.labels_per_class):
            raise ValueError(f"labels_per_class must be counts >= 1 (0 = all), got {self.labels_per_class}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        for name in ("epochs", "width", "features", "projection", "seeds", "supervised_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "temperature", "probe_c"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.tau_plus < 1.0:
            raise ValueError(f"tau_plus must be in [0, 1), got {self.tau_plus}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"crop_scale must be in (0, 1], got {self.crop_scale}")
        if not 0.0 <= self.blur_p <= 1.0:
            raise ValueError(f"blur_p must be in [0, 1], got {self.blur_p}")
        for name in ("weight_decay", "jitter", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"epochs": 2, "batch_size": 64, "width": 8, "features": 16, "projection": 8, "seeds": 1,
              "supervised_steps": 5, "labels_per_class": (5, 0), "test_fraction": 0.5},
    "default": {},
    "full": {"epochs": 300, "seeds": 5, "supervised_steps": 1000, "labels_per_class": (5, 10, 25, 50, 0)},
}  # fmt: skip


def augmentation(config: Config):
    from papers.vision.data import (
        ColorJitter,
        Compose,
        GaussianBlur,
        GaussianNoise,
        RandomApply,
        RandomResizedCrop,
    )

    return Compose([
        RandomResizedCrop(8, scale=(config.crop_scale, 1.0), ratio=(0.8, 1.25)),
        RandomApply(ColorJitter(brightness=config.jitter, contrast=config.jitter), p=0.8),
        RandomApply(GaussianBlur(sigma=(0.1, 1.0), kernel_size=3), p=config.blur_p),
        GaussianNoise(config.noise_std),
    ])  # fmt: skip


def label_subsets(labels: Tensor, counts: tuple[int, ...], *, seed: int) -> dict[int, Tensor]:
    """For each count k, k random indices per class (all of them for k = 0), nested across k."""
    generator = torch.Generator().manual_seed(seed)
    orders = {int(c): torch.nonzero(labels == c).flatten() for c in torch.unique(labels)}
    orders = {c: idx[torch.randperm(len(idx), generator=generator)] for c, idx in orders.items()}
    subsets = {}
    for k in counts:
        if k and any(k > len(idx) for idx in orders.values()):
            raise PapersError(f"labels_per_class {k} exceeds the smallest class of the training split")
        subsets[k] = torch.cat([idx if k == 0 else idx[:k] for idx in orders.values()]).sort().values
    return subsets


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    c: float,
    classes: int = 10,
    iterations: int = 100,
) -> float:
    """Test accuracy of a multinomial logistic regression on frozen features standardised with the
    training statistics; full-batch L-BFGS (float64) on mean cross-entropy + |W|² / (2 c n), the
    objective of scikit-learn's ``LogisticRegression(C=c)`` divided by n."""
    x = train_x.double()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    x, test = (x - mean) / std, (test_x.double() - mean) / std
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=iterations,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, train_y) + weight.pow(2).sum() / (2 * c * len(x))
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        return float(((test @ weight + bias).argmax(1) == test_y).double().mean())


def probe_all(features_train: Tensor, features_test: Tensor, data: dict, config: Config) -> dict[str, float]:
    return {
        str(k): linear_probe(
            features_train[idx], data["train_y"][idx], features_test, data["test_y"], c=config.probe_c
        )
        for k, idx in data["subsets"].items()
    }


@torch.no_grad()
def embed(model: SimCLR, images: Tensor) -> tuple[Tensor, Tensor]:
    model.eval()
    h, z = model(images)
    model.train()
    return h, z


def pretrain(objective: str, pool: Tensor, seed: int, data: dict, config: Config, ctx, name: str) -> dict:
    torch.manual_seed(seed)
    model = SimCLR(width=config.width, features=config.features, projection=config.projection)
    steps_per_epoch = max(1, len(data["train_x"]) // config.batch_size)  # the same for every pool
    steps = config.epochs * steps_per_epoch
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    augment, generator = augmentation(config), torch.Generator().manual_seed(seed + 1)
    losses, nt_xents = [], []
    start = time.perf_counter()
    with ctx.progress_bar(steps, name) as bar:
        for epoch in range(config.epochs):
            order = torch.randperm(len(pool), generator=generator)
            total = total_nt = 0.0
            for step in range(steps_per_epoch):
                images = pool[order[step * config.batch_size : (step + 1) * config.batch_size]]
                _, z1 = model(augment(images, generator))
                _, z2 = model(augment(images, generator))
                loss = contrastive_loss(
                    z1, z2, objective=objective, temperature=config.temperature, tau_plus=config.tau_plus
                )
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{name}: non-finite loss at epoch {epoch}")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item()
                total_nt += (
                    loss.item()
                    if objective == "biased"
                    else nt_xent(z1.detach(), z2.detach(), config.temperature).item()
                )
                bar.update(1, loss=loss.item())
            losses.append(total / steps_per_epoch)
            nt_xents.append(total_nt / steps_per_epoch)
            ctx.log({f"{name}_loss": losses[-1], f"{name}_nt_xent": nt_xents[-1]}, step=epoch + 1)
    train_time = time.perf_counter() - start
    h_train, z_train = embed(model, data["train_x"])
    h_test, z_test = embed(model, data["test_x"])
    return {
        "loss": losses,
        "nt_xent": nt_xents,
        "probe_h": probe_all(h_train, h_test, data, config),
        "probe_z": probe_all(z_train, z_test, data, config),
        "train_time_s": train_time,
    }


def supervised(k: int, seed: int, data: dict, config: Config, ctx) -> dict:
    """The same encoder plus a linear layer trained end to end with cross-entropy on the k-per-class
    subset (same augmentations); its test accuracy."""
    torch.manual_seed(seed)
    encoder = Encoder(width=config.width, features=config.features)
    classifier = torch.nn.Linear(config.features, 10)
    params = list(encoder.parameters()) + list(classifier.parameters())
    optimizer = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.supervised_steps)
    idx = data["subsets"][k]
    images, labels = data["train_x"][idx], data["train_y"][idx]
    augment, generator = augmentation(config), torch.Generator().manual_seed(seed + 1)
    batch = min(config.batch_size, len(idx))
    losses = []
    for _ in range(config.supervised_steps):
        pick = torch.randperm(len(idx), generator=generator)[:batch]
        loss = F.cross_entropy(classifier(encoder(augment(images[pick], generator))), labels[pick])
        if not math.isfinite(loss.item()):
            raise PapersError(f"supervised ({k} labels per class): non-finite loss")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    encoder.eval()
    with torch.no_grad():
        predicted = classifier(encoder(data["test_x"])).argmax(1)
    return {"accuracy": float((predicted == data["test_y"]).float().mean()), "final_loss": losses[-1]}


def load_data(config: Config, seed: int) -> dict:
    from papers.vision.data import load_digits, stratified_split

    digits = load_digits()
    train, test = stratified_split(digits.labels, config.test_fraction, seed=seed)
    data = {"train_x": digits.images[train], "train_y": digits.labels[train],
            "test_x": digits.images[test], "test_y": digits.labels[test]}  # fmt: skip
    data["subsets"] = label_subsets(data["train_y"], tuple(config.labels_per_class), seed=seed)
    return data


def shapes_pool(count: int, seed: int) -> Tensor:
    """Generated grey shapes at 8 × 8 (square, circle, ellipse, triangle, heart): the out-of-domain pool."""
    from papers.vision.data import sample_shapes

    images, _ = sample_shapes(
        count, size=8, seed=seed, scale=(0.3, 0.45), x=(0.35, 0.65), y=(0.35, 0.65), rgb=False
    )
    return images


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config, ctx.seed)
    ks = [str(k) for k in config.labels_per_class]
    pool = data["train_x"]
    ssl = {}
    for seed_index in range(config.seeds):
        seed = ctx.seed + seed_index
        for objective in OBJECTIVES:
            name = f"{objective}_seed{seed_index}"
            ssl[objective, seed_index] = ctx.stage(
                name, lambda o=objective, s=seed, n=name: pretrain(o, pool, s, data, config, ctx, n)
            )
    if config.mixed_pool:
        mixed = torch.cat([pool, shapes_pool(len(pool), ctx.seed + 1000)])
        ssl["mixed", 0] = ctx.stage(
            "mixed_seed0", lambda: pretrain("biased", mixed, ctx.seed, data, config, ctx, "mixed_seed0")
        )
    sup = {
        k: ctx.stage(f"supervised_{k}", lambda k=k: supervised(int(k), ctx.seed, data, config, ctx))
        for k in ks
    }

    def baselines() -> dict:
        torch.manual_seed(ctx.seed)
        encoder = Encoder(width=config.width, features=config.features).eval()
        with torch.no_grad():
            random_train, random_test = encoder(data["train_x"]), encoder(data["test_x"])
        return {
            "random": probe_all(random_train, random_test, data, config),
            "pixels": probe_all(data["train_x"].flatten(1), data["test_x"].flatten(1), data, config),
        }

    base = ctx.stage("baselines", baselines)

    def mean_over_seeds(objective: str, key: str, k: str) -> float:
        return sum(ssl[objective, s][key][k] for s in range(config.seeds)) / config.seeds

    metrics = {}
    for k in ks:
        for objective in OBJECTIVES:
            metrics[f"{objective}_probe_acc_{k}"] = mean_over_seeds(objective, "probe_h", k)
            for s in range(config.seeds):
                metrics[f"{objective}_seed{s}_probe_acc_{k}"] = ssl[objective, s]["probe_h"][k]
        metrics[f"biased_head_output_probe_acc_{k}"] = mean_over_seeds("biased", "probe_z", k)
        if config.mixed_pool:
            metrics[f"mixed_probe_acc_{k}"] = ssl["mixed", 0]["probe_h"][k]
            metrics[f"in_domain_seed0_probe_acc_{k}"] = ssl["biased", 0]["probe_h"][k]
        metrics[f"supervised_acc_{k}"] = sup[k]["accuracy"]
        metrics[f"random_encoder_probe_acc_{k}"] = base["random"][k]
        metrics[f"pixels_probe_acc_{k}"] = base["pixels"][k]
    for objective in OBJECTIVES:
        metrics[f"{objective}_final_loss"] = (
            sum(ssl[objective, s]["loss"][-1] for s in range(config.seeds)) / config.seeds
        )
        metrics[f"{objective}_pretrain_time_s"] = sum(
            ssl[objective, s]["train_time_s"] for s in range(config.seeds)
        )
    metrics["debiased_final_nt_xent"] = (
        sum(ssl["debiased", s]["nt_xent"][-1] for s in range(config.seeds)) / config.seeds
    )

    m, few, every = metrics, ks[0], ks[-1]
    label = {k: ("all" if k == "0" else k) for k in ks}
    checks = []
    for k in (few, every):
        checks.append(
            Check(
                f"debiased beats biased contrastive learning ({label[k]} labels per class)",
                m[f"debiased_probe_acc_{k}"],
                ">",
                m[f"biased_probe_acc_{k}"],
                f"biased probe accuracy, mean of {config.seeds} seeds",
            )
        )
    checks += [
        Check(f"SimCLR features beat a random encoder ({label[few]} labels per class)",
              m[f"biased_probe_acc_{few}"], ">", m[f"random_encoder_probe_acc_{few}"],
              "random-encoder probe"),
        Check(f"SimCLR probe beats the supervised encoder with few labels ({label[few]} per class)",
              m[f"biased_probe_acc_{few}"], ">", m[f"supervised_acc_{few}"], "supervised accuracy"),
        Check("the SSL advantage over supervised shrinks as labels grow",
              m[f"biased_probe_acc_{every}"] - m[f"supervised_acc_{every}"], "<",
              m[f"biased_probe_acc_{few}"] - m[f"supervised_acc_{few}"],
              f"SSL minus supervised at {label[few]} labels per class"),
        Check(f"pre-head representation h probes better than the head output z ({label[every]} labels)",
              m[f"biased_probe_acc_{every}"], ">", m[f"biased_head_output_probe_acc_{every}"],
              "probe of z = g(h)"),
    ]  # fmt: skip
    if config.mixed_pool:
        checks.append(
            Check(
                f"in-domain pre-training >= digits + shapes pool ({label[few]} labels per class)",
                m[f"in_domain_seed0_probe_acc_{few}"],
                ">=",
                m[f"mixed_probe_acc_{few}"],
                "mixed-pool probe, same seed and steps",
            )
        )

    per_class = {k: len(idx) / 10 for k, idx in data["subsets"].items()}
    figure_probe(metrics, config, ks, [per_class[int(k)] for k in ks], ctx)
    figure_losses(ssl, config, ctx)
    notes = (
        f"{len(data['train_x'])} unlabelled training digits, {len(data['test_x'])} test digits, "
        f"{config.epochs} epochs of batch {config.batch_size}, t = {config.temperature}, "
        f"tau+ = {config.tau_plus}. Probe accuracy of "
        + "; ".join(
            f"{label[k]}/class: biased {m[f'biased_probe_acc_{k}']:.3f}, debiased "
            f"{m[f'debiased_probe_acc_{k}']:.3f}, supervised {m[f'supervised_acc_{k}']:.3f}, random "
            f"{m[f'random_encoder_probe_acc_{k}']:.3f}, pixels {m[f'pixels_probe_acc_{k}']:.3f}"
            for k in ks
        )
        + f" (SSL averaged over {config.seeds} seeds; per-seed values in the metrics)."
    )
    one_image = 1.0 / len(data["test_x"])
    gaps = {k: m[f"debiased_probe_acc_{k}"] - m[f"biased_probe_acc_{k}"] for k in ks}
    notes += (
        " Debiased minus biased probe accuracy: "
        + ", ".join(f"{gaps[k]:+.4f} at {label[k]}/class" for k in ks)
        + f"; one test image is {one_image:.4f}; compare these gaps with the seed-to-seed spread "
        f"(per-seed values in the metrics). Digits are nearly linearly separable (raw pixels reach "
        f"{m[f'pixels_probe_acc_{every}']:.3f} with all labels), which compresses every gap at full labels. "
        f"The supervised baseline is the same encoder trained {config.supervised_steps} steps with the same "
        f"augmentations on the labelled subset only."
    )
    if config.mixed_pool:
        notes += (
            f" The mixed pool (digits + as many generated shapes, the same number of steps, so half as many "
            f"digit views) probes at {m[f'mixed_probe_acc_{few}']:.3f} vs "
            f"{m[f'in_domain_seed0_probe_acc_{few}']:.3f} in-domain at {label[few]}/class (one seed)."
        )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figure_probe(metrics: dict, config: Config, ks: list[str], x: list[float], ctx) -> None:
    from papers.core.plots import figure

    fig, (ax,) = figure(width=5.2, height=3.8)
    series = {
        "SimCLR (NT-Xent), h": "biased_probe_acc",
        f"debiased (tau+ = {config.tau_plus:.2g}), h": "debiased_probe_acc",
        "SimCLR, head output z": "biased_head_output_probe_acc",
        "supervised encoder": "supervised_acc",
        "random encoder": "random_encoder_probe_acc",
        "raw pixels": "pixels_probe_acc",
    }
    if config.mixed_pool:
        series["SimCLR on digits + shapes"] = "mixed_probe_acc"
    for name, key in series.items():
        ax.plot(
            x,
            [metrics[f"{key}_{k}"] for k in ks],
            marker="o",
            markersize=3,
            label=name,
            linestyle="--" if key in ("random_encoder_probe_acc", "pixels_probe_acc") else "-",
        )
    ax.set_xscale("log")
    ax.set_xticks(x, [(f"all ({v:.0f})" if k == "0" else k) for k, v in zip(ks, x, strict=True)])
    ax.minorticks_off()
    ax.set_xlabel("labels per class")
    ax.set_ylabel("test accuracy")
    ax.set_title("linear probe on frozen features (digits)")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "probe_accuracy_vs_labels")


def figure_losses(ssl: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    fig, (left, right) = figure(ncols=2, width=4.2, height=3.4)
    for (objective, s), part in ssl.items():
        epochs = range(1, len(part["loss"]) + 1)
        style = {"biased": "C0", "debiased": "C1", "mixed": "C2"}[objective]
        left.plot(
            epochs,
            part["nt_xent"],
            color=style,
            alpha=1.0 if s == 0 else 0.5,
            label=f"{objective} (seed {s})",
        )
        if objective == "debiased":
            right.plot(epochs, part["loss"], color=style, alpha=1.0 if s == 0 else 0.5, label=f"seed {s}")
    left.set_xlabel("epoch")
    left.set_ylabel("NT-Xent (training batches)")
    left.set_title("NT-Xent of each model")
    left.legend(fontsize=7)
    right.set_xlabel("epoch")
    right.set_ylabel("debiased loss")
    right.set_title(f"debiased objective (tau+ = {config.tau_plus})")
    right.legend(fontsize=7)
    ctx.save_figure(fig, "loss_curves")
