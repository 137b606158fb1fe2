"""Reproduction (toy, 2-D): what should the DDPM network predict? (Ho et al. 2020, Sec. 3.2, Table 2.)

Each arm trains the same MLP denoiser (same initialisation, same minibatches, same draws of t and ε,
same number of Adam steps) to predict one quantity — ε, x₀, μ̃ or v — with one loss weighting, on
8 Gaussians, two moons and a swiss roll (generated). Its samples, drawn by the ancestral sampler from
the same noise for every arm, are compared with held-out data by the sliced Wasserstein distance SW₂
and the squared MMD (multi-bandwidth RBF kernel).

An arm is ``"<parameterisation>/<weighting>"``:
- ``eps/simple`` is the paper's L_simple = E‖ε − ε_θ(x_t, t)‖² (the method);
- ``x0/simple``, ``mu/simple``, ``v/simple`` are plain MSE on the network's own target;
- ``mu/vlb`` is μ̃-prediction trained on the variational bound L_{t−1} = ‖μ̃ − μ_θ‖²/(2σ_t²) with fixed
  isotropic Σ (the paper's baseline in Table 2); ``eps/vlb`` is ε-prediction on the same bound;
- ``x0/eps``, ``mu/eps``, ``v/eps`` weight their loss so that it equals L_simple: only what the network
  outputs differs from ``eps/simple``.

Also measured: the noise floor of each metric (a second held-out sample against the first), the
ancestral sampler driven by the exact ε of the 8-Gaussians mixture (the best any network could do at
this T), and each arm's ε-space error E‖ε̂ − ε‖² as a function of t on held-out data.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from typing import Literal

import torch

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.trainer import Callback, NonFiniteLossError, Trainer

from .data import DATASETS, eight_gaussians, mmd2, sliced_wasserstein
from .model import PARAMETERISATIONS, WEIGHTINGS, Denoiser, Diffusion, linear_betas

METHOD = "eps/simple"


@dataclass
class Config:
    datasets: tuple[str, ...] = ("8gaussians", "moons", "swiss_roll")
    arms: tuple[str, ...] = ("eps/simple", "x0/simple", "mu/simple", "mu/vlb", "v/simple")
    seeds: int = 1  # training runs per (data set, arm), differing in initialisation, batches and noise
    # diffusion: the paper's linear schedule 1e-4 → 0.02 at 1000 steps, stretched to T steps
    timesteps: int = 100
    beta_start: float = 1e-4
    beta_end: float = 0.02
    reverse_variance: Literal["beta", "posterior"] = "beta"
    # denoiser and training (Adam with cosine decay, the same for every arm)
    hidden: int = 64
    layers: int = 3
    time_dim: int = 32
    steps: int = 3000
    batch_size: int = 256
    lr: float = 2e-3
    n_train: int = 10_000
    # evaluation
    n_eval: int = 2000  # samples drawn per arm, and size of each held-out set
    projections: int = 256  # directions of the sliced Wasserstein distance
    error_timesteps: int = 12  # steps t (log-spaced in 1..T) at which the ε-space error is measured
    figure_points: int = 1000
    log_every: int = 100
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting, e.g. --threads)

    def validate(self) -> None:
        for name in ("seeds", "hidden", "layers", "steps", "batch_size", "n_train", "projections",
                     "error_timesteps", "figure_points", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_eval < 2:
            raise ValueError(f"n_eval must be >= 2, got {self.n_eval}")
        if self.time_dim < 2 or self.time_dim % 2:
            raise ValueError(f"time_dim must be even and >= 2, got {self.time_dim}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 < self.beta_start <= self.beta_end:
            raise ValueError(f"need 0 < beta_start <= beta_end, got {self.beta_start}, {self.beta_end}")
        linear_betas(self.timesteps, self.beta_start, self.beta_end)  # raises for too few steps
        if self.reverse_variance not in ("beta", "posterior"):
            raise ValueError(f"reverse_variance must be 'beta' or 'posterior', got {self.reverse_variance!r}")
        unknown = [d for d in self.datasets if d not in DATASETS]
        if not self.datasets or unknown or len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets must be distinct names from {', '.join(DATASETS)}, "
                             f"got {self.datasets}")
        for arm in self.arms:
            kind, _, weighting = arm.partition("/")
            if kind not in PARAMETERISATIONS or weighting not in WEIGHTINGS:
                raise ValueError(f"bad arm {arm!r}: write '<parameterisation>/<weighting>' with a "
                                 f"parameterisation in {PARAMETERISATIONS} and a weighting in {WEIGHTINGS}")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be distinct, got {self.arms}")
        kinds = {arm.split("/")[0] for arm in self.arms}
        if METHOD not in self.arms or not {"x0", "mu"} <= kinds:
            raise ValueError(f"arms must include {METHOD!r} and at least one x0 and one mu arm, "
                             f"got {self.arms}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"datasets": ("8gaussians", "moons"), "arms": ("eps/simple", "x0/simple", "mu/vlb", "v/eps"),
              "seeds": 1, "timesteps": 40, "hidden": 16, "layers": 2, "steps": 30, "batch_size": 64,
              "n_train": 512, "n_eval": 200, "projections": 32, "error_timesteps": 4, "figure_points": 100,
              "log_every": 10},
    "default": {},
    "full": {"arms": ("eps/simple", "x0/simple", "mu/simple", "mu/vlb", "v/simple", "eps/vlb", "x0/eps",
                      "mu/eps", "v/eps"),
             "seeds": 3, "hidden": 128, "steps": 6000},
}


def _seed(*parts: int) -> int:
    """A deterministic seed from the run seed and a part's coordinates."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % 2**62
    return value


def make_diffusion(config: Config) -> Diffusion:
    return Diffusion(linear_betas(config.timesteps, config.beta_start, config.beta_end),
                     reverse_variance=config.reverse_variance)


def make_denoiser(config: Config) -> Denoiser:
    return Denoiser(dim=2, hidden=config.hidden, layers=config.layers, time_dim=config.time_dim,
                    time_scale=1000 / config.timesteps)


class _Report(Callback):
    """Sends the Trainer's logged losses to the run's metrics and advances the progress bar."""

    def __init__(self, ctx, bar, labels: dict):
        self.ctx, self.bar, self.labels = ctx, bar, labels

    def on_log(self, trainer, metrics):
        self.ctx.log({**self.labels, "loss": metrics["loss"]}, step=trainer.step)

    def on_step_end(self, trainer):
        self.bar.update(1)


def train_arm(diffusion: Diffusion, x_train: torch.Tensor, arm: str, seed: int, config: Config, ctx,
              callbacks=()) -> tuple[Denoiser, float]:
    """Train a fresh denoiser (initialised from ``seed``) on one arm's loss; returns it and the last loss.

    The Trainer seeds every generator from ``seed``, so arms with the same seed see the same minibatches
    and the same draws of t and ε.
    """
    kind, weighting = arm.split("/")
    torch.manual_seed(seed)
    model = make_denoiser(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=ctx.device.type in ("cpu", "cuda"))
    trainer = Trainer(
        model, optimizer, lambda net, batch: diffusion.loss(net, batch[0], kind, weighting), (x_train,),
        batch_size=config.batch_size, max_steps=config.steps, drop_last=True,
        scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps),
        callbacks=callbacks, log_every=config.log_every, progress=False, device=ctx.device, seed=seed,
    )
    try:
        metrics = trainer.fit()
    except NonFiniteLossError as exc:
        raise PapersError(f"arm {arm} (seed {seed}): {exc}") from None
    return model.eval(), metrics["loss"]


def error_steps(config: Config) -> list[int]:
    """About ``error_timesteps`` distinct integer steps, log-spaced from 1 to T."""
    grid = torch.logspace(0, math.log10(config.timesteps), config.error_timesteps, dtype=torch.float64)
    return sorted({int(round(s)) for s in grid.tolist()})


@torch.no_grad()
def eps_error(diffusion: Diffusion, model: Denoiser, kind: str, x0: torch.Tensor, steps: list[int],
              generator: torch.Generator) -> list[float]:
    """E‖ε̂ − ε‖² at each step t, ε̂ the network's prediction converted to ε-space."""
    errors = []
    for step in steps:
        t = torch.full((len(x0),), step, dtype=torch.long, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator).to(x0.device)
        x_t = diffusion.q_sample(x0, t, noise)
        eps_hat = diffusion.convert(model(x_t, t), x_t, t, kind, "eps")
        errors.append((eps_hat - noise).pow(2).sum(1).mean().item())
    return errors


def run_dataset(index: int, name: str, config: Config, ctx) -> dict:
    """Train every arm ``config.seeds`` times on one data set and score its samples."""
    device = ctx.device
    diffusion = make_diffusion(config)
    data_rng = torch.Generator().manual_seed(_seed(ctx.seed, 1, index))
    x_train = DATASETS[name](config.n_train, data_rng).to(device)
    x_test = DATASETS[name](config.n_eval, data_rng)
    x_test2 = DATASETS[name](config.n_eval, data_rng)
    sw_rng = lambda: torch.Generator().manual_seed(_seed(ctx.seed, 2, index))  # noqa: E731 — same directions
    out = {
        "floor": {"sw": sliced_wasserstein(x_test2, x_test, config.projections, sw_rng()),
                  "mmd": mmd2(x_test2, x_test)},
        "data": x_test[: config.figure_points].tolist(),
        "arms": {},
        "samples": {},
    }
    if name == "8gaussians":  # the sampler with the exact ε of the mixture
        mixture = eight_gaussians()
        exact = diffusion.sample(lambda x, t: mixture.eps(x, t, diffusion), config.n_eval, "eps",
                                 generator=torch.Generator().manual_seed(_seed(ctx.seed, 3, index)))
        out["exact_eps"] = {"sw": sliced_wasserstein(exact, x_test, config.projections, sw_rng()),
                            "mmd": mmd2(exact, x_test)}
    steps = error_steps(config)
    out["error_steps"] = steps
    total = config.seeds * len(config.arms) * config.steps
    with ctx.progress_bar(total, f"training on {name}") as bar:
        for arm in config.arms:
            kind = arm.split("/")[0]
            row = {"sw": [], "mmd": [], "eps_error": [], "final_loss": [], "train_time_s": []}
            for s in range(config.seeds):
                seed = _seed(ctx.seed, 4, index, s)
                labels = {"dataset": name, "arm": arm, "seed": s}
                start = time.perf_counter()
                model, final_loss = train_arm(diffusion, x_train, arm, seed, config, ctx,
                                              callbacks=[_Report(ctx, bar, labels)])
                row["train_time_s"].append(time.perf_counter() - start)
                row["final_loss"].append(final_loss)
                sample_rng = torch.Generator().manual_seed(_seed(ctx.seed, 5, index, s))
                samples = diffusion.sample(model, config.n_eval, kind, generator=sample_rng, device=device)
                samples = samples.cpu()
                row["sw"].append(sliced_wasserstein(samples, x_test, config.projections, sw_rng()))
                row["mmd"].append(mmd2(samples, x_test))
                error_rng = torch.Generator().manual_seed(_seed(ctx.seed, 6, index))
                row["eps_error"].append(
                    eps_error(diffusion, model, kind, x_test.to(device), steps, error_rng))
                if s == 0:
                    out["samples"][arm] = samples[: config.figure_points].tolist()
            out["arms"][arm] = row
    return out


def _key(arm: str) -> str:
    return arm.replace("/", "_")


def compare(parts: dict, method: str, rivals: list[str], metric: str) -> dict:
    """The method against the rival with the lowest mean ``metric``: both means over data sets and seeds,
    and the paired differences (method − rival) per (data set, seed) with their standard error."""
    def values(arm):
        return [v for part in parts.values() for v in part["arms"][arm][metric]]

    best = min(rivals, key=lambda arm: statistics.fmean(values(arm)))
    diffs = [a - b for a, b in zip(values(method), values(best), strict=True)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"rival": best, "method": statistics.fmean(values(method)),
            "rival_mean": statistics.fmean(values(best)), "mean_diff": statistics.fmean(diffs),
            "se_diff": se, "method_wins": sum(d < 0 for d in diffs),
            "pairs": len(diffs)}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    parts = {name: ctx.stage(f"dataset_{name}", lambda i=i, name=name: run_dataset(i, name, config, ctx))
             for i, name in enumerate(config.datasets)}

    metrics: dict = {"timesteps": config.timesteps}
    for metric in ("sw", "mmd"):
        for arm in config.arms:
            metrics[f"{metric}_{_key(arm)}"] = statistics.fmean(
                v for part in parts.values() for v in part["arms"][arm][metric])
        metrics[f"{metric}_floor"] = statistics.fmean(part["floor"][metric] for part in parts.values())
    if "8gaussians" in parts:
        metrics["sw_exact_eps_8gaussians"] = parts["8gaussians"]["exact_eps"]["sw"]
        metrics["mmd_exact_eps_8gaussians"] = parts["8gaussians"]["exact_eps"]["mmd"]
        metrics["sw_floor_8gaussians"] = parts["8gaussians"]["floor"]["sw"]
    metrics["by_dataset"] = {
        name: {arm: {m: statistics.fmean(part["arms"][arm][m]) for m in ("sw", "mmd", "final_loss")}
               for arm in config.arms} | {"floor": part["floor"]}
        for name, part in parts.items()
    }
    metrics["train_time_s"] = {arm: statistics.fmean(t for part in parts.values()
                                                     for t in part["arms"][arm]["train_time_s"])
                               for arm in config.arms}

    checks, comparisons = [], {}
    for kind, label in (("x0", "x₀"), ("mu", "μ̃")):
        rivals = [arm for arm in config.arms if arm.split("/")[0] == kind]
        for metric, name in (("sw", "sliced Wasserstein"), ("mmd", "MMD²")):
            c = compare(parts, METHOD, rivals, metric)
            comparisons[f"{metric}_eps_vs_{kind}"] = c
            checks.append(Check(
                f"ε-prediction (L_simple) samples at least as well as {label}-prediction ({name})",
                c["method"], "<=", c["rival_mean"], f"best {label} arm ({c['rival']})",
                note=f"mean over {c['pairs']} (data set, seed) pairs; paired difference "
                     f"{c['mean_diff']:.3g} ± {c['se_diff']:.2g} (s.e.), ε better in {c['method_wins']}",
            ))
    metrics["comparisons"] = comparisons
    figures(config, ctx, parts)

    ranking = sorted(config.arms, key=lambda arm: metrics[f"sw_{_key(arm)}"])
    notes = (
        f"T = {config.timesteps}, β linear from {config.beta_start * 1000 / config.timesteps:.3g} to "
        f"{config.beta_end * 1000 / config.timesteps:.3g} (the paper's 1e-4 → 0.02 at T = 1000, stretched), "
        f"σ_t² = {'β_t' if config.reverse_variance == 'beta' else 'β̃_t'}; {config.steps} Adam steps per arm, "
        f"{config.seeds} seed(s) × {len(config.datasets)} data sets. Mean SW₂ by arm, best first: "
        + ", ".join(f"{arm} {metrics[f'sw_{_key(arm)}']:.3f}" for arm in ranking)
        + f"; the held-out noise floor is {metrics['sw_floor']:.3f}."
    )
    if "8gaussians" in parts:
        notes += (f" The sampler with the exact ε of the 8-Gaussians mixture scores SW₂ "
                  f"{metrics['sw_exact_eps_8gaussians']:.3f} (floor {metrics['sw_floor_8gaussians']:.3f}).")
    floor_ratio = metrics[f"sw_{_key(ranking[0])}"] / metrics["sw_floor"]
    notes += f" The best arm's SW₂ is {floor_ratio:.1f}× the noise floor"
    if floor_ratio > 1.5:
        notes += (": every arm is still under-trained at this budget, so the checks rank under-trained "
                  "models; the full preset (wider nets, more steps, more seeds) tests better-trained ones")
    notes += "."
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, parts: dict) -> None:
    from papers.core.plots import figure, plot_lines

    names, arms = list(parts), list(config.arms)
    fig, axes = figure(ncols=len(arms) + 1, nrows=len(names), width=2.2, height=2.2)
    for r, name in enumerate(names):
        part = parts[name]
        panels = [("held-out data", part["data"])] + [(arm, part["samples"][arm]) for arm in arms]
        for c, (title, points) in enumerate(panels):
            ax = axes[r * len(panels) + c]
            xy = torch.tensor(points)
            ax.scatter(xy[:, 0], xy[:, 1], s=1, alpha=0.5, color="k" if c == 0 else f"C{c - 1}")
            ax.set_xlim(-2.5, 2.5)
            ax.set_ylim(-2.5, 2.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(name)
    ctx.save_figure(fig, "samples")

    fig, (ax_sw, ax_mmd) = figure(ncols=2, width=5.0)
    width = 0.8 / len(arms)
    for ax, metric, ylabel in ((ax_sw, "sw", "sliced Wasserstein SW₂"), (ax_mmd, "mmd", "MMD²")):
        for j, arm in enumerate(arms):
            means = [statistics.fmean(parts[n]["arms"][arm][metric]) for n in names]
            ax.bar([i + (j - (len(arms) - 1) / 2) * width for i in range(len(names))], means, width,
                   label=arm, color=f"C{j}")
        ax.scatter(range(len(names)), [parts[n]["floor"][metric] for n in names], marker="_", s=400,
                   color="k", label="held-out floor", zorder=3)
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel(ylabel + " to held-out data (lower is better)")
    ax_sw.legend(fontsize=7)
    ctx.save_figure(fig, "sample_quality")

    fig, (ax,) = figure(width=5.0)
    steps = parts[names[0]]["error_steps"]
    curves = {arm: [statistics.fmean(e[k] for part in parts.values() for e in part["arms"][arm]["eps_error"])
                    for k in range(len(steps))] for arm in arms}
    plot_lines(ax, steps, curves, xlabel="time step t", ylabel="E‖ε̂ − ε‖² on held-out data",
               title="error of each arm, converted to ε", logx=True, logy=True)
    ctx.save_figure(fig, "eps_error")
