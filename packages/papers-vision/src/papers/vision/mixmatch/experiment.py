"""Reproduction (toy scale): MixMatch and its ablations on scikit-learn's 8 × 8 digits with 50 labels.

Data: the 1,797 digits, a stratified split (``test_fraction`` held out for testing). From the training
part, ``labels_per_class`` images per class keep their labels (50 labels by default); every other
training image is unlabelled (its label is never read by training: a test scrambles those labels and
gets identical weights). Each seed draws another labelled subset.

Arms, all with the same net, optimiser, steps, batch size B and labelled batches (per seed):
  mixmatch              Algorithm 1: K = 2, T = 0.5, MixUp over the shuffled union W (α = 0.75),
                        L = L_X + λ_U(t) L_U, λ_U = 100 ramped up linearly
  supervised            cross-entropy on the augmented labelled batch only
  no_sharpening         T = 1 (the mean guess is used as is)
  no_mixup              X' = X̂, U' = Û (Table 4: "without MixUp")
  k1                    K = 1 (Table 4: "without distribution averaging")
  mixup_labelled_only   only X̂ is mixed, Û unmixed (Table 4: "with MixUp on labeled only")
  pi_model              K = 1, T = 1, no MixUp: a Π-model with a stop-gradient target (optional)
Every arm is evaluated with the EMA of its weights (decay 0.999, Sec. 4.1); "no EMA" is the same
MixMatch run evaluated with its raw weights (the EMA does not touch training, so it needs no extra run).

Augmentation (digits are not flip-invariant, so no flips): a random shift by up to ``shift`` pixels
(zero padding) and Gaussian pixel noise. Optimiser: Adam (lr 0.002) with decoupled weight decay
``weight_decay`` per update (the paper's 0.0004), no learning-rate decay. The paper trains a Wide
ResNet-28 for 2^20 steps on CIFAR-10/SVHN with λ_U ramped over the first 16,000 steps; here a 4-layer
conv net for ``steps`` steps and the ramp over ``rampup_fraction`` of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import EMA, ConvNet, MixMatch, linear_rampup

ARMS = ("mixmatch", "supervised", "no_sharpening", "no_mixup", "k1", "mixup_labelled_only", "pi_model")
LABELS = {
    "mixmatch": "MixMatch", "supervised": "supervised only", "no_sharpening": "no sharpening (T=1)",
    "no_mixup": "no MixUp", "k1": "K=1", "mixup_labelled_only": "MixUp on labelled only",
    "pi_model": "Π-model (K=1, T=1, no MixUp)", "no_ema": "MixMatch, no EMA",
}  # fmt: skip


@dataclass
class Config:
    test_fraction: float = 0.25
    labels_per_class: int = 5
    arms: tuple[str, ...] = ARMS[:5]  # mixmatch, supervised, no_sharpening, no_mixup, k1
    seeds: int = 2  # labelled subsets (and initialisations), averaged
    steps: int = 1000
    batch_size: int = 32  # B labelled and B unlabelled images per step
    lr: float = 0.002
    weight_decay: float = 4e-4  # decoupled, per update
    temperature: float = 0.5
    k: int = 2
    alpha: float = 0.75
    lambda_u: float = 100.0
    rampup_fraction: float = 1.0  # λ_U reaches its value after this fraction of the steps
    ema_decay: float = 0.999
    width: int = 16
    shift: int = 1
    noise_std: float = 0.05
    eval_every: int = 50
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        unknown = [a for a in self.arms if a not in ARMS]
        if unknown:
            raise ValueError(f"arms must be among {', '.join(ARMS)}; unknown: {', '.join(unknown)}")
        if "mixmatch" not in self.arms or "supervised" not in self.arms:
            raise ValueError(f"arms must include mixmatch and supervised, got {self.arms}")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must not repeat, got {self.arms}")
        for name in ("labels_per_class", "seeds", "steps", "batch_size", "k", "width", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "temperature", "alpha"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "lambda_u", "noise_std", "shift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.rampup_fraction <= 1.0:
            raise ValueError(f"rampup_fraction must be in [0, 1], got {self.rampup_fraction}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"steps": 12, "eval_every": 6, "width": 8, "batch_size": 16, "test_fraction": 0.5,
              "arms": ("mixmatch", "supervised", "k1"), "seeds": 1},
    "default": {},
    "full": {"steps": 4000, "seeds": 3, "arms": ARMS},
}  # fmt: skip


def arm_loss(arm: str, config: Config) -> MixMatch | None:
    """The MixMatch variant of an arm (``None`` for the supervised baseline)."""
    if arm == "supervised":
        return None
    options = {"temperature": config.temperature, "k": config.k, "mixup": "all"}
    options.update({
        "mixmatch": {}, "no_sharpening": {"temperature": None}, "no_mixup": {"mixup": "none"},
        "k1": {"k": 1}, "mixup_labelled_only": {"mixup": "labelled"},
        "pi_model": {"k": 1, "temperature": None, "mixup": "none"},
    }[arm])  # fmt: skip
    return MixMatch(classes=10, alpha=config.alpha, **options)


def augmentation(config: Config):
    from papers.vision.data import Compose, GaussianNoise, RandomCrop

    return Compose([RandomCrop(padding=config.shift), GaussianNoise(config.noise_std)])


def labelled_split(labels: Tensor, per_class: int, *, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted (labelled, unlabelled) indices: ``per_class`` random indices of every class are labelled."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        if per_class >= len(members):
            raise PapersError(f"labels_per_class {per_class} leaves no unlabelled image of class {int(c)}")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    labelled = torch.cat(chosen).sort().values
    mask = torch.ones(len(labels), dtype=torch.bool)
    mask[labelled] = False
    return labelled, torch.nonzero(mask).flatten()


def cycle(indices: Tensor, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Endless batches of ``indices``, reshuffled every pass (a pass shorter than B is repeated)."""
    queue = indices[:0]
    while True:
        while len(queue) < batch_size:
            queue = torch.cat([queue, indices[torch.randperm(len(indices), generator=generator)]])
        yield queue[:batch_size]
        queue = queue[batch_size:]


@torch.no_grad()
def accuracy(model: torch.nn.Module, images: Tensor, labels: Tensor) -> float:
    model.eval()
    correct = (model(images).argmax(1) == labels).float().mean().item()
    model.train()
    return correct


def train_arm(
    arm: str,
    images: Tensor,
    labels: Tensor,
    labelled: Tensor,
    unlabelled: Tensor,
    test: tuple[Tensor, Tensor],
    config: Config,
    seed: int,
    ctx=None,
) -> dict:
    """Train one arm. ``labels`` is read at ``labelled`` only; ``images[unlabelled]`` are unlabelled."""
    loss_fn, augment = arm_loss(arm, config), augmentation(config)
    torch.manual_seed(seed)
    model = ConvNet(width=config.width)
    ema = EMA(model, config.ema_decay)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay / config.lr
    )
    labelled_batches = cycle(labelled, config.batch_size, torch.Generator().manual_seed(seed + 1))
    unlabelled_batches = cycle(unlabelled, config.batch_size, torch.Generator().manual_seed(seed + 2))
    generator, rng = torch.Generator().manual_seed(seed + 3), np.random.default_rng(seed + 4)
    ramp_steps = round(config.rampup_fraction * config.steps)
    curve = {"step": [], "ema": [], "raw": [], "loss_x": [], "loss_u": []}
    start = time.perf_counter()
    name = f"{arm}_seed{seed}"
    loss_x_sum = loss_u_sum = 0.0
    bar = ctx.progress_bar(config.steps, name) if ctx is not None else nullcontext()
    with bar:
        for step in range(config.steps):
            xi, ui = next(labelled_batches), next(unlabelled_batches)
            x, y = images[xi], labels[xi]
            if loss_fn is None:
                loss_x = F.cross_entropy(model(augment(x, generator)), y)
                loss_u = torch.zeros(())
                loss = loss_x
            else:
                loss_x, loss_u, _ = loss_fn(model, x, y, images[ui], augment, generator, rng)
                loss = loss_x + config.lambda_u * linear_rampup(step, ramp_steps) * loss_u
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            ema.update(model)
            loss_x_sum, loss_u_sum = loss_x_sum + loss_x.item(), loss_u_sum + loss_u.item()
            if ctx is not None:
                bar.update(1, loss=loss.item())
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                count = (step % config.eval_every) + 1
                curve["step"].append(step + 1)
                curve["ema"].append(accuracy(ema.model, *test))
                curve["raw"].append(accuracy(model, *test))
                curve["loss_x"].append(loss_x_sum / count)
                curve["loss_u"].append(loss_u_sum / count)
                loss_x_sum = loss_u_sum = 0.0
                if ctx is not None:
                    last = {key: values[-1] for key, values in curve.items() if key != "step"}
                    ctx.log({f"{name}_{key}": value for key, value in last.items()}, step=step + 1)
    return {
        "test_acc": curve["ema"][-1],
        "test_acc_raw": curve["raw"][-1],
        "train_time_s": time.perf_counter() - start,
        "curve": curve,
        "model": model,
        "ema_model": ema.model,
    }


def load_data(config: Config, seed: int) -> dict:
    from papers.vision.data import load_digits, stratified_split

    digits = load_digits()
    train, test = stratified_split(digits.labels, config.test_fraction, seed=seed)
    return {"images": digits.images[train], "labels": digits.labels[train],
            "test": (digits.images[test], digits.labels[test])}  # fmt: skip


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config, ctx.seed)
    parts: dict[tuple[str, int], dict] = {}
    for s in range(config.seeds):
        seed = ctx.seed + s
        labelled, unlabelled = labelled_split(data["labels"], config.labels_per_class, seed=seed)
        for arm in config.arms:
            parts[arm, s] = ctx.stage(
                f"{arm}_seed{s}",
                lambda a=arm, sd=seed, lab=labelled, unl=unlabelled: _without_state(
                    train_arm(a, data["images"], data["labels"], lab, unl, data["test"], config, sd, ctx)
                ),
            )

    def mean(arm: str, key: str = "test_acc") -> float:
        return float(np.mean([parts[arm, s][key] for s in range(config.seeds)]))

    metrics: dict[str, float] = {
        "labelled": 10 * config.labels_per_class,
        "unlabelled": len(data["labels"]) - 10 * config.labels_per_class,
        "test_images": len(data["test"][1]),
    }
    for arm in config.arms:
        metrics[f"{arm}_test_acc"] = mean(arm)
        metrics[f"{arm}_test_acc_raw"] = mean(arm, "test_acc_raw")
        metrics[f"{arm}_train_time_s"] = mean(arm, "train_time_s")
    metrics["no_ema_test_acc"] = metrics["mixmatch_test_acc_raw"]
    if config.seeds > 1:
        for arm in config.arms:
            metrics[f"{arm}_test_acc_std"] = float(
                np.std([parts[arm, s]["test_acc"] for s in range(config.seeds)])
            )

    m = metrics
    full = m["mixmatch_test_acc"]
    checks = [Check("MixMatch beats supervised-only training on the same labels", full, ">",
                    m["supervised_test_acc"], "supervised test accuracy")]  # fmt: skip
    ablations = {
        "no_sharpening": "removing sharpening (T=1) hurts (Table 4)",
        "no_mixup": "removing MixUp hurts (Table 4)",
        "k1": "K=1 instead of K=2 hurts (Table 4)",
        "mixup_labelled_only": "MixUp on labelled only hurts (Table 4)",
    }
    for arm, text in ablations.items():
        if arm in config.arms:
            checks.append(Check(f"MixMatch beats its ablation: {text}", full, ">", m[f"{arm}_test_acc"],
                                f"{LABELS[arm]} test accuracy"))  # fmt: skip

    figure_curves(parts, config, ctx)
    figure_bars(parts, config, ctx)
    summary = ", ".join(f"{LABELS[a]} {100 * m[f'{a}_test_acc']:.1f}%" for a in config.arms)
    held = [c.name.split(": ")[-1] for c in checks[1:] if c.passed]
    failed = [c.name.split(": ")[-1] for c in checks[1:] if not c.passed]
    notes = (
        f"{m['labelled']} labelled / {m['unlabelled']} unlabelled digits, {config.steps} steps, "
        f"{config.seeds} seed(s), test accuracy of the EMA weights on {m['test_images']} digits: {summary}; "
        f"MixMatch without EMA (raw weights of the same run) {100 * m['no_ema_test_acc']:.1f}%. "
        f"MixMatch {'beats' if checks[0].passed else 'does not beat'} supervised-only training. "
        f"Ablations that held: {'; '.join(held) or 'none'}. Did not hold: {'; '.join(failed) or 'none'}."
    )
    if config.seeds == 1:
        notes += " One labelled subset only: differences of about a point are within seed-to-seed noise."
    else:
        per_seed = "; ".join(
            f"{LABELS[a]} " + "/".join(f"{100 * parts[a, s]['test_acc']:.1f}" for s in range(config.seeds))
            for a in config.arms
        )

        def beaten(arm: str) -> int:
            return sum(
                parts["mixmatch", s]["test_acc"] > parts[arm, s]["test_acc"] for s in range(config.seeds)
            )

        wins = ", ".join(f"{LABELS[a]} {beaten(a)}/{config.seeds}" for a in config.arms if a != "mixmatch")
        spread = float(np.mean([m[f"{a}_test_acc_std"] for a in config.arms]))
        notes += (
            f" Checks compare means over {config.seeds} labelled subsets; per seed (%): {per_seed}. "
            f"Seeds in which MixMatch beats each arm: {wins}. Mean seed-to-seed standard deviation "
            f"{100 * spread:.1f} points."
        )
    return Result(metrics=metrics, checks=checks, notes=notes)


def _without_state(part: dict) -> dict:
    """The JSON-able part of ``train_arm``'s result (without the trained modules)."""
    return {k: v for k, v in part.items() if k not in ("model", "ema_model")}


def figure_curves(parts: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    fig, (ax, ax_loss) = figure(ncols=2, width=4.8, height=3.6)
    for i, arm in enumerate(config.arms):
        steps = parts[arm, 0]["curve"]["step"]
        acc = np.mean([parts[arm, s]["curve"]["ema"] for s in range(config.seeds)], axis=0)
        ax.plot(steps, 100 * acc, label=LABELS[arm], color=f"C{i}")
        if arm == "mixmatch":
            raw = np.mean([parts[arm, s]["curve"]["raw"] for s in range(config.seeds)], axis=0)
            ax.plot(steps, 100 * raw, label=LABELS["no_ema"], color=f"C{i}", linestyle=":")
        if arm != "supervised":
            loss_u = np.mean([parts[arm, s]["curve"]["loss_u"] for s in range(config.seeds)], axis=0)
            ax_loss.plot(steps, loss_u, label=LABELS[arm], color=f"C{i}")
    ax.set_xlabel("training step")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{10 * config.labels_per_class} labels: test accuracy (EMA weights)")
    ax.legend(fontsize=7)
    ax_loss.set_xlabel("training step")
    ax_loss.set_ylabel("L_U (mean squared error)")
    ax_loss.set_yscale("log")
    ax_loss.set_title("unlabelled loss L_U")
    ax_loss.legend(fontsize=7)
    ctx.save_figure(fig, "accuracy_curves")


def figure_bars(parts: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    names = [*config.arms, "no_ema"]
    values = {a: [parts[a, s]["test_acc"] for s in range(config.seeds)] for a in config.arms}
    values["no_ema"] = [parts["mixmatch", s]["test_acc_raw"] for s in range(config.seeds)]
    fig, (ax,) = figure(width=7.0, height=3.8)
    means = [100 * float(np.mean(values[a])) for a in names]
    ax.bar(range(len(names)), means, color=["C3" if a == "mixmatch" else "C0" for a in names])
    for i, a in enumerate(names):
        ax.scatter([i] * len(values[a]), [100 * v for v in values[a]], color="k", s=8, zorder=3)
        ax.text(i, means[i] + 0.5, f"{means[i]:.1f}", ha="center", fontsize=7)
    ax.set_xticks(range(len(names)), [LABELS[a] for a in names], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(max(0.0, min(means) - 15), 100)
    ax.set_title(f"MixMatch and its ablations, {10 * config.labels_per_class} labels, {config.steps} steps")
    ctx.save_figure(fig, "accuracy_bars")
