"""Reproduction: flows of length K fitted to the four 2-D energies of Table 1 (Rezende & Mohamed, Sec. 6.1).

For every energy U1–U4 (plus a wall outside the paper's plotting box [−4, 4]², see ``box_wall``),
every flow kind (planar, radial) and every flow length K, a flow q_K (learned diagonal Gaussian base,
K maps) is fitted by minimising the free energy F = E_q[log q_K(z_K) + U(z_K)] with Adam on
reparametrised samples. log Z is computed by the midpoint rule on a fine grid, which turns the
free-energy estimate into a true KL(q_K ‖ p) = F + log Z ≥ 0, estimated on fresh samples.

Measured: KL and its Monte Carlo standard error against K for each energy and kind; figures of the
KL curves and of the fitted densities q_K (evaluated through the inverse maps) next to the targets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import ENERGIES, FLOW_KINDS, NormalizingFlow, box_wall, free_energy, log_normaliser


@dataclass
class Config:
    energies: tuple[str, ...] = ("U1", "U2", "U3", "U4")
    flow_kinds: tuple[str, ...] = ("planar", "radial")
    flow_lengths: tuple[int, ...] = (2, 8, 32)  # K, as in the paper's Fig. 3
    # training: Adam on F with fresh samples each step, cosine-decayed learning rate
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-2
    init_scale: float = 0.01  # flow parameters start uniform in ±init_scale (close to the identity)
    # targets: the paper's energies plus a quadratic wall outside [−box, box]²
    box: float = 4.0
    wall_scale: float = 0.5
    # evaluation
    eval_samples: int = 20000
    grid_limit: float = 8.0  # log Z by the midpoint rule on [−limit, limit]²
    grid_points: int = 1601
    density_points: int = 80  # resolution of the density images
    threads: int = 1

    def validate(self) -> None:
        unknown = set(self.energies) - set(ENERGIES)
        if not self.energies or unknown:
            raise ValueError(f"energies must be a non-empty subset of {sorted(ENERGIES)}, "
                             f"got {self.energies}")
        if not self.flow_kinds or set(self.flow_kinds) - set(FLOW_KINDS):
            raise ValueError(f"flow_kinds must be a non-empty subset of {FLOW_KINDS}, got {self.flow_kinds}")
        lengths = self.flow_lengths
        if len(lengths) < 2 or any(k < 1 for k in lengths) or list(lengths) != sorted(set(lengths)):
            raise ValueError(f"flow_lengths needs at least two increasing lengths >= 1, got {lengths}")
        for name in ("steps", "batch_size", "eval_samples", "grid_points", "density_points"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "init_scale", "box", "wall_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not self.grid_limit > self.box:
            raise ValueError(f"grid_limit must exceed box={self.box}, got {self.grid_limit}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"energies": ("U1", "U3"), "flow_lengths": (1, 4), "steps": 30, "eval_samples": 2000,
              "grid_points": 401, "density_points": 24},
    "default": {},
    "full": {"flow_lengths": (1, 2, 4, 8, 16, 32), "steps": 10000, "batch_size": 256, "eval_samples": 100000},
}


def target(name: str, config: Config):
    """U(z) of the paper plus the wall outside the box, so that e^{−U} is normalisable."""
    energy = ENERGIES[name]
    return lambda z: energy(z) + box_wall(z, config.box, config.wall_scale)


def density_grid(config: Config) -> torch.Tensor:
    """Cell centres of the plotting box [−box, box]², shape [points², 2] (row = z2, column = z1)."""
    edges = torch.linspace(-config.box, config.box, config.density_points + 1, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    z2, z1 = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack([z1, z2], dim=-1).reshape(-1, 2)


def fit(name: str, kind: str, length: int, log_z: float, config: Config, ctx) -> dict:
    """Train one flow on one energy; return the KL estimate, the loss curve and the density image."""
    energy = target(name, config)
    torch.manual_seed(ctx.seed)
    flow = NormalizingFlow(2, length, kind, init_scale=config.init_scale).double()
    optimizer = torch.optim.Adam(flow.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    curve, start, label = [], time.perf_counter(), f"{name}_{kind}_K{length}"
    with ctx.progress_bar(config.steps, f"{name} {kind} K={length}") as bar:
        for step in range(config.steps):
            loss = free_energy(flow, energy, config.batch_size, generator).mean()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{label}: non-finite free energy at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            if step % max(1, config.steps // 100) == 0 or step == config.steps - 1:
                curve.append([step, loss.item() + log_z])
                ctx.log({f"{label}_kl_batch": loss.item() + log_z}, step=step)
            bar.update(1, kl=loss.item() + log_z)
    with torch.no_grad():
        kl = free_energy(flow, energy, config.eval_samples, generator) + log_z
        log_q = flow.log_prob(density_grid(config))
    return {"kl": kl.mean().item(), "kl_std_error": (kl.std() / math.sqrt(len(kl))).item(),
            "curve": curve, "train_time_s": time.perf_counter() - start,
            "density": [float(f"{v:.4g}") for v in log_q.exp().tolist()]}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    log_z = ctx.stage("log_normalisers", lambda: {
        name: log_normaliser(target(name, config), config.grid_limit, config.grid_points)
        for name in config.energies})
    fits = {}
    for name in config.energies:
        for kind in config.flow_kinds:
            for length in config.flow_lengths:
                fits[name, kind, length] = ctx.stage(
                    f"fit_{name}_{kind}_K{length}",
                    lambda n=name, k=kind, m=length: fit(n, k, m, log_z[n], config, ctx))

    k_min, k_max = config.flow_lengths[0], config.flow_lengths[-1]
    metrics: dict[str, float] = {}
    checks = []
    for name in config.energies:
        metrics[f"log_z_{name}"] = log_z[name]
    for kind in config.flow_kinds:
        mean_kl = {}
        for length in config.flow_lengths:
            for name in config.energies:
                part = fits[name, kind, length]
                metrics[f"kl_{kind}_{name}_K{length}"] = part["kl"]
                metrics[f"kl_se_{kind}_{name}_K{length}"] = part["kl_std_error"]
            mean_kl[length] = sum(fits[n, kind, length]["kl"] for n in config.energies) / len(config.energies)
            metrics[f"kl_{kind}_mean_K{length}"] = mean_kl[length]
        for shorter, longer in zip(config.flow_lengths, config.flow_lengths[1:], strict=False):
            checks.append(Check(f"{kind}: mean KL over the energies falls from K={shorter} to K={longer}",
                                mean_kl[longer], "<", mean_kl[shorter], f"mean KL at K={shorter}"))
        for name in config.energies:
            checks.append(Check(f"{kind} on {name}: KL at K={k_max} below K={k_min}",
                                fits[name, kind, k_max]["kl"], "<", fits[name, kind, k_min]["kl"],
                                f"KL at K={k_min}"))
    metrics["train_time_s"] = sum(part["train_time_s"] for part in fits.values())
    largest_se = max(part["kl_std_error"] for part in fits.values())
    figures(config, ctx, fits)
    notes = (
        f"KL(q_K || p) = F + log Z with log Z from a {config.grid_points}² midpoint grid on "
        f"[-{config.grid_limit:g}, {config.grid_limit:g}]²; Monte Carlo standard errors of the KL estimates "
        f"are at most {largest_se:.2g} ({config.eval_samples} samples). The targets add a quadratic wall "
        f"outside [-{config.box:g}, {config.box:g}]² (scale {config.wall_scale:g}) because U2-U4 are not "
        f"normalisable in z1; the energies are the paper's inside the box. Training is {config.steps} Adam "
        f"steps of {config.batch_size} samples per flow, far below the paper's budget."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, fits: dict) -> None:
    from papers.core.plots import figure, plot_lines

    fig, axes = figure(ncols=len(config.flow_kinds))
    for ax, kind in zip(axes, config.flow_kinds, strict=True):
        series = {name: [fits[name, kind, k]["kl"] for k in config.flow_lengths] for name in config.energies}
        plot_lines(ax, config.flow_lengths, series, xlabel="flow length K", ylabel="KL(q_K || p) [nats]",
                   title=f"{kind} flows", logx=True)
        ax.minorticks_off()
        ax.set_xticks(config.flow_lengths, [str(k) for k in config.flow_lengths])
    ctx.save_figure(fig, "kl_vs_length")

    columns = [("target", None, None)] + [(f"{kind} K={k}", kind, k) for kind in config.flow_kinds
                                          for k in config.flow_lengths]
    fig, axes = figure(ncols=len(columns), nrows=len(config.energies), width=1.9, height=1.9)
    grid = density_grid(config)
    side, extent = config.density_points, [-config.box, config.box, -config.box, config.box]
    for row, name in enumerate(config.energies):
        with torch.no_grad():
            target_density = torch.exp(-target(name, config)(grid))
        for col, (title, kind, length) in enumerate(columns):
            ax = axes[row * len(columns) + col]
            image = target_density if kind is None else torch.tensor(fits[name, kind, length]["density"])
            ax.imshow(image.reshape(side, side), origin="lower", extent=extent, cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            ax.set_title(f"{name} {title}", fontsize=7)
    ctx.save_figure(fig, "densities")
