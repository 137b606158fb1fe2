"""Reproduction: a trained linear self-attention layer vs one step of GD on the context (von Oswald et al.
2023, Sec. 3, Fig. 2).

Tasks: w ~ N(0, I_d), inputs x ~ U(−α, α)^d (α = 1 in training), targets y = wᵀx, N context pairs and
one query. The LSA layer is trained with Adam on ½(ŷ − y_q)² over fresh tasks every step.

Learners compared on the same held-out tasks:
- GD-1: one GD step from W = 0 on the context, η found by line search on the training distribution;
- GD-2: two GD steps, its own line-searched η (the nearest alternative: is the layer more than one step?);
- least squares: the exact in-context fit (what many GD steps converge to);
- the Prop. 1 construction with η of GD-1, in float64: it must equal GD-1 up to round-off.

Measured (paper's measures): loss, cosine of the predictions, RMSE between predictions ("preds diff"),
mean cosine and L2 distance of the sensitivities ∂ŷ/∂x_q ("model cos", "model diff"), during training and
at the end, also for inputs scaled by α ≠ 1 (outside the training distribution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import (
    LinearSelfAttention,
    compare,
    gd_predict,
    least_squares_predict,
    line_search,
    make_tokens,
    sensitivity,
)


@dataclass
class Config:
    # tasks
    input_dim: int = 10
    n_context: int = 10
    # training of the LSA layer (Adam, cosine decay of the learning rate to zero)
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    init_std: float = 0.02
    # evaluation
    test_tasks: int = 10000
    eval_every: int = 100
    input_scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)  # α of the evaluation inputs
    lr_search_low: float = 1e-3
    lr_search_high: float = 1e2
    # torch CPU threads set by run (0 keeps the process setting, e.g. `papers run --threads`)
    threads: int = 1

    def validate(self) -> None:
        for name in ("input_dim", "n_context", "steps", "batch_size", "test_tasks", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "init_std", "lr_search_low"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value}")
        if not self.lr_search_high > self.lr_search_low:
            raise ValueError(f"lr_search_high must exceed lr_search_low, got {self.lr_search_high}")
        if 1.0 not in self.input_scales or any(not a > 0 for a in self.input_scales):
            raise ValueError(f"input_scales must be positive and include 1.0 (training), "
                             f"got {self.input_scales}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"input_dim": 4, "n_context": 6, "steps": 60, "batch_size": 128, "lr": 1e-2,
              "test_tasks": 500, "eval_every": 20, "input_scales": (1.0, 2.0)},
    "default": {},
    "full": {"steps": 10000, "batch_size": 2048, "test_tasks": 50000,
             "input_scales": (0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)},
}


def sample_tasks(n_tasks: int, n_context: int, input_dim: int, generator: torch.Generator, scale: float = 1.0,
                 dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """Regression tasks y = wᵀx, w ~ N(0, I), x ~ U(−scale, scale)^d: context x [B, N, d], y [B, N];
    query x_query [B, d], y_query [B]."""
    x = scale * (2 * torch.rand(n_tasks, n_context + 1, input_dim, generator=generator, dtype=dtype) - 1)
    w = torch.randn(n_tasks, input_dim, generator=generator, dtype=dtype)
    y = torch.einsum("bnd,bd->bn", x, w)
    return {"x": x[:, :-1], "y": y[:, :-1], "x_query": x[:, -1], "y_query": y[:, -1]}


def half_mse(prediction: Tensor, target: Tensor) -> float:
    return 0.5 * (prediction - target).pow(2).mean().item()


def best_gd_lr(tasks: dict[str, Tensor], steps: int, config: Config) -> float:
    """The paper's baseline: the GD step size minimising the query loss, by line search."""
    return line_search(lambda lr: half_mse(gd_predict(tasks["x"], tasks["y"], tasks["x_query"], lr, steps),
                                           tasks["y_query"]), config.lr_search_low, config.lr_search_high)


def learners(layer: LinearSelfAttention, gd_lrs: dict[str, float]) -> dict:
    """Each learner as ``predict(tasks, x_query) -> ŷ`` (x_query separate so that ∂ŷ/∂x_q can be taken)."""
    def lsa(t, xq):
        return layer.predict(make_tokens(t["x"], t["y"], xq))

    return {
        "lsa": lsa,
        "gd1": lambda t, xq: gd_predict(t["x"], t["y"], xq, gd_lrs["gd1"], 1),
        "gd2": lambda t, xq: gd_predict(t["x"], t["y"], xq, gd_lrs["gd2"], 2),
        "least_squares": lambda t, xq: least_squares_predict(t["x"], t["y"], xq),
    }


def evaluate(layer: LinearSelfAttention, tasks: dict[str, Tensor], gd_lrs: dict[str, float]) -> dict:
    """Loss of every learner, and the alignment of the LSA with each of the others."""
    predictions, sensitivities, out = {}, {}, {}
    for name, predict in learners(layer, gd_lrs).items():
        with torch.no_grad():
            predictions[name] = predict(tasks, tasks["x_query"])
        sensitivities[name] = sensitivity(lambda xq, p=predict: p(tasks, xq), tasks["x_query"])
        out[f"{name}_loss"] = half_mse(predictions[name], tasks["y_query"])
    for name in ("gd1", "gd2", "least_squares"):
        for key, value in compare(predictions["lsa"], predictions[name], sensitivities["lsa"],
                                  sensitivities[name]).items():
            out[f"lsa_vs_{name}_{key}"] = value
    return out


def layer_state(layer: LinearSelfAttention) -> dict[str, list]:
    return {name: p.detach().tolist() for name, p in layer.named_parameters()}


def load_layer(state: dict[str, list], token_dim: int) -> LinearSelfAttention:
    layer = LinearSelfAttention(token_dim)
    layer.load_state_dict({name: torch.tensor(value) for name, value in state.items()})
    return layer


def train(config: Config, ctx, gd_lrs: dict[str, float], monitor: dict[str, Tensor]) -> dict:
    """Adam on fresh tasks every step; the alignment with GD-1 and GD-2 every ``eval_every`` steps."""
    torch.manual_seed(ctx.seed)
    layer = LinearSelfAttention(config.input_dim + 1, config.init_std)
    optimiser = torch.optim.Adam(layer.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, config.steps)
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    history = []
    with ctx.progress_bar(config.steps, "training LSA") as bar:
        for step in range(config.steps + 1):
            if step % config.eval_every == 0 or step == config.steps:
                row = {"step": step, **evaluate(layer, monitor, gd_lrs)}
                history.append(row)
                ctx.log({k: v for k, v in row.items() if k != "step"}, step=step)
            if step == config.steps:
                break
            tasks = sample_tasks(config.batch_size, config.n_context, config.input_dim, generator)
            loss = 0.5 * (layer.predict(make_tokens(tasks["x"], tasks["y"], tasks["x_query"]))
                          - tasks["y_query"]).pow(2).mean()
            if not torch.isfinite(loss):
                raise PapersError(f"LSA training: non-finite loss at step {step}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            bar.update(1, loss=loss.item())
    return {"history": history, "weights": layer_state(layer)}


def effective_preconditioner(layer: LinearSelfAttention, input_dim: int) -> Tensor:
    """Γ in the layer's GD-like term ŷ ⊃ Σ_i y_i x_iᵀ Γ x_q: Γ = −(P W_V)_{y,y} (W_Kᵀ W_Q)_{x,x}."""
    with torch.no_grad():
        value_y = (layer.projection @ layer.value)[-1, -1]
        scores = layer.key.T @ layer.query
        return -value_y * scores[:input_dim, :input_dim]


def construction_error(config: Config, gd_lr: float, seed: int) -> dict:
    """The Prop. 1 layer vs one GD step, float64, on fresh tasks: max |ŷ_LSA − ŷ_GD| and max |ŷ_GD|."""
    tasks = sample_tasks(config.test_tasks, config.n_context, config.input_dim,
                         torch.Generator().manual_seed(seed), dtype=torch.float64)
    layer = LinearSelfAttention.gd_construction(config.input_dim, gd_lr, config.n_context)
    with torch.no_grad():
        ours = layer.predict(make_tokens(tasks["x"], tasks["y"], tasks["x_query"]))
    gd = gd_predict(tasks["x"], tasks["y"], tasks["x_query"], gd_lr, 1)
    return {"max_abs_error": (ours - gd).abs().max().item(), "max_abs_prediction": gd.abs().max().item()}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    d, n = config.input_dim, config.n_context

    def tasks_at(scale: float, offset: int) -> dict[str, Tensor]:
        return sample_tasks(config.test_tasks, n, d, torch.Generator().manual_seed(ctx.seed + offset), scale)

    def search() -> dict:
        tuning = tasks_at(1.0, 100)
        return {"gd1": best_gd_lr(tuning, 1, config), "gd2": best_gd_lr(tuning, 2, config)}

    gd_lrs = ctx.stage("line_search", search)
    trained = ctx.stage("train", lambda: train(config, ctx, gd_lrs, tasks_at(1.0, 200)))
    layer = load_layer(trained["weights"], d + 1)
    scales = sorted(config.input_scales)
    final = ctx.stage("evaluate", lambda: {
        "by_scale": [{"scale": a, **evaluate(layer, tasks_at(a, 300 + i), gd_lrs)}
                     for i, a in enumerate(scales)],
        "construction": construction_error(config, gd_lrs["gd1"], ctx.seed + 400),
    })
    by_scale = final["by_scale"]
    train_row = next(r for r in by_scale if r["scale"] == 1.0)
    widest = by_scale[-1]
    gamma = effective_preconditioner(layer, d)
    target = gd_lrs["gd1"] / n * torch.eye(d)
    gamma_distance = ((gamma - target).norm() / target.norm()).item()
    eps = torch.finfo(torch.float64).eps
    construction = final["construction"]
    round_off = 100 * eps * construction["max_abs_prediction"]

    metrics = {
        "gd1_lr": gd_lrs["gd1"],
        "gd2_lr": gd_lrs["gd2"],
        **{k: v for k, v in train_row.items() if k != "scale"},
        "preconditioner_relative_distance": gamma_distance,
        "construction_max_abs_error": construction["max_abs_error"],
        "construction_max_abs_prediction": construction["max_abs_prediction"],
        **{f"scale{widest['scale']:g}_lsa_vs_{name}_model_cosine": widest[f"lsa_vs_{name}_model_cosine"]
           for name in ("gd1", "gd2", "least_squares")},
        "by_scale": by_scale,
    }
    r = train_row
    checks = [
        Check("LSA predictions align with GD-1 more than with GD-2 (prediction cosine)",
              r["lsa_vs_gd1_prediction_cosine"], ">", r["lsa_vs_gd2_prediction_cosine"],
              "cosine LSA vs GD-2"),
        Check("LSA sensitivities align with GD-1 more than with GD-2 (model cosine)",
              r["lsa_vs_gd1_model_cosine"], ">", r["lsa_vs_gd2_model_cosine"], "model cosine LSA vs GD-2"),
        Check("LSA predictions are closer to GD-1 than to GD-2 (preds diff)",
              r["lsa_vs_gd1_preds_diff"], "<", r["lsa_vs_gd2_preds_diff"], "preds diff LSA vs GD-2"),
        Check("LSA loss is closer to GD-1's than to GD-2's", abs(r["lsa_loss"] - r["gd1_loss"]), "<",
              abs(r["lsa_loss"] - r["gd2_loss"]), "|loss LSA − loss GD-2|"),
        Check(f"outside training (α = {widest['scale']:g}) LSA aligns with GD-1 more than with least squares",
              widest["lsa_vs_gd1_model_cosine"], ">", widest["lsa_vs_least_squares_model_cosine"],
              "model cosine LSA vs least squares"),
        Check("Prop. 1 construction equals one GD step (float64)", construction["max_abs_error"], "<=",
              round_off, "100 ε · max |ŷ| (exact identity up to round-off)"),
    ]
    figures(ctx, trained["history"], by_scale, gamma * n / gd_lrs["gd1"], layer)
    notes = (
        f"Line search: η = {gd_lrs['gd1']:.4g} for one step, {gd_lrs['gd2']:.4g} for two. On the training "
        f"distribution the trained layer's loss is {r['lsa_loss']:.4g} against {r['gd1_loss']:.4g} for GD-1, "
        f"{r['gd2_loss']:.4g} for GD-2 and {r['least_squares_loss']:.3g} for exact least squares; prediction "
        f"cosine with GD-1 {r['lsa_vs_gd1_prediction_cosine']:.5f}, model cosine "
        f"{r['lsa_vs_gd1_model_cosine']:.5f}. The learned preconditioner Γ = −(P W_V)_yy (W_KᵀW_Q)_xx is "
        f"{gamma_distance:.3g} (relative Frobenius) from the GD-1 value (η/N) I. At input scale "
        f"α = {widest['scale']:g} (η kept from α = 1) the model cosine of the LSA is "
        f"{widest['lsa_vs_gd1_model_cosine']:.5f} with GD-1, "
        f"{widest['lsa_vs_gd2_model_cosine']:.3f} with GD-2 and "
        f"{widest['lsa_vs_least_squares_model_cosine']:.3f} with least squares; losses LSA "
        f"{widest['lsa_loss']:.4g}, GD-1 {widest['gd1_loss']:.4g}, GD-2 {widest['gd2_loss']:.4g}."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, history: list[dict], by_scale: list[dict], gamma: Tensor,
            layer: LinearSelfAttention) -> None:
    from papers.core.plots import figure, plot_lines

    steps = [h["step"] for h in history]
    fig, (ax_loss, ax_cos, ax_diff) = figure(ncols=3)
    plot_lines(ax_loss, steps, {"trained LSA": [h["lsa_loss"] for h in history],
                                "GD-1 (best η)": [h["gd1_loss"] for h in history],
                                "GD-2 (best η)": [h["gd2_loss"] for h in history]},
               xlabel="training step", ylabel="query loss ½(ŷ − y)²", logy=True, marker="")
    one_minus = {f"LSA vs {label}, {kind}": [max(1 - h[f"lsa_vs_{name}_{kind}_cosine"], 1e-8)
                                             for h in history]
                 for name, label in (("gd1", "GD-1"), ("gd2", "GD-2")) for kind in ("prediction", "model")}
    plot_lines(ax_cos, steps, one_minus, xlabel="training step", ylabel="1 − cosine", logy=True, marker="")
    diffs = {f"LSA vs {label}, {kind}": [h[f"lsa_vs_{name}_{kind}_diff"] for h in history]
             for name, label in (("gd1", "GD-1"), ("gd2", "GD-2")) for kind in ("preds", "model")}
    plot_lines(ax_diff, steps, diffs, xlabel="training step", ylabel="L2 difference", logy=True, marker="")
    ctx.save_figure(fig, "training")

    scales = [r["scale"] for r in by_scale]
    fig, (ax_loss, ax_cos) = figure(ncols=2)
    plot_lines(ax_loss, scales, {name: [r[f"{key}_loss"] for r in by_scale] for key, name in
                                 (("lsa", "trained LSA"), ("gd1", "GD-1"), ("gd2", "GD-2"))},
               xlabel="input scale α (trained at 1)", ylabel="query loss", logy=True)
    plot_lines(ax_cos, scales, {f"LSA vs {label}": [1 - r[f"lsa_vs_{name}_model_cosine"] for r in by_scale]
                                for name, label in (("gd1", "GD-1"), ("gd2", "GD-2"))},
               xlabel="input scale α (trained at 1)", ylabel="1 − model cosine", logy=True)
    ctx.save_figure(fig, "input_scale")

    fig, axes = figure(ncols=3, width=3.6)
    with torch.no_grad():
        panels = {"Γ · N/η (GD-1 = I)": gamma, "W_Kᵀ W_Q": layer.key.T @ layer.query,
                  "P W_V": layer.projection @ layer.value}
    for ax, (title, matrix) in zip(axes, panels.items(), strict=True):
        limit = matrix.abs().max().item()
        image = ax.imshow(matrix.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(title)
        ax.grid(False)
        fig.colorbar(image, ax=ax, fraction=0.046)
    ctx.save_figure(fig, "weights")
