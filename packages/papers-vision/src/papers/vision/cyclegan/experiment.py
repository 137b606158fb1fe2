"""Reproduction (toy scale): unpaired digit-to-digit translation, CycleGAN vs "GAN alone" (Zhu et al.
2017, Sec. 5.1.4 and Table 4, the ablation of the cycle loss).

Data (``data.py``): domain X = scikit-learn digits (upsampled to 16 × 16), domain Y = other digits in a
fixed style (thickened, blurred, inverted); the two domains come from disjoint source images.
Arms, trained alike (same seed, data order, budget): ``cyclegan`` (λ = 10) and ``gan_alone`` (λ = 0).
Judges: a digit classifier trained on X's train set and one on Y's, both frozen. Measured on the test
images of each domain:

    acc_Y(G(x))      does G(x) still show x's digit?             (identity kept by X → Y)
    acc_X(F(G(x)))   does the round trip give x's digit back?
    acc_X(F(y))      the reverse direction, and acc_Y(G(F(y)))
    L1 ‖F(G(x)) − x‖ the cycle reconstruction error; the class histogram of classify_Y(G(x)) (collapse)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .classifier import accuracy, predict, train_classifier
from .data import make_domains, to_unit
from .model import CycleGAN, ImagePool

ARMS = ("cyclegan", "gan_alone")


@dataclass
class Config:
    # data
    size: int = 16
    test_fraction: float = 0.25
    # models (paper: k = 64, 9 residual blocks at 256 x 256, 70 x 70 PatchGAN with width 64)
    gen_width: int = 8
    gen_blocks: int = 2
    outer_kernel: int = 7
    disc_width: int = 16
    disc_downsamplings: int = 2
    # objective (paper: lambda = 10; identity 0.5 lambda only for photo <-> painting)
    lambda_cycle: float = 10.0
    identity_weight: float = 0.0  # lambda_identity = identity_weight * lambda_cycle (0.5 when used)
    pool_size: int = 50
    # optimisation (paper: Adam 2e-4, beta1 0.5, batch 1, constant lr then linear decay to 0 over the
    # second half)
    steps: int = 500
    batch_size: int = 8
    lr: float = 2e-4
    beta1: float = 0.5
    decay_start: float = 0.5  # fraction of the steps after which the lr decays linearly to 0
    # judges
    classifier_epochs: int = 15
    eval_every: int = 100
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if self.size < 8 or self.size % 4:
            raise ValueError(f"size must be a multiple of 4 and >= 8, got {self.size}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        for name in (
            "gen_width",
            "disc_width",
            "disc_downsamplings",
            "steps",
            "batch_size",
            "classifier_epochs",
            "eval_every",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.gen_blocks < 0:
            raise ValueError(f"gen_blocks must be >= 0, got {self.gen_blocks}")
        if self.outer_kernel < 1 or self.outer_kernel % 2 == 0:
            raise ValueError(f"outer_kernel must be a positive odd int, got {self.outer_kernel}")
        if self.outer_kernel // 2 >= self.size:
            raise ValueError(f"outer_kernel {self.outer_kernel} is too large for size {self.size}")
        if 2 ** (self.disc_downsamplings + 1) > self.size:
            raise ValueError(f"disc_downsamplings {self.disc_downsamplings} is too many for size {self.size}")
        if not self.lambda_cycle > 0:
            raise ValueError(
                f"lambda_cycle must be > 0 (the gan_alone arm sets it to 0), got {self.lambda_cycle}"
            )
        if self.identity_weight < 0:
            raise ValueError(f"identity_weight must be >= 0, got {self.identity_weight}")
        if self.pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {self.pool_size}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.beta1 < 1.0:
            raise ValueError(f"beta1 must be in [0, 1), got {self.beta1}")
        if not 0.0 <= self.decay_start <= 1.0:
            raise ValueError(f"decay_start must be in [0, 1], got {self.decay_start}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "steps": 4,
        "batch_size": 4,
        "gen_width": 4,
        "gen_blocks": 1,
        "disc_width": 4,
        "classifier_epochs": 1,
        "eval_every": 2,
    },
    "default": {},
    "full": {"steps": 4000, "batch_size": 16, "gen_width": 16, "gen_blocks": 3, "disc_width": 32},
}


def lr_factor(step: int, steps: int, decay_start: float) -> float:
    """1 until ``decay_start · steps``, then linearly down to 0 at ``steps`` (the paper's schedule)."""
    start = int(decay_start * steps)
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / max(1, steps - start))


@torch.no_grad()
def translate(net, images: Tensor, batch_size: int = 256) -> Tensor:
    return torch.cat([net(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


@torch.no_grad()
def evaluate(model: CycleGAN, data: dict, judges: dict) -> dict:
    model.eval()
    x, y = data["x_test"], data["y_test"]
    gx = translate(model.G, x)
    fgx = translate(model.F, gx)
    fy = translate(model.F, y)
    gfy = translate(model.G, fy)
    model.train()
    x_labels, y_labels = data["x_test_labels"], data["y_test_labels"]
    spread = {}
    for name, judge, images in (("G_x", judges["y"], gx), ("F_y", judges["x"], fy)):
        counts = torch.bincount(predict(judge, images), minlength=10).float()
        p = counts / counts.sum()
        spread[f"{name}_class_entropy_bits"] = abs((p[p > 0] * p[p > 0].log2()).sum().item())
        spread[f"{name}_top_class_share"] = p.max().item()
        spread[f"{name}_class_counts"] = counts.long().tolist()
    return {
        "acc_G_x": accuracy(judges["y"], gx, x_labels),
        "acc_FG_x": accuracy(judges["x"], fgx, x_labels),
        "acc_F_y": accuracy(judges["x"], fy, y_labels),
        "acc_GF_y": accuracy(judges["y"], gfy, y_labels),
        "cycle_l1_x": (fgx - x).abs().mean().item(),
        "cycle_l1_y": (gfy - y).abs().mean().item(),
        **spread,
    }


def train_arm(arm: str, data: dict, judges: dict, config: Config, ctx) -> dict:
    lam = config.lambda_cycle if arm == "cyclegan" else 0.0
    torch.manual_seed(ctx.seed + 10)  # same initial weights in both arms
    model = CycleGAN(
        1,
        gen_width=config.gen_width,
        gen_blocks=config.gen_blocks,
        outer_kernel=config.outer_kernel,
        disc_width=config.disc_width,
        disc_downsamplings=config.disc_downsamplings,
        lambda_cycle=lam,
        lambda_identity=config.identity_weight * lam,
    ).to(ctx.device)
    betas = (config.beta1, 0.999)
    opt_g = torch.optim.Adam(model.generator_parameters(), lr=config.lr, betas=betas)
    opt_d = torch.optim.Adam(model.discriminator_parameters(), lr=config.lr, betas=betas)
    schedule = lambda step: lr_factor(step, config.steps, config.decay_start)  # noqa: E731
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)
    sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, schedule)
    data_gen = torch.Generator().manual_seed(ctx.seed + 20)  # same unpaired batches in both arms
    pool_x = ImagePool(config.pool_size, generator=torch.Generator().manual_seed(ctx.seed + 30))
    pool_y = ImagePool(config.pool_size, generator=torch.Generator().manual_seed(ctx.seed + 31))
    x_train, y_train = data["x_train"], data["y_train"]
    history: dict[str, list] = {"step": [], "adv_G": [], "adv_F": [], "cycle": [], "D_X": [], "D_Y": []}
    evals: list[dict] = []
    start = time.perf_counter()
    with ctx.progress_bar(config.steps, f"training {arm}") as bar:
        for step in range(config.steps):
            x = x_train[torch.randint(len(x_train), (config.batch_size,), generator=data_gen)]
            y = y_train[torch.randint(len(y_train), (config.batch_size,), generator=data_gen)]
            # G and F: adversarial (+ cycle) loss, discriminators not updated here
            loss_g, parts, fake_y, fake_x = model.generator_step(x, y)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            # D_X and D_Y on the history of generated images
            loss_d, d_parts = model.discriminator_loss(x, y, pool_x.query(fake_x), pool_y.query(fake_y))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            sched_g.step()
            sched_d.step()
            parts |= d_parts
            if not all(math.isfinite(v) for v in parts.values()):
                raise PapersError(f"{arm}: non-finite loss at step {step}: {parts}")
            history["step"].append(step)
            for key in ("adv_G", "adv_F", "cycle", "D_X", "D_Y"):
                history[key].append(parts[key])
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                scores = evaluate(model, data, judges)
                evals.append(
                    {
                        "step": step + 1,
                        "acc_G_x": scores["acc_G_x"],
                        "acc_FG_x": scores["acc_FG_x"],
                        "acc_F_y": scores["acc_F_y"],
                    }
                )
                ctx.log({f"{arm}_{k}": v for k, v in evals[-1].items() if k != "step"}, step=step + 1)
            ctx.log({f"{arm}_{k}": v for k, v in parts.items()}, step=step)
            bar.update(1, cycle=parts["cycle"], D=loss_d.item())
    train_time = time.perf_counter() - start
    final = evaluate(model, data, judges)
    model.eval()
    with torch.no_grad():
        x, y = data["x_test"][:10], data["y_test"][:10]
        gx, fy = model.G(x), model.F(y)
        samples = {"x": x, "G_x": gx, "FG_x": model.F(gx), "y": y, "F_y": fy, "GF_y": model.G(fy)}
    return {
        **final,
        "train_time_s": train_time,
        "history": history,
        "evals": evals,
        "samples": {k: to_unit(v).squeeze(1).tolist() for k, v in samples.items()},
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = make_domains(size=config.size, test_fraction=config.test_fraction, seed=ctx.seed)
    data = {key: value.to(ctx.device) for key, value in data.items()}
    shared = set(torch.cat([data["x_train_source"], data["x_test_source"]]).tolist()) & set(
        torch.cat([data["y_train_source"], data["y_test_source"]]).tolist()
    )
    if shared:
        raise PapersError(f"domains X and Y share {len(shared)} source images")
    start = time.perf_counter()
    judges = {
        name: train_classifier(
            data[f"{name}_train"],
            data[f"{name}_train_labels"],
            epochs=config.classifier_epochs,
            seed=ctx.seed + i,
            size=config.size,
        )
        for i, name in enumerate(("x", "y"))
    }
    judge_time = time.perf_counter() - start
    judge_acc = {
        name: accuracy(judges[name], data[f"{name}_test"], data[f"{name}_test_labels"]) for name in ("x", "y")
    }
    parts = {arm: ctx.stage(arm, lambda a=arm: train_arm(a, data, judges, config, ctx)) for arm in ARMS}

    metrics: dict = {
        "judge_x_test_accuracy": judge_acc["x"],
        "judge_y_test_accuracy": judge_acc["y"],
        "judges_train_time_s": judge_time,
        "n_x_train": len(data["x_train"]),
        "n_y_train": len(data["y_train"]),
        "n_x_test": len(data["x_test"]),
        "n_y_test": len(data["y_test"]),
    }
    for arm, part in parts.items():
        for key in (
            "acc_G_x",
            "acc_FG_x",
            "acc_F_y",
            "acc_GF_y",
            "cycle_l1_x",
            "cycle_l1_y",
            "G_x_class_entropy_bits",
            "G_x_top_class_share",
            "G_x_class_counts",
            "F_y_class_entropy_bits",
            "F_y_top_class_share",
            "F_y_class_counts",
            "train_time_s",
        ):
            metrics[f"{arm}_{key}"] = part[key]
    m = metrics
    checks = [
        Check(
            "cycle loss keeps the digit through X -> Y: classify_Y(G(x)) accuracy",
            m["cyclegan_acc_G_x"],
            ">",
            m["gan_alone_acc_G_x"],
            "GAN alone, same budget",
        ),
        Check(
            "cycle loss keeps the digit through Y -> X: classify_X(F(y)) accuracy",
            m["cyclegan_acc_F_y"],
            ">",
            m["gan_alone_acc_F_y"],
            "GAN alone, same budget",
        ),
        Check(
            "the round trip F(G(x)) keeps the digit: classify_X accuracy",
            m["cyclegan_acc_FG_x"],
            ">",
            m["gan_alone_acc_FG_x"],
            "GAN alone, same budget",
        ),
    ]
    figure_samples(parts, ctx)
    figure_curves(parts, judge_acc, ctx)
    notes = (
        f"{config.size}x{config.size} digits, {len(data['x_train'])} X and {len(data['y_train'])} Y training "
        f"images from disjoint sources, {config.steps} steps of batch {config.batch_size} per arm. Frozen "
        f"judges read real test digits at {judge_acc['x']:.1%} (X) and {judge_acc['y']:.1%} (Y); chance is "
        f"10%. CycleGAN vs GAN alone: classify_Y(G(x)) {m['cyclegan_acc_G_x']:.1%} vs "
        f"{m['gan_alone_acc_G_x']:.1%}; classify_X(F(y)) {m['cyclegan_acc_F_y']:.1%} vs "
        f"{m['gan_alone_acc_F_y']:.1%}; round trip classify_X(F(G(x))) {m['cyclegan_acc_FG_x']:.1%} vs "
        f"{m['gan_alone_acc_FG_x']:.1%}. Largest share of one class among the digits read in F(y): "
        f"{m['cyclegan_F_y_top_class_share']:.0%} vs {m['gan_alone_F_y_top_class_share']:.0%}; in G(x): "
        f"{m['cyclegan_G_x_top_class_share']:.0%} vs {m['gan_alone_G_x_top_class_share']:.0%}."
    )
    directions = (("G(x)", "G_x"), ("F(y)", "F_y"))
    collapsed = [
        f"{arm} {name}" for arm in ARMS for name, key in directions if m[f"{arm}_{key}_top_class_share"] > 0.5
    ]
    if collapsed:
        notes += f" Mode collapse (over half of the translations read as one digit): {', '.join(collapsed)}."
    kept = [
        f"{name} {m[f'gan_alone_acc_{key}']:.0%}"
        for name, key in directions
        if m[f"gan_alone_acc_{key}"] > 0.3
    ]
    if kept:
        notes += (
            f" Without the cycle loss some of the digit still survives in one direction ({', '.join(kept)}):"
            " a small convolutional generator can drift towards a shape-preserving map, but nothing in "
            "the objective ties G(x) to x, and the gap to CycleGAN is what the cycle loss adds."
        )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figure_samples(parts: dict, ctx) -> None:
    from papers.core.plots import figure

    rows = [
        ("x", "x"),
        ("G_x", "G(x)"),
        ("FG_x", "F(G(x))"),
        ("y", "y"),
        ("F_y", "F(y)"),
        ("GF_y", "G(F(y))"),
    ]
    fig, axes = figure(ncols=2, width=5.2, height=3.4)
    for ax, arm in zip(axes, ARMS, strict=True):
        samples = parts[arm]["samples"]
        grid = torch.cat(
            [torch.cat([torch.tensor(img) for img in samples[key]], dim=1) for key, _ in rows], dim=0
        )
        side = grid.shape[0] // len(rows)
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([side * (i + 0.5) for i in range(len(rows))], [label for _, label in rows])
        ax.set_title(f"{arm}: classify_Y(G(x)) {parts[arm]['acc_G_x']:.0%}")
    ctx.save_figure(fig, "translations")


def figure_curves(parts: dict, judge_acc: dict, ctx) -> None:
    from papers.core.plots import figure, moving_average

    fig, axes = figure(ncols=3, width=4.0, height=3.2)
    for arm, style in zip(ARMS, ("-", "--"), strict=True):
        h = parts[arm]["history"]
        axes[0].plot(h["step"], moving_average(h["adv_G"], 50), style, c="C0", label=f"{arm} G adv")
        axes[0].plot(h["step"], moving_average(h["D_Y"], 50), style, c="C1", label=f"{arm} D_Y")
        axes[1].plot(h["step"], moving_average(h["cycle"], 50), style, c="C2", label=arm)
        e = parts[arm]["evals"]
        axes[2].plot(
            [r["step"] for r in e],
            [r["acc_G_x"] for r in e],
            style,
            c="C3",
            marker="o",
            markersize=3,
            label=f"{arm} classify_Y(G(x))",
        )
        axes[2].plot(
            [r["step"] for r in e],
            [r["acc_F_y"] for r in e],
            style,
            c="C4",
            marker="o",
            markersize=3,
            label=f"{arm} classify_X(F(y))",
        )
    axes[2].axhline(judge_acc["y"], c="0.5", lw=0.8, label="judge Y on real y")
    axes[2].axhline(0.1, c="0.7", lw=0.8, ls=":", label="chance")
    axes[0].set(xlabel="step", ylabel="LSGAN loss", title="adversarial losses (moving avg)")
    axes[1].set(
        xlabel="step", ylabel="L1 (not optimised in gan_alone)", title="cycle loss ‖F(G(x))−x‖+‖G(F(y))−y‖"
    )
    axes[2].set(
        xlabel="step", ylabel="accuracy of the frozen judge", title="digit kept (test images)", ylim=(0, 1.02)
    )
    for ax in axes[:2]:
        ax.legend(fontsize=6)
    axes[2].legend(fontsize=6, loc="center right")
    ctx.save_figure(fig, "curves")
