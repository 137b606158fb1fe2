"""Reproduction of MoleculeNet's split protocol on a real series: random vs scaffold split, two models.

Data: the bundled ChEMBL series CHEMBL2321810 (1,017 molecules, measured pIC50), cut 80/10/10 into
train / validation / test either by a seeded random permutation or by MoleculeNet's deterministic
Bemis–Murcko scaffold split (largest scaffold groups to train, the rarest ones to test).

Models (MoleculeNet's fixed-fingerprint and graph-convolution families):
- ridge: ECFP4 bits (radius 2, 2048 bits) → closed-form ridge regression, λ picked on validation RMSE;
- gcn: the data layer's atom features → 3 GCN layers → mean pool → MLP, Adam on the standardised
  target, the epoch with the best validation RMSE kept (early stopping on validation).

Each (model, split) is run ``n_seeds`` times: the random split with split and model seed ``seed + k``,
the scaffold split (the same every time) with model seed ``seed + k``. Measured: test RMSE and MAE,
their mean and spread over seeds, the scaffold gap (scaffold − random mean RMSE), and, as context,
the RMSE of predicting the training mean on each test part.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.chem.data import load_chembl_pic50, mae, random_split, rmse, scaffold_split
from papers.chem.data.splits import Split
from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.plots import figure

SPLITS = ("random", "scaffold")
MODELS = ("ridge", "gcn")


@dataclass
class Config:
    # data
    max_molecules: int = 0  # 0 = all 1,017; a smaller number keeps the first ones (smoke runs)
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    n_seeds: int = 3
    # fingerprint baseline
    ecfp_radius: int = 2
    ecfp_bits: int = 2048
    ridge_alphas: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
    # graph network
    gcn_hidden: int = 64
    gcn_layers: int = 3
    epochs: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        if self.max_molecules < 0 or 0 < self.max_molecules < 50:
            raise ValueError(f"max_molecules must be 0 (all) or >= 50, got {self.max_molecules}")
        if len(self.fractions) != 3 or min(self.fractions) <= 0 or abs(sum(self.fractions) - 1) > 1e-6:
            raise ValueError(f"fractions must be three positive numbers summing to 1, got {self.fractions}")
        if self.n_seeds < 2:
            raise ValueError(f"n_seeds must be >= 2 (the spread over seeds is reported), got {self.n_seeds}")
        for name in ("ecfp_bits", "gcn_hidden", "gcn_layers", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.ecfp_radius < 0:
            raise ValueError(f"ecfp_radius must be >= 0, got {self.ecfp_radius}")
        if not self.ridge_alphas or any(not a > 0 for a in self.ridge_alphas):
            raise ValueError(f"ridge_alphas must be positive numbers, got {self.ridge_alphas}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"max_molecules": 200, "n_seeds": 2, "ecfp_bits": 256, "ridge_alphas": (1.0, 10.0),
              "gcn_hidden": 16, "gcn_layers": 2, "epochs": 2},
    "default": {},
    "full": {"n_seeds": 10, "epochs": 100, "gcn_hidden": 128},
}


def make_split(name: str, smiles: list[str], fractions, seed: int) -> Split:
    """The ``random`` split (seeded) or the ``scaffold`` split (deterministic) of ``smiles``."""
    if name == "random":
        return random_split(len(smiles), fractions, seed=seed)
    if name == "scaffold":
        return scaffold_split(smiles, fractions)
    raise ValueError(f"unknown split {name!r}; choose from {', '.join(SPLITS)}")


def fit_ridge(features: Tensor, y: Tensor, split: Split, alphas) -> tuple[Tensor, float]:
    """Test predictions of the ridge model whose λ has the lowest validation RMSE, and that λ."""
    from .model import RidgeRegression

    def fitted(alpha: float) -> RidgeRegression:
        return RidgeRegression(alpha).fit(features[split.train], y[split.train])

    best = min(alphas, key=lambda a: rmse(fitted(a).predict(features[split.valid]), y[split.valid]))
    return fitted(best).predict(features[split.test]).float(), best


def fit_gcn(graphs: list, y: Tensor, split: Split, config: Config, seed: int) -> tuple[Tensor, int]:
    """Test predictions of the GCN at its best validation epoch, and that epoch (1-based)."""
    from torch_geometric.data import Batch
    from torch_geometric.loader import DataLoader

    from .model import GCNRegressor

    torch.manual_seed(seed)
    model = GCNRegressor(graphs[0].x.shape[1], hidden=config.gcn_hidden, layers=config.gcn_layers)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    mean, std = y[split.train].mean(), y[split.train].std()
    loader = DataLoader([graphs[i] for i in split.train], batch_size=config.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    valid, test = (Batch.from_data_list([graphs[i] for i in part]) for part in (split.valid, split.test))

    def predict(batch) -> Tensor:
        model.eval()
        with torch.no_grad():
            return model(batch.x, batch.edge_index, batch.batch) * std + mean

    best_rmse, best_epoch, best_state = math.inf, 0, None
    for epoch in range(1, config.epochs + 1):
        model.train()
        for batch in loader:
            loss = torch.nn.functional.mse_loss(model(batch.x, batch.edge_index, batch.batch),
                                                (batch.y.squeeze(-1) - mean) / std)
            if not torch.isfinite(loss):
                raise PapersError(f"gcn: non-finite loss at epoch {epoch} (lr={config.lr})")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        valid_rmse = rmse(predict(valid), y[split.valid])
        if valid_rmse < best_rmse:
            best_rmse, best_epoch, best_state = valid_rmse, epoch, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    return predict(test), best_epoch


def evaluate(model_name: str, data: dict, config: Config, ctx) -> dict:
    """Every split × seed for one model: test RMSE/MAE per seed, and seed 0's test parity data."""
    out, start = {}, time.perf_counter()
    with ctx.progress_bar(len(SPLITS) * config.n_seeds, f"{model_name} runs") as bar:
        for split_name in SPLITS:
            runs = {"rmse": [], "mae": [], "mean_predictor_rmse": [], "test_target_std": [], "chosen": []}
            for k in range(config.n_seeds):
                seed = ctx.seed + k
                split = make_split(split_name, data["smiles"], config.fractions, seed)
                y_test = data["y"][split.test]
                if model_name == "ridge":
                    pred, chosen = fit_ridge(data["ecfp"], data["y"], split, config.ridge_alphas)
                else:
                    pred, chosen = fit_gcn(data["graphs"], data["y"], split, config, seed)
                runs["rmse"].append(rmse(pred, y_test))
                runs["mae"].append(mae(pred, y_test))
                train_mean = torch.full_like(y_test, data["y"][split.train].mean())
                runs["mean_predictor_rmse"].append(rmse(train_mean, y_test))
                runs["test_target_std"].append(y_test.std().item())
                runs["chosen"].append(chosen)
                if k == 0:
                    runs["parity"] = {"target": y_test.tolist(), "pred": pred.tolist()}
                ctx.log({f"{model_name}_{split_name}_test_rmse": runs["rmse"][-1]}, step=k)
                bar.update(1, rmse=runs["rmse"][-1])
            out[split_name] = runs
    out["time_s"] = time.perf_counter() - start
    return out


def load_data(config: Config) -> dict:
    from .model import ecfp_fingerprints

    dataset = load_chembl_pic50()
    if config.max_molecules:
        dataset = dataset.subset(range(min(config.max_molecules, len(dataset))))
    smiles = dataset.smiles
    ecfp, report = ecfp_fingerprints(smiles, radius=config.ecfp_radius, n_bits=config.ecfp_bits)
    if report.num_skipped:
        raise PapersError(f"ECFP could not read molecules the graphs were built from: {report.summary()}")
    return {"smiles": smiles, "graphs": dataset.graphs, "y": dataset.targets.squeeze(-1), "ecfp": ecfp}


def _spread(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def plot_rmse(results: dict, ctx) -> None:
    fig, (ax,) = figure(width=5.0)
    width = 0.38
    for offset, split_name in zip((-width / 2, width / 2), SPLITS, strict=True):
        xs = [i + offset for i in range(len(MODELS))]
        means = [statistics.mean(results[m][split_name]["rmse"]) for m in MODELS]
        errors = [_spread(results[m][split_name]["rmse"]) for m in MODELS]
        ax.bar(xs, means, width, yerr=errors, capsize=4, label=f"{split_name} split")
        baseline = [statistics.mean(results[m][split_name]["mean_predictor_rmse"]) for m in MODELS]
        ax.scatter(xs, baseline, marker="_", s=400, color="black", zorder=3,
                   label="predict the training mean" if split_name == SPLITS[0] else None)
    ax.set_xticks(range(len(MODELS)), ["ECFP4 + ridge", "GCN"])
    ax.set_ylabel("test RMSE (pIC50), mean ± sd over seeds")
    ax.set_title("ChEMBL2321810: random vs scaffold split")
    ax.legend(fontsize=8)
    ctx.save_figure(fig, "rmse")


def plot_parity(results: dict, ctx) -> None:
    fig, axes = figure(ncols=len(SPLITS), nrows=len(MODELS), width=3.4, height=3.3)
    for row, model_name in enumerate(MODELS):
        for col, split_name in enumerate(SPLITS):
            runs = results[model_name][split_name]
            ax, parity = axes[row * len(SPLITS) + col], runs["parity"]
            ax.scatter(parity["target"], parity["pred"], s=8, alpha=0.6)
            low = min(parity["target"] + parity["pred"])
            high = max(parity["target"] + parity["pred"])
            ax.plot([low, high], [low, high], color="black", linewidth=0.8)
            ax.set_title(f"{model_name}, {split_name} (RMSE {runs['rmse'][0]:.2f})", fontsize=9)
            ax.set_xlabel("measured pIC50")
            ax.set_ylabel("predicted pIC50")
    ctx.save_figure(fig, "parity")


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config)
    results = {name: ctx.stage(name, lambda name=name: evaluate(name, data, config, ctx)) for name in MODELS}
    plot_rmse(results, ctx)
    plot_parity(results, ctx)

    metrics, checks = {"molecules": len(data["smiles"])}, []
    for name in MODELS:
        stats = {}
        for split_name in SPLITS:
            runs = results[name][split_name]
            stats[split_name] = (statistics.mean(runs["rmse"]), _spread(runs["rmse"]))
            metrics[f"{name}_{split_name}_rmse"] = stats[split_name][0]
            metrics[f"{name}_{split_name}_rmse_sd"] = stats[split_name][1]
            metrics[f"{name}_{split_name}_mae"] = statistics.mean(runs["mae"])
        gap = stats["scaffold"][0] - stats["random"][0]
        spread = stats["scaffold"][1] + stats["random"][1]
        metrics[f"{name}_scaffold_gap"] = gap
        metrics[f"{name}_time_s"] = results[name]["time_s"]
        checks += [
            Check(f"{name}: scaffold-split test RMSE is higher than random-split test RMSE",
                  stats["scaffold"][0], ">", stats["random"][0], "random-split RMSE"),
            Check(f"{name}: the scaffold gap exceeds the seeds' spread",
                  gap, ">", spread, "sd(random) + sd(scaffold) over seeds"),
        ]
    for split_name in SPLITS:
        runs = results[MODELS[0]][split_name]
        metrics[f"mean_predictor_{split_name}_rmse"] = statistics.mean(runs["mean_predictor_rmse"])
        metrics[f"test_target_sd_{split_name}"] = statistics.mean(runs["test_target_std"])
    scaffold_test = make_split("scaffold", data["smiles"], config.fractions, ctx.seed).test
    notes = (
        f"{len(data['smiles'])} molecules; {config.n_seeds} seeds (random split: split and model seed; "
        f"scaffold split, {len(scaffold_test)} test molecules, fixed: model seed only, so the ridge "
        "model's scaffold spread is 0). Ridge λ chosen on validation: "
        f"random {results['ridge']['random']['chosen']}, scaffold {results['ridge']['scaffold']['chosen']}; "
        f"GCN best validation epochs: random {results['gcn']['random']['chosen']}, "
        f"scaffold {results['gcn']['scaffold']['chosen']}. Context: the scaffold test part is also more "
        f"spread out (target sd {metrics['test_target_sd_scaffold']:.2f} vs "
        f"{metrics['test_target_sd_random']:.2f}); predicting the training mean gives RMSE "
        f"{metrics['mean_predictor_scaffold_rmse']:.2f} (scaffold) vs "
        f"{metrics['mean_predictor_random_rmse']:.2f} (random)."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)
