"""Reproduction: an ODE-Net classifier vs a ResNet on generated spirals (Chen et al. 2018, Sec. 3, Fig. 3).

Data: K interleaved spiral arms in the plane, r = √u, angle = 2π·turns·r + 2πk/K, plus Gaussian noise.
Both models share the encoder Linear(2, width) and the head Linear(width, K); between them the ResNet
has ``resnet_blocks`` residual blocks h + W₂ tanh(W₁ h), the ODE-Net one ODE block dh/dt = f(h, t)
on [0, 1] with the same MLP shape (plus a time input), solved by dopri5 and trained with the adjoint.

Measured:
(a) test accuracy and parameter count of both models;
(b) a test-time tolerance sweep rtol = atol = 1e-1 … 1e-7: forward NFE and accuracy;
(c) forward and backward NFE per training step (grows during training, paper Fig. 3d);
(d) adjoint vs backprop through the solver: peak bytes of tensors held for backward as the number of
    RK4 steps grows (counted exactly with ``torch.autograd.graph.saved_tensors_hooks``), and the
    relative difference of their gradients at several dopri5 tolerances.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.io import load_checkpoint, save_checkpoint
from papers.core.memory import SavedTensorMeter

from .model import ODENet, ResNet


@dataclass
class Config:
    # data: interleaved spirals
    n_classes: int = 3
    n_train: int = 3000
    n_test: int = 3000
    turns: float = 1.5
    noise: float = 0.04
    # models
    width: int = 16
    hidden: int = 64
    resnet_blocks: int = 6
    # training (Adam, both models alike)
    steps: int = 1500
    batch_size: int = 256
    lr: float = 1e-2
    train_rtol: float = 1e-3
    train_atol: float = 1e-3
    # measurements
    sweep_tols: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
    memory_steps: tuple[int, ...] = (4, 8, 16, 32, 64)
    memory_batch: int = 256
    grad_tols: tuple[float, ...] = (1e-3, 1e-5, 1e-7)
    accuracy_margin: float = 0.02
    # torch CPU threads set by run (0 keeps the process setting, e.g. `papers run --threads`). The
    # matrices are small: one thread trained the ODE-Net 8x faster than two on a 2-core machine.
    threads: int = 1

    def validate(self) -> None:
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {self.n_classes}")
        for name in ("n_train", "n_test", "width", "hidden", "resnet_blocks", "steps", "batch_size",
                     "memory_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "train_rtol", "train_atol"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if len(self.sweep_tols) < 2 or any(not t > 0 for t in self.sweep_tols):
            raise ValueError(f"sweep_tols needs at least two positive tolerances, got {self.sweep_tols}")
        if len(self.memory_steps) < 2 or any(n < 1 for n in self.memory_steps):
            raise ValueError(f"memory_steps needs at least two step counts >= 1, got {self.memory_steps}")
        if len(self.grad_tols) < 2 or any(not t > 0 for t in self.grad_tols):
            raise ValueError(f"grad_tols needs at least two positive tolerances, got {self.grad_tols}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_train": 300, "n_test": 300, "steps": 15, "batch_size": 64, "width": 8, "hidden": 16,
              "sweep_tols": (1e-1, 1e-3, 1e-5), "memory_steps": (2, 8), "memory_batch": 32,
              "grad_tols": (1e-3, 1e-5)},
    "default": {},
    "full": {"n_train": 10000, "n_test": 10000, "steps": 3000, "width": 32, "hidden": 128},
}


def spirals(n: int, n_classes: int, turns: float, noise: float,
            generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` points on ``n_classes`` interleaved spiral arms; returns (x [n, 2], labels [n])."""
    labels = torch.randint(n_classes, (n,), generator=generator)
    r = torch.rand(n, generator=generator).sqrt()
    angle = 2 * math.pi * (turns * r + labels / n_classes)
    x = r[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    return x + noise * torch.randn(n, 2, generator=generator), labels


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def train(model: nn.Module, data: dict, config: Config, ctx, name: str) -> dict:
    """Adam on cross-entropy; logs loss, and for the ODE-Net the forward/backward NFE of every step."""
    x, y = data["x_train"], data["y_train"]
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    block = getattr(model, "block", None)
    history = {"loss": [], "nfe_forward": [], "nfe_backward": []}
    start = time.perf_counter()
    with ctx.progress_bar(config.steps, f"training {name}") as bar:
        for step in range(config.steps):
            batch = torch.randint(len(x), (config.batch_size,), generator=generator)
            if block is not None:
                block.reset_nfe()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            nfe_forward = block.nfe if block is not None else 0
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            history["loss"].append(loss.item())
            if block is not None:
                history["nfe_forward"].append(nfe_forward)
                history["nfe_backward"].append(block.nfe - nfe_forward)
            ctx.log({f"{name}_loss": loss.item(), f"{name}_nfe_forward": nfe_forward}, step=step)
            bar.update(1, loss=loss.item())
    return {
        "history": history,
        "train_time_s": time.perf_counter() - start,
        "test_accuracy": accuracy(model, data["x_test"], data["y_test"]),
        "train_accuracy": accuracy(model, x, y),
        "params": n_params(model),
    }


def tolerance_sweep(model: ODENet, data: dict, tols: tuple[float, ...]) -> dict:
    """Test accuracy and forward NFE at each tolerance (rtol = atol), trained weights unchanged."""
    block = model.block
    saved = block.rtol, block.atol
    rows = []
    for tol in tols:
        block.rtol = block.atol = tol
        block.reset_nfe()
        start = time.perf_counter()
        acc = accuracy(model, data["x_test"], data["y_test"])
        rows.append({"tol": tol, "accuracy": acc, "nfe": block.nfe, "time_s": time.perf_counter() - start})
    block.rtol, block.atol = saved
    return {"rows": rows}


def gradient(model: ODENet, x: Tensor, y: Tensor, adjoint: bool, **solver) -> tuple[Tensor, int, int]:
    """Flat parameter gradient of the cross-entropy, with the peak saved-tensor bytes and the NFE."""
    block = model.block
    saved = block.adjoint, block.rtol, block.atol, block.method, block.options
    block.adjoint = adjoint
    for key, value in solver.items():
        setattr(block, key, value)
    model.zero_grad()
    block.reset_nfe()
    meter = SavedTensorMeter()
    with meter:
        nn.functional.cross_entropy(model(x), y).backward()
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    block.adjoint, block.rtol, block.atol, block.method, block.options = saved
    return grad, meter.peak, block.nfe


def memory_and_gradients(model: ODENet, data: dict, config: Config) -> dict:
    x, y = data["x_test"][: config.memory_batch], data["y_test"][: config.memory_batch]
    memory = []
    for n in config.memory_steps:
        row = {"steps": n}
        for label, adjoint in (("adjoint", True), ("backprop", False)):
            start = time.perf_counter()
            _, peak, nfe = gradient(model, x, y, adjoint, method="rk4", options={"step_size": 1.0 / n})
            row[f"{label}_peak_bytes"], row[f"{label}_nfe"] = peak, nfe
            row[f"{label}_time_s"] = time.perf_counter() - start
        memory.append(row)
    agreement, grads = [], []
    for tol in sorted(config.grad_tols):
        solver = {"method": "dopri5", "options": None, "rtol": tol, "atol": tol}
        g_adj, peak_adj, nfe_adj = gradient(model, x, y, True, **solver)
        g_bp, peak_bp, nfe_bp = gradient(model, x, y, False, **solver)
        grads.append((g_adj, g_bp))
        agreement.append({"tol": tol, "rel_grad_diff": ((g_adj - g_bp).norm() / g_bp.norm()).item(),
                          "adjoint_peak_bytes": peak_adj, "backprop_peak_bytes": peak_bp,
                          "adjoint_nfe": nfe_adj, "backprop_nfe": nfe_bp})
    reference = grads[0][1]  # backprop at the tightest tolerance
    for row, (g_adj, g_bp) in zip(agreement, grads, strict=True):
        row["adjoint_rel_err_vs_tightest"] = ((g_adj - reference).norm() / reference.norm()).item()
        row["backprop_rel_err_vs_tightest"] = ((g_bp - reference).norm() / reference.norm()).item()
    return {"memory": memory, "agreement": agreement}


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    generator = torch.Generator().manual_seed(ctx.seed)
    x_train, y_train = spirals(config.n_train, config.n_classes, config.turns, config.noise, generator)
    x_test, y_test = spirals(config.n_test, config.n_classes, config.turns, config.noise, generator)
    data = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    def make_odenet() -> ODENet:
        torch.manual_seed(ctx.seed)
        return ODENet(2, config.n_classes, width=config.width, hidden=config.hidden,
                      rtol=config.train_rtol, atol=config.train_atol, adjoint=True)

    def make_resnet() -> ResNet:
        torch.manual_seed(ctx.seed)
        return ResNet(2, config.n_classes, width=config.width, hidden=config.hidden,
                      n_blocks=config.resnet_blocks)

    odenet, weights = make_odenet(), ctx.checkpoint_dir / "odenet.pt"

    def train_odenet() -> dict:
        part = train(odenet, data, config, ctx, "odenet")
        save_checkpoint(weights, {"model": odenet.state_dict()})
        return part

    ode = ctx.stage("train_odenet", train_odenet)
    res = ctx.stage("train_resnet", lambda: train(make_resnet(), data, config, ctx, "resnet"))
    odenet.load_state_dict(load_checkpoint(weights)["model"])
    sweep = ctx.stage("tolerance_sweep", lambda: tolerance_sweep(odenet, data, config.sweep_tols))
    mem = ctx.stage("memory_and_gradients", lambda: memory_and_gradients(odenet, data, config))

    # (c) NFE during training: first vs last tenth of the steps
    nfe_fwd = ode["history"]["nfe_forward"]
    tenth = max(1, len(nfe_fwd) // 10)
    nfe_early, nfe_late = _mean(nfe_fwd[:tenth]), _mean(nfe_fwd[-tenth:])
    nfe_bwd_late = _mean(ode["history"]["nfe_backward"][-tenth:])
    # (b) tolerance sweep
    rows = sorted(sweep["rows"], key=lambda r: r["tol"])
    tight, loose = rows[0], rows[-1]
    train_row = min(rows, key=lambda r: abs(math.log(r["tol"]) - math.log(config.train_rtol)))
    # (d) memory growth from the fewest to the most steps
    memory = sorted(mem["memory"], key=lambda r: r["steps"])
    m_first, m_last = memory[0], memory[-1]
    adjoint_growth = m_last["adjoint_peak_bytes"] / m_first["adjoint_peak_bytes"]
    backprop_growth = m_last["backprop_peak_bytes"] / m_first["backprop_peak_bytes"]
    steps_growth = m_last["steps"] / m_first["steps"]
    agreement = sorted(mem["agreement"], key=lambda r: r["tol"])

    metrics = {
        "odenet_test_accuracy": ode["test_accuracy"],
        "resnet_test_accuracy": res["test_accuracy"],
        "odenet_params": ode["params"],
        "resnet_params": res["params"],
        "odenet_train_time_s": ode["train_time_s"],
        "resnet_train_time_s": res["train_time_s"],
        "nfe_forward_first_tenth": nfe_early,
        "nfe_forward_last_tenth": nfe_late,
        "nfe_backward_last_tenth": nfe_bwd_late,
        "nfe_at_loosest_tol": loose["nfe"],
        "nfe_at_tightest_tol": tight["nfe"],
        "accuracy_at_loosest_tol": loose["accuracy"],
        "accuracy_at_training_tol": train_row["accuracy"],
        "accuracy_at_tightest_tol": tight["accuracy"],
        "adjoint_memory_growth_ratio": adjoint_growth,
        "backprop_memory_growth_ratio": backprop_growth,
        "steps_growth_ratio": steps_growth,
        "adjoint_peak_bytes_most_steps": m_last["adjoint_peak_bytes"],
        "backprop_peak_bytes_most_steps": m_last["backprop_peak_bytes"],
        "grad_rel_diff_loosest_tol": agreement[-1]["rel_grad_diff"],
        "grad_rel_diff_tightest_tol": agreement[0]["rel_grad_diff"],
        "adjoint_grad_err_loosest_tol": agreement[-1]["adjoint_rel_err_vs_tightest"],
        "backprop_grad_err_loosest_tol": agreement[-1]["backprop_rel_err_vs_tightest"],
        "tolerance_sweep": rows,
        "memory": memory,
        "gradient_agreement": agreement,
    }
    margin = config.accuracy_margin
    checks = [
        Check("ODE-Net has fewer parameters than the ResNet", ode["params"], "<", res["params"],
              f"ResNet-{config.resnet_blocks} parameters"),
        Check(f"ODE-Net test accuracy within {margin:g} of the ResNet", ode["test_accuracy"], ">=",
              res["test_accuracy"] - margin, f"ResNet accuracy - {margin:g}"),
        Check("NFE falls as the test-time tolerance loosens", loose["nfe"], "<", tight["nfe"],
              f"NFE at tol {tight['tol']:g}"),
        Check("accuracy at the training tolerance is kept at the tightest tolerance",
              tight["accuracy"], ">=", train_row["accuracy"] - margin / 2,
              f"accuracy at tol {train_row['tol']:g} - {margin / 2:g}"),
        Check("forward NFE grows during training", nfe_late, ">", nfe_early,
              "NFE in the first tenth of training"),
        Check("adjoint memory grows less than backprop memory with the number of steps", adjoint_growth, "<",
              backprop_growth, "backprop growth ratio"),
        Check("adjoint memory is constant in the number of steps", adjoint_growth, "<=", 1.0,
              "1.0 = O(1) memory (paper)"),
        Check("adjoint gradient converges to backprop as the tolerance tightens",
              agreement[0]["rel_grad_diff"], "<", agreement[-1]["rel_grad_diff"],
              f"relative gradient difference at tol {agreement[-1]['tol']:g}"),
    ]
    figures(config, ctx, ode, res, rows, mem)
    notes = (
        f"Memory is the peak of distinct storages held for backward, counted with saved_tensors_hooks "
        f"over forward and backward, for RK4 with {m_first['steps']} to {m_last['steps']} steps. "
        f"Backward NFE (adjoint, error norm over [z, a, a_θ]) in the last tenth of training: "
        f"{nfe_bwd_late:.0f} vs forward {nfe_late:.0f} (the paper reports about half). Gradients are "
        f"approximations at loose tolerances: at dopri5 tol {agreement[-1]['tol']:g} the relative distance "
        f"to the tol-{agreement[0]['tol']:g} gradient is {agreement[-1]['adjoint_rel_err_vs_tightest']:.2g} "
        f"for the adjoint and {agreement[-1]['backprop_rel_err_vs_tightest']:.2g} for backprop through the "
        f"solver; at tol {agreement[0]['tol']:g} the two agree to {agreement[0]['rel_grad_diff']:.2g}."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, ode: dict, res: dict, rows: list[dict], mem: dict) -> None:
    from papers.core.plots import figure, moving_average, plot_lines

    fig, (ax_loss, ax_nfe) = figure(ncols=2)
    steps = list(range(len(ode["history"]["loss"])))
    losses = {"ODE-Net": moving_average(ode["history"]["loss"]),
              "ResNet": moving_average(res["history"]["loss"])}
    plot_lines(ax_loss, steps, losses, xlabel="training step", ylabel="loss (smoothed)", logy=True, marker="")
    nfes = {"forward": moving_average(ode["history"]["nfe_forward"]),
            "backward (adjoint)": moving_average(ode["history"]["nfe_backward"])}
    plot_lines(ax_nfe, steps, nfes, xlabel="training step", ylabel="NFE per step (smoothed)",
               title="NFE during training", marker="")
    ctx.save_figure(fig, "training")

    fig, (ax_nfe, ax_acc) = figure(ncols=2)
    tols = [r["tol"] for r in rows]
    plot_lines(ax_nfe, tols, {"forward NFE": [r["nfe"] for r in rows]}, xlabel="rtol = atol",
               ylabel="NFE", title="test-time tolerance", logx=True, logy=True)
    plot_lines(ax_acc, tols, {"ODE-Net": [r["accuracy"] for r in rows],
                              "ResNet": [res["test_accuracy"]] * len(rows)},
               xlabel="rtol = atol", ylabel="test accuracy", logx=True)
    ctx.save_figure(fig, "tolerance")

    fig, (ax_mem, ax_grad) = figure(ncols=2)
    memory = mem["memory"]
    plot_lines(ax_mem, [m["steps"] for m in memory],
               {"adjoint": [m["adjoint_peak_bytes"] / 2**20 for m in memory],
                "backprop through solver": [m["backprop_peak_bytes"] / 2**20 for m in memory]},
               xlabel="RK4 steps", ylabel="peak saved-tensor MiB", title="memory of one gradient",
               logx=True, logy=True)
    ax_mem.minorticks_off()
    ax_mem.set_xticks([m["steps"] for m in memory], [str(m["steps"]) for m in memory])
    agreement = mem["agreement"]
    nan = [float("nan")]  # the reference itself (tightest tolerance) is left out of the log plot
    looser = agreement[1:]
    diffs = {"adjoint vs backprop, same tol": [a["rel_grad_diff"] for a in agreement],
             "adjoint vs tightest backprop": nan + [a["adjoint_rel_err_vs_tightest"] for a in looser],
             "backprop vs tightest backprop": nan + [a["backprop_rel_err_vs_tightest"] for a in looser]}
    plot_lines(ax_grad, [a["tol"] for a in agreement], diffs, xlabel="dopri5 rtol = atol",
               ylabel="relative gradient difference", logx=True, logy=True)
    ctx.save_figure(fig, "memory")


