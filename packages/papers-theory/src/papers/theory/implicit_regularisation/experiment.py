"""Reproduction: gradient descent follows the modified flow; SGD adds a minibatch-variance penalty; large
steps find flatter solutions.

(a) Barrett & Dherin's two-parameter model ŷ = θ1θ2x (non-convex C). For each step h: the local error
    ‖θ_1 − θ(h)‖ of one GD step against the gradient flow on C and on C̃ = C + (h/4)‖∇C‖², and the
    global error ‖θ_n − θ(T)‖ at a fixed time T = n h. Flows are solved by dopri5 at rtol 1e-12.
    Theory: local O(h²) for the flow on C and O(h³) for the modified flow; global O(h) and O(h²).
    The log–log slopes of error against h are fitted.
(b) The same model, data split into m minibatches. The mean iterate after one epoch of SGD (exact mean
    over all m! orderings) against the flow on C_SGD = C + (ε/4m)Σ_k‖∇Ĉ_k‖² and on the full-batch
    C̃_GD = C + (ε/4)‖∇C‖², both for time mε. Theory (Smith et al.): O(ε³) from the first, while the
    second misses the variance term, O(ε²).
(c) A tanh MLP on a noisy teacher classification task, trained by full-batch GD at several learning
    rates for the same time T = steps × lr (so that only the implicit regulariser (lr/4)‖∇C‖² differs),
    and once at the smallest rate with the explicit regulariser of the largest. Measured at the end:
    ‖∇C‖², the top Hessian eigenvalue (power iteration), training loss and test error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import linear_regression

import torch
import torch.nn.functional as F
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import (
    MLP,
    factorised_regression_loss,
    flow,
    gradient_descent,
    modified_loss,
    sgd_modified_loss,
    shuffled_epoch_mean,
    top_hessian_eigenvalue,
)

F64 = torch.float64
FLATNESS_METRICS = ("train_loss", "test_error", "grad_norm_squared", "grad_norm_squared_at_level",
                    "sharpness")


@dataclass
class Config:
    # (a), (b): two-parameter model ŷ = θ1θ2x on n_batches × batch_size points
    n_batches: int = 4
    batch_size: int = 4
    teacher_slope: float = 1.0
    label_noise: float = 0.5
    theta0: tuple[float, float] = (2.0, 0.25)
    step_sizes: tuple[float, ...] = (0.1, 0.05, 0.025, 0.0125, 0.00625)  # GD steps h for (a)
    # SGD learning rates ε for (b): smaller, since one epoch spans m steps (asymptotic once mε ≪ 1)
    sgd_learning_rates: tuple[float, ...] = (0.025, 0.0125, 0.00625, 0.003125, 0.0015625)
    global_time: float = 1.0  # T for the fixed-time (global) error
    flow_rtol: float = 1e-10
    order_tolerance: float = 0.25  # allowed distance of a fitted slope from the theoretical order
    # (c): MLP, full-batch GD at several learning rates for the same time
    input_dim: int = 10
    n_train: int = 256
    n_test: int = 4096
    flip_fraction: float = 0.1  # training labels flipped at random
    hidden: int = 64
    learning_rates: tuple[float, ...] = (0.1, 0.2, 0.4, 0.8)
    train_time: float = 200.0  # T = steps × lr
    power_iterations: int = 30
    threads: int = 1

    def validate(self) -> None:
        if not 2 <= self.n_batches <= 7:
            raise ValueError(f"n_batches must be in 2..7 (all orderings are averaged), got {self.n_batches}")
        for name in ("batch_size", "input_dim", "n_train", "n_test", "hidden", "power_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if len(self.theta0) != 2:
            raise ValueError(f"theta0 must have 2 entries, got {self.theta0}")
        for name in ("step_sizes", "sgd_learning_rates", "learning_rates"):
            values = getattr(self, name)
            if len(values) < 2 or len(set(values)) != len(values) or not all(v > 0 and math.isfinite(v)
                                                                              for v in values):
                raise ValueError(f"{name} needs at least two distinct positive values, got {values}")
        for name in ("global_time", "flow_rtol", "train_time", "order_tolerance"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if self.label_noise < 0 or not 0 <= self.flip_fraction < 0.5:
            raise ValueError(f"label_noise must be >= 0 and flip_fraction in [0, 0.5), got "
                             f"{self.label_noise}, {self.flip_fraction}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"step_sizes": (0.1, 0.05, 0.025), "sgd_learning_rates": (0.02, 0.01, 0.005), "n_batches": 3,
              "n_train": 64, "n_test": 256, "hidden": 16, "learning_rates": (0.2, 0.8), "train_time": 16.0,
              "power_iterations": 10},
    "default": {},
    "full": {"step_sizes": (0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125), "n_batches": 5,
             "sgd_learning_rates": (0.025, 0.0125, 0.00625, 0.003125, 0.0015625, 0.00078125),
             "learning_rates": (0.05, 0.1, 0.2, 0.4, 0.8, 1.6), "train_time": 400.0, "n_train": 512},
}


def slope(hs: list[float], errors: list[float]) -> float:
    """Least-squares slope of log(error) against log(h)."""
    return linear_regression([math.log(h) for h in hs], [math.log(e) for e in errors]).slope


def regression_data(config: Config, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    n = config.n_batches * config.batch_size
    x = torch.randn(n, generator=generator, dtype=F64)
    y = config.teacher_slope * x + config.label_noise * torch.randn(n, generator=generator, dtype=F64)
    return x, y


# ----------------------------------------------------------------------------------------------------
# (a) GD against the gradient flow and the modified flow
# ----------------------------------------------------------------------------------------------------


def modified_flow_study(config: Config, ctx) -> dict:
    x, y = regression_data(config, torch.Generator().manual_seed(ctx.seed))
    loss = factorised_regression_loss(x, y)
    theta0 = torch.tensor(config.theta0, dtype=F64)
    rows = []
    with ctx.progress_bar(len(config.step_sizes), "GD vs flows") as bar:
        for h in config.step_sizes:
            n = round(config.global_time / h)
            gd = gradient_descent(loss, theta0, h, n)
            times = torch.tensor([0.0, h, n * h], dtype=F64)
            plain = flow(loss, theta0, times, rtol=config.flow_rtol, atol=config.flow_rtol * 1e-2)
            modified = flow(modified_loss(loss, h), theta0, times, rtol=config.flow_rtol,
                            atol=config.flow_rtol * 1e-2)
            rows.append({
                "h": h, "steps": n,
                "local_plain": (gd[1] - plain[1]).norm().item(),
                "local_modified": (gd[1] - modified[1]).norm().item(),
                "global_plain": (gd[-1] - plain[2]).norm().item(),
                "global_modified": (gd[-1] - modified[2]).norm().item(),
            })
            bar.update(1, h=h)
    # paths for the figure: GD at the largest step, both flows, over a long time
    h = max(config.step_sizes)
    n = round(10 * config.global_time / h)
    times = h * torch.arange(n + 1, dtype=F64)
    paths = {"gd": gradient_descent(loss, theta0, h, n).tolist(),
             "plain": flow(loss, theta0, times, rtol=1e-9, atol=1e-11).tolist(),
             "modified": flow(modified_loss(loss, h), theta0, times, rtol=1e-9, atol=1e-11).tolist(),
             "h": h, "minimum_product": ((x * y).sum() / x.square().sum()).item()}
    hs = [r["h"] for r in rows]
    slopes = {key: slope(hs, [r[key] for r in rows])
              for key in ("local_plain", "local_modified", "global_plain", "global_modified")}
    return {"rows": rows, "slopes": slopes, "paths": paths}


# ----------------------------------------------------------------------------------------------------
# (b) mean SGD iterate against the SGD and GD modified flows
# ----------------------------------------------------------------------------------------------------


def sgd_study(config: Config, ctx) -> dict:
    x, y = regression_data(config, torch.Generator().manual_seed(ctx.seed))
    b = config.batch_size
    batches = [factorised_regression_loss(x[k * b:(k + 1) * b], y[k * b:(k + 1) * b])
               for k in range(config.n_batches)]
    full = factorised_regression_loss(x, y)
    theta0 = torch.tensor(config.theta0, dtype=F64)
    m = config.n_batches
    tol = {"rtol": config.flow_rtol, "atol": config.flow_rtol * 1e-2}
    rows = []
    with ctx.progress_bar(len(config.sgd_learning_rates), "SGD vs flows") as bar:
        for eps in config.sgd_learning_rates:
            mean = shuffled_epoch_mean(batches, theta0, eps)
            times = torch.tensor([0.0, m * eps], dtype=F64)
            sgd_flow = flow(sgd_modified_loss(batches, eps), theta0, times, **tol)[-1]
            gd_flow = flow(modified_loss(full, eps), theta0, times, **tol)[-1]
            plain = flow(full, theta0, times, **tol)[-1]
            rows.append({"eps": eps, "to_sgd_flow": (mean - sgd_flow).norm().item(),
                         "to_gd_modified_flow": (mean - gd_flow).norm().item(),
                         "to_gradient_flow": (mean - plain).norm().item()})
            bar.update(1, eps=eps)
    eps = [r["eps"] for r in rows]
    slopes = {key: slope(eps, [r[key] for r in rows])
              for key in ("to_sgd_flow", "to_gd_modified_flow", "to_gradient_flow")}
    return {"rows": rows, "slopes": slopes}


# ----------------------------------------------------------------------------------------------------
# (c) learning rate, flatness and test error
# ----------------------------------------------------------------------------------------------------


def teacher_data(config: Config, generator: torch.Generator) -> dict:
    """Gaussian inputs labelled by the sign of a random tanh teacher; some training labels flipped."""
    d, width = config.input_dim, 32
    w1 = torch.randn(d, width, generator=generator) / math.sqrt(d)
    w2 = torch.randn(width, generator=generator) / math.sqrt(width)

    def sample(n: int) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, d, generator=generator)
        return x, (torch.tanh(2 * x @ w1) @ w2 > 0).long()

    x_train, y_train = sample(config.n_train)
    flip = torch.rand(config.n_train, generator=generator) < config.flip_fraction
    x_test, y_test = sample(config.n_test)
    return {"x_train": x_train, "y_train": torch.where(flip, 1 - y_train, y_train),
            "x_test": x_test, "y_test": y_test}


def train_gd(config: Config, data: dict, lr: float, regulariser: float, seed: int, ctx, name: str) -> dict:
    """Full-batch GD for time ``train_time`` on C + (regulariser/4)‖∇C‖², C the cross-entropy."""
    torch.manual_seed(seed)
    model = MLP(config.input_dim, 2, hidden=config.hidden)
    params = list(model.parameters())
    x, y = data["x_train"], data["y_train"]
    steps = round(config.train_time / lr)
    history = {"loss": [], "grad_norm_squared": []}
    with ctx.progress_bar(steps, f"GD {name}") as bar:
        for step in range(steps):
            loss = F.cross_entropy(model(x), y)
            grads = torch.autograd.grad(loss, params, create_graph=regulariser > 0)
            if regulariser > 0:
                penalty = sum(g.square().sum() for g in grads)
                grads = torch.autograd.grad(loss + (regulariser / 4) * penalty, params)
                grad_norm_squared = penalty.item()
            else:
                grad_norm_squared = sum(g.square().sum() for g in grads).item()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step} (learning rate {lr} too large?)")
            history["loss"].append(loss.item())
            history["grad_norm_squared"].append(grad_norm_squared)
            with torch.no_grad():
                for p, g in zip(params, grads, strict=True):
                    p.sub_(lr * g)
            if step % 200 == 0 or step == steps - 1:
                ctx.log({f"{name}_loss": loss.item(), f"{name}_grad_norm_squared": grad_norm_squared},
                        step=step)
            bar.update(1, loss=loss.item())

    def train_loss() -> Tensor:
        return F.cross_entropy(model(x), y)

    final_loss = train_loss()
    grads = torch.autograd.grad(final_loss, params)
    history["loss"].append(final_loss.item())  # the history ends at the final parameters
    history["grad_norm_squared"].append(sum(g.square().sum() for g in grads).item())
    with torch.no_grad():
        test_error = (model(data["x_test"]).argmax(-1) != data["y_test"]).float().mean().item()
        train_error = (model(x).argmax(-1) != y).float().mean().item()
    return {
        "lr": lr, "regulariser": regulariser, "steps": steps, "train_loss": history["loss"][-1],
        "history": history,
        "train_error": train_error, "test_error": test_error,
        "grad_norm_squared": history["grad_norm_squared"][-1],
        "sharpness": top_hessian_eigenvalue(train_loss, params, config.power_iterations,
                                            torch.Generator().manual_seed(seed)),
    }


def flatness_study(config: Config, ctx) -> dict:
    data = teacher_data(config, torch.Generator().manual_seed(ctx.seed))
    lrs = sorted(config.learning_rates)
    runs = [train_gd(config, data, lr, 0.0, ctx.seed, ctx, f"lr{lr:g}") for lr in lrs]
    explicit = train_gd(config, data, lrs[0], lrs[-1], ctx.seed, ctx, f"lr{lrs[0]:g}_explicit{lrs[-1]:g}")
    # ‖∇C‖² compared at equal training loss: the first time each run's loss falls to the highest final
    # loss of all runs (the regulariser ranks points of equal loss by their gradient norm)
    level = max(r["train_loss"] for r in [*runs, explicit])
    for r in [*runs, explicit]:
        history = r.pop("history")
        first = next(i for i, value in enumerate(history["loss"]) if value <= level)
        r["grad_norm_squared_at_level"] = history["grad_norm_squared"][first]
        r["history"] = {key: values[:: max(1, len(values) // 500)] for key, values in history.items()}
    return {"runs": runs, "explicit": explicit, "loss_level": level}


# ----------------------------------------------------------------------------------------------------


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    part_a = ctx.stage("modified_flow", lambda: modified_flow_study(config, ctx))
    part_b = ctx.stage("sgd", lambda: sgd_study(config, ctx))
    part_c = ctx.stage("flatness", lambda: flatness_study(config, ctx))

    sa, sb = part_a["slopes"], part_b["slopes"]
    small, large, explicit = part_c["runs"][0], part_c["runs"][-1], part_c["explicit"]
    sgd_ratio = max(r["to_sgd_flow"] / r["to_gd_modified_flow"] for r in part_b["rows"])
    metrics = {f"slope_{k}": v for k, v in sa.items()}
    metrics |= {f"slope_sgd_{k}": v for k, v in sb.items()}
    metrics["sgd_worst_distance_ratio"] = sgd_ratio
    for run_ in part_c["runs"]:
        for key in FLATNESS_METRICS:
            metrics[f"lr{run_['lr']:g}_{key}"] = run_[key]
    for key in FLATNESS_METRICS:
        metrics[f"explicit_{key}"] = explicit[key]
    metrics["loss_level"] = part_c["loss_level"]
    metrics["modified_flow_rows"] = part_a["rows"]
    metrics["sgd_rows"] = part_b["rows"]

    tol = config.order_tolerance
    checks = [
        Check("(a) local error of a GD step from the modified flow is O(h³): |slope − 3|",
              abs(sa["local_modified"] - 3), "<", tol, f"tolerance {tol:g} around the order 3 (theory)"),
        Check("(a) local error of a GD step from the gradient flow is O(h²): |slope − 2|",
              abs(sa["local_plain"] - 2), "<", tol, f"tolerance {tol:g} around the order 2 (theory)"),
        Check("(a) global error at fixed time from the modified flow is O(h²): |slope − 2|",
              abs(sa["global_modified"] - 2), "<", tol, f"tolerance {tol:g} around the order 2 (theory)"),
        Check("(a) GD is closer to the modified flow than to the gradient flow (global, smallest h)",
              part_a["rows"][-1]["global_modified"], "<", part_a["rows"][-1]["global_plain"],
              "distance to the gradient flow"),
        Check("(b) mean SGD iterate is closer to the C_SGD flow than to the C̃_GD flow at every ε "
              "(worst ratio)",
              sgd_ratio, "<", 1.0, "1 = equally close"),
        Check("(b) distance to the C_SGD flow is O(ε³): |slope − 3|", abs(sb["to_sgd_flow"] - 3), "<", tol,
              f"tolerance {tol:g} around the order 3 (theory)"),
        Check(f"(c) larger learning rate ({large['lr']:g}) ends flatter (top Hessian eigenvalue)",
              large["sharpness"], "<", small["sharpness"], f"sharpness at lr {small['lr']:g}"),
        Check(f"(c) larger learning rate ({large['lr']:g}) has a smaller ‖∇C‖² at equal training loss",
              large["grad_norm_squared_at_level"], "<", small["grad_norm_squared_at_level"],
              f"‖∇C‖² at lr {small['lr']:g}, when its loss first reaches {part_c['loss_level']:.3g}"),
        Check(f"(c) larger learning rate ({large['lr']:g}) has lower test error",
              large["test_error"], "<", small["test_error"], f"test error at lr {small['lr']:g}"),
        Check(f"(c) explicit regulariser ({large['lr']:g}/4)‖∇C‖² at lr {small['lr']:g} lowers the test "
              f"error", explicit["test_error"], "<", small["test_error"],
              f"test error at lr {small['lr']:g}, no regulariser"),
    ]
    figures(ctx, part_a, part_b, part_c)
    standard_error = math.sqrt(small["test_error"] * (1 - small["test_error"]) / config.n_test)
    notes = (
        f"(a) fitted slopes over h = {min(config.step_sizes):g}…{max(config.step_sizes):g}: local "
        f"{sa['local_modified']:.2f} (modified flow) vs {sa['local_plain']:.2f} (gradient flow); global at "
        f"T = {config.global_time:g}: {sa['global_modified']:.2f} vs {sa['global_plain']:.2f}. (b) one "
        f"epoch of "
        f"{config.n_batches} minibatches of {config.batch_size}, mean over all orderings: slopes "
        f"{sb['to_sgd_flow']:.2f} (C_SGD flow), {sb['to_gd_modified_flow']:.2f} (C̃_GD flow), "
        f"{sb['to_gradient_flow']:.2f} (gradient flow). (c) same training time T = {config.train_time:g} "
        f"for every rate: lr {small['lr']:g} → sharpness {small['sharpness']:.3g}, ‖∇C‖² "
        f"{small['grad_norm_squared']:.2g}, test error {small['test_error']:.3f}; lr {large['lr']:g} → "
        f"{large['sharpness']:.3g}, {large['grad_norm_squared']:.2g}, {large['test_error']:.3f}; explicit "
        f"regulariser → {explicit['sharpness']:.3g}, {explicit['grad_norm_squared']:.2g}, "
        f"{explicit['test_error']:.3f} (binomial standard error of one test error ≈ {standard_error:.3f})."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, part_a: dict, part_b: dict, part_c: dict) -> None:
    from papers.core.plots import figure, plot_lines

    fig, (ax_local, ax_global, ax_path) = figure(ncols=3)
    rows = part_a["rows"]
    hs = [r["h"] for r in rows]
    plot_lines(ax_local, hs, {"to gradient flow": [r["local_plain"] for r in rows],
                              "to modified flow": [r["local_modified"] for r in rows]},
               xlabel="step h", ylabel="‖θ₁ − θ(h)‖", title="one GD step", logx=True, logy=True)
    plot_lines(ax_global, hs, {"to gradient flow": [r["global_plain"] for r in rows],
                               "to modified flow": [r["global_modified"] for r in rows]},
               xlabel="step h", ylabel="‖θ_n − θ(T)‖", title="fixed time T", logx=True, logy=True)
    paths = part_a["paths"]
    for key, label in (("gd", f"GD, h = {paths['h']:g}"), ("plain", "gradient flow"),
                       ("modified", "modified flow")):
        ax_path.plot([p[0] for p in paths[key]], [p[1] for p in paths[key]], lw=1, label=label)
    c, first = paths["minimum_product"], [p[0] for p in paths["plain"]]
    low, high = min(first), max(first)
    grid = [low + (high - low) * i / 50 for i in range(51)]
    ax_path.plot(grid, [c / g for g in grid], "k:", lw=0.8, label="minima θ₁θ₂ = const")
    ax_path.set_xlabel("θ₁")
    ax_path.set_ylabel("θ₂")
    ax_path.legend(fontsize=7)
    for ax in (ax_local, ax_global):
        ax.minorticks_off()
    ctx.save_figure(fig, "modified_flow")

    fig, (ax_sgd, ax_sharp, ax_grad, ax_test) = figure(ncols=4)
    rows = part_b["rows"]
    plot_lines(ax_sgd, [r["eps"] for r in rows],
               {"to C_SGD flow": [r["to_sgd_flow"] for r in rows],
                "to C̃_GD flow": [r["to_gd_modified_flow"] for r in rows],
                "to gradient flow": [r["to_gradient_flow"] for r in rows]},
               xlabel="learning rate ε", ylabel="distance of mean SGD iterate", title="one SGD epoch",
               logx=True, logy=True)
    runs, explicit = part_c["runs"], part_c["explicit"]
    lrs = [r["lr"] for r in runs]
    panels = ((ax_sharp, "sharpness", "top Hessian eigenvalue"),
              (ax_grad, "grad_norm_squared_at_level", f"‖∇C‖² at train loss {part_c['loss_level']:.2g}"),
              (ax_test, "test_error", "test error"))
    for ax, key, label in panels:
        plot_lines(ax, lrs, {"GD": [r[key] for r in runs]}, xlabel="learning rate", ylabel=label,
                   title="end of training (same T)" if key == "sharpness" else "", logx=True)
        ax.plot([explicit["lr"]], [explicit[key]], "k*", label="GD + explicit regulariser")
        ax.legend(fontsize=7)
    eps = [r["eps"] for r in rows]
    for ax, ticks in ((ax_sgd, eps), (ax_sharp, lrs), (ax_grad, lrs), (ax_test, lrs)):
        ax.minorticks_off()
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks], fontsize=7)
    ctx.save_figure(fig, "flatness")
