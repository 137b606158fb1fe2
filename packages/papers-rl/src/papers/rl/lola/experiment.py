"""Reproduction: exact LOLA vs naive learners in the iterated prisoner's dilemma and matching pennies
(Foerster et al. 2018, Sec. 4.1 and 5.1, Fig. 3 and Table 2, the exact-value rows "NL-Ex" and "LOLA-Ex").

For ``seeds`` random initialisations θ1, θ2 ~ N(0, init_std²) (the same draws for every pairing),
both agents update simultaneously for ``steps`` steps with the exact gradients of the discounted value
V_i = p0ᵀ (I − γP)⁻¹ r_i (γ = 0.96): NL-NL, LOLA-LOLA and LOLA vs NL in the IPD, NL-NL and LOLA-LOLA in
iterated matching pennies (IMP). Measured: the average reward per step (1 − γ) V_i at the end (the paper:
NL-NL ≈ −2, mutual defection; LOLA-LOLA ≈ −1, mutual cooperation), the learned P(cooperate | state) with
states written (own action, opponent's action), and in IMP the mean distance of every P(heads | state)
from the Nash equilibrium 0.5.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from papers.core.experiment import Check, Result

from .model import GAMES, STATES, train_pair

PAPER_DEFECT, PAPER_COOPERATE = -2.0, -1.0  # the paper's average rewards per step of NL-NL and LOLA-LOLA
IPD_PAIRS = {"nl_nl": ("naive", "naive"), "lola_lola": ("lola", "lola"), "lola_nl": ("lola", "naive")}
IMP_PAIRS = {"nl_nl": ("naive", "naive"), "lola_lola": ("lola", "lola")}


@dataclass
class Config:
    seeds: int = 100  # random initialisations, trained in one batch
    steps: int = 200  # simultaneous updates in the IPD
    lr: float = 1.0  # δ, the agents' own step size
    eta: float = 1.0  # η, the opponent's naive step that LOLA anticipates
    gamma: float = 0.96
    init_std: float = 1.0  # θ ~ N(0, init_std²)
    imp: bool = True  # also run iterated matching pennies
    imp_steps: int = 200
    imp_lr: float = 0.1  # δ = 1 makes both learners oscillate in IMP (see README)
    imp_eta: float = 1.0
    threads: int = 1  # torch CPU threads (0 keeps the process setting); the tensors are tiny

    def validate(self) -> None:
        for name in ("seeds", "steps", "imp_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "imp_lr", "init_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in ("eta", "imp_eta"):  # η = 0 turns LOLA into the naive learner
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {self.gamma}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"seeds": 8, "steps": 15, "imp_steps": 15},
    "default": {},
    "full": {"seeds": 1000, "steps": 500, "imp_steps": 500},
}


def initial_thetas(config: Config, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    shape = (config.seeds, 5)
    theta1 = config.init_std * torch.randn(shape, generator=generator, dtype=torch.float64)
    theta2 = config.init_std * torch.randn(shape, generator=generator, dtype=torch.float64)
    return theta1, theta2


def _band(x: torch.Tensor) -> dict:
    """Mean and standard deviation over seeds (dim 1) of a [steps + 1, seeds] curve."""
    return {"mean": x.mean(1).tolist(), "std": x.std(1).tolist()}


def run_pair(config: Config, ctx, game_name: str, pair: str, learners: tuple[str, str]) -> dict:
    game = GAMES[game_name]
    imp = game_name == "imp"
    steps = config.imp_steps if imp else config.steps
    lr, eta = (config.imp_lr, config.imp_eta) if imp else (config.lr, config.eta)
    theta1, theta2 = initial_thetas(config, ctx.seed)
    start = time.perf_counter()
    with ctx.progress_bar(steps, f"{game_name} {pair}") as bar:
        out = train_pair(
            theta1,
            theta2,
            learners,
            steps,
            lr=lr,
            eta=eta,
            game=game,
            gamma=config.gamma,
            callback=lambda step: bar.update(1),
        )
    elapsed = time.perf_counter() - start
    r1, r2 = out["reward1"], out["reward2"]
    for step in range(0, steps + 1, max(1, steps // 50)):
        ctx.log(
            {
                f"{game_name}_{pair}_reward1": r1[step].mean().item(),
                f"{game_name}_{pair}_reward2": r2[step].mean().item(),
            },
            step=step,
        )
    q1, q2 = torch.sigmoid(out["theta1"]), torch.sigmoid(out["theta2"])  # each in its own state order
    return {
        "learners": list(learners),
        "reward1": _band(r1),
        "reward2": _band(r2),
        "final_reward1": r1[-1].tolist(),
        "final_reward2": r2[-1].tolist(),
        "p_cooperate1": q1.tolist(),
        "p_cooperate2": q2.tolist(),
        "nash_distance": torch.cat([(q1 - 0.5).abs(), (q2 - 0.5).abs()], 1).mean(1).tolist(),
        "train_time_s": elapsed,
    }


def _mean(values) -> float:
    return sum(values) / len(values)


def _policy(part: dict) -> dict:
    """Mean P(cooperate | state) over seeds and both agents (states from each agent's own side)."""
    rows = part["p_cooperate1"] + part["p_cooperate2"]
    return {state: _mean([row[i] for row in rows]) for i, state in enumerate(STATES)}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    ipd = {
        pair: ctx.stage(f"ipd_{pair}", lambda p=pair, lr=learners: run_pair(config, ctx, "ipd", p, lr))
        for pair, learners in IPD_PAIRS.items()
    }
    imp = {}
    if config.imp:
        imp = {
            pair: ctx.stage(f"imp_{pair}", lambda p=pair, lr=learners: run_pair(config, ctx, "imp", p, lr))
            for pair, learners in IMP_PAIRS.items()
        }

    def pair_reward(part: dict) -> float:
        return _mean(part["final_reward1"] + part["final_reward2"])

    nl, lola, mixed = ipd["nl_nl"], ipd["lola_lola"], ipd["lola_nl"]
    threshold = (PAPER_DEFECT + PAPER_COOPERATE) / 2
    policy = {pair: _policy(part) for pair, part in ipd.items() if pair != "lola_nl"}
    for key, rows in (("lola_vs_nl_lola", mixed["p_cooperate1"]), ("lola_vs_nl_nl", mixed["p_cooperate2"])):
        policy[key] = {state: _mean([row[i] for row in rows]) for i, state in enumerate(STATES)}
    gap = {pair: policy[pair]["CC"] - policy[pair]["CD"] for pair in ("nl_nl", "lola_lola")}
    metrics = {
        "nl_nl_reward": pair_reward(nl),
        "lola_lola_reward": pair_reward(lola),
        "lola_vs_nl_lola_reward": _mean(mixed["final_reward1"]),
        "lola_vs_nl_nl_reward": _mean(mixed["final_reward2"]),
        "nl_nl_cooperating_fraction": _mean(
            [r > threshold for r in nl["final_reward1"] + nl["final_reward2"]]
        ),
        "lola_lola_cooperating_fraction": _mean(
            [r > threshold for r in lola["final_reward1"] + lola["final_reward2"]]
        ),
        "nl_nl_retaliation_gap": gap["nl_nl"],
        "lola_lola_retaliation_gap": gap["lola_lola"],
        "policy": policy,
        "train_time_s": sum(part["train_time_s"] for part in [*ipd.values(), *imp.values()]),
    }
    checks = [
        Check(
            "LOLA-LOLA earns more per step than NL-NL in the IPD",
            metrics["lola_lola_reward"],
            ">",
            metrics["nl_nl_reward"],
            "NL-NL average reward per step",
        ),
        Check(
            "NL-NL defects: reward per step nearer the paper's -2 than -1",
            metrics["nl_nl_reward"],
            "<",
            threshold,
            "midway between the paper's NL-NL -2 and LOLA-LOLA -1",
        ),
        Check(
            "LOLA-LOLA cooperates: reward per step nearer the paper's -1 than -2",
            metrics["lola_lola_reward"],
            ">",
            threshold,
            "midway between the paper's LOLA-LOLA -1 and NL-NL -2",
        ),
        Check(
            "LOLA reciprocates: P(C|CC) - P(C|CD) exceeds the naive learners'",
            gap["lola_lola"],
            ">",
            gap["nl_nl"],
            "NL-NL P(C|CC) - P(C|CD)",
        ),
        Check(
            "LOLA earns more than the naive learner it plays",
            metrics["lola_vs_nl_lola_reward"],
            ">",
            metrics["lola_vs_nl_nl_reward"],
            "the naive learner's reward per step",
        ),
    ]
    if config.imp:
        metrics["imp_nl_nl_nash_distance"] = _mean(imp["nl_nl"]["nash_distance"])
        metrics["imp_lola_lola_nash_distance"] = _mean(imp["lola_lola"]["nash_distance"])
        metrics["imp_nl_nl_reward1"] = _mean(imp["nl_nl"]["final_reward1"])
        metrics["imp_lola_lola_reward1"] = _mean(imp["lola_lola"]["final_reward1"])
        checks.append(
            Check(
                "IMP: LOLA-LOLA ends nearer the Nash equilibrium 0.5 than NL-NL",
                metrics["imp_lola_lola_nash_distance"],
                "<",
                metrics["imp_nl_nl_nash_distance"],
                "NL-NL mean |P(heads | state) - 0.5|",
            )
        )
    figures(config, ctx, ipd, imp, policy)
    lp = policy["lola_lola"]
    tft = min(lp["CC"], lp["DC"]) > 0.5 > max(lp["CD"], lp["DD"])
    notes = (
        f"Exact values and autograd gradients, {config.seeds} random initialisations θ ~ N(0, "
        f"{config.init_std:g}²) shared by all pairings, δ = {config.lr:g}, η = {config.eta:g}, "
        f"{config.steps} steps. Final average reward per step: NL-NL {metrics['nl_nl_reward']:.3f} "
        f"({metrics['nl_nl_cooperating_fraction']:.0%} of agents above -1.5), LOLA-LOLA "
        f"{metrics['lola_lola_reward']:.3f} ({metrics['lola_lola_cooperating_fraction']:.0%} above -1.5); "
        f"LOLA vs NL: LOLA {metrics['lola_vs_nl_lola_reward']:.3f}, "
        f"NL {metrics['lola_vs_nl_nl_reward']:.3f}. "
        "LOLA-LOLA P(C | s0, CC, CD, DC, DD) (own action first) = "
        + ", ".join(f"{policy['lola_lola'][s]:.2f}" for s in STATES)
        + (
            ": tit-for-tat-like, cooperate after the opponent cooperated (CC, DC), retaliate after it "
            "defected (CD, DD)"
            if tft
            else ": not tit-for-tat-like (TFT: above 0.5 after CC, DC; below after CD, DD)"
        )
        + ". NL-NL = "
        + ", ".join(f"{policy['nl_nl'][s]:.2f}" for s in STATES)
        + "."
    )
    if config.imp:
        notes += (
            f" IMP (δ = {config.imp_lr:g}, η = {config.imp_eta:g}, {config.imp_steps} steps): mean |P - 0.5| "
            f"LOLA-LOLA {metrics['imp_lola_lola_nash_distance']:.3f} vs NL-NL "
            f"{metrics['imp_nl_nl_nash_distance']:.3f} (δ is 10× smaller than in the IPD; see the README)."
        )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, ipd: dict, imp: dict, policy: dict) -> None:
    from papers.core.plots import figure

    labels = {"nl_nl": "NL-NL", "lola_lola": "LOLA-LOLA"}
    fig, axes = figure(ncols=2 if imp else 1, width=4.6)
    ax = axes[0]
    curves = {
        "NL-NL": ipd["nl_nl"]["reward1"],
        "LOLA-LOLA": ipd["lola_lola"]["reward1"],
        "LOLA (vs NL)": ipd["lola_nl"]["reward1"],
        "NL (vs LOLA)": ipd["lola_nl"]["reward2"],
    }
    for (name, band), style in zip(curves.items(), ("-", "-", "--", ":"), strict=True):
        x = range(len(band["mean"]))
        mean, std = band["mean"], band["std"]
        (line,) = ax.plot(x, mean, style, label=name)
        ax.fill_between(
            x,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color=line.get_color(),
            alpha=0.15,
        )
    ax.axhline(-1.0, color="grey", lw=0.6)
    ax.axhline(-2.0, color="grey", lw=0.6)
    ax.set(
        xlabel="update step",
        ylabel="average reward per step (agent 1)",
        title=f"IPD, mean ± sd over {config.seeds} seeds",
    )
    ax.legend(fontsize=8)
    if imp:
        ax = axes[1]
        for pair, part in imp.items():
            band = part["reward1"]
            x = range(len(band["mean"]))
            (line,) = ax.plot(x, band["mean"], label=labels[pair])
            ax.fill_between(
                x,
                [m - s for m, s in zip(band["mean"], band["std"], strict=True)],
                [m + s for m, s in zip(band["mean"], band["std"], strict=True)],
                color=line.get_color(),
                alpha=0.15,
            )
        ax.set(
            xlabel="update step",
            ylabel="average reward per step (agent 1)",
            title="iterated matching pennies",
        )
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "reward")

    fig, axes = figure(ncols=2 if imp else 1, width=4.6)
    ax = axes[0]
    width = 0.2
    names = {
        "nl_nl": "NL-NL",
        "lola_lola": "LOLA-LOLA",
        "lola_vs_nl_lola": "LOLA (vs NL)",
        "lola_vs_nl_nl": "NL (vs LOLA)",
    }
    for k, (key, name) in enumerate(names.items()):
        ax.bar(
            [i + (k - 1.5) * width for i in range(len(STATES))],
            [policy[key][s] for s in STATES],
            width,
            label=name,
        )
    ax.set_xticks(range(len(STATES)), STATES)
    ax.set(
        xlabel="state (own action, opponent's action)",
        ylabel="P(cooperate | state)",
        ylim=(0, 1),
        title="IPD: learned policies (mean)",
    )
    ax.legend(fontsize=7)
    if imp:
        ax = axes[1]
        for k, (pair, part) in enumerate(imp.items()):
            rows = part["p_cooperate1"] + part["p_cooperate2"]
            means = [_mean([row[i] for row in rows]) for i in range(len(STATES))]
            sds = [math.sqrt(_mean([(row[i] - m) ** 2 for row in rows])) for i, m in enumerate(means)]
            ax.bar(
                [i + (k - 0.5) * 0.35 for i in range(len(STATES))],
                means,
                0.35,
                yerr=sds,
                capsize=2,
                label=labels[pair],
            )
        ax.axhline(0.5, color="grey", lw=0.6)
        ax.set_xticks(range(len(STATES)), STATES)
        ax.set(
            xlabel="state",
            ylabel="P(heads | state), mean ± sd",
            ylim=(0, 1),
            title="IMP: learned policies (Nash: 0.5)",
        )
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "policy")
