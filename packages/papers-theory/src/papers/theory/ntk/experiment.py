"""Reproduction: wide ReLU networks in NTK parametrisation are kernel machines (Jacot et al. 2018, Fig. 1–2;
Lee et al. 2019, Fig. 1–4).

Data (as Jacot et al.): inputs on the unit circle x(γ) = (cos γ, sin γ); a 1-D regression in the angle γ,
y = sin(k γ) at N random training angles, evaluated on an even grid of test angles.

(a) Kernel at initialisation: for every width, the empirical NTK Θ̂ on training and test inputs for
    several seeds; relative Frobenius distance to the analytic NTK, ‖Θ̂ − Θ‖_F/‖Θ‖_F, and the spread of
    Θ̂ across seeds, RMS of the per-entry standard deviation / RMS of Θ.
(b) Training: full-batch GD with step η = lr_fraction · 2N/λ_max(Θ(X_tr, X_tr)) on L = 1/(2N) Σ (f − y)²,
    the network and its linearisation f_lin(θ) = f(θ_0) + J(θ_0)(θ − θ_0) trained side by side. Measured
    on the test angles after T steps: the kernel change ‖Θ̂_T − Θ̂_0‖_F/‖Θ̂_0‖_F; the RMS distance of the
    network to its linearisation and to the closed-form kernel-regression outputs with the empirical NTK
    at initialisation and with the analytic NTK (both starting from the network's own f_0), each divided
    by how far the network moved, RMS(f_T − f_0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import linear_regression

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import NTKMLP, Linearized, analytic_ntk, empirical_ntk, ntk_predict


@dataclass
class Config:
    # data: y = sin(k γ) on the unit circle
    n_train: int = 20
    n_test: int = 100
    frequency: int = 2
    # network (NTK parametrisation, ReLU)
    widths: tuple[int, ...] = (128, 512, 2048, 8192)
    hidden_layers: int = 1
    sigma_w: float = math.sqrt(2)
    sigma_b: float = 0.1
    # (a) kernel at initialisation
    kernel_seeds: int = 8
    # (b) training by full-batch gradient descent
    train_seeds: int = 3
    steps: int = 300
    lr_fraction: float = 0.5  # η as a fraction of the critical step 2N/λ_max of the analytic kernel
    # torch CPU threads set by run (0 keeps the process setting, e.g. `papers run --threads`)
    threads: int = 1

    def validate(self) -> None:
        for name in ("n_train", "n_test", "frequency", "hidden_layers", "kernel_seeds", "train_seeds",
                     "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_seeds < 2:
            raise ValueError(f"kernel_seeds must be >= 2 (a spread across seeds), got {self.kernel_seeds}")
        if len(self.widths) < 2 or min(self.widths) < 1 or list(self.widths) != sorted(set(self.widths)):
            raise ValueError(f"widths must be at least two increasing positive values, got {self.widths}")
        if not (self.sigma_w > 0 and self.sigma_b >= 0):
            raise ValueError(f"sigma_w must be > 0 and sigma_b >= 0, got {self.sigma_w}, {self.sigma_b}")
        if not 0 < self.lr_fraction < 1:
            raise ValueError(f"lr_fraction must lie in (0, 1) for stable GD, got {self.lr_fraction}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_train": 8, "n_test": 24, "widths": (16, 64, 256), "kernel_seeds": 3, "train_seeds": 1,
              "steps": 20},
    "default": {},
    "full": {"widths": (64, 256, 1024, 4096), "hidden_layers": 2, "kernel_seeds": 16, "train_seeds": 5,
             "steps": 1000},
}


def circle(angles: Tensor) -> Tensor:
    """x(γ) = (cos γ, sin γ), [n, 2]."""
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def make_data(config: Config, seed: int) -> dict[str, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    train_angles = 2 * math.pi * torch.rand(config.n_train, generator=generator)
    test_angles = torch.linspace(0, 2 * math.pi, config.n_test + 1)[:-1]
    return {"train_angles": train_angles, "test_angles": test_angles, "x_train": circle(train_angles),
            "x_test": circle(test_angles), "y_train": torch.sin(config.frequency * train_angles)}


def network(config: Config, width: int, seed: int) -> NTKMLP:
    torch.manual_seed(seed)
    return NTKMLP(2, width, config.hidden_layers, config.sigma_w, config.sigma_b)


def relative(a: Tensor, b: Tensor) -> float:
    """‖a − b‖ / ‖b‖ (Frobenius)."""
    return ((a - b).norm() / b.norm()).item()


def rms(a: Tensor) -> float:
    return a.pow(2).mean().sqrt().item()


def loglog_slope(widths, values) -> float:
    return linear_regression([math.log(w) for w in widths], [math.log(v) for v in values]).slope


def kernels_at_init(config: Config, data: dict, analytic: Tensor, seed: int, ctx) -> dict:
    """(a) Distance of Θ̂ to Θ and its spread over seeds, per width; Θ̂(x_0, ·) on the test angles."""
    x = torch.cat([data["x_train"], data["x_test"]])
    rows = []
    with ctx.progress_bar(len(config.widths) * config.kernel_seeds, "(a) NTK at initialisation") as bar:
        for width in config.widths:
            kernels = []
            for s in range(config.kernel_seeds):
                kernels.append(empirical_ntk(network(config, width, seed + 1000 * s), x).double())
                bar.update(1, width=width)
            stack = torch.stack(kernels)
            n = config.n_train
            rows.append({
                "width": width,
                "relative_error": sum(relative(k, analytic) for k in kernels) / len(kernels),
                "seed_spread": rms(stack.std(dim=0)) / rms(analytic),
                "test_row_by_seed": stack[:, n, n:].tolist(),  # Θ̂(x(γ=0), x(γ)) on the test angles
            })
    return {"rows": rows, "analytic_test_row": analytic[config.n_train, config.n_train:].tolist()}


def train_pair(config: Config, data: dict, analytic: Tensor, width: int, seed: int, lr: float) -> dict:
    """(b) GD on the network and its linearisation side by side; compare with the kernel predictions."""
    n = config.n_train
    x_train, y_train = data["x_train"], data["y_train"]
    x = torch.cat([x_train, data["x_test"]])
    net = network(config, width, seed)
    linear = Linearized(net)
    kernel_0 = empirical_ntk(net, x)
    with torch.no_grad():
        f_0 = net(x)
    optimisers = [(model, torch.optim.SGD(params, lr=lr))
                  for model, params in ((net, net.parameters()), (linear, linear.params.parameters()))]
    for step in range(config.steps):
        for model, optimiser in optimisers:
            loss = 0.5 * (model(x_train) - y_train).pow(2).mean()
            if not torch.isfinite(loss):
                raise PapersError(f"width {width}: non-finite loss at step {step}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    kernel_t = empirical_ntk(net, x)
    with torch.no_grad():
        f_t, f_lin = net(x)[n:], linear(x)[n:]
    train_loss = 0.5 * (net(x_train).detach() - y_train).pow(2).mean().item()

    def kernel_prediction(kernel: Tensor, discrete: bool = True) -> Tensor:
        return ntk_predict(kernel[n:, :n], kernel[:n, :n], f_0[n:], f_0[:n], y_train, lr, config.steps,
                           discrete)

    empirical, flow = kernel_prediction(kernel_0), kernel_prediction(kernel_0, discrete=False)
    infinite = kernel_prediction(analytic.float())
    moved = rms(f_t - f_0[n:])
    return {
        "width": width, "seed": seed, "train_loss": train_loss, "output_change": moved,
        "kernel_change": relative(kernel_t, kernel_0),
        "linearisation_gap": rms(f_t - f_lin) / moved,
        "empirical_ntk_gap": rms(f_t - empirical) / moved,
        "analytic_ntk_gap": rms(f_t - infinite) / moved,
        "linear_vs_kernel_formula": rms(f_lin - empirical),
        "gd_vs_gradient_flow_formula": rms(empirical - flow),
        "curves": {"network": f_t.tolist(), "linearised": f_lin.tolist(), "analytic_ntk": infinite.tolist(),
                   "initial": f_0[n:].tolist()},
    }


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = make_data(config, ctx.seed)
    x = torch.cat([data["x_train"], data["x_test"]])
    analytic = analytic_ntk(x, x, config.hidden_layers, config.sigma_w, config.sigma_b)
    n = config.n_train
    lr = config.lr_fraction * 2 * n / torch.linalg.eigvalsh(analytic[:n, :n])[-1].item()

    init = ctx.stage("kernels_at_init", lambda: kernels_at_init(config, data, analytic, ctx.seed, ctx))

    def training() -> dict:
        runs = []
        total = len(config.widths) * config.train_seeds
        with ctx.progress_bar(total, "(b) GD: network and linearisation") as bar:
            for width in config.widths:
                for s in range(config.train_seeds):
                    runs.append(train_pair(config, data, analytic, width, ctx.seed + 1000 * s, lr))
                    ctx.log({k: v for k, v in runs[-1].items() if k != "curves"}, step=width)
                    bar.update(1, width=width)
        return {"runs": runs}

    trained = ctx.stage("training", training)

    widths = list(config.widths)
    keys = ("kernel_change", "linearisation_gap", "empirical_ntk_gap", "analytic_ntk_gap", "train_loss",
            "linear_vs_kernel_formula", "gd_vs_gradient_flow_formula")
    by_width = {w: [r for r in trained["runs"] if r["width"] == w] for w in widths}
    mean = {k: [sum(r[k] for r in by_width[w]) / len(by_width[w]) for w in widths] for k in keys}
    init_error = [r["relative_error"] for r in init["rows"]]
    spread = [r["seed_spread"] for r in init["rows"]]
    slopes = {"init_error": loglog_slope(widths, init_error), "seed_spread": loglog_slope(widths, spread),
              **{k: loglog_slope(widths, mean[k]) for k in keys[:4]}}

    metrics = {"lr": lr}
    for i, w in enumerate(widths):
        metrics[f"init_error_w{w}"] = init_error[i]
        metrics[f"seed_spread_w{w}"] = spread[i]
        for k in keys:
            metrics[f"{k}_w{w}"] = mean[k][i]
    metrics.update({f"slope_{k}": v for k, v in slopes.items()})

    lo, hi = f"width {widths[0]}", f"width {widths[-1]}"
    checks = [
        Check(f"(a) empirical NTK at init approaches the analytic NTK: error at {hi} < at {lo}",
              init_error[-1], "<", init_error[0], f"relative error at {lo}"),
        Check("(a) the error falls as width^(−1/2): distance of the log-log slope from −1/2",
              abs(slopes["init_error"] + 0.5), "<", 0.15, "CLT rate n^(−1/2) (theory), tolerance 0.15"),
        Check(f"(a) spread of the empirical NTK across seeds at {hi} < at {lo}", spread[-1], "<", spread[0],
              f"spread at {lo}"),
        Check(f"(b) relative NTK change during training at {hi} < at {lo}", mean["kernel_change"][-1], "<",
              mean["kernel_change"][0], f"change at {lo}"),
        Check(f"(b) network vs its linearisation (relative RMS) at {hi} < at {lo}",
              mean["linearisation_gap"][-1], "<", mean["linearisation_gap"][0], f"gap at {lo}"),
        Check(f"(b) network vs empirical-NTK kernel regression at {hi} < at {lo}",
              mean["empirical_ntk_gap"][-1], "<", mean["empirical_ntk_gap"][0], f"gap at {lo}"),
        Check(f"(b) network vs analytic-NTK kernel regression at {hi} < at {lo}",
              mean["analytic_ntk_gap"][-1], "<", mean["analytic_ntk_gap"][0], f"gap at {lo}"),
    ]
    figures(ctx, config, data, init, by_width, widths, init_error, spread, mean)
    notes = (
        f"GD step η = {lr:.4g} ({config.lr_fraction:g} of the critical 2N/λ_max), {config.steps} steps; "
        f"training loss at {hi}: {mean['train_loss'][-1]:.3g}. Log-log slopes against width: init error "
        f"{slopes['init_error']:.3f}, seed spread {slopes['seed_spread']:.3f}, kernel change "
        f"{slopes['kernel_change']:.3f}, network–linearisation gap {slopes['linearisation_gap']:.3f}, "
        f"empirical-NTK prediction gap {slopes['empirical_ntk_gap']:.3f}, analytic-NTK prediction gap "
        f"{slopes['analytic_ntk_gap']:.3f} (theory: −1/2 for each). The trained linearised model equals the "
        f"discrete-time kernel formula to {max(mean['linear_vs_kernel_formula']):.2g} RMS; the gradient-flow "
        f"formula e^(−ηΘt/N) differs from it by {max(mean['gd_vs_gradient_flow_formula']):.2g} RMS."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, config: Config, data: dict, init: dict, by_width: dict, widths: list[int],
            init_error: list[float], spread: list[float], mean: dict) -> None:
    from papers.core.plots import figure, plot_lines

    angles = data["test_angles"].tolist()
    fig, axes = figure(ncols=2)
    for ax, row in zip(axes, (init["rows"][0], init["rows"][-1]), strict=True):
        for i, values in enumerate(row["test_row_by_seed"]):
            ax.plot(angles, values, color="C0", alpha=0.5, linewidth=0.8,
                    label="empirical (seeds)" if i == 0 else None)
        ax.plot(angles, init["analytic_test_row"], color="k", linewidth=1.5, label="analytic (n → ∞)")
        ax.set(xlabel="γ", ylabel="Θ(x(0), x(γ))", title=f"NTK at initialisation, width {row['width']}")
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "kernel_at_init")

    fig, (ax,) = figure(width=5.5, height=4.2)
    series = {"init: ‖Θ̂ − Θ‖/‖Θ‖": init_error, "init: spread over seeds": spread,
              "train: ‖Θ̂_T − Θ̂_0‖/‖Θ̂_0‖": mean["kernel_change"],
              "train: network vs linearised": mean["linearisation_gap"],
              "train: network vs empirical-NTK regression": mean["empirical_ntk_gap"],
              "train: network vs analytic-NTK regression": mean["analytic_ntk_gap"]}
    plot_lines(ax, widths, series, xlabel="width", ylabel="relative difference", logx=True, logy=True)
    ax.plot(widths, [init_error[0] * (widths[0] / w) ** 0.5 for w in widths], "k:", label="∝ width^(−1/2)")
    ax.legend(fontsize=7)
    ctx.save_figure(fig, "width_scaling")

    fig, axes = figure(ncols=2)
    order = torch.argsort(data["train_angles"])
    for ax, width in zip(axes, (widths[0], widths[-1]), strict=True):
        curves = by_width[width][0]["curves"]
        plot_lines(ax, angles, {"network f_T": curves["network"], "linearised f_lin,T": curves["linearised"],
                                "analytic-NTK regression": curves["analytic_ntk"], "f_0": curves["initial"]},
                   xlabel="γ", ylabel="output", title=f"after {config.steps} GD steps, width {width}",
                   marker="")
        ax.plot(data["train_angles"][order].tolist(), data["y_train"][order].tolist(), "k.", label="training")
        ax.legend(fontsize=7)
    ctx.save_figure(fig, "trained_functions")
