"""Reproduction, two toy tasks in one dimension (Dupont et al. 2019, Sec. 3–4; Chen et al.'s θ(t)).

(a) Reflection x ↦ −x on x ~ U[−1, 1]: a native 1-D ODE flow (dynamics with time as input, the most
    flexible of the three) against the same flow with ``augment`` zero-padded extra dimensions, the
    output read off the first coordinate. Test MSE, test NFE, and the MSE of the best increasing map
    (isotonic regression of the test targets), which no 1-D ODE flow can beat.
(b) A task that needs a non-autonomous flow: from x0 ~ U[−1, 1], follow the trajectory
    x(t) = tan(arctan x0 + a sin 2πt) of dx/dt = 2πa cos(2πt)(1 + x²), observed at t = 1/T … 1; each
    trajectory rises and falls. Autonomous f(h), f(h, t) with time as input, and a hypernetwork θ(t)
    (all 1-D, no augmentation) are trained on the trajectory MSE. Test MSE, NFE, and the MSE of the
    best monotone fit to every test trajectory, which no autonomous 1-D flow can beat.

Every model is trained by backpropagation through the adaptive Dormand–Prince solver (``odeint``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import DYNAMICS, ODEFlow, isotonic_regression, make_field, monotone_trajectory_bound


@dataclass
class Config:
    # data
    n_train: int = 512
    n_test: int = 1000
    amplitude: float = 0.5  # a in x(t) = tan(arctan x0 + a sin 2πt)
    n_times: int = 10  # observation times t = 1/T … 1 in task (b)
    # models
    hidden: int = 32
    hyper_hidden: int = 16
    augment: int = 1  # extra zero dimensions of the augmented flow in task (a)
    # training (Adam, full batch, the same for every model)
    steps: int = 400
    lr: float = 1e-2
    rtol: float = 1e-3
    atol: float = 1e-4
    eval_tol: float = 1e-5  # rtol = atol for the reported test MSE and NFE
    threads: int = 1

    def validate(self) -> None:
        for name in ("n_train", "n_test", "n_times", "hidden", "hyper_hidden", "augment", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "rtol", "atol", "eval_tol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.amplitude < math.pi / 4:
            raise ValueError(f"amplitude must be in (0, π/4) so that x(t) stays finite, got {self.amplitude}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_train": 64, "n_test": 100, "steps": 8, "hidden": 8, "hyper_hidden": 4, "n_times": 4},
    "default": {},
    "full": {"n_train": 2048, "steps": 1500, "hidden": 64},
}


def observation_times(config: Config) -> Tensor:
    return torch.linspace(0.0, 1.0, config.n_times + 1)


def swinging_trajectories(x0: Tensor, times: Tensor, amplitude: float) -> Tensor:
    """x(t) = tan(arctan x0 + a sin 2πt) at every time: shape [len(times), n, 1]."""
    return torch.tan(torch.atan(x0) + amplitude * torch.sin(2 * math.pi * times)[:, None, None])


def train(model: ODEFlow, predict, x: Tensor, y: Tensor, config: Config, ctx, name: str) -> dict:
    """Adam on the MSE of ``predict(model, x)`` against ``y``; forward/backward NFE of every step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses, nfe_forward, nfe_backward = [], [], []
    start = time.perf_counter()
    with ctx.progress_bar(config.steps, f"training {name}") as bar:
        for step in range(config.steps):
            model.reset_nfe()
            loss = (predict(model, x) - y).pow(2).mean()
            forward = model.nfe
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            losses.append(loss.item())
            nfe_forward.append(forward)
            nfe_backward.append(model.nfe - forward)
            ctx.log({f"{name}_loss": loss.item(), f"{name}_nfe": forward}, step=step)
            bar.update(1, loss=loss.item(), nfe=forward)
    return {"losses": losses, "nfe_forward": nfe_forward, "nfe_backward": nfe_backward,
            "train_time_s": time.perf_counter() - start}


def evaluate(model: ODEFlow, predict, x: Tensor, y: Tensor, config: Config) -> dict:
    """Test MSE and forward NFE at the evaluation tolerance; the prediction is returned for figures."""
    model.rtol = model.atol = config.eval_tol
    model.reset_nfe()
    with torch.no_grad():
        prediction = predict(model, x)
    return {"mse": (prediction - y).pow(2).mean().item(), "nfe": model.nfe, "prediction": prediction}


def _final(model: ODEFlow, x: Tensor) -> Tensor:
    return model(x)


def reflection(config: Config, ctx) -> dict:
    """Task (a): x ↦ −x with a native 1-D flow and with an augmented flow."""
    generator = torch.Generator().manual_seed(ctx.seed)
    x_train = 2 * torch.rand(config.n_train, 1, generator=generator) - 1
    x_test = torch.linspace(-1, 1, config.n_test)[:, None]
    best_increasing = isotonic_regression(-x_test[:, 0])
    out: dict = {"best_increasing_mse": (best_increasing + x_test[:, 0]).pow(2).mean().item()}
    for name, augment in (("node", 0), ("anode", config.augment)):
        torch.manual_seed(ctx.seed)
        model = ODEFlow(make_field("concat", 1 + augment, config.hidden), dim=1, augment=augment,
                        rtol=config.rtol, atol=config.atol)
        part = train(model, _final, x_train, -x_train, config, ctx, name)
        scores = evaluate(model, _final, x_test, -x_test, config)
        prediction = scores.pop("prediction")[:, 0]
        part |= scores
        part["order_violations"] = int((prediction.diff() < 0).sum()) if name == "node" else None
        part["prediction"] = prediction.tolist()
        part["params"] = sum(p.numel() for p in model.parameters())
        out[name] = part
    out["x_test"] = x_test[:, 0].tolist()
    return out


def time_dependence(config: Config, ctx) -> dict:
    """Task (b): autonomous vs time-as-input vs hypernetwork dynamics on rising-and-falling trajectories."""
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    times = observation_times(config)
    x_train = 2 * torch.rand(config.n_train, 1, generator=generator) - 1
    x_test = 2 * torch.rand(config.n_test, 1, generator=generator) - 1
    y_train = swinging_trajectories(x_train, times, config.amplitude)[1:]
    y_test = swinging_trajectories(x_test, times, config.amplitude)[1:]

    def observed(model: ODEFlow, x: Tensor) -> Tensor:
        return model.trajectory(x, times)[1:]

    out: dict = {"best_monotone_mse": monotone_trajectory_bound(y_test[:, :, 0].T), "times": times.tolist()}
    shown = slice(0, 5)  # trajectories drawn in the figure
    out["shown_targets"] = swinging_trajectories(x_test[shown], times, config.amplitude)[:, :, 0].T.tolist()
    for kind in DYNAMICS:
        torch.manual_seed(ctx.seed)
        model = ODEFlow(make_field(kind, 1, config.hidden, config.hyper_hidden), dim=1,
                        rtol=config.rtol, atol=config.atol)
        part = train(model, observed, x_train, y_train, config, ctx, kind)
        scores = evaluate(model, observed, x_test, y_test, config)
        scores.pop("prediction")
        part |= scores
        with torch.no_grad():
            fine = torch.linspace(0, 1, 41)
            part["shown_paths"] = model.trajectory(x_test[shown], fine)[:, :, 0].T.tolist()
        part["params"] = sum(p.numel() for p in model.parameters())
        out[kind] = part
    return out


def _tail_mean(values: list[float]) -> float:
    tail = values[-max(1, len(values) // 10):]
    return sum(tail) / len(tail)


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    ref = ctx.stage("reflection", lambda: reflection(config, ctx))
    dyn = ctx.stage("time_dependence", lambda: time_dependence(config, ctx))

    metrics = {
        "reflection_node_mse": ref["node"]["mse"],
        "reflection_anode_mse": ref["anode"]["mse"],
        "reflection_best_increasing_mse": ref["best_increasing_mse"],
        "reflection_node_order_violations": ref["node"]["order_violations"],
        "reflection_node_nfe": ref["node"]["nfe"],
        "reflection_anode_nfe": ref["anode"]["nfe"],
        "reflection_node_train_nfe_last_tenth": _tail_mean(ref["node"]["nfe_forward"]),
        "reflection_anode_train_nfe_last_tenth": _tail_mean(ref["anode"]["nfe_forward"]),
        "time_best_monotone_mse": dyn["best_monotone_mse"],
    }
    for kind in DYNAMICS:
        metrics[f"time_{kind}_mse"] = dyn[kind]["mse"]
        metrics[f"time_{kind}_nfe"] = dyn[kind]["nfe"]
        metrics[f"time_{kind}_train_nfe_last_tenth"] = _tail_mean(dyn[kind]["nfe_forward"])
        metrics[f"time_{kind}_params"] = dyn[kind]["params"]
    mse = {kind: dyn[kind]["mse"] for kind in DYNAMICS}
    gap_between_time_dependent = abs(math.log(mse["concat"] / mse["hyper"]))
    gap_to_autonomous = math.log(mse["autonomous"] / max(mse["concat"], mse["hyper"]))
    metrics["time_log_gap_concat_vs_hyper"] = gap_between_time_dependent
    metrics["time_log_gap_autonomous_vs_worse_time_dependent"] = gap_to_autonomous
    checks = [
        Check("x -> -x: augmented flow beats the native 1-D flow", ref["anode"]["mse"], "<",
              ref["node"]["mse"], "1-D ODE flow MSE"),
        Check("x -> -x: the 1-D flow does no better than the best increasing map", ref["node"]["mse"], ">=",
              ref["best_increasing_mse"], "isotonic-regression MSE"),
        Check("non-autonomous task: f(h, t) beats autonomous f(h)", mse["concat"], "<", mse["autonomous"],
              "autonomous MSE"),
        Check("non-autonomous task: hypernetwork θ(t) beats autonomous f(h)", mse["hyper"], "<",
              mse["autonomous"], "autonomous MSE"),
        Check("non-autonomous task: autonomous f(h) does no better than the best monotone trajectories",
              mse["autonomous"], ">=", dyn["best_monotone_mse"], "best monotone fit MSE"),
        Check("f(h, t) and θ(t) behave alike: |log MSE ratio| below their gap to autonomous",
              gap_between_time_dependent, "<", gap_to_autonomous, "log(autonomous MSE / worse of the two)"),
    ]
    figures(ctx, ref, dyn)
    notes = (
        f"Test NFE at rtol = atol = {config.eval_tol:g}: reflection 1-D {ref['node']['nfe']} vs augmented "
        f"{ref['anode']['nfe']}; non-autonomous task autonomous {dyn['autonomous']['nfe']}, f(h, t) "
        f"{dyn['concat']['nfe']}, θ(t) {dyn['hyper']['nfe']}. The 1-D flow reversed the order of "
        f"{ref['node']['order_violations']} of {config.n_test - 1} neighbouring test pairs. Parameters: "
        f"f(h) {dyn['autonomous']['params']}, f(h, t) {dyn['concat']['params']}, θ(t) "
        f"{dyn['hyper']['params']} (the hypernetwork outputs all {config.hidden * 3 + 1} weights of its "
        f"dynamics net). Toy scale: 1-D tasks, {config.steps} full-batch Adam steps."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, ref: dict, dyn: dict) -> None:
    from papers.core.plots import figure, plot_lines

    fig, (ax_map, ax_nfe) = figure(ncols=2)
    plot_lines(ax_map, ref["x_test"], {"target -x": [-x for x in ref["x_test"]],
                                       "1-D ODE flow": ref["node"]["prediction"],
                                       "augmented ODE flow": ref["anode"]["prediction"]},
               xlabel="x", ylabel="output", title="x -> -x", marker="")
    steps = list(range(len(ref["node"]["nfe_forward"])))
    plot_lines(ax_nfe, steps, {"1-D": ref["node"]["nfe_forward"], "augmented": ref["anode"]["nfe_forward"]},
               xlabel="training step", ylabel="forward NFE", title="NFE during training", marker="")
    ctx.save_figure(fig, "reflection")

    fig, axes = figure(ncols=len(DYNAMICS) + 1)
    fine = [i / 40 for i in range(41)]
    titles = {"autonomous": "autonomous f(h)", "concat": "f(h, t)", "hyper": "hypernetwork θ(t)"}
    for ax, kind in zip(axes, DYNAMICS, strict=False):
        for path, goal in zip(dyn[kind]["shown_paths"], dyn["shown_targets"], strict=True):
            line, = ax.plot(fine, path)
            ax.plot(dyn["times"], goal, "o", markersize=3, color=line.get_color())
        ax.set_xlabel("t")
        ax.set_title(f"{titles[kind]}: MSE {dyn[kind]['mse']:.2g}", fontsize=9)
    steps = list(range(len(dyn["concat"]["losses"])))
    plot_lines(axes[-1], steps, {titles[k]: dyn[k]["losses"] for k in DYNAMICS}, xlabel="training step",
               ylabel="training MSE", title="training", logy=True, marker="")
    ctx.save_figure(fig, "time_dependence")
