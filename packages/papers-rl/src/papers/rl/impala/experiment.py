"""Reproduction: V-trace vs no correction vs 1-step importance sampling under a deliberate policy lag.

IMPALA's actors act with a copy of the learner's policy that is some updates old (Espeholt et al. 2018,
Sec. 3 and 5.2.1, Table 2). Here one process simulates that delay on CartPole-v1: every update of the
learner is computed on an unroll of ``unroll`` steps from ``num_envs`` envs acted with the parameters the
learner had ``lag`` updates earlier (a queue of snapshots). For every seed we train

    lag 0         on-policy: π = μ, every ratio is 1 and all three targets coincide (one run stands for all)
    lag k, vtrace V-trace targets and ρ-weighted advantages (ρ̄ = c̄ = 1, λ = 1)
    lag k, none   no correction: μ treated as π (plain n-step actor-critic targets)
    lag k, is     1-step importance sampling: uncorrected n-step targets, advantage × π/μ (untruncated)

at equal env steps. Measured: the mean return of the actors' finished episodes in the second half of
training (mean over seeds), and a final evaluation of the learner's sampled policy. The ε-correction row
of Table 2 is not run (on CartPole log π never gets near the values it guards against).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from papers.core.experiment import Check, Result
from papers.core.plots import figure

from .model import LearnerSettings, evaluate_policy, train_stale

ARMS = ("vtrace", "none", "is")
LABELS = {"vtrace": "V-trace", "none": "no correction", "is": "1-step IS", "onpolicy": "lag 0 (on-policy)"}


@dataclass
class Config:
    env_id: str = "CartPole-v1"
    lag: int = 32  # updates the actors' policy is behind the learner
    seeds: int = 2
    num_envs: int = 8
    unroll: int = 20
    total_steps: int = 48_000
    gamma: float = 0.99
    lam: float = 1.0
    rho_bar: float = 1.0
    c_bar: float = 1.0
    lr: float = 1e-3
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 40.0
    hidden: tuple[int, ...] = (64, 64)
    eval_episodes: int = 8
    curve_bins: int = 12
    threads: int = 1

    def settings(self, correction: str, lag: int) -> LearnerSettings:
        return LearnerSettings(
            correction=correction, lag=lag, num_envs=self.num_envs, unroll=self.unroll,
            total_steps=self.total_steps, gamma=self.gamma, lam=self.lam, rho_bar=self.rho_bar,
            c_bar=self.c_bar, lr=self.lr, vf_coef=self.vf_coef, ent_coef=self.ent_coef,
            max_grad_norm=self.max_grad_norm, hidden=self.hidden,
        )  # fmt: skip

    def validate(self) -> None:
        if self.lag < 1:
            raise ValueError(f"lag must be >= 1 (lag 0 is always run as the reference), got {self.lag}")
        for name in ("seeds", "eval_episodes", "curve_bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be one or more sizes >= 1, got {self.hidden}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        self.settings("vtrace", self.lag).validate()


PRESETS = {
    "smoke": {"total_steps": 320, "num_envs": 4, "unroll": 20, "lag": 2, "seeds": 1, "eval_episodes": 2,
              "curve_bins": 2},
    "default": {},
    "full": {"total_steps": 200_000, "seeds": 5, "lag": 64},
}  # fmt: skip


def _one_run(config: Config, ctx, correction: str, lag: int, seed: int) -> dict:
    bar = ctx.progress_bar(config.total_steps // (config.num_envs * config.unroll), f"{correction} lag {lag}")
    tag = f"{correction}_lag{lag}_seed{seed}"

    def on_update(update, row):
        bar.update(1)
        if update % 10 == 0:
            ctx.log(
                {f"{tag}_{k}": row[k] for k in ("loss", "entropy", "behaviour_kl")}, step=row["global_step"]
            )

    with bar:
        out = train_stale(config.env_id, config.settings(correction, lag), seed, on_update=on_update)
    returns = evaluate_policy(out["learner"], config.env_id, config.eval_episodes, seed=10**6 + seed)
    half = config.total_steps / 2
    late = [r for step, r in out["episodes"] if step > half]
    return {
        "episodes": out["episodes"],
        "late_mean_return": float(np.mean(late)) if late else math.nan,
        "eval_return": float(np.mean(returns)),
        "mean_behaviour_kl": float(np.mean([u["behaviour_kl"] for u in out["updates"]])),
        "mean_rho": float(np.mean([u["mean_rho"] for u in out["updates"]])),
        "global_step": out["global_step"],
        "train_time_s": out["train_time_s"],
    }


def _binned(episodes, total_steps: int, bins: int) -> list[float]:
    edges = np.linspace(0, total_steps, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        inside = [r for step, r in episodes if lo < step <= hi]
        out.append(float(np.mean(inside)) if inside else math.nan)
    return out


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    arms = [("onpolicy", 0)] + [(arm, config.lag) for arm in ARMS]
    runs: dict[str, list[dict]] = {name: [] for name, _ in arms}
    for seed_index in range(config.seeds):
        seed = ctx.seed + seed_index
        for name, lag in arms:
            correction = "vtrace" if name == "onpolicy" else name
            key = f"{name}_seed{seed}"
            runs[name].append(
                ctx.stage(key, lambda c=correction, g=lag, s=seed: _one_run(config, ctx, c, g, s))
            )

    def mean_of(name, key):
        return float(np.mean([r[key] for r in runs[name]]))

    metrics: dict = {
        "lag": config.lag,
        "seeds": config.seeds,
        "env_steps_per_run": runs["vtrace"][0]["global_step"],
    }
    for name in runs:
        metrics[f"{name}_late_return"] = mean_of(name, "late_mean_return")
        metrics[f"{name}_eval_return"] = mean_of(name, "eval_return")
        metrics[f"{name}_late_return_per_seed"] = [r["late_mean_return"] for r in runs[name]]
        metrics[f"{name}_behaviour_kl"] = mean_of(name, "mean_behaviour_kl")
        metrics[f"{name}_mean_rho"] = mean_of(name, "mean_rho")
    metrics["train_time_s"] = float(sum(r["train_time_s"] for rs in runs.values() for r in rs))

    # learning curves: binned actor returns, mean over seeds
    x = (np.arange(config.curve_bins) + 0.5) * config.total_steps / config.curve_bins
    fig, (ax, ax_kl) = figure(2, width=5.0)
    for name in runs:
        curves = np.array([_binned(r["episodes"], config.total_steps, config.curve_bins) for r in runs[name]])
        label = LABELS[name] if name == "onpolicy" else f"{LABELS[name]}, lag {config.lag}"
        ax.plot(x, np.nanmean(curves, 0), marker="o", markersize=3, label=label)
    ax.set(
        xlabel="env steps",
        ylabel="actor episode return",
        title=f"{config.env_id}, mean of {config.seeds} seeds",
    )
    ax.legend(fontsize=8)
    names = list(runs)
    ax_kl.bar([LABELS[n] for n in names], [metrics[f"{n}_behaviour_kl"] for n in names])
    ax_kl.set(ylabel="mean KL(μ || π) per update", title=f"policy lag (lag {config.lag} vs 0)")
    ax_kl.tick_params(axis="x", labelsize=7)
    ctx.save_figure(fig, "learning_curves")

    k = config.lag
    checks = [
        Check(f"V-trace learns better than no correction at lag {k} (late actor return, mean of seeds)",
              metrics["vtrace_late_return"], ">", metrics["none_late_return"], "no correction, same lag"),
        Check(f"V-trace learns better than 1-step importance sampling at lag {k}",
              metrics["vtrace_late_return"], ">", metrics["is_late_return"], "1-step IS, same lag"),
        Check(f"V-trace's final learner evaluation at lag {k} beats no correction's",
              metrics["vtrace_eval_return"], ">", metrics["none_eval_return"], "no correction, same lag"),
    ]  # fmt: skip
    return Result(metrics=metrics, checks=checks, notes=_notes(config, metrics))


def _notes(config: Config, m: dict) -> str:
    k = config.lag
    text = (
        f"{config.env_id}, {config.num_envs} envs x {config.unroll}-step unrolls, "
        f"{m['env_steps_per_run']} env steps per run, {config.seeds} seeds, actors {k} updates behind the "
        f"learner. Mean actor return over "
        f"the second half of training: lag 0 {m['onpolicy_late_return']:.1f}; at lag {k}: V-trace "
        f"{m['vtrace_late_return']:.1f}, no correction {m['none_late_return']:.1f}, 1-step IS "
        f"{m['is_late_return']:.1f}. Final learner evaluation ({config.eval_episodes} sampled episodes): "
        f"lag 0 {m['onpolicy_eval_return']:.1f}, V-trace {m['vtrace_eval_return']:.1f}, none "
        f"{m['none_eval_return']:.1f}, IS {m['is_eval_return']:.1f}. Mean KL(μ||π) per update at lag {k}: "
        f"{m['vtrace_behaviour_kl']:.3g} (V-trace run; 0 at lag 0), mean truncated weight min(1, π/μ): "
        f"{m['vtrace_mean_rho']:.3f}."
    )
    lag0 = m["onpolicy_late_return_per_seed"]
    others = max(m["none_late_return"], m["is_late_return"])
    arms = [m[f"{a}_late_return"] for a in ARMS]
    gap = max(arms) - min(arms)
    if m["vtrace_late_return"] > others:
        text += " V-trace was the most robust to the lag here, as the paper's Table 2 reports."
    else:
        text += (
            " V-trace was not the most robust here: the claim does not hold at this scale. For scale, the "
            f"on-policy agent ended the second half at {min(lag0):.0f} to {max(lag0):.0f} depending on the "
            f"seed, while the three arms at lag {k} span {gap:.0f}; on CartPole with two seeds that spread "
            "can hide the arms' differences. The paper's gaps are on DMLab with 48-256 actors, a deep net "
            "and far longer training."
        )
    return text
