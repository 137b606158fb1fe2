"""Reproduction on generated sets, in three parts.

(a) Sum of digits (Zaheer et al., Sec. 4.1.2, with generated 'digits'): each digit d ∈ {0…9} has a
    fixed random prototype in R^dim; an element is its prototype plus Gaussian noise; the target is
    the sum of the set's digits. Trained on sets of 2–10 elements, tested on sets of up to 50:
    DeepSets ρ(Σφ(x)) (ρ linear, as in the paper) vs a GRU (the paper's baseline) and an MLP on the
    zero-padded concatenation. Accuracy of the rounded prediction, and how much each output changes
    when the set is permuted.
(b) Odd one out (the paper's set anomaly detection, Sec. 4.3, on generated data): every element of a
    set shows one digit but one shows another; a stack of permutation-equivariant layers scores each
    element, softmax over the set. Max, mean and sum pooling vs no interaction (Γ = 0).
(c) Median of M reals (Wagstaff et al., Sec. 5): DeepSets with latent width N swept for several M;
    test RMSE divided by the standard deviation of the median.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.plots import figure, plot_lines

from .model import POOLS, ConcatMLP, DeepSets, EquivariantNet, SetGRU

MODELS = ("deepsets", "gru", "mlp")  # part (a)


@dataclass
class Config:
    # (a) sum of digits
    feature_dim: int = 16
    digit_noise: float = 0.3
    train_min_size: int = 2
    train_max_size: int = 10
    test_sizes: tuple[int, ...] = (5, 10, 20, 30, 40, 50)
    test_sets: int = 500
    latent_dim: int = 64
    hidden: int = 64
    sum_steps: int = 1000
    # (b) odd one out
    outlier_set_size: int = 10
    outlier_pools: tuple[str, ...] = ("max", "mean")
    outlier_hidden: int = 32
    outlier_steps: int = 500
    # (c) median: latent width N against set size M
    median_set_sizes: tuple[int, ...] = (4, 8)
    median_latent_dims: tuple[int, ...] = (1, 2, 4, 8, 16)
    median_hidden: int = 32
    median_steps: int = 1000
    median_lr: float = 3e-3
    median_test_sets: int = 2000
    # shared: Adam with cosine decay of the learning rate
    batch_size: int = 64
    lr: float = 1e-3
    threads: int = 1  # torch CPU threads set by run (0 keeps the process setting)

    def validate(self) -> None:
        for name in ("feature_dim", "test_sets", "latent_dim", "hidden", "sum_steps", "outlier_hidden",
                     "outlier_steps", "median_hidden", "median_steps", "median_test_sets", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.train_min_size <= self.train_max_size:
            raise ValueError(f"train sizes need 1 <= train_min_size <= train_max_size, "
                             f"got {self.train_min_size}, {self.train_max_size}")
        if not self.test_sizes or min(self.test_sizes) < 1 or max(self.test_sizes) <= self.train_max_size:
            raise ValueError(f"test_sizes must be positive and reach beyond train_max_size "
                             f"{self.train_max_size}, got {self.test_sizes}")
        if not self.digit_noise >= 0:
            raise ValueError(f"digit_noise must be >= 0, got {self.digit_noise}")
        if self.outlier_set_size < 3:
            raise ValueError(f"outlier_set_size must be >= 3, got {self.outlier_set_size}")
        if not self.outlier_pools or not set(self.outlier_pools) <= set(POOLS):
            raise ValueError(f"outlier_pools must be values from {POOLS}, got {self.outlier_pools}")
        if not self.median_set_sizes or min(self.median_set_sizes) < 2:
            raise ValueError(f"median_set_sizes must be values >= 2, got {self.median_set_sizes}")
        dims = self.median_latent_dims
        if len(dims) < 2 or min(dims) < 1 or list(dims) != sorted(set(dims)):
            raise ValueError(f"median_latent_dims must be at least two increasing values >= 1, got {dims}")
        for name in ("lr", "median_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"feature_dim": 4, "test_sizes": (5, 20), "test_sets": 32, "latent_dim": 8, "hidden": 8,
              "sum_steps": 8, "outlier_set_size": 4, "outlier_pools": ("max", "sum"), "outlier_hidden": 8,
              "outlier_steps": 8, "median_set_sizes": (2,), "median_latent_dims": (1, 2, 4),
              "median_hidden": 8, "median_steps": 8, "median_test_sets": 32, "batch_size": 16},
    "default": {},
    "full": {"sum_steps": 8000, "outlier_pools": ("max", "mean", "sum"), "outlier_hidden": 64,
             "outlier_steps": 4000, "median_hidden": 64, "median_steps": 8000, "batch_size": 128,
             "median_set_sizes": (4, 8, 16), "median_latent_dims": (1, 2, 4, 8, 16, 32)},
}


# ---------- data ----------


def digit_sets(n: int, min_size: int, max_size: int, prototypes: Tensor, noise: float,
               generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` sets of min_size…max_size noisy digit prototypes, padded at the end to ``max_size``.

    Returns (x [n, max_size, dim], mask [n, max_size], digits [n, max_size], with −1 at padding).
    """
    sizes = torch.randint(min_size, max_size + 1, (n,), generator=generator)
    mask = torch.arange(max_size)[None, :] < sizes[:, None]
    digits = torch.randint(len(prototypes), (n, max_size), generator=generator)
    x = prototypes[digits] + noise * torch.randn(n, max_size, prototypes.shape[1], generator=generator)
    return x * mask.unsqueeze(-1), mask, digits.masked_fill(~mask, -1)


def odd_one_out_sets(n: int, size: int, prototypes: Tensor, noise: float,
                     generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Sets where ``size − 1`` elements show one digit and one element (the target index) another."""
    n_digits = len(prototypes)
    common = torch.randint(n_digits, (n,), generator=generator)
    odd = (common + torch.randint(1, n_digits, (n,), generator=generator)) % n_digits
    where = torch.randint(size, (n,), generator=generator)
    digits = common[:, None].repeat(1, size)
    digits[torch.arange(n), where] = odd
    x = prototypes[digits] + noise * torch.randn(n, size, prototypes.shape[1], generator=generator)
    return x, where


# ---------- training ----------


def fit(model: nn.Module, batch: Callable[[torch.Generator], tuple], loss: Callable[..., Tensor], *,
        steps: int, lr: float, seed: int, name: str, ctx) -> list[float]:
    """Adam with cosine decay on fresh batches ``batch(generator)``; ``loss(model, *batch)`` is minimised."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam((p for p in model.parameters() if p.requires_grad), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    history = []
    with ctx.progress_bar(steps, f"training {name}") as bar:
        for step in range(steps):
            value = loss(model, *batch(generator))
            if not torch.isfinite(value):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            schedule.step()
            history.append(value.item())
            if step % 100 == 0 or step == steps - 1:
                ctx.log({f"{name}_loss": value.item()}, step=step)
            bar.update(1, loss=value.item())
    return history


def permutation_error(model: nn.Module, x: Tensor, mask: Tensor, generator: torch.Generator,
                      trials: int = 5) -> float:
    """max |f(πX) − f(X)| over random permutations π of the real elements (float64, trained weights)."""
    model = model.double()
    x = x.double()
    with torch.no_grad():
        reference = model(x, mask)
        worst = 0.0
        for _ in range(trials):
            keys = torch.rand(mask.shape, generator=generator, dtype=torch.float64).masked_fill(~mask, 2.0)
            order = keys.argsort(dim=1)  # shuffles the real elements, keeps padding at the end
            permuted = x[torch.arange(len(x))[:, None], order]
            worst = max(worst, (model(permuted, mask) - reference).abs().max().item())
    model.float()
    return worst


def sum_of_digits(config: Config, ctx) -> dict:
    generator = torch.Generator().manual_seed(ctx.seed)
    prototypes = torch.randn(10, config.feature_dim, generator=generator)
    lo, hi = config.train_min_size, config.train_max_size
    biggest = max(config.test_sizes)

    def batch(g):
        x, mask, digits = digit_sets(config.batch_size, lo, hi, prototypes, config.digit_noise, g)
        return x, mask, digits.clamp(min=0).sum(1, keepdim=True).float()

    def mse(model, x, mask, target):
        return nn.functional.mse_loss(model(x, mask), target)

    makers = {
        "deepsets": lambda: DeepSets(config.feature_dim, latent_dim=config.latent_dim,
                                     phi_hidden=(config.hidden,), rho_hidden=()),
        "gru": lambda: SetGRU(config.feature_dim, hidden=config.hidden),
        "mlp": lambda: ConcatMLP(config.feature_dim, biggest, hidden=(2 * config.hidden, 2 * config.hidden)),
    }
    out = {"test_sizes": list(config.test_sizes)}
    for name, make in makers.items():
        torch.manual_seed(ctx.seed)
        model = make()
        history = fit(model, batch, mse, steps=config.sum_steps, lr=config.lr, seed=ctx.seed + 1,
                      name=name, ctx=ctx)
        test_generator = torch.Generator().manual_seed(ctx.seed + 2)
        accuracy, mae = [], []
        for size in config.test_sizes:
            x, mask, digits = digit_sets(config.test_sets, size, size, prototypes, config.digit_noise,
                                         test_generator)
            target = digits.sum(1).float()
            with torch.no_grad():
                prediction = model(x, mask).squeeze(1)
            accuracy.append((prediction.round() == target).float().mean().item())
            mae.append((prediction - target).abs().mean().item())
        x, mask, _ = digit_sets(config.test_sets, hi, hi, prototypes, config.digit_noise, test_generator)
        out[name] = {"accuracy": accuracy, "mae": mae, "final_loss": sum(history[-50:]) / len(history[-50:]),
                     "permutation_error": permutation_error(model, x, mask, test_generator)}
    return out


def odd_one_out(config: Config, ctx) -> dict:
    generator = torch.Generator().manual_seed(ctx.seed + 10)
    prototypes = torch.randn(10, config.feature_dim, generator=generator)
    size = config.outlier_set_size

    def batch(g):
        return odd_one_out_sets(config.batch_size, size, prototypes, config.digit_noise, g)

    def cross_entropy(model, x, where):
        return nn.functional.cross_entropy(model(x), where)

    arms = {pooling: True for pooling in config.outlier_pools} | {"none": False}
    test_x, test_where = odd_one_out_sets(config.test_sets, size, prototypes, config.digit_noise,
                                          torch.Generator().manual_seed(ctx.seed + 11))
    out = {}
    for arm, interaction in arms.items():
        torch.manual_seed(ctx.seed)
        pooling = arm if interaction else "max"
        model = EquivariantNet(config.feature_dim, (config.outlier_hidden,) * 2, pooling, interaction)
        fit(model, batch, cross_entropy, steps=config.outlier_steps, lr=config.lr, seed=ctx.seed + 12,
            name=f"odd_one_out_{arm}", ctx=ctx)
        with torch.no_grad():
            scores = model(test_x)
            accuracy = (scores.argmax(1) == test_where).float().mean().item()
            order = torch.randperm(size, generator=torch.Generator().manual_seed(ctx.seed + 13))
            equivariance = (model(test_x[:, order]) - scores[:, order]).abs().max().item()
        out[arm] = {"accuracy": accuracy, "equivariance_error": equivariance}
    return out


def median_sweep(config: Config, ctx) -> dict:
    rows = []
    for m in config.median_set_sizes:
        test_generator = torch.Generator().manual_seed(ctx.seed + m)
        test = torch.rand(config.median_test_sets, m, 1, generator=test_generator)
        test_median = test.squeeze(-1).quantile(0.5, dim=1)
        scale = test_median.std().item()
        for n in config.median_latent_dims:
            def batch(g, m=m):
                x = torch.rand(config.batch_size, m, 1, generator=g)
                return x, x.squeeze(-1).quantile(0.5, dim=1, keepdim=True)

            def mse(model, x, target):
                return nn.functional.mse_loss(model(x), target)

            torch.manual_seed(ctx.seed)
            model = DeepSets(1, latent_dim=n, phi_hidden=(config.median_hidden,) * 2,
                             rho_hidden=(config.median_hidden,) * 2, activation=nn.ReLU)
            fit(model, batch, mse, steps=config.median_steps, lr=config.median_lr, seed=ctx.seed + 20,
                name=f"median_M{m}_N{n}", ctx=ctx)
            with torch.no_grad():
                rmse = (model(test).squeeze(1) - test_median).pow(2).mean().sqrt().item()
            rows.append({"set_size": m, "latent_dim": n, "rmse": rmse, "relative_rmse": rmse / scale})
    return {"rows": rows}


# ---------- run ----------


def _ratio_around(rows: list[dict], m: int) -> tuple[float, float] | None:
    """(error(N = M/2) / error(N = M), error(N = M) / error(N = 2M)) when all three were measured."""
    errors = {r["latent_dim"]: r["relative_rmse"] for r in rows if r["set_size"] == m}
    if m % 2 or not {m // 2, m, 2 * m} <= set(errors):
        return None
    return errors[m // 2] / errors[m], errors[m] / errors[2 * m]


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    sums = ctx.stage("sum_of_digits", lambda: sum_of_digits(config, ctx))
    odd = ctx.stage("odd_one_out", lambda: odd_one_out(config, ctx))
    median = ctx.stage("median_sweep", lambda: median_sweep(config, ctx))

    sizes = sums["test_sizes"]
    fig, (ax_acc, ax_mae) = figure(2)
    plot_lines(ax_acc, sizes, {name: sums[name]["accuracy"] for name in MODELS},
               xlabel="set size", ylabel="accuracy (rounded sum)",
               title=f"trained on sizes {config.train_min_size}–{config.train_max_size}")
    plot_lines(ax_mae, sizes, {name: sums[name]["mae"] for name in MODELS},
               xlabel="set size", ylabel="mean absolute error", logy=True)
    for ax in (ax_acc, ax_mae):
        ax.axvspan(config.train_min_size, config.train_max_size, color="grey", alpha=0.15)
    ctx.save_figure(fig, "set_size_generalisation")

    fig, (ax,) = figure()
    for m in config.median_set_sizes:
        rows = [r for r in median["rows"] if r["set_size"] == m]
        ax.plot([r["latent_dim"] for r in rows], [r["relative_rmse"] for r in rows], marker="o",
                label=f"M={m}")
        ax.axvline(m, color=ax.lines[-1].get_color(), ls=":", alpha=0.6)
    ax.set(xscale="log", yscale="log", xlabel="latent width N", ylabel="RMSE / std(median)",
           title="median of M reals (dotted: N = M)")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "median_latent_sweep")

    last, models = -1, MODELS
    metrics = {f"{name}_accuracy_size{size}": sums[name]["accuracy"][i]
               for name in models for i, size in enumerate(sizes)}
    metrics |= {f"{name}_mae_size{sizes[last]}": sums[name]["mae"][last] for name in models}
    metrics |= {f"{name}_permutation_error": sums[name]["permutation_error"] for name in models}
    metrics |= {f"odd_one_out_accuracy_{arm}": odd[arm]["accuracy"] for arm in odd}
    metrics |= {f"odd_one_out_equivariance_error_{arm}": odd[arm]["equivariance_error"] for arm in odd}
    metrics |= {f"median_rmse_M{r['set_size']}_N{r['latent_dim']}": r["relative_rmse"]
                for r in median["rows"]}

    biggest = sizes[last]
    checks = [
        Check(f"(a) DeepSets beats the GRU on sets of {biggest}", sums["deepsets"]["accuracy"][last], ">",
              sums["gru"]["accuracy"][last], f"GRU accuracy at size {biggest}"),
        Check(f"(a) DeepSets beats the padded-concatenation MLP on sets of {biggest}",
              sums["deepsets"]["accuracy"][last], ">", sums["mlp"]["accuracy"][last],
              f"MLP accuracy at size {biggest}"),
        Check("(a) permuting a set changes the DeepSets output less than the MLP's (float64)",
              sums["deepsets"]["permutation_error"], "<", sums["mlp"]["permutation_error"],
              "largest change of the MLP's output"),
    ]
    for arm in config.outlier_pools:
        checks.append(Check(f"(b) equivariant layers ({arm} pooling) beat no interaction at odd one out",
                            odd[arm]["accuracy"], ">", odd["none"]["accuracy"],
                            "accuracy with Γ = 0 (an element-wise score reaches 1/2 at best)"))
    for m in config.median_set_sizes:
        ratios = _ratio_around(median["rows"], m)
        if ratios is not None:
            checks.append(Check(f"(c) median, M={m}: error falls more from N={m // 2} to {m} than from {m} "
                                f"to {2 * m}", ratios[0], ">", ratios[1],
                                f"error(N={m}) / error(N={2 * m})"))
    median_rows = [f"M={m}: {[round(r['relative_rmse'], 3) for r in median['rows'] if r['set_size'] == m]}"
                   for m in config.median_set_sizes]
    notes = (f"(a) accuracy of the rounded sum at sizes {sizes}: DeepSets "
             f"{[round(a, 3) for a in sums['deepsets']['accuracy']]}, GRU "
             f"{[round(a, 3) for a in sums['gru']['accuracy']]}, MLP "
             f"{[round(a, 3) for a in sums['mlp']['accuracy']]}. "
             f"Largest change under permutation (float64): DeepSets "
             f"{sums['deepsets']['permutation_error']:.2g}, GRU {sums['gru']['permutation_error']:.2g}, "
             f"MLP {sums['mlp']['permutation_error']:.2g}. (c) RMSE / std(median) for N = "
             f"{list(config.median_latent_dims)}: " + "; ".join(median_rows) + ".")
    return Result(metrics=metrics, checks=checks, notes=notes)
