"""Toy reproduction of GA+D (Nigam et al. 2020): penalised logP with and without the discriminator.

Every run starts from a population of methane (as the paper) with the same seed and generation count:
a β sweep (β = 0 is the plain GA) and the adaptive variant (β = 0, switched to ``adaptive_beta`` in
any generation after ``adaptive_after`` where the best J has not changed for ``stagnation_window``
generations). Reference set: NCI molecules (``papers.chem.data.nci_corpus``) standing in for ZINC.

Toy scale: population 100 (paper 500), 60 generations (paper 100-1000), SMILES of at most 40
characters (paper 81) so that the plain GA stagnates within the budget, one seed.

Per generation: best and mean J, unique molecules and unique Bemis–Murcko scaffolds in the
population, and the fraction the discriminator calls reference-like (D > 0.5).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from papers.core.experiment import Check, Result

from .model import MoleculeScorer, descriptors, run_ga


@dataclass
class Config:
    population: int = 100  # paper: 500
    generations: int = 60
    betas: tuple[float, ...] = (0.0, 1.0, 5.0, 10.0, 20.0, 50.0)
    adaptive_beta: float = 1000.0  # the authors' code
    adaptive_after: int = 20  # paper code: generation 100 (of 1000)
    stagnation_window: int = 5
    max_smiles_len: int = 40  # paper: 81
    reference_size: int = 2000  # NCI molecules (paper: ZINC)
    disc_steps: int = 10
    disc_lr: float = 1e-3
    window: int = 10  # generations averaged for the "final" metrics
    threads: int = 1

    def validate(self) -> None:
        for name in ("population", "generations", "reference_size", "window"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name} must be >= 2, got {getattr(self, name)}")
        if self.stagnation_window < 2:
            raise ValueError(f"stagnation_window must be >= 2, got {self.stagnation_window}")
        if len(self.betas) < 3 or sorted(self.betas) != list(self.betas) or self.betas[0] != 0:
            raise ValueError(f"betas must be >= 3 increasing values starting at 0, got {self.betas}")
        if self.adaptive_beta <= 0:
            raise ValueError(f"adaptive_beta must be > 0, got {self.adaptive_beta}")
        if not 0 <= self.adaptive_after < self.generations:
            raise ValueError(f"adaptive_after must be in [0, generations), got {self.adaptive_after}")
        if self.window > self.generations:
            raise ValueError(f"window must be <= generations, got {self.window}")
        if self.max_smiles_len < 5:
            raise ValueError(f"max_smiles_len must be >= 5, got {self.max_smiles_len}")
        if self.disc_steps < 1 or not self.disc_lr > 0:
            raise ValueError(
                f"disc_steps must be >= 1 and disc_lr > 0, got {self.disc_steps}, {self.disc_lr}"
            )
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "population": 12,
        "generations": 6,
        "betas": (0.0, 10.0, 50.0),
        "adaptive_after": 2,
        "stagnation_window": 2,
        "reference_size": 60,
        "window": 2,
        "max_smiles_len": 25,
    },
    "default": {},
    "full": {"population": 500, "generations": 200, "max_smiles_len": 81, "adaptive_after": 100},
}


def reference_data(config: Config, seed: int) -> dict:
    from papers.chem.data import nci_corpus

    corpus, skipped = nci_corpus(60)
    rng = random.Random(seed)
    picked = rng.sample(corpus, min(config.reference_size, len(corpus)))
    return {"smiles": picked, "features": [descriptors(s) for s in picked], "skipped": skipped}


def summarise(h: dict, config: Config) -> dict:
    w, a = config.window, config.adaptive_after

    def mean(values):
        values = [v for v in values if v == v]
        return sum(values) / len(values) if values else float("nan")

    return {
        "final_best_j": h["best_j"][-1],
        "max_best_j": max(h["best_j"]),
        "final_mean_j": mean(h["mean_j"][-w:]),
        "scaffolds_after_switch": mean(h["unique_scaffolds"][a:]),
        "final_scaffolds": mean(h["unique_scaffolds"][-w:]),
        "final_unique": mean(h["unique_molecules"][-w:]),
        "final_reference_like": mean(h["reference_like"][-w:]),
        "distinct_seen": h["distinct_molecules_seen"],
        "switch_ons": sum(b > 0 for b in h["beta"]),
        "best_smiles": h["best_smiles"][max(range(len(h["best_j"])), key=lambda i: (h["best_j"][i], -i))],
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    ref = ctx.stage("reference", lambda: reference_data(config, ctx.seed))
    features = torch.tensor(ref["features"], dtype=torch.float32)
    scorer = MoleculeScorer()
    runs = {f"beta={b:g}": {"beta": b, "adaptive": False} for b in config.betas}
    runs["adaptive"] = {"beta": 0.0, "adaptive": True}
    histories = {}
    for name, spec in runs.items():
        histories[name] = ctx.stage(
            f"ga_{name.replace('=', '_')}",
            lambda spec=spec: run_ga(
                reference=ref["smiles"],
                reference_features=features,
                scorer=scorer,
                seed=ctx.seed,
                population=config.population,
                generations=config.generations,
                beta=spec["beta"],
                adaptive=spec["adaptive"],
                adaptive_beta=config.adaptive_beta,
                adaptive_after=config.adaptive_after,
                stagnation_window=config.stagnation_window,
                max_smiles_len=config.max_smiles_len,
                disc_steps=config.disc_steps,
                disc_lr=config.disc_lr,
            ),
        )
        for g in range(config.generations):
            ctx.log(
                {f"{name}/{k}": histories[name][k][g] for k in ("best_j", "mean_j", "unique_scaffolds")}, g
            )
    summary = {name: summarise(h, config) for name, h in histories.items()}
    plain, adaptive = summary["beta=0"], summary["adaptive"]

    # the β transition: final population-mean J against β
    sweep = [summary[f"beta={b:g}"]["final_mean_j"] for b in config.betas]
    jumps = [abs(b - a) for a, b in zip(sweep, sweep[1:], strict=False)]
    largest = max(jumps)
    at = jumps.index(largest)

    metrics = {"reference_molecules": len(ref["smiles"])}
    for name, s in summary.items():
        for key, value in s.items():
            metrics[f"{name}/{key}"] = value
    metrics["sweep_largest_jump"] = largest
    metrics["sweep_largest_jump_between"] = [config.betas[at], config.betas[at + 1]]
    metrics["sweep_mean_jump"] = sum(jumps) / len(jumps)
    metrics["sweep_total_variation"] = sum(jumps)

    checks = [
        Check(
            "adaptive GA+D keeps more unique scaffolds than the plain GA (mean after the switch can start)",
            adaptive["scaffolds_after_switch"],
            ">",
            plain["scaffolds_after_switch"],
            "plain GA (β = 0)",
        ),
        Check(
            "adaptive GA+D finds a higher best J than the plain GA",
            adaptive["max_best_j"],
            ">",
            plain["max_best_j"],
            "plain GA (β = 0) best J",
        ),
        Check(
            "β changes behaviour sharply: the largest jump of the final mean J between neighbouring β "
            "exceeds half the total change over the sweep",
            largest,
            ">",
            0.5 * sum(jumps),
            "half the total variation over β",
        ),
    ]
    figures(ctx, config, histories, summary)
    rows = [(b, summary[f"beta={b:g}"]) for b in config.betas]
    per_beta = "; ".join(
        f"β={b:g}: mean J {s['final_mean_j']:.2f}, best J {s['max_best_j']:.2f}, scaffolds "
        f"{s['final_scaffolds']:.1f}, reference-like {s['final_reference_like']:.2f}"
        for b, s in rows
    )
    notes = (
        f"Toy scale: population {config.population}, {config.generations} generations from methane, SMILES "
        f"≤ {config.max_smiles_len} characters, {len(ref['smiles'])} NCI reference molecules, one seed; "
        f"J unnormalised. Plain GA: best J {plain['max_best_j']:.2f}, scaffolds after generation "
        f"{config.adaptive_after} {plain['scaffolds_after_switch']:.1f}. Adaptive GA+D (β = "
        f"{config.adaptive_beta:g} in {adaptive['switch_ons']} stagnating generations): best J "
        f"{adaptive['max_best_j']:.2f}, scaffolds {adaptive['scaffolds_after_switch']:.1f}. Final-"
        f"{config.window}-generation summary per β ({per_beta}). Largest jump of the final mean J "
        f"{largest:.2f} between β={config.betas[at]:g} and β={config.betas[at + 1]:g}, mean jump "
        f"{sum(jumps) / len(jumps):.2f}, total {sum(jumps):.2f}."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, config: Config, histories: dict, summary: dict) -> None:
    from papers.core.plots import figure, plot_lines

    gens = list(range(config.generations))
    fig, (ax_best, ax_mean) = figure(ncols=2, width=5.0)
    plot_lines(ax_best, gens, {n: h["best_j"] for n, h in histories.items()}, xlabel="generation",
               ylabel="best J (penalised logP)", marker="")  # fmt: skip
    plot_lines(ax_mean, gens, {n: h["mean_j"] for n, h in histories.items()}, xlabel="generation",
               ylabel="population mean J", marker="")  # fmt: skip
    ctx.save_figure(fig, "fitness")

    fig, (ax_s, ax_u) = figure(ncols=2, width=5.0)
    plot_lines(ax_s, gens, {n: h["unique_scaffolds"] for n, h in histories.items()}, xlabel="generation",
               ylabel="unique Murcko scaffolds", marker="")  # fmt: skip
    plot_lines(ax_u, gens, {n: h["unique_molecules"] for n, h in histories.items()}, xlabel="generation",
               ylabel="unique molecules", marker="")  # fmt: skip
    ctx.save_figure(fig, "diversity")

    fig, axes = figure(ncols=3)
    x = [b if b > 0 else 0.3 for b in config.betas]  # β = 0 drawn at 0.3 on the log axis
    for ax, key, label in zip(
        axes,
        ("final_mean_j", "final_scaffolds", "final_reference_like"),
        ("final mean J", "final unique scaffolds", "final fraction D > 0.5"),
        strict=True,
    ):
        plot_lines(ax, x, {"GA+D": [summary[f"beta={b:g}"][key] for b in config.betas]},
                   xlabel="β (0 drawn at 0.3)", ylabel=label, logx=True)  # fmt: skip
        ax.axhline(summary["adaptive"][key], color="gray", ls="--", label="adaptive")
        ax.legend()
    ctx.save_figure(fig, "beta_sweep")
