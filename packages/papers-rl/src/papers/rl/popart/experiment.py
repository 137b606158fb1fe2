"""Reproduction (a toy): multi-task actor-critic with and without PopArt on reward scales 0.01, 1, 100.

Three cart-pole tasks (rewards ×0.01, ×1, ×100; actions swapped on the middle task; a one-hot task id
in the observation) are learned by ONE shared network with a shared policy and one value head per task
(see ``agent.py``), with equal environment steps per task and the same seed, twice:

    "popart"  per-task PopArt statistics, preserve step, normalised value loss and advantages
    "none"    plain value learning on the raw returns (the same network, μ = 0, σ = 1)

Score of a task: its unscaled episode length / 200, averaged over the last ``final_points`` points of
its training curve (stochastic policy). Claimed (Hessel et al. 2019): without normalisation the tasks
with large rewards dominate the updates and the others fail; with PopArt all learn.

Optional (``regression=True``, in ``full``; cut from the default for time): the binary-regression demo
of van Hasselt et al. (2016), Sec. 4.1, see ``regression.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from papers.core.experiment import Check, Result
from papers.core.plots import figure

from .agent import A2CSettings, train_multitask

MODES_RUN = ("popart", "none")


@dataclass
class Config:
    reward_scales: tuple[float, ...] = (0.01, 1.0, 100.0)
    envs_per_task: int = 32
    max_steps: int = 200
    total_steps: int = 480_000  # over all tasks: 160k per task
    rollout: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 1e-3
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    beta: float = 3e-3  # PopArt step size per update (debiased), in the paper's range 3e-4 ... 1e-2
    sigma_min: float = 1e-4
    curve_points: int = 20
    final_points: int = 3
    ablation_art: bool = False  # also run ART without the preserve step
    control_equal_scales: bool = True  # also run plain value learning with every reward scale = 1
    # the 2016 binary-regression demo (cut from the default for time)
    regression: bool = False
    regression_steps: int = 3000
    regression_batch: int = 16
    regression_lrs: tuple[float, ...] = (1e-2, 1e-3, 1e-4)
    regression_p_rare: float = 1e-3
    regression_beta: float = 3e-3
    threads: int = 1

    def validate(self) -> None:
        if len(self.reward_scales) < 2 or any(not (s > 0 and math.isfinite(s)) for s in self.reward_scales):
            raise ValueError(f"reward_scales needs >= 2 positive finite scales, got {self.reward_scales}")
        for name in (
            "envs_per_task",
            "max_steps",
            "total_steps",
            "rollout",
            "curve_points",
            "final_points",
            "regression_steps",
            "regression_batch",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.final_points > self.curve_points:
            raise ValueError(f"final_points must be <= curve_points, got {self.final_points}")
        if self.total_steps < len(self.reward_scales) * self.envs_per_task * self.rollout:
            raise ValueError("total_steps must cover at least one update (tasks x envs_per_task x rollout)")
        for name in ("gamma", "gae_lambda", "beta"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        for name in ("lr", "max_grad_norm", "sigma_min"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.vf_coef < 0 or self.ent_coef < 0:
            raise ValueError(f"vf_coef and ent_coef must be >= 0, got {self.vf_coef}, {self.ent_coef}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be non-empty sizes >= 1, got {self.hidden}")
        if not 0 <= self.regression_p_rare <= 1:
            raise ValueError(f"regression_p_rare must be in [0, 1], got {self.regression_p_rare}")
        if not self.regression_lrs or any(not lr > 0 for lr in self.regression_lrs):
            raise ValueError(f"regression_lrs must be positive, got {self.regression_lrs}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"envs_per_task": 4, "total_steps": 1536, "rollout": 8, "curve_points": 4, "final_points": 2},
    "default": {},
    "full": {"total_steps": 3_000_000, "ablation_art": True, "regression": True, "regression_steps": 20_000},
}


def settings_of(config: Config) -> A2CSettings:
    fields = A2CSettings.__dataclass_fields__
    return A2CSettings(**{k: v for k, v in asdict(config).items() if k in fields})


def final_scores(run: dict, points: int) -> list[float]:
    return [sum(c[-points:]) / len(c[-points:]) for c in run["curves"]]


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    settings = settings_of(config)
    modes = MODES_RUN + (("art",) if config.ablation_art else ())
    updates = max(
        1, config.total_steps // (len(config.reward_scales) * config.envs_per_task * config.rollout)
    )
    runs = {}
    for mode in modes:

        def train(mode=mode):
            with ctx.progress_bar(updates, f"A2C {mode}") as bar:
                return train_multitask(settings, mode, ctx.seed, progress=bar.update)

        runs[mode] = ctx.stage(f"multitask_{mode}", train)
        for i, step in enumerate(runs[mode]["steps"]):
            ctx.log({f"{mode}_task{k}_score": c[i] for k, c in enumerate(runs[mode]["curves"])}, step=step)

    if config.control_equal_scales:
        equal = A2CSettings(**{**asdict(settings), "reward_scales": (1.0,) * len(config.reward_scales)})

        def train_control():
            with ctx.progress_bar(updates, "A2C none, equal scales") as bar:
                return train_multitask(equal, "none", ctx.seed, progress=bar.update)

        control = ctx.stage("multitask_none_equal_scales", train_control)
    scales = config.reward_scales
    small, large = (
        min(range(len(scales)), key=scales.__getitem__),
        max(range(len(scales)), key=scales.__getitem__),
    )
    metrics: dict = {}
    for mode, r in runs.items():
        scores = final_scores(r, config.final_points)
        for k, score in enumerate(scores):
            metrics[f"{mode}_score_task{k}_x{scales[k]:g}"] = score
        metrics[f"{mode}_mean_score"] = sum(scores) / len(scores)
        metrics[f"{mode}_min_score"] = min(scores)
        metrics[f"{mode}_sigma"] = r["sigma"]
    p, b = runs["popart"], runs["none"]
    sp, sb = final_scores(p, config.final_points), final_scores(b, config.final_points)
    metrics["popart_max_output_change"] = p["max_output_change"]
    metrics["popart_mean_change_without_preserve"] = p["mean_stats_change"]

    checks = [
        Check(
            "PopArt's mean normalised score across tasks beats plain value learning",
            metrics["popart_mean_score"],
            ">",
            metrics["none_mean_score"],
            "plain, same steps and seed",
        ),
        Check(
            "PopArt's worst task beats plain's worst task (balanced learning)",
            metrics["popart_min_score"],
            ">",
            metrics["none_min_score"],
            "plain's worst task",
        ),
        Check(
            f"the x{scales[small]:g} task learns with PopArt, better than without",
            sp[small],
            ">",
            sb[small],
            f"plain on the x{scales[small]:g} task",
        ),
        Check(
            f"without normalisation the x{scales[large]:g} task does better than the x{scales[small]:g} task",
            sb[large],
            ">",
            sb[small],
            f"plain on the x{scales[small]:g} task",
        ),
        Check(
            "the preserve step leaves V unchanged: largest |dV|/sigma' below the mean change the statistics "
            "alone would cause",
            p["max_output_change"],
            "<",
            p["mean_stats_change"],
            "mean |dV|/sigma' without the preserve step (same run)",
        ),
    ]
    if config.control_equal_scales:
        sc = final_scores(control, config.final_points)
        metrics["none_equal_scales_mean_score"] = sum(sc) / len(sc)
        checks.append(
            Check(
                "control: plain value learning does learn when all rewards are x1, so its failure "
                "comes from the mix of scales",
                metrics["none_equal_scales_mean_score"],
                ">",
                metrics["none_mean_score"],
                "plain on the mixed scales",
            )
        )
    if config.ablation_art:
        sa = final_scores(runs["art"], config.final_points)
        checks.append(
            Check(
                "PopArt's mean score >= ART without the preserve step",
                sum(sp) / len(sp),
                ">=",
                sum(sa) / len(sa),
                "ART-only",
            )
        )

    fig, axes = figure(ncols=len(scales) + 1, width=3.6, height=3.0)
    for k, ax in enumerate(axes[:-1]):
        for mode, r in runs.items():
            ax.plot(r["steps"], r["curves"][k], marker="o", markersize=3, label=mode)
        if config.control_equal_scales:
            ax.plot(control["steps"], control["curves"][k], ls="--", color="grey", label="none, all x1")
        ax.set_title(f"task {k}: rewards x{scales[k]:g}" + (" (swapped)" if k % 2 else ""))
        ax.set_xlabel("env steps (all tasks)")
        ax.set_ylabel("episode length / max")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
    for mode, r in runs.items():
        mean = [sum(v) / len(v) for v in zip(*r["curves"], strict=True)]
        axes[-1].plot(r["steps"], mean, marker="o", markersize=3, label=mode)
    if config.control_equal_scales:
        mean = [sum(v) / len(v) for v in zip(*control["curves"], strict=True)]
        axes[-1].plot(control["steps"], mean, ls="--", color="grey", label="none, all x1")
    axes[-1].set_title("mean normalised score")
    axes[-1].set_xlabel("env steps (all tasks)")
    axes[-1].set_ylim(0, 1.05)
    axes[-1].legend(fontsize=8)
    ctx.save_figure(fig, "multitask_curves")

    if config.regression:
        from .regression import train_regression

        def regress():
            out = {}
            for mode in ("none", "art", "popart"):
                out[mode] = {
                    str(lr): train_regression(
                        mode,
                        lr,
                        steps=config.regression_steps,
                        batch_size=config.regression_batch,
                        p_rare=config.regression_p_rare,
                        beta=config.regression_beta,
                        eval_every=max(1, config.regression_steps // 20),
                        seed=ctx.seed,
                    )
                    for lr in config.regression_lrs
                }
            return out

        reg = ctx.stage("regression", regress)
        best = {m: min(c.values(), key=lambda cv: cv["common"][-1]) for m, c in reg.items()}
        for m, c in best.items():
            metrics[f"regression_{m}_rel_rmse_common"] = c["common"][-1]
            metrics[f"regression_{m}_rel_rmse_full"] = c["full"][-1]
        checks.append(
            Check(
                "regression: PopArt's error on common inputs below plain SGD's (best lr each)",
                best["popart"]["common"][-1],
                "<",
                best["none"]["common"][-1],
                "plain SGD",
            )
        )
        fig, axes = figure(ncols=2)
        for ax, key in zip(axes, ("common", "full"), strict=True):
            for m, c in best.items():
                ax.plot(c["step"], c[key], label=m)
            ax.set_yscale("log")
            ax.set_title(f"binary regression: {key} inputs")
            ax.set_xlabel("SGD step")
            ax.set_ylabel("RMSE / std(target)")
            ax.legend(fontsize=8)
        ctx.save_figure(fig, "regression_error")

    held = {c.name: c.passed for c in checks}
    notes = (
        f"Final scores (episode length / {config.max_steps}, last {config.final_points} curve points) "
        "per task "
        f"x{', x'.join(f'{s:g}' for s in scales)}: PopArt {', '.join(f'{v:.2f}' for v in sp)}; plain "
        f"{', '.join(f'{v:.2f}' for v in sb)}. PopArt's sigma per task at the end: "
        f"{', '.join(f'{v:.3g}' for v in p['sigma'])}. Without normalisation the x{scales[large]:g} task's "
        "squared value errors (returns up to ~1e4) dominate the clipped gradient of the shared network; "
        + (
            "it also starves the large task's own policy gradient, so in this toy no task learns, "
            "not only the small ones. "
            if not held[checks[3].name]
            else "the large task learns while the small ones fail. "
        )
        + f"Preserve step: largest |dV|/sigma' {p['max_output_change']:.2g} (float32 rounding) against "
        f"{p['mean_stats_change']:.2g} on average had W, b not been rescaled."
    )
    if config.control_equal_scales:
        notes += (
            f" Control: the same plain agent with every reward x1 reaches a mean score of "
            f"{metrics['none_equal_scales_mean_score']:.2f}, so the baseline itself works."
        )
    return Result(metrics=metrics, checks=checks, notes=notes)
