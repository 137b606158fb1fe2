"""Reproduction: modelling velocity instead of position, in three parts.

(a) Depth sweep: plain vs residual MLPs of 4–64 layers on interleaved spirals; final training loss
    (best of a small learning-rate grid for each architecture and depth) and first-layer gradient norm
    at initialisation.
(b) Dynamics: one MLP learns the pendulum, Van der Pol and Lotka–Volterra flows as the next state,
    the increment, or the derivative integrated by RK4; one-step and rollout errors on held-out
    initial conditions at several sampling steps Δt.
(c) ResNet = Euler step: a weight-tied, time-conditioned residual net trained with N = 10 steps is
    evaluated at other N and with an adaptive Dormand–Prince solver; untied residual nets, refined by
    sub-stepping each block, are the contrast. Run on a random-teacher regression and on a spirals
    classification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import geometric_mean, linear_regression, median
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.core.experiment import Check, Result
from papers.theory.neural_ode import odeint

from .data import SYSTEMS, simulate, spirals
from .model import PARAMETRISATIONS, DeepMLP, StepModel, TiedResNet, UntiedResNet

ODE_TASKS = ("teacher", "spirals")


@dataclass
class Config:
    """Every hyperparameter of the three parts; presets override these defaults."""

    # (a) depth sweep: plain vs residual MLP on spirals
    depths: tuple[int, ...] = (4, 8, 16, 32, 64)  # number of linear layers
    width: int = 64
    residual_scale_exponent: float = 0.5  # residual branch scale α = (depth − 2)^(−exponent)
    learning_rates: tuple[float, ...] = (3e-4, 1e-3, 3e-3)  # each (arm, depth) keeps its best
    depth_iterations: int = 800
    depth_batch_size: int = 128
    depth_seeds: int = 1  # training runs averaged per (arm, depth, learning rate)
    gradient_inits: int = 8  # initialisations over which the first-layer gradient norm is measured
    spiral_points: int = 2048
    spiral_classes: int = 4
    spiral_turns: float = 2.5
    spiral_dim: int = 8
    spiral_noise: float = 0.02
    # (b) dynamics: next state vs increment vs derivative
    systems: tuple[str, ...] = ("pendulum", "van_der_pol", "lotka_volterra")
    sampling_steps: tuple[float, ...] = (0.02, 0.1, 0.3)  # Δt between observed states
    train_trajectories: int = 128
    test_trajectories: int = 32
    rollout_steps: int = 100  # length of every trajectory, for training and for rollouts
    reference_step: float = 0.002  # largest RK4 step of the simulator
    dynamics_width: int = 64
    dynamics_iterations: int = 1000
    dynamics_lr: float = 3e-3
    dynamics_batch_size: int = 256
    derivative_integrator: Literal["rk4", "euler"] = "rk4"
    # (c) ResNet = Euler step, on a random-teacher regression and a spirals classification
    ode_tasks: tuple[str, ...] = ("teacher", "spirals")
    ode_train_depth: int = 10  # N used in training; also the number of untied blocks
    ode_eval_depths: tuple[int, ...] = (5, 10, 20, 40, 80)
    ode_refinements: tuple[int, ...] = (1, 2, 4, 8)  # sub-steps m per untied block
    ode_state_dim: int = 16
    ode_width: int = 64
    ode_in_dim: int = 8
    teacher_out_dim: int = 2
    teacher_width: int = 64
    teacher_gain: float = 2.0
    ode_spiral_turns: float = 0.5  # spirals task: spiral_classes arms embedded in ode_in_dim dimensions
    ode_train_points: int = 2048
    ode_test_points: int = 1024
    ode_iterations: int = 1000
    ode_lr: float = 3e-3
    ode_batch_size: int = 256
    ode_rtol: float = 1e-7
    ode_atol: float = 1e-9
    # shared
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting, e.g. --threads)
    log_every: int = 100

    def validate(self) -> None:
        positive_ints = {
            "width": self.width, "depth_iterations": self.depth_iterations,
            "depth_batch_size": self.depth_batch_size, "depth_seeds": self.depth_seeds,
            "gradient_inits": self.gradient_inits, "spiral_points": self.spiral_points,
            "train_trajectories": self.train_trajectories, "test_trajectories": self.test_trajectories,
            "rollout_steps": self.rollout_steps, "dynamics_width": self.dynamics_width,
            "dynamics_iterations": self.dynamics_iterations, "dynamics_batch_size": self.dynamics_batch_size,
            "ode_train_depth": self.ode_train_depth, "ode_state_dim": self.ode_state_dim,
            "ode_width": self.ode_width, "ode_in_dim": self.ode_in_dim,
            "teacher_out_dim": self.teacher_out_dim, "teacher_width": self.teacher_width,
            "ode_train_points": self.ode_train_points, "ode_test_points": self.ode_test_points,
            "ode_iterations": self.ode_iterations, "ode_batch_size": self.ode_batch_size,
            "log_every": self.log_every,
        }
        for name, value in positive_ints.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        positive_floats = {
            "spiral_turns": self.spiral_turns, "reference_step": self.reference_step,
            "dynamics_lr": self.dynamics_lr, "teacher_gain": self.teacher_gain,
            "ode_spiral_turns": self.ode_spiral_turns, "ode_lr": self.ode_lr,
            "ode_rtol": self.ode_rtol, "ode_atol": self.ode_atol,
        }
        for name, value in positive_floats.items():
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if len(self.depths) < 2 or min(self.depths) < 3 or list(self.depths) != sorted(set(self.depths)):
            raise ValueError(f"depths must be at least two increasing values >= 3, got {self.depths}")
        if not self.learning_rates or not all(lr > 0 and math.isfinite(lr) for lr in self.learning_rates):
            raise ValueError(f"learning_rates must be positive numbers, got {self.learning_rates}")
        if not self.residual_scale_exponent >= 0:
            raise ValueError(f"residual_scale_exponent must be >= 0, got {self.residual_scale_exponent}")
        if self.spiral_classes < 2 or self.spiral_dim < 2 or self.spiral_noise < 0:
            raise ValueError("spiral_classes and spiral_dim must be >= 2 and spiral_noise >= 0")
        unknown = [s for s in self.systems if s not in SYSTEMS]
        if not self.systems or unknown:
            raise ValueError(f"unknown systems {unknown}; choose from {', '.join(SYSTEMS)}")
        if len(self.sampling_steps) < 2 or list(self.sampling_steps) != sorted(set(self.sampling_steps)) \
                or self.sampling_steps[0] <= 0:
            raise ValueError(f"sampling_steps must be at least two increasing positive values, "
                             f"got {self.sampling_steps}")
        if self.derivative_integrator not in ("rk4", "euler"):
            raise ValueError(f"derivative_integrator must be 'rk4' or 'euler', "
                             f"got {self.derivative_integrator!r}")
        if len(self.ode_eval_depths) < 2 or min(self.ode_eval_depths) < 1 \
                or list(self.ode_eval_depths) != sorted(set(self.ode_eval_depths)):
            raise ValueError(f"ode_eval_depths must be at least two increasing values >= 1, "
                             f"got {self.ode_eval_depths}")
        if self.ode_train_depth not in self.ode_eval_depths:
            raise ValueError(f"ode_eval_depths {self.ode_eval_depths} must include ode_train_depth "
                             f"{self.ode_train_depth}")
        if not self.ode_refinements or self.ode_refinements[0] != 1 or min(self.ode_refinements) < 1 \
                or list(self.ode_refinements) != sorted(set(self.ode_refinements)):
            raise ValueError(f"ode_refinements must be increasing values starting at 1, "
                             f"got {self.ode_refinements}")
        if not self.ode_tasks or len(set(self.ode_tasks)) != len(self.ode_tasks) \
                or not set(self.ode_tasks) <= set(ODE_TASKS):
            raise ValueError(f"ode_tasks must be distinct values from {ODE_TASKS}, got {self.ode_tasks}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "depths": (3, 6), "width": 16, "learning_rates": (1e-3, 3e-3), "depth_iterations": 20,
        "gradient_inits": 2, "spiral_points": 256, "spiral_classes": 3,
        "systems": ("pendulum", "lotka_volterra"), "sampling_steps": (0.05, 0.2),
        "train_trajectories": 8, "test_trajectories": 4, "rollout_steps": 10, "reference_step": 0.01,
        "dynamics_width": 16, "dynamics_iterations": 20,
        "ode_eval_depths": (5, 10, 20), "ode_refinements": (1, 2), "ode_state_dim": 4, "ode_width": 16,
        "teacher_width": 16, "ode_train_points": 128, "ode_test_points": 64, "ode_iterations": 20,
        "ode_rtol": 1e-5, "ode_atol": 1e-7, "log_every": 10,
    },
    "default": {},
    "full": {
        "depth_iterations": 4000, "depth_seeds": 3, "gradient_inits": 32,
        "learning_rates": (1e-4, 3e-4, 1e-3, 3e-3),
        "sampling_steps": (0.01, 0.03, 0.1, 0.3), "train_trajectories": 512, "rollout_steps": 200,
        "dynamics_iterations": 8000, "ode_iterations": 4000, "ode_eval_depths": (5, 10, 20, 40, 80, 160),
        "ode_refinements": (1, 2, 4, 8, 16),
    },
}


# ----------------------------------------------------------------------------------------------------
# The training loop shared by the three parts
# ----------------------------------------------------------------------------------------------------


ARMS = ("plain", "residual")


def train(model: nn.Module, loss_fn: Callable[..., Tensor], tensors: Sequence[Tensor], *, iterations: int,
          batch_size: int, lr: float, seed: int, name: str, ctx, log_every: int) -> None:
    """Adam with cosine decay of the learning rate to zero, on minibatches drawn with replacement.

    ``loss_fn(*batch)`` is minimised; the minibatch loss is logged every ``log_every`` iterations to the
    run's metrics as ``{"model": name, "loss": …}``. A non-finite loss raises ``FloatingPointError``
    naming the model and iteration.
    """
    device = tensors[0].device
    fused = device.type in ("cpu", "cuda")
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, iterations)
    generator = torch.Generator().manual_seed(seed)
    n = tensors[0].shape[0]
    for iteration in range(iterations):
        index = torch.randint(n, (batch_size,), generator=generator).to(device)
        loss = loss_fn(*(t[index] for t in tensors))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: non-finite loss {loss.item()} at iteration {iteration}")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        if iteration % log_every == 0 or iteration == iterations - 1:
            ctx.log({"model": name, "loss": loss.item()}, step=iteration)


def _seed(*parts: int) -> int:
    """A deterministic seed for one model or dataset, from the run seed and its coordinates."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % 2**62
    return value


def _loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y against log x."""
    return linear_regression([math.log(x) for x in xs], [math.log(y) for y in ys]).slope


# ----------------------------------------------------------------------------------------------------
# (a) depth sweep
# ----------------------------------------------------------------------------------------------------


def depth_sweep(config: Config, ctx) -> dict:
    """Final training loss and first-layer gradient norm at init for plain and residual MLPs."""
    device = ctx.device
    x, y = spirals(config.spiral_points, config.spiral_classes, config.spiral_dim, config.spiral_noise,
                   torch.Generator().manual_seed(_seed(ctx.seed, 1)), turns=config.spiral_turns)
    x, y = x.to(device), y.to(device)

    def make(depth: int, residual: bool, init_seed: int) -> DeepMLP:
        torch.manual_seed(init_seed)
        scale = (depth - 2) ** -config.residual_scale_exponent
        model = DeepMLP(config.spiral_dim, config.spiral_classes, config.width, depth, residual, scale)
        return model.to(device)

    arms = {arm: arm == "residual" for arm in ARMS}
    out: dict = {"depths": list(config.depths), "learning_rates": list(config.learning_rates)}
    total = len(config.depths) * len(arms) * (1 + len(config.learning_rates) * config.depth_seeds)
    with ctx.progress_bar(total, "(a) depth sweep") as bar:
        for arm, residual in arms.items():
            grads, losses, accuracies, best_lrs = [], [], [], []
            for depth in config.depths:
                norms = []
                for i in range(config.gradient_inits):
                    model = make(depth, residual, _seed(ctx.seed, 2, depth, i))
                    F.cross_entropy(model(x), y).backward()
                    norms.append(model.input_layer.weight.grad.norm().item())
                grads.append(sorted(norms))
                bar.update(1)
                by_lr = {}
                for lr in config.learning_rates:
                    runs = []
                    for s in range(config.depth_seeds):
                        model = make(depth, residual, _seed(ctx.seed, 3, depth, s))
                        name = f"depth_sweep/{arm}/depth{depth}/lr{lr:g}/seed{s}"
                        try:
                            train(model, lambda xb, yb, m=model: F.cross_entropy(m(xb), yb), (x, y),
                                  iterations=config.depth_iterations, batch_size=config.depth_batch_size,
                                  lr=lr, seed=_seed(ctx.seed, 4, s), name=name, ctx=ctx,
                                  log_every=config.log_every)
                            with torch.no_grad():
                                logits = model(x)
                            runs.append((F.cross_entropy(logits, y).item(),
                                         (logits.argmax(1) == y).float().mean().item()))
                        except FloatingPointError:  # a diverged run counts as an infinite loss
                            runs.append((math.inf, 0.0))
                        bar.update(1, **{arm: depth})
                    by_lr[lr] = (sum(r[0] for r in runs) / len(runs), sum(r[1] for r in runs) / len(runs))
                best = min(by_lr, key=lambda lr: by_lr[lr][0])
                losses.append(by_lr[best][0])
                accuracies.append(by_lr[best][1])
                best_lrs.append(best)
                out.setdefault(f"{arm}_loss_by_lr", []).append([by_lr[lr][0] for lr in config.learning_rates])
            out[arm] = {"loss": losses, "accuracy": accuracies, "best_lr": best_lrs, "grad_norms": grads,
                        "grad_median": [median(g) for g in grads]}
    return out


def depth_checks(part: dict) -> list[Check]:
    plain, residual = part["plain"], part["residual"]
    deepest = part["depths"][-1]
    shallow_plain = min(plain["loss"][:-1])
    grad_ratio = {arm: part[arm]["grad_median"][-1] / part[arm]["grad_median"][0] for arm in ARMS}
    return [
        Check(f"(a) plain: {deepest} layers train worse than the best shallower plain net",
              plain["loss"][-1], ">", shallow_plain, "best shallower plain training loss",
              note="training loss, best learning rate of the grid for each depth"),
        Check(f"(a) residual beats plain at {deepest} layers", residual["loss"][-1], "<", plain["loss"][-1],
              f"plain training loss at {deepest} layers"),
        Check(f"(a) first-layer gradient at init shrinks more with depth in plain nets "
              f"({part['depths'][0]}→{deepest} layers)",
              grad_ratio["plain"], "<", grad_ratio["residual"], "same ratio for residual nets",
              note="ratio of median first-layer gradient norms, deepest / shallowest"),
    ]


def depth_figure(part: dict, ctx) -> None:
    from papers.core.plots import figure, plot_lines

    depths = part["depths"]
    fig, (ax_loss, ax_grad, ax_acc) = figure(ncols=3, width=4.0)
    plot_lines(ax_loss, depths, {arm: part[arm]["loss"] for arm in ARMS},
               xlabel="depth (linear layers)", ylabel="final training loss", title="training loss (best lr)",
               logx=True, logy=True)
    for j, arm in enumerate(ARMS):
        norms = part[arm]["grad_norms"]
        ax_grad.fill_between(depths, [min(n) for n in norms], [max(n) for n in norms], color=f"C{j}",
                             alpha=0.2)
    plot_lines(ax_grad, depths, {arm: part[arm]["grad_median"] for arm in ARMS},
               xlabel="depth (linear layers)", ylabel="‖∂L/∂W_in‖ at init",
               title="first-layer gradient (median, min–max)", logx=True, logy=True)
    plot_lines(ax_acc, depths, {arm: part[arm]["accuracy"] for arm in ARMS},
               xlabel="depth (linear layers)", ylabel="training accuracy", title="training accuracy",
               logx=True)
    for ax in (ax_loss, ax_grad, ax_acc):
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
    ctx.save_figure(fig, "depth_sweep")


# ----------------------------------------------------------------------------------------------------
# (b) dynamics: next state vs increment vs derivative
# ----------------------------------------------------------------------------------------------------


def dynamics(config: Config, ctx) -> dict:
    """One-step and rollout errors of the three parametrisations for every system and Δt.

    Errors are root-mean-square over time steps and coordinates of ``(x̂ − x)/σ_x`` (``σ_x``: the
    per-coordinate std of the training states), averaged over held-out trajectories.
    """
    device = ctx.device
    out: dict = {"sampling_steps": list(config.sampling_steps), "systems": {}}
    total = len(config.systems) * len(config.sampling_steps) * len(PARAMETRISATIONS)
    with ctx.progress_bar(total, "(b) dynamics") as bar:
        for s_index, system_name in enumerate(config.systems):
            system = SYSTEMS[system_name]
            per_dt = []
            for d_index, dt in enumerate(config.sampling_steps):
                generator = torch.Generator().manual_seed(_seed(ctx.seed, 5, s_index, d_index))
                substeps = max(1, math.ceil(dt / config.reference_step - 1e-9))
                train_states, test_states = (
                    simulate(system, system.sample_initial(n, generator), dt, config.rollout_steps, substeps)
                    .float().to(device)
                    for n in (config.train_trajectories, config.test_trajectories)
                )
                x, x_next = train_states[:, :-1].reshape(-1, 2), train_states[:, 1:].reshape(-1, 2)
                state_std = train_states.reshape(-1, 2).std(dim=0)
                cell = {"dt": dt, "one_step": {}, "rollout": {}, "example": {"true": test_states[0].tolist()}}
                for parametrisation in PARAMETRISATIONS:
                    torch.manual_seed(_seed(ctx.seed, 6, s_index, d_index))
                    net = nn.Sequential(
                        nn.Linear(2, config.dynamics_width), nn.Tanh(),
                        nn.Linear(config.dynamics_width, config.dynamics_width), nn.Tanh(),
                        nn.Linear(config.dynamics_width, 2),
                    )
                    mean, std = StepModel.target_statistics(x, x_next, parametrisation, dt)
                    model = StepModel(net, parametrisation, dt, x.mean(0), x.std(0), mean, std,
                                      integrator=config.derivative_integrator).to(device)
                    train(model, model.loss, (x, x_next), iterations=config.dynamics_iterations,
                          batch_size=config.dynamics_batch_size, lr=config.dynamics_lr,
                          seed=_seed(ctx.seed, 7, s_index, d_index),
                          name=f"dynamics/{system_name}/dt{dt:g}/{parametrisation}", ctx=ctx,
                          log_every=config.log_every)
                    with torch.no_grad():
                        one_step = ((model(test_states[:, :-1]) - test_states[:, 1:]) / state_std)
                        rollout = model.rollout(test_states[:, 0], config.rollout_steps)
                    rollout_error = ((rollout - test_states) / state_std).pow(2).mean(dim=(1, 2)).sqrt()
                    cell["one_step"][parametrisation] = one_step.pow(2).mean().sqrt().item()
                    cell["rollout"][parametrisation] = rollout_error.mean().item()
                    cell["example"][parametrisation] = rollout[0].tolist()
                    bar.update(1, **{system_name: dt})
                per_dt.append(cell)
            out["systems"][system_name] = per_dt
    return out


def dynamics_summary(part: dict) -> dict[str, float]:
    """Geometric mean over systems of the rollout error, per parametrisation and Δt."""
    summary = {}
    for i, dt in enumerate(part["sampling_steps"]):
        for p in PARAMETRISATIONS:
            values = [cells[i]["rollout"][p] for cells in part["systems"].values()]
            summary[f"rollout_{p}_dt{dt:g}"] = geometric_mean(values)
    return summary


def dynamics_checks(part: dict) -> list[Check]:
    cells = [cell for per_dt in part["systems"].values() for cell in per_dt]
    error = {p: geometric_mean([c["rollout"][p] for c in cells]) for p in PARAMETRISATIONS}

    def advantage(p: str, i: int) -> float:
        return geometric_mean([per_dt[i]["rollout"]["state"] / per_dt[i]["rollout"][p]
                                for per_dt in part["systems"].values()])

    small, large = part["sampling_steps"][0], part["sampling_steps"][-1]
    checks = [
        Check(f"(b) {p} model beats next-state model (rollout error)", error[p], "<", error["state"],
              "next-state model", note="geometric mean over systems and Δt of the normalised rollout RMSE")
        for p in ("increment", "derivative")
    ]
    checks += [
        Check(f"(b) {p} model's advantage is larger at Δt={small:g} than at Δt={large:g}",
              advantage(p, 0), ">", advantage(p, -1), f"advantage at Δt={large:g}",
              note="advantage = next-state rollout error / this model's, geometric mean over systems")
        for p in ("increment", "derivative")
    ]
    return checks


def dynamics_figures(part: dict, ctx) -> None:
    from papers.core.plots import figure

    systems = list(part["systems"])
    dts = part["sampling_steps"]
    fig, axes = figure(ncols=len(systems), nrows=2, width=4.0, height=3.2)
    width = 0.8 / len(PARAMETRISATIONS)
    for col, system in enumerate(systems):
        for row, kind in enumerate(("one_step", "rollout")):
            ax = axes[row * len(systems) + col]
            for j, p in enumerate(PARAMETRISATIONS):
                values = [cell[kind][p] for cell in part["systems"][system]]
                ax.bar([i + (j - 1) * width for i in range(len(dts))], values, width, label=p, color=f"C{j}")
            ax.set_yscale("log")
            ax.set_xticks(range(len(dts)), [f"Δt={dt:g}" for dt in dts])
            ax.set_title(f"{system}: {'one-step' if kind == 'one_step' else 'rollout'} error", fontsize=10)
            ax.set_ylabel("normalised RMSE")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    ctx.save_figure(fig, "dynamics_errors")

    fig, axes = figure(ncols=len(systems), nrows=2, width=4.0, height=3.6)
    for row, i in enumerate((0, len(dts) - 1)):
        for col, system in enumerate(systems):
            ax = axes[row * len(systems) + col]
            example = part["systems"][system][i]["example"]
            true = torch.tensor(example["true"])
            ax.plot(true[:, 0], true[:, 1], color="black", linewidth=2.5, alpha=0.4, label="true")
            for j, p in enumerate(PARAMETRISATIONS):
                path = torch.tensor(example[p])
                ax.plot(path[:, 0], path[:, 1], color=f"C{j}", linewidth=1, label=p)
            ax.plot(true[0, 0], true[0, 1], "ko", markersize=4)
            steps = len(example["true"]) - 1
            ax.set_title(f"{system}, Δt={dts[i]:g}, {steps} steps", fontsize=10)
            ax.set_xlabel("x₁")
            ax.set_ylabel("x₂")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    ctx.save_figure(fig, "dynamics_rollouts")


# ----------------------------------------------------------------------------------------------------
# (c) ResNet = Euler step
# ----------------------------------------------------------------------------------------------------


def ode_task_data(config: Config, task: str, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training and test data of part (c). ``teacher``: Gaussian inputs and standardised targets
    ``W_2 tanh(g W_1 x / √d)`` of a random one-hidden-layer teacher; ``spirals``: class labels."""
    generator = torch.Generator().manual_seed(seed)
    n = config.ode_train_points + config.ode_test_points
    if task == "spirals":
        x, y = spirals(n, config.spiral_classes, config.ode_in_dim, config.spiral_noise, generator,
                       turns=config.ode_spiral_turns)
    else:
        x = torch.randn(n, config.ode_in_dim, generator=generator)
        w1 = torch.randn(config.ode_in_dim, config.teacher_width, generator=generator)
        w2 = torch.randn(config.teacher_width, config.teacher_out_dim, generator=generator)
        y = torch.tanh(x @ w1 * config.teacher_gain / math.sqrt(config.ode_in_dim)) @ w2
        y = (y - y.mean(0)) / y.std(0)
    split = config.ode_train_points
    return x[:split], y[:split], x[split:], y[split:]


def euler_limit(config: Config, ctx, task: str) -> dict:
    """Trains a tied ResNet (N = ode_train_depth) and untied ResNets (step 1 and step 1/N) on ``task``
    (mean squared error for ``teacher``, cross-entropy for ``spirals``) and measures how their outputs
    and test loss change as the depth is refined, against adaptive-solver limits."""
    device = ctx.device
    task_index = ODE_TASKS.index(task)
    x, y, x_test, y_test = (t.to(device) for t in ode_task_data(config, task, _seed(ctx.seed, 8, task_index)))
    loss_fn = F.cross_entropy if task == "spirals" else F.mse_loss
    out_dim = config.spiral_classes if task == "spirals" else config.teacher_out_dim
    blocks = config.ode_train_depth
    dims = (config.ode_in_dim, config.ode_state_dim, config.ode_width, out_dim)
    builders = {
        "tied": lambda: TiedResNet(*dims),
        "untied": lambda: UntiedResNet(*dims, blocks=blocks, step=1.0),
        "untied_scaled": lambda: UntiedResNet(*dims, blocks=blocks, step=1.0 / blocks),
    }
    out: dict = {"task": task, "train_depth": blocks, "eval_depths": list(config.ode_eval_depths),
                 "refinements": list(config.ode_refinements)}
    with ctx.progress_bar(len(builders), f"(c) Euler / ODE, {task}") as bar:
        for name, build in builders.items():
            torch.manual_seed(_seed(ctx.seed, 9))
            model = build().to(device)
            depth = (blocks,) if name == "tied" else ()
            train(model, lambda xb, yb, m=model, d=depth: loss_fn(m(xb, *d), yb), (x, y),
                  iterations=config.ode_iterations, batch_size=config.ode_batch_size, lr=config.ode_lr,
                  seed=_seed(ctx.seed, 10), name=f"euler/{task}/{name}", ctx=ctx, log_every=config.log_every)
            out[name] = refinement_study(model, x_test.cpu().double(), y_test.cpu(), loss_fn, config)
            bar.update(1, model=name)
    return out


@torch.no_grad()
def refinement_study(model: nn.Module, x: Tensor, y: Tensor, loss_fn: Callable[[Tensor, Tensor], Tensor],
                     config: Config) -> dict:
    """Test loss and relative distance ``‖H − H_ODE‖_F / ‖H_ODE‖_F`` of the final hidden states to the
    continuous-depth limit, in float64 on the CPU, for every evaluated depth (tied) or refinement
    (untied). The limit is the adaptive Dormand–Prince solution: of ``dh/dt = f(h, t)`` on ``[0, 1]``
    (tied), or of ``dh/dt = f_k(h)`` on each block's interval in turn (untied). ``expansion`` is
    ``‖H_limit‖_F / ‖H_0‖_F``, how much the continuous flow stretches the lifted inputs."""
    model = model.cpu().double()
    options = {"rtol": config.ode_rtol, "atol": config.ode_atol, "method": "dopri5", "return_stats": True}
    h = h0 = model.lift(x)
    nfe = 0
    if isinstance(model, TiedResNet):
        path, stats = odeint(model.field, h, torch.tensor([0.0, 1.0], dtype=torch.float64), **options)
        h, nfe = path[-1], stats.nfe
        settings = list(config.ode_eval_depths)
        hidden = [model.hidden(x, n) for n in settings]
    else:
        for field in model.fields:
            path, stats = odeint(field, h, torch.tensor([0.0, model.step], dtype=torch.float64), **options)
            h, nfe = path[-1], nfe + stats.nfe
        settings = list(config.ode_refinements)
        hidden = [model.hidden(x, m) for m in settings]
    limit = h

    def loss(state: Tensor) -> float:
        target = y.to(state.dtype) if y.is_floating_point() else y
        return loss_fn(model.readout(state), target).item()

    return {
        "settings": settings,
        "loss": [loss(state) for state in hidden],
        "distance": [((state - limit).norm() / limit.norm()).item() for state in hidden],
        "limit_loss": loss(limit),
        "limit_nfe": nfe,
        "expansion": (limit.norm() / h0.norm()).item(),
    }


def euler_summary(part: dict) -> dict[str, float]:
    """Convergence orders, distances of the trained nets to their limits, losses and their relative
    change ``|L_limit − L_trained| / L_trained``."""
    tied, untied, scaled = part["tied"], part["untied"], part["untied_scaled"]
    trained = tied["settings"].index(part["train_depth"])

    def change(loss_trained: float, loss_limit: float) -> float:
        return abs(loss_limit - loss_trained) / loss_trained

    return {
        "tied_order": -_loglog_slope(tied["settings"], tied["distance"]),
        "tied_order_finest_pair": -_loglog_slope(tied["settings"][-2:], tied["distance"][-2:]),
        "tied_ode_nfe": tied["limit_nfe"],
        "tied_expansion": tied["expansion"],
        "tied_distance_trained": tied["distance"][trained],
        "untied_distance_trained": untied["distance"][0],
        "untied_scaled_distance_trained": scaled["distance"][0],
        "tied_loss_trained": tied["loss"][trained],
        "untied_loss_trained": untied["loss"][0],
        "untied_scaled_loss_trained": scaled["loss"][0],
        "tied_loss_change": change(tied["loss"][trained], tied["limit_loss"]),
        "untied_loss_change": change(untied["loss"][0], untied["limit_loss"]),
        "untied_scaled_loss_change": change(scaled["loss"][0], scaled["limit_loss"]),
    }


def euler_checks(summary: dict[str, float], task: str) -> list[Check]:
    return [
        Check(f"(c, {task}) tied net converges to its ODE at first order: distance of the order from 1",
              abs(summary["tied_order"] - 1),
              "<", 0.1, "forward Euler is first order (theory), tolerance 0.1",
              note="order = −slope of log ‖h_N − h_ODE‖ vs log N over all evaluated N"),
        Check(f"(c, {task}) refining to the continuous limit changes the tied net's test loss less than "
              f"the untied's", summary["tied_loss_change"], "<", summary["untied_loss_change"],
              "relative loss change of the untied net", note="|L_limit − L_trained| / L_trained"),
        Check(f"(c, {task}) the trained tied net is closer to its ODE limit than the untied net to its own",
              summary["tied_distance_trained"], "<", summary["untied_distance_trained"],
              "untied net's relative distance", note="‖H − H_limit‖_F / ‖H_limit‖_F on test inputs"),
    ]


def notes(depth: dict, summaries: dict[str, dict[str, float]]) -> str:
    """Measured context for the verdicts: the learning rates chosen in (a), the step-1/N untied net in (c)."""
    chosen = "; ".join(f"{arm} " + ", ".join(f"{lr:g}" for lr in depth[arm]["best_lr"]) for arm in ARMS)
    text = f"(a) Best learning rate per depth {tuple(depth['depths'])}: {chosen}."
    for task, summary in summaries.items():
        text += (
            f" (c, {task}) Untied net with step 1/N, h + f_k(h)/N: distance to its limit "
            f"{summary['untied_scaled_distance_trained']:.3g} (tied {summary['tied_distance_trained']:.3g}, "
            f"untied step 1: {summary['untied_distance_trained']:.3g}); relative test-loss change at the "
            f"limit {summary['untied_scaled_loss_change']:.3g} (tied {summary['tied_loss_change']:.3g}, "
            f"untied step 1: {summary['untied_loss_change']:.3g})."
        )
    return text


def euler_figure(parts: list[dict], ctx) -> None:
    from papers.core.plots import figure

    fig, axes = figure(ncols=2, nrows=len(parts), width=5.0, height=3.9)
    for row, part in enumerate(parts):
        _euler_panels(part, axes[2 * row], axes[2 * row + 1])
    ctx.save_figure(fig, "euler_convergence")


def _euler_panels(part: dict, ax_dist, ax_loss) -> None:
    blocks = part["train_depth"]
    styles = {
        "tied": ("tied  h + f(h, k/N)/N", "o-", 2.0),
        "untied": ("untied  h + f_k(h)", "s-", 1.2),
        "untied_scaled": (f"untied  h + f_k(h)/{blocks}", "^--", 1.2),
    }
    task = {"teacher": "teacher regression, MSE", "spirals": "spirals, cross-entropy"}[part["task"]]
    ticks = set()
    for j, (name, (label, style, linewidth)) in enumerate(styles.items()):
        study = part[name]
        steps = study["settings"] if name == "tied" else [blocks * m for m in study["settings"]]
        ticks.update(steps)
        look = {"color": f"C{j}", "linewidth": linewidth, "markersize": 5, "label": label}
        ax_dist.plot(steps, study["distance"], style, **look)
        ax_loss.plot(steps, study["loss"], style, **look)
        ax_loss.axhline(study["limit_loss"], color=f"C{j}", linestyle=":", linewidth=1.5)
    ax_loss.plot([], [], "k:", label="dopri5 limit (same colour)")
    tied = part["tied"]
    reference = [tied["distance"][0] * tied["settings"][0] / n for n in tied["settings"]]
    ax_dist.plot(tied["settings"], reference, "k:", linewidth=1, label="slope −1")
    ax_dist.set(ylabel="‖H − H_limit‖ / ‖H_limit‖", title=f"{task}\ndistance to the continuous limit")
    ax_loss.set(ylabel="test loss", title=f"{task}\ntest loss (trained with {blocks} steps)")
    ax_loss.set_ylim(bottom=0)
    ax_loss.axvline(blocks, color="grey", linewidth=0.8)
    ax_dist.set_yscale("log")
    for ax in (ax_dist, ax_loss):
        ax.set(xscale="log", xlabel="Euler steps through the whole depth")
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)], minor=False)
        ax.set_xticks([], minor=True)
        ax.legend(fontsize=7)


# ----------------------------------------------------------------------------------------------------
# The experiment
# ----------------------------------------------------------------------------------------------------


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    depth = ctx.stage("depth_sweep", lambda: depth_sweep(config, ctx))
    dyn = ctx.stage("dynamics", lambda: dynamics(config, ctx))
    euler = {task: ctx.stage(f"euler_limit_{task}", lambda task=task: euler_limit(config, ctx, task))
             for task in config.ode_tasks}

    depth_figure(depth, ctx)
    dynamics_figures(dyn, ctx)
    euler_figure(list(euler.values()), ctx)

    metrics: dict = {}
    for arm in ARMS:
        for d, loss in zip(depth["depths"], depth[arm]["loss"], strict=True):
            metrics[f"{arm}_loss_depth{d}"] = loss
    for arm in ARMS:
        for i in (0, -1):
            metrics[f"{arm}_grad_depth{depth['depths'][i]}"] = depth[arm]["grad_median"][i]
    metrics.update(dynamics_summary(dyn))
    summaries = {task: euler_summary(part) for task, part in euler.items()}
    for task, summary in summaries.items():
        metrics.update({f"{task}_{key}": value for key, value in summary.items()})
    dyn_errors = {name: [{k: v for k, v in cell.items() if k != "example"} for cell in cells]
                  for name, cells in dyn["systems"].items()}
    metrics["details"] = {"depth_sweep": depth, "dynamics": dyn_errors, "euler_limit": euler}
    checks = depth_checks(depth) + dynamics_checks(dyn)
    for task, summary in summaries.items():
        checks += euler_checks(summary, task)
    return Result(metrics=metrics, checks=checks, notes=notes(depth, summaries))
