"""Reproduction: IRD in Lavaland, the negative-side-effect experiment (Hadfield-Menell et al. 2017, Sec. 5).

The designer's proxy reward w̃ = (dirt −0.1, grass −0.5, lava 0, target +1 per step on it) was
written for the training map (:func:`training_map`: dirt, grass and the target, no lava); the true
reward is the same with lava −10. IRD infers P(w* | w̃, M̃) (a prior uniform on the unit sphere, or
Gaussian, a β-rational designer, Z̃ from sampled proxies, importance sampling), then plans on
``n_maps`` random test maps that add lava patches on the way from the start to the target (a lava-free
path always exists). Agents, all planned exactly over every trajectory of ``horizon`` steps:

- ``proxy``: maximises w̃ᵀφ (the literal reward);
- ``ird_mean``: maximises the posterior-mean reward;
- ``ird_risk_averse``: the worst case over posterior samples of the trajectory reward relative to the
  training behaviour's features, min_i w_iᵀ(φ(ξ) − φ̃(w̃));
- ``ird_timestep``: the worst case taken per time step (per feature), Σ_t min_i w_iᵀ(φ(s_t) − c̄);
- ``ird_unshifted``: the trajectory worst case without a comparison point (an ablation);
- ``ird_seen_known``: a diagnostic, not IRD: the time-step worst case over samples whose seen weights
  are fixed at the proxy's direction and whose lava weights are the posterior's;
- ``oracle``: maximises the true reward (a reference, not an IRD agent).

Measured: the fraction of maps whose trajectory enters lava, the target-reach rate and the mean true
return; the posterior's mean and spread per feature; and the same lava rates for a sweep over β.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from papers.core.experiment import Check, Result

from .model import (
    FEATURES,
    GRASS,
    LAVA,
    TARGET,
    best_count,
    feature_expectations,
    ird_posterior,
    plan,
    random_map,
    reachable_counts,
    risk_averse_values,
    training_map,
    trajectory_for,
)

AGENTS = ("proxy", "ird_mean", "ird_risk_averse", "ird_timestep", "ird_unshifted", "ird_seen_known", "oracle")
LABELS = {
    "proxy": "proxy",
    "ird_mean": "IRD mean",
    "ird_risk_averse": "IRD risk-averse (trajectory)",
    "ird_timestep": "IRD risk-averse (time step)",
    "ird_unshifted": "IRD worst case, no shift",
    "ird_seen_known": "time step, seen weights known",
    "oracle": "true reward",
}


@dataclass
class Config:
    size: int = 10  # square maps
    horizon: int = 28  # moves at most; exact planning over every trajectory this long
    n_maps: int = 100  # random test maps with lava
    n_roads: int = 3  # dirt roads per test map
    n_lava: int = 3  # lava patches per test map
    lava_size: int = 2  # side of a square lava patch
    proxy: tuple[float, ...] = (-0.1, -0.5, 0.0, 1.0)  # w̃ over (dirt, grass, lava, target)
    true_lava: float = -10.0  # w* = w̃ with this lava weight
    beta: float = 1.0  # designer rationality in P(w̃ | w*) ∝ exp(β w*ᵀφ̃)
    prior: str = "sphere"  # prior of true and proxy weights: "sphere" (uniform on |w| = σ) or "gaussian"
    prior_std: float = 1.0  # σ: the sphere's radius, or the Gaussian's standard deviation
    n_proxy_samples: int = 1000  # proxies sampled to estimate Z̃(w*)
    n_prior_samples: int = 10000  # importance-sampling draws from the prior
    n_posterior: int = 50  # posterior samples the risk-averse planner takes the worst case over
    beta_sweep: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)  # extra posteriors: lava rates against β
    threads: int = 1  # torch CPU threads (the computation is numpy on small arrays)

    def validate(self) -> None:
        if self.size < 6:
            raise ValueError(f"size must be >= 6, got {self.size}")
        for name in ("horizon", "n_maps", "n_proxy_samples", "n_prior_samples", "n_posterior", "lava_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.horizon < 2 * self.size:
            raise ValueError(
                f"horizon must be >= 2 * size = {2 * self.size} to cross a map, got {self.horizon}"
            )
        for name in ("n_roads", "n_lava", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if len(self.proxy) != 4 or not all(math.isfinite(v) for v in self.proxy):
            raise ValueError(f"proxy must be 4 finite weights {FEATURES}, got {self.proxy}")
        for name in ("beta", "prior_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if self.prior not in ("sphere", "gaussian"):
            raise ValueError(f"prior must be 'sphere' or 'gaussian', got {self.prior!r}")
        if not math.isfinite(self.true_lava):
            raise ValueError(f"true_lava must be finite, got {self.true_lava}")
        if any(not (math.isfinite(b) and b > 0) for b in self.beta_sweep):
            raise ValueError(f"beta_sweep must hold finite numbers > 0, got {self.beta_sweep}")


PRESETS = {
    "smoke": {
        "size": 6,
        "horizon": 14,
        "n_maps": 6,
        "n_roads": 2,
        "n_lava": 2,
        "n_proxy_samples": 100,
        "n_prior_samples": 1000,
        "n_posterior": 20,
        "beta_sweep": (1.0, 3.0),
    },
    "default": {},
    "full": {"n_maps": 500, "n_proxy_samples": 5000, "n_prior_samples": 50000, "n_posterior": 100},
}


def _true_weights(config: Config) -> np.ndarray:
    w = np.array(config.proxy, dtype=np.float64)
    w[LAVA] = config.true_lava
    return w


def posteriors(config: Config, ctx) -> dict:
    """The IRD posterior at ``config.beta`` and at every β of the sweep."""
    reach = reachable_counts(training_map(config.size), config.horizon)
    proxy = np.array(config.proxy, dtype=np.float64)
    out = {"phi_train": feature_expectations(reach, proxy)[0].tolist(), "n_train_counts": len(reach.counts)}
    other = "gaussian" if config.prior == "sphere" else "sphere"
    runs = [(f"beta={config.beta:g}", config.beta, config.prior)]
    runs += [(f"beta={b:g}", b, config.prior) for b in config.beta_sweep if b != config.beta]
    runs.append((f"{other} prior", config.beta, other))
    for k, (key, beta, prior) in enumerate(runs):
        rng = np.random.default_rng([ctx.seed, 2, k])
        post = ird_posterior(
            reach,
            proxy,
            beta=beta,
            prior_std=config.prior_std,
            n_proxy_samples=config.n_proxy_samples,
            n_prior_samples=config.n_prior_samples,
            n_posterior=config.n_posterior,
            rng=rng,
            prior=prior,
        )
        out[key] = {
            "prior": prior,
            "beta": beta,
            "mean": post.mean.tolist(),
            "std": post.std.tolist(),
            "ess": post.effective_sample_size,
            "samples": post.samples.tolist(),
            "prior_samples": post.prior_samples[:2000].tolist(),
        }
        ctx.log(
            {
                "beta": beta,
                "ess": post.effective_sample_size,
                **{f"mean_{f}": m for f, m in zip(FEATURES, post.mean, strict=True)},
            },
            step=k,
        )
    return out


def _seen_known(samples: np.ndarray, proxy: np.ndarray) -> np.ndarray:
    """Samples with the seen weights replaced by the proxy's, scaled to the samples' mean norm."""
    out = np.tile(proxy / np.linalg.norm(proxy) * np.linalg.norm(samples, axis=1).mean(), (len(samples), 1))
    out[:, LAVA] = samples[:, LAVA]
    return out


def choose(
    counts: np.ndarray,
    reach,
    samples: np.ndarray,
    mean: np.ndarray,
    proxy: np.ndarray,
    true: np.ndarray,
    phi_train: np.ndarray,
) -> dict[str, int]:
    """The count-vector index each agent picks on one test map."""
    return {
        "proxy": plan(reach, proxy),
        "ird_mean": plan(reach, mean),
        "ird_risk_averse": best_count(reach, risk_averse_values(counts, samples, phi_train, "trajectory")),
        "ird_timestep": best_count(reach, risk_averse_values(counts, samples, phi_train, "timestep")),
        "ird_unshifted": best_count(reach, risk_averse_values(counts, samples, np.zeros(4), "trajectory")),
        "ird_seen_known": best_count(
            reach, risk_averse_values(counts, _seen_known(samples, proxy), phi_train, "timestep")
        ),
        "oracle": plan(reach, true),
    }


def evaluate(config: Config, ctx, post: dict) -> dict:
    proxy, true = np.array(config.proxy, dtype=np.float64), _true_weights(config)
    phi_train = np.array(post["phi_train"])
    rng = np.random.default_rng([ctx.seed, 1])
    keys = [k for k, v in post.items() if isinstance(v, dict)]
    picked = {k: {a: [] for a in AGENTS} for k in keys}
    example = None
    with ctx.progress_bar(config.n_maps, "test maps") as bar:
        for m in range(config.n_maps):
            grid = random_map(
                rng, config.size, n_roads=config.n_roads, n_lava=config.n_lava, lava_size=config.lava_size
            )
            reach = reachable_counts(grid, config.horizon)
            for k in keys:
                p = post[k]
                chosen = choose(
                    reach.counts, reach, np.array(p["samples"]), np.array(p["mean"]), proxy, true, phi_train
                )
                for a, i in chosen.items():
                    picked[k][a].append(reach.counts[i].tolist())
                if k == keys[0] and example is None and reach.counts[chosen["proxy"], LAVA] > 0:
                    example = {
                        "map": m,
                        "cells": grid.cells.tolist(),
                        "start": list(grid.start),
                        "paths": {a: [list(c) for c in trajectory_for(reach, i)] for a, i in chosen.items()},
                    }
            bar.update(1)
    summary = {}
    for k in keys:
        summary[k] = {}
        for a in AGENTS:
            counts = np.array(picked[k][a])
            summary[k][a] = {
                "lava_rate": float((counts[:, LAVA] > 0).mean()),
                "lava_cells": float(counts[:, LAVA].mean()),
                "target_rate": float((counts[:, TARGET] > 0).mean()),
                "true_return": float((counts @ true).mean()),
                "proxy_return": float((counts @ proxy).mean()),
                "moves_before_target": float(counts[:, :TARGET].sum(1).mean()),
                "grass_cells": float(counts[:, GRASS].mean()),
            }
    return {"summary": summary, "example": example}


def run(config: Config, ctx) -> Result:
    if config.threads:
        import torch

        torch.set_num_threads(config.threads)
    post = ctx.stage("posterior", lambda: posteriors(config, ctx))
    ev = ctx.stage("evaluate", lambda: evaluate(config, ctx, post))
    main = f"beta={config.beta:g}"
    s = ev["summary"][main]
    p = post[main]
    _figures(config, ctx, post, ev)

    metrics = {}
    for a in AGENTS:
        for q in ("lava_rate", "lava_cells", "target_rate", "true_return"):
            metrics[f"{a}_{q}"] = s[a][q]
    for f, m, sd in zip(FEATURES, p["mean"], p["std"], strict=True):
        metrics[f"posterior_mean_{f}"] = m
        metrics[f"posterior_std_{f}"] = sd
    metrics["posterior_ess"] = p["ess"]
    samples = np.array(p["samples"])
    for f, i in (("grass", GRASS), ("lava", LAVA)):
        metrics[f"worst_sample_{f}_weight"] = float(samples[:, i].min())
    for k, v in ev["summary"].items():
        if k != main:
            tag = k.replace("=", "_").replace(" ", "_")
            for a in ("ird_risk_averse", "ird_timestep"):
                metrics[f"{a}_lava_rate_{tag}"] = v[a]["lava_rate"]
    seen_std = max(p["std"][i] for i in range(4) if i != LAVA)

    checks = [
        Check(
            "the proxy agent walks through lava", s["proxy"]["lava_rate"], ">", 0.0, "0 (paper: proxy > 0)"
        ),
        Check(
            "IRD risk-averse (time step) enters lava less often than the proxy agent",
            s["ird_timestep"]["lava_rate"],
            "<",
            s["proxy"]["lava_rate"],
            "proxy lava rate",
        ),
        Check(
            "IRD risk-averse (trajectory) enters lava less often than the proxy agent",
            s["ird_risk_averse"]["lava_rate"],
            "<",
            s["proxy"]["lava_rate"],
            "proxy lava rate",
        ),
        Check(
            "IRD risk-averse (time step) lava rate ≈ 0: no higher than the true-reward planner's",
            s["ird_timestep"]["lava_rate"],
            "<=",
            s["oracle"]["lava_rate"],
            "true-reward planner lava rate",
        ),
        Check(
            "IRD risk-averse (time step) earns more true reward than the proxy agent",
            s["ird_timestep"]["true_return"],
            ">",
            s["proxy"]["true_return"],
            "proxy true return",
        ),
        Check(
            "IRD risk-averse (trajectory) earns more true reward than the proxy agent",
            s["ird_risk_averse"]["true_return"],
            ">",
            s["proxy"]["true_return"],
            "proxy true return",
        ),
        Check(
            "risk aversion, not the posterior mean, avoids lava",
            s["ird_mean"]["lava_rate"],
            ">",
            s["ird_timestep"]["lava_rate"],
            "IRD time-step lava rate",
        ),
        Check(
            "the posterior stays wide on the unseen lava weight",
            p["std"][LAVA],
            ">",
            seen_std,
            "largest posterior std of a seen feature",
        ),
    ]
    lines = [
        f"{LABELS[a]}: lava {s[a]['lava_rate']:.2f} of maps ({s[a]['lava_cells']:.2f} cells), target "
        f"{s[a]['target_rate']:.2f}, true return {s[a]['true_return']:.2f}"
        for a in AGENTS
    ]
    sweep = "; ".join(
        f"{k}: trajectory {v['ird_risk_averse']['lava_rate']:.2f}, time step "
        f"{v['ird_timestep']['lava_rate']:.2f}"
        for k, v in ev["summary"].items()
        if k != main
    )
    worst_grass, worst_lava = metrics["worst_sample_grass_weight"], metrics["worst_sample_lava_weight"]
    posterior = ", ".join(
        f"{f} {m:.2f}±{sd:.2f}" for f, m, sd in zip(FEATURES, p["mean"], p["std"], strict=True)
    )
    notes = (
        f"{config.n_maps} random {config.size}x{config.size} test maps, exact planning over every "
        f"trajectory of {config.horizon} steps. " + "; ".join(lines) + ". "
        f"Posterior ({config.prior} prior, beta={config.beta:g}, ESS {p['ess']:.0f} of "
        f"{config.n_prior_samples}): {posterior}. As the paper argues, the lava weight never changes the "
        "training behaviour, so its posterior is the prior; the posterior mean puts lava near 0, above the "
        "seen terrain, so mean-reward planning walks through lava like the proxy. Risk aversion helps "
        "(fewer lava maps, fewer lava cells, a much higher true return) but does not reach the paper's ~0: "
        "one training map only tells the posterior that the designer's path is optimal, a wide cone of "
        "rewards in which grass may be almost as bad as the worst lava sample (worst sampled grass weight "
        f"{worst_grass:.2f}, lava {worst_lava:.2f}), so grass detours round lava look about as risky as lava "
        f"itself. Even with the seen weights fixed at the proxy's (diagnostic agent) the per-step worst case "
        f"enters lava on {s['ird_seen_known']['lava_rate']:.2f} of maps: a prior that treats lava like the "
        "other features makes its worst sample cost about as much per step as grass plus the target time "
        "a detour gives up, so crossing a 2-cell lava strip stays competitive. A larger beta does not "
        f"sharpen the posterior beyond the cone. Other posteriors: {sweep}."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


COLORS = {
    "proxy": "tab:red",
    "ird_mean": "tab:orange",
    "ird_risk_averse": "tab:blue",
    "ird_timestep": "tab:cyan",
    "ird_unshifted": "tab:purple",
    "ird_seen_known": "tab:gray",
    "oracle": "black",
}


def _figures(config: Config, ctx, post: dict, ev: dict) -> None:
    from matplotlib.colors import ListedColormap

    from papers.core.plots import figure

    main = f"beta={config.beta:g}"
    example = ev["example"]
    if example is not None:
        fig, (ax,) = figure(width=6.0, height=5.6)
        ax.grid(False)
        cmap = ListedColormap(["#c8a165", "#7fbf5f", "#e8412c", "#f5d130"])  # dirt grass lava target
        ax.imshow(np.array(example["cells"]), cmap=cmap, vmin=-0.5, vmax=3.5)
        shown = [a for a in AGENTS if a != "ird_seen_known"]
        for j, a in enumerate(shown):
            path = np.array(example["paths"][a], dtype=float)
            off = (j - len(shown) / 2) * 0.06
            ax.plot(
                path[:, 1] + off, path[:, 0] + off, "-o", color=COLORS[a], ms=2.5, lw=1.6, label=LABELS[a]
            )
        ax.plot(example["start"][1], example["start"][0], "ks", ms=9, mfc="none")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"test map {example['map']}: dirt, grass, lava (red), target (yellow)", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ctx.save_figure(fig, "paths")

    s = ev["summary"][main]
    fig, axes = figure(ncols=3, width=4.2)
    names = [LABELS[a] for a in AGENTS]
    for ax, q, title in (
        (axes[0], "lava_rate", "fraction of maps entering lava"),
        (axes[1], "true_return", "mean true return"),
    ):
        ax.barh(names, [s[a][q] for a in AGENTS], color=[COLORS[a] for a in AGENTS])
        ax.set_title(title, fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
    axes[1].set_yticklabels([])
    keys = sorted((k for k in ev["summary"] if k.startswith("beta=")), key=lambda k: float(k.split("=")[1]))
    betas = [float(k.split("=")[1]) for k in keys]
    ax = axes[2]
    for a in ("proxy", "ird_mean", "ird_risk_averse", "ird_timestep", "oracle"):
        ax.plot(
            betas,
            [ev["summary"][k][a]["lava_rate"] for k in keys],
            "-o",
            ms=3,
            color=COLORS[a],
            label=LABELS[a],
        )
    ax.set_xscale("log")
    ax.set_xlabel("designer rationality β")
    ax.set_title("fraction of maps entering lava against β", fontsize=9)
    ax.legend(fontsize=6)
    ctx.save_figure(fig, "agents")

    p = post[main]
    samples, prior = np.array(p["samples"]), np.array(p["prior_samples"])
    fig, axes = figure(ncols=4, width=2.6, height=2.6)
    proxy = np.array(config.proxy, dtype=np.float64)
    if config.prior == "sphere":  # the proxy's direction on the prior's sphere
        proxy = proxy / np.linalg.norm(proxy) * config.prior_std
    width = 1.1 if config.prior == "sphere" else 3.0
    bins = np.linspace(-width * config.prior_std, width * config.prior_std, 23)
    for i, (ax, f) in enumerate(zip(axes, FEATURES, strict=True)):
        ax.hist(prior[:, i], bins=bins, density=True, alpha=0.4, color="gray", label="prior")
        ax.hist(samples[:, i], bins=bins, density=True, alpha=0.7, color="tab:blue", label="posterior")
        ax.axvline(proxy[i], color="tab:red", lw=1, label="proxy")
        ax.set_title(f"w_{f}", fontsize=9)
    axes[0].legend(fontsize=6)
    ctx.save_figure(fig, "posterior")
