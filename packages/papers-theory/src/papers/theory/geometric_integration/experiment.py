"""Reproduction: long-time energy behaviour of four integrators, and learned dynamics with and without
Hamiltonian structure.

(a) Euler, RK4, symplectic Euler and leapfrog (Störmer–Verlet) on the pendulum (several amplitudes) and
    the Kepler problem (several eccentricities) for ``n_steps`` = 10⁵ steps, in float64. Measured: the
    relative energy error |H(y_n) − H(y_0)| / |H(y_0)| (worst over the batch) against time; its maximum
    over the first and the last tenth of the run; and the growth exponent log10(last / first): 0 for an
    error that stays bounded, 1 for one that grows linearly in time (a drift).
(b) Pendulum dynamics learned from noisy states paired with exact time derivatives (Greydanus et al.
    2019, Sec. 4): an MLP vector field g_θ(y) vs a Hamiltonian field J∇H_θ(y), same width, depth,
    optimiser and data. Both are rolled out from held-out initial states with the same RK4 step for a
    long horizon; measured: the true-energy error and the distance to the exact trajectory (dopri5,
    tight tolerance).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.theory.neural_ode import odeint

from .model import (
    INTEGRATORS,
    SYSTEMS,
    HamiltonianField,
    MLPField,
    integrate,
    kepler_initial_state,
    rollout,
)

F64 = torch.float64
LEARNED = ("mlp", "hnn")


@dataclass
class Config:
    # (a) integrators
    n_steps: int = 100_000
    record_every: int = 10
    pendulum_step: float = 0.1
    pendulum_amplitudes: tuple[float, ...] = (0.5, 1.0, 1.5, 2.5)  # q0 (rad), p0 = 0
    kepler_step: float = 0.01
    kepler_eccentricities: tuple[float, ...] = (0.3, 0.5, 0.6)
    bounded_exponent: float = 0.5  # growth exponent halfway between bounded (0) and linear drift (1)
    # (b) learned pendulum dynamics (Greydanus et al.: tanh MLPs, Adam 1e-3, full batch, noise 0.1;
    # 100 instead of their 200 hidden units to fit the CPU budget)
    train_trajectories: int = 20
    points_per_trajectory: int = 25
    train_span: float = 3.0
    radius_min: float = 0.5  # initial states (r cos φ, r sin φ) with r uniform in [radius_min, radius_max]
    radius_max: float = 1.5
    noise_std: float = 0.1
    hidden: int = 100
    layers: int = 2
    train_steps: int = 1500
    lr: float = 1e-3
    test_trajectories: int = 16
    rollout_step: float = 0.1
    rollout_steps: int = 2000
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        for name in ("n_steps", "record_every", "train_trajectories", "points_per_trajectory", "hidden",
                     "layers", "train_steps", "test_trajectories", "rollout_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_steps // self.record_every < 20:
            raise ValueError(f"n_steps / record_every must be >= 20 records, got {self.n_steps} / "
                             f"{self.record_every}")
        if self.rollout_steps < 20:
            raise ValueError(f"rollout_steps must be >= 20, got {self.rollout_steps}")
        for name in ("pendulum_step", "kepler_step", "train_span", "lr", "rollout_step", "radius_min"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not self.radius_max > self.radius_min:
            raise ValueError(f"radius_max must exceed radius_min, got {self.radius_max} <= {self.radius_min}")
        if not self.pendulum_amplitudes or not all(0 < a < math.pi for a in self.pendulum_amplitudes):
            raise ValueError(f"pendulum_amplitudes must lie in (0, π), got {self.pendulum_amplitudes}")
        if not self.kepler_eccentricities or not all(0 <= e < 1 for e in self.kepler_eccentricities):
            raise ValueError(f"kepler_eccentricities must lie in [0, 1), got {self.kepler_eccentricities}")
        if self.noise_std < 0:
            raise ValueError(f"noise_std must be >= 0, got {self.noise_std}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_steps": 1000, "record_every": 10, "pendulum_amplitudes": (1.0, 2.5),
              "kepler_eccentricities": (0.5,), "train_trajectories": 8, "points_per_trajectory": 10,
              "hidden": 16, "train_steps": 30, "test_trajectories": 4, "rollout_steps": 40},
    "default": {},
    "full": {"n_steps": 1_000_000, "record_every": 100, "hidden": 200, "train_trajectories": 50,
             "points_per_trajectory": 30, "train_steps": 5000, "rollout_steps": 5000},
}


# ----------------------------------------------------------------------------------------------------
# (a) energy error of the four integrators
# ----------------------------------------------------------------------------------------------------


def energy_error_summary(relative_error: Tensor) -> dict:
    """Max of a recorded error trace (rows = records after y0) over the first and last tenth of the run."""
    tenth = max(1, len(relative_error) // 10)
    first, last = relative_error[:tenth].max().item(), relative_error[-tenth:].max().item()
    growth = math.log10(last / first) if first > 0 and last > 0 and math.isfinite(last) else float("inf")
    return {"first_tenth": first, "last_tenth": last, "growth_exponent": growth}


def integrator_study(config: Config, ctx) -> dict:
    starts = {
        "pendulum": (torch.tensor([[a, 0.0] for a in config.pendulum_amplitudes], dtype=F64),
                     config.pendulum_step),
        "kepler": (kepler_initial_state(torch.tensor(config.kepler_eccentricities)), config.kepler_step),
    }
    out = {}
    with ctx.progress_bar(len(starts) * len(INTEGRATORS), "integrators") as bar:
        for name, (y0, h) in starts.items():
            system = SYSTEMS[name]
            energy0 = system.energy(y0)
            out[name] = {"step": h}
            for method in INTEGRATORS:
                start = time.perf_counter()
                states = integrate(system, method, y0, h, config.n_steps, config.record_every)
                seconds = time.perf_counter() - start
                relative = ((system.energy(states[1:]) - energy0).abs() / energy0.abs()).amax(-1)
                out[name][method] = {
                    **energy_error_summary(relative), "time_s": seconds,
                    "trace": relative.tolist(), "final_state": states[-1, 0].tolist(),
                }
                bar.update(1, system=name, method=method)
    return out


# ----------------------------------------------------------------------------------------------------
# (b) learned dynamics
# ----------------------------------------------------------------------------------------------------


def pendulum_states(n: int, config: Config, generator: torch.Generator) -> Tensor:
    """Initial states (r cos φ, r sin φ), r ~ U[radius_min, radius_max], φ ~ U[0, 2π): librations."""
    r = config.radius_min + (config.radius_max - config.radius_min) * torch.rand(n, generator=generator,
                                                                                   dtype=F64)
    phi = 2 * math.pi * torch.rand(n, generator=generator, dtype=F64)
    return torch.stack([r * phi.cos(), r * phi.sin()], -1)


def exact_trajectories(y0: Tensor, times: Tensor) -> Tensor:
    """Pendulum trajectories by dopri5 at tight tolerance: [len(times), batch, 2]."""
    field = SYSTEMS["pendulum"].field
    return odeint(lambda t, y: field(y), y0, times, rtol=1e-10, atol=1e-10)


def make_data(config: Config, generator: torch.Generator) -> dict:
    """Noisy states along short trajectories with the exact derivatives at the clean states."""
    times = torch.linspace(0, config.train_span, config.points_per_trajectory, dtype=F64)
    clean = exact_trajectories(pendulum_states(config.train_trajectories, config, generator), times)
    clean = clean.reshape(-1, 2)
    noisy = clean + config.noise_std * torch.randn(clean.shape, generator=generator, dtype=F64)
    return {"x": noisy.float(), "dxdt": SYSTEMS["pendulum"].field(clean).float()}


def train_field(model: nn.Module, data: dict, config: Config, ctx, name: str) -> dict:
    """Full-batch Adam on the mean squared error of the predicted time derivative."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()
    losses = []
    with ctx.progress_bar(config.train_steps, f"training {name}") as bar:
        for step in range(config.train_steps):
            loss = (model(data["x"]) - data["dxdt"]).square().mean()
            if not torch.isfinite(loss):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            if step % 100 == 0 or step == config.train_steps - 1:
                ctx.log({f"{name}_loss": loss.item()}, step=step)
            bar.update(1, loss=loss.item())
    model.eval()
    return {"final_train_loss": losses[-1], "losses": losses}


def learned_dynamics(config: Config, ctx) -> dict:
    generator = torch.Generator().manual_seed(ctx.seed)
    data = make_data(config, generator)
    y0 = pendulum_states(config.test_trajectories, config, generator)
    times = config.rollout_step * torch.arange(config.rollout_steps + 1, dtype=F64)
    truth = exact_trajectories(y0, times)
    system = SYSTEMS["pendulum"]
    energy0 = system.energy(y0)
    test_x = truth[:: max(1, config.rollout_steps // 50)].reshape(-1, 2)
    out = {"truth_example": truth[:, 0].tolist(), "state_radius": truth.norm(dim=-1).mean().item()}
    for name in LEARNED:
        torch.manual_seed(ctx.seed)
        cls = HamiltonianField if name == "hnn" else MLPField
        model = cls(dim=1, hidden=config.hidden, layers=config.layers)
        part = train_field(model, data, config, ctx, name)
        test_mse = (model(test_x.float()).detach().double() - system.field(test_x)).square().mean().item()
        start = time.perf_counter()
        path = rollout(lambda y, m=model: m(y.float()).detach().double(), y0, config.rollout_step,
                       config.rollout_steps)
        energy_error = (system.energy(path[1:]) - energy0).abs().mean(-1)  # mean over test trajectories
        distance = (path[1:] - truth[1:]).norm(dim=-1).mean(-1)
        part.update(energy_error_summary(energy_error))
        part.update({
            "test_derivative_mse": test_mse,
            "rollout_time_s": time.perf_counter() - start,
            "trajectory_error_mean": distance.mean().item(),
            "trajectory_error_final": distance[-1].item(),
            "energy_error_trace": energy_error.tolist(),
            "example": path[:, 0].tolist(),
        })
        if name == "hnn":
            with torch.no_grad():
                learned = model.hamiltonian(path.float()).double()
            part["learned_energy_drift"] = (learned - learned[0]).abs().max().item()
        out[name] = part
    return out


# ----------------------------------------------------------------------------------------------------


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    study = ctx.stage("integrators", lambda: integrator_study(config, ctx))
    learned = ctx.stage("learned_dynamics", lambda: learned_dynamics(config, ctx))

    metrics: dict = {}
    for name in ("pendulum", "kepler"):
        for method in INTEGRATORS:
            row = study[name][method]
            metrics[f"{name}_{method}_energy_error"] = row["last_tenth"]
            metrics[f"{name}_{method}_growth_exponent"] = row["growth_exponent"]
            metrics[f"{name}_{method}_time_s"] = row["time_s"]
    for name in LEARNED:
        part = learned[name]
        for key in ("final_train_loss", "test_derivative_mse", "last_tenth", "growth_exponent",
                    "trajectory_error_mean", "trajectory_error_final"):
            label = {"last_tenth": "energy_error", "growth_exponent": "energy_growth_exponent"}.get(key, key)
            metrics[f"{name}_{label}"] = part[key]
    metrics["hnn_learned_energy_drift"] = learned["hnn"]["learned_energy_drift"]

    bound = config.bounded_exponent
    checks = []
    for name in ("pendulum", "kepler"):
        rows = study[name]
        for method in ("symplectic_euler", "leapfrog"):
            checks.append(Check(
                f"(a) {name}: {method} energy error stays bounded over {config.n_steps} steps",
                rows[method]["growth_exponent"], "<", bound,
                f"growth exponent log10(last/first tenth) {bound:g}, halfway between bounded (0) and "
                f"linear drift (1)"))
        checks.append(Check(
            f"(a) {name}: RK4 energy error drifts (grows more than leapfrog's)",
            rows["rk4"]["growth_exponent"], ">", rows["leapfrog"]["growth_exponent"],
            "leapfrog growth exponent"))
        checks.append(Check(
            f"(a) {name}: Euler's energy error ends larger than symplectic Euler's (both first order)",
            rows["euler"]["last_tenth"], ">", rows["symplectic_euler"]["last_tenth"],
            "symplectic Euler, last tenth"))
    checks += [
        Check("(b) Hamiltonian field drifts less in true energy than the MLP field (same RK4 rollout)",
              learned["hnn"]["last_tenth"], "<", learned["mlp"]["last_tenth"], "MLP energy error"),
        Check("(b) Hamiltonian field's long-horizon trajectory error is below the MLP field's",
              learned["hnn"]["trajectory_error_mean"], "<", learned["mlp"]["trajectory_error_mean"],
              "MLP mean distance to the exact trajectory"),
    ]
    figures(config, ctx, study, learned)
    horizon = config.rollout_steps * config.rollout_step
    notes = (
        f"(a) Relative energy error, worst over the batch, max over the last tenth of {config.n_steps} "
        f"steps: pendulum (h={config.pendulum_step:g}) "
        + ", ".join(f"{m} {study['pendulum'][m]['last_tenth']:.2g}" for m in INTEGRATORS)
        + f"; Kepler (h={config.kepler_step:g}) "
        + ", ".join(f"{m} {study['kepler'][m]['last_tenth']:.2g}" for m in INTEGRATORS)
        + ". Growth exponents (0 bounded, 1 linear drift): pendulum "
        + ", ".join(f"{m} {study['pendulum'][m]['growth_exponent']:.2f}" for m in INTEGRATORS)
        + "; Kepler "
        + ", ".join(f"{m} {study['kepler'][m]['growth_exponent']:.2f}" for m in INTEGRATORS)
        + " (an Euler error near 1 means the orbit has escaped: it saturates instead of drifting). "
        "Wall time per 10⁵ steps (whole batch): "
        + ", ".join(f"{m} {study['pendulum'][m]['time_s'] * 1e5 / config.n_steps:.1f} s" for m in INTEGRATORS)
        + f" (pendulum). (b) Rollouts of {config.rollout_steps} RK4 steps (t = {horizon:g}); mean absolute "
        f"true-energy error in the last tenth: HNN {learned['hnn']['last_tenth']:.3g}, MLP "
        f"{learned['mlp']['last_tenth']:.3g}; the HNN's own H_θ changes by at most "
        f"{learned['hnn']['learned_energy_drift']:.2g} along its rollout (RK4 truncation only). Mean "
        f"distance to the exact trajectory over the horizon: HNN "
        f"{learned['hnn']['trajectory_error_mean']:.3g}, MLP "
        f"{learned['mlp']['trajectory_error_mean']:.3g}, against a mean state radius "
        f"{learned['state_radius']:.3g}: a distance near the radius means the rollout is out of phase, "
        f"which conserving energy does not prevent."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, study: dict, learned: dict) -> None:
    from papers.core.plots import figure, plot_lines

    fig, axes = figure(ncols=2)
    for ax, name in zip(axes, ("pendulum", "kepler"), strict=True):
        rows = study[name]
        times = [rows["step"] * config.record_every * (i + 1) for i in range(len(rows["leapfrog"]["trace"]))]
        stride = max(1, len(times) // 2000)
        plot_lines(ax, times[::stride], {m: rows[m]["trace"][::stride] for m in INTEGRATORS},
                   xlabel="time", ylabel="relative energy error", title=f"{name}, h = {rows['step']:g}",
                   logx=True, logy=True, marker="")
    ctx.save_figure(fig, "energy_error")

    fig, (ax_energy, ax_phase) = figure(ncols=2)
    steps = len(learned["mlp"]["energy_error_trace"])
    times = [config.rollout_step * (i + 1) for i in range(steps)]
    plot_lines(ax_energy, times, {"MLP field": learned["mlp"]["energy_error_trace"],
                                  "Hamiltonian field": learned["hnn"]["energy_error_trace"]},
               xlabel="time", ylabel="mean |H(y_t) − H(y_0)|", title="learned pendulum, RK4 rollouts",
               logy=True, marker="")
    for label, path in (("exact", learned["truth_example"]), ("MLP field", learned["mlp"]["example"]),
                        ("Hamiltonian field", learned["hnn"]["example"])):
        ax_phase.plot([s[0] for s in path], [s[1] for s in path], lw=0.6, label=label)
    ax_phase.set_xlabel("q")
    ax_phase.set_ylabel("p")
    ax_phase.set_title("one test trajectory")
    ax_phase.legend(fontsize=7)
    ctx.save_figure(fig, "learned_dynamics")
