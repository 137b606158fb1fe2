"""Reproduction (reduced scale): communication rounds to a target accuracy, FedSGD vs FederatedAveraging
(McMahan et al. 2017, Sec. 3, Table 2 and Fig. 2), on scikit-learn's 8 × 8 digits instead of MNIST.

Data: the 1,797 digits, a stratified 80/20 train/test split; the train set over K = 50 clients, IID
(shuffled, ~29 examples each) and pathological non-IID (sorted by label, 100 shards, 2 per client, so each
client holds at most 2 digits). Model: the paper's 2NN, an MLP 64-200-200-10 with ReLU (the paper's
784-200-200-10 with the 8 × 8 input). Every round a fraction C = 0.1 of the clients (5) is drawn.

Grid: E ∈ {1, 5, 20} local epochs × B ∈ {∞, 10}; (E, B) = (1, ∞) is FedSGD. As in the paper, the
learning rate of every (E, B) is chosen from a grid by the fewest rounds to the target, and the target
accuracy is one the FedSGD baseline reaches: 90 % test accuracy, fixed before the runs. A run stops at
the target or after ``max_rounds``; a learning rate also stops once it cannot beat the best one so far,
or when it has diverged (non-finite loss) or is stuck at chance (< 15 % after 20 rounds).

Measured: rounds to the target for every (E, B), split and learning rate; the speed-up over FedSGD
(rounds_FedSGD / rounds_FedAvg, the paper's Table 2 numbers); the test-accuracy curves of the best
learning rates.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from papers.core.experiment import Check, Result
from papers.vision.data import load_digits, stratified_split

from .model import accuracy, federated_training, iid_split, init_mlp, mlp_forward, pathological_non_iid_split

SPLITS = ("iid", "non_iid")
SPLIT_LABELS = {"iid": "IID", "non_iid": "pathological non-IID (2 digits per client)"}
PAPER_SPEEDUP = 10.0  # abstract: "reducing required communication rounds by 10–100× as compared to FedSGD"


@dataclass
class Config:
    num_clients: int = 50
    client_fraction: float = 0.1
    shards_per_client: int = 2
    hidden: int = 200
    test_fraction: float = 0.2
    # the (E, B) grid; B = 0 means B = ∞ (the whole local data set); (1, 0) is FedSGD
    epochs: tuple[int, ...] = (1, 5, 20)
    batch_sizes: tuple[int, ...] = (0, 10)
    lrs: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)
    target_accuracy: float = 0.90
    max_rounds: int = 300
    # torch CPU threads set by run (0 keeps the process setting)
    threads: int = 1

    def validate(self) -> None:
        for name in ("num_clients", "shards_per_client", "hidden", "max_rounds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.client_fraction <= 1.0:
            raise ValueError(f"client_fraction must be in [0, 1], got {self.client_fraction}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if not self.epochs or min(self.epochs) < 1 or 1 not in self.epochs:
            raise ValueError(f"epochs must be >= 1 and include 1 (FedSGD), got {self.epochs}")
        if not self.batch_sizes or min(self.batch_sizes) < 0 or 0 not in self.batch_sizes:
            raise ValueError(
                f"batch_sizes must be >= 0 (0 = ∞) and include 0 (FedSGD), got {self.batch_sizes}"
            )
        if not self.lrs or min(self.lrs) <= 0:
            raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {self.lrs}")
        if not 0.0 < self.target_accuracy < 1.0:
            raise ValueError(f"target_accuracy must be in (0, 1), got {self.target_accuracy}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "num_clients": 10,
        "hidden": 16,
        "epochs": (1, 2),
        "batch_sizes": (0, 20),
        "lrs": (0.5,),
        "target_accuracy": 0.3,
        "max_rounds": 4,
    },
    "default": {},
    "full": {
        "num_clients": 100,
        "epochs": (1, 5, 20),
        "batch_sizes": (0, 50, 10),
        "lrs": (0.02, 0.05, 0.1, 0.2, 0.5, 1.0),
        "max_rounds": 1000,
    },
}


def setting_name(epochs: int, batch: int) -> str:
    return f"E{epochs}_B{'inf' if batch == 0 else batch}"


def grid(config: Config) -> list[tuple[int, int]]:
    """(E, B) pairs, FedSGD (1, ∞) first."""
    pairs = [(e, b) for e in sorted(set(config.epochs)) for b in sorted(set(config.batch_sizes))]
    return sorted(pairs, key=lambda p: p != (1, 0))


def load_data(config: Config, seed: int) -> dict:
    digits = load_digits()
    x, y = digits.images.flatten(1), digits.labels
    train, test = stratified_split(y, config.test_fraction, seed=seed)
    x_train, y_train = x[train], y[train]
    split_generator = torch.Generator().manual_seed(seed + 1)
    parts = {
        "iid": iid_split(len(y_train), config.num_clients, generator=split_generator),
        "non_iid": pathological_non_iid_split(
            y_train, config.num_clients, shards_per_client=config.shards_per_client, generator=split_generator
        ),
    }
    return {"x_train": x_train, "y_train": y_train, "x_test": x[test], "y_test": y[test], "parts": parts}


def run_split(split: str, data: dict, config: Config, ctx) -> dict:
    """Every (E, B) of the grid and every learning rate on one split; the best rate's curve per setting."""
    init = init_mlp([64, config.hidden, config.hidden, 10], generator=torch.Generator().manual_seed(ctx.seed))
    x_test, y_test, parts = data["x_test"], data["y_test"], data["parts"][split]
    target = config.target_accuracy

    def evaluate(params):
        with torch.no_grad():
            logits = mlp_forward(params, x_test)
            loss = torch.nn.functional.cross_entropy(logits, y_test).item()
        return {"accuracy": accuracy(params, x_test, y_test), "loss": loss}

    results, start = {}, time.perf_counter()
    pairs = grid(config)
    with ctx.progress_bar(len(pairs) * len(config.lrs), f"{split}: (E, B) x learning rates") as bar:
        for epochs, batch in pairs:
            name, best, by_lr = setting_name(epochs, batch), None, {}
            for lr in config.lrs:
                cap = config.max_rounds if best is None else best["rounds"]

                def stop(history, cap=cap):
                    last = history[-1]
                    return (
                        last["accuracy"] >= target
                        or len(history) >= cap
                        or not math.isfinite(last["loss"])
                        or (len(history) >= 20 and last["accuracy"] < 0.15)
                    )

                _, history = federated_training(
                    init,
                    data["x_train"],
                    data["y_train"],
                    parts,
                    rounds=cap,
                    fraction=config.client_fraction,
                    epochs=epochs,
                    batch_size=batch or None,
                    lr=lr,
                    seed=ctx.seed + 2,
                    evaluate=evaluate,
                    stop=stop,
                )
                accs = [h["accuracy"] for h in history]
                reached = next((i + 1 for i, a in enumerate(accs) if a >= target), None)
                by_lr[str(lr)] = reached
                if reached is not None and (best is None or reached < best["rounds"]):
                    best = {"rounds": reached, "lr": lr, "curve": accs}
                bar.update(1, setting=name, lr=lr, rounds=reached or -1)
            if best is None:  # no rate reached the target: keep the curve of the last one, rounds censored
                best = {"rounds": None, "lr": None, "curve": accs}
            results[name] = {
                "epochs": epochs,
                "batch": batch,
                "rounds": best["rounds"],
                "lr": best["lr"],
                "curve": best["curve"],
                "rounds_by_lr": by_lr,
                "local_steps": local_steps(parts, epochs, batch),
            }
            ctx.log({f"{split}_{name}_rounds": best["rounds"] or -1}, step=len(results))
    return {
        "settings": results,
        "train_time_s": time.perf_counter() - start,
        "client_sizes": [len(p) for p in parts],
        "labels_per_client": [len(torch.unique(data["y_train"][p])) for p in parts],
    }


def local_steps(parts, epochs: int, batch: int) -> float:
    """u = E n / B, the mean number of local updates per client and round (the paper's Table 2 column)."""
    mean_n = sum(len(p) for p in parts) / len(parts)
    return epochs * (1.0 if batch == 0 else mean_n / batch)


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = load_data(config, ctx.seed)
    parts = {split: ctx.stage(split, lambda s=split: run_split(s, data, config, ctx)) for split in SPLITS}

    def rounds(split, name):
        value = parts[split]["settings"][name]["rounds"]
        return math.inf if value is None else float(value)

    fedsgd = setting_name(1, 0)
    metrics, best = {}, {}
    for split in SPLITS:
        settings = parts[split]["settings"]
        base = rounds(split, fedsgd)
        for name, s in settings.items():
            if s["rounds"] is not None:
                metrics[f"{split}_{name}_rounds"] = s["rounds"]
                metrics[f"{split}_{name}_lr"] = s["lr"]
                if math.isfinite(base):
                    metrics[f"{split}_{name}_speedup"] = base / s["rounds"]
        fedavg = [n for n in settings if n != fedsgd]
        best[split] = min(fedavg, key=lambda n: rounds(split, n))
        metrics[f"{split}_best_fedavg_speedup"] = (
            base / rounds(split, best[split]) if math.isfinite(base) else 0.0
        )
        metrics[f"{split}_max_labels_per_client"] = max(parts[split]["labels_per_client"])
        metrics[f"{split}_train_time_s"] = parts[split]["train_time_s"]

    e_max, b_min = (
        max(config.epochs),
        min(b for b in config.batch_sizes if b) if any(config.batch_sizes) else 0,
    )
    target = f"{100 * config.target_accuracy:g}%"
    checks = []
    for split in SPLITS:
        label = "IID" if split == "iid" else "non-IID"
        checks.append(
            Check(
                f"{label}: the best FedAvg (E, B) needs fewer rounds to {target} than FedSGD",
                rounds(split, best[split]),
                "<",
                rounds(split, fedsgd),
                "FedSGD rounds",
            )
        )
    checks.append(
        Check(
            "IID: best FedAvg speed-up over FedSGD reaches the paper's 10x",
            metrics["iid_best_fedavg_speedup"],
            ">=",
            PAPER_SPEEDUP,
            "10x (abstract: 10-100x fewer rounds)",
        )
    )
    if b_min and e_max > 1:
        small, big_e, full = setting_name(1, b_min), setting_name(e_max, b_min), setting_name(e_max, 0)
        for split in SPLITS:
            label = "IID" if split == "iid" else "non-IID"
            checks.append(
                Check(
                    f"{label}: more local epochs help (E={e_max} vs E=1 at B={b_min})",
                    rounds(split, big_e),
                    "<",
                    rounds(split, small),
                    f"rounds at E=1, B={b_min}",
                )
            )
        for split in SPLITS:
            label = "IID" if split == "iid" else "non-IID"
            checks.append(
                Check(
                    f"{label}: smaller local batches help (B={b_min} vs B=inf at E={e_max})",
                    rounds(split, big_e),
                    "<",
                    rounds(split, full),
                    f"rounds at E={e_max}, B=inf",
                )
            )

    figure_curves(parts, config, ctx)
    return Result(metrics=metrics, checks=checks, notes=notes(parts, config, best))


def table(parts: dict, config: Config) -> str:
    """Rounds to the target (speed-up over FedSGD) per (E, B): the paper's Table 2 layout."""
    fedsgd = setting_name(1, 0)
    rows = []
    for name, s in parts["iid"]["settings"].items():
        cells = []
        for split in SPLITS:
            here = parts[split]["settings"][name]
            base = parts[split]["settings"][fedsgd]["rounds"]
            if here["rounds"] is None:
                cells.append(f">{config.max_rounds}")
            elif base is None:
                cells.append(
                    f"{here['rounds']} (>{config.max_rounds / here['rounds']:.1f}x, lr {here['lr']:g})"
                )
            else:
                cells.append(f"{here['rounds']} ({base / here['rounds']:.1f}x, lr {here['lr']:g})")
        rows.append(
            f"{'FedSGD' if name == fedsgd else 'FedAvg'} {name} (u={s['local_steps']:.0f}): "
            f"IID {cells[0]}, non-IID {cells[1]}"
        )
    return "; ".join(rows)


def notes(parts: dict, config: Config, best: dict) -> str:
    sizes = parts["iid"]["client_sizes"]
    text = (
        f"Digits 8x8, K={config.num_clients} clients ({min(sizes)}-{max(sizes)} train examples each), "
        f"C={config.client_fraction:g}, 2NN 64-{config.hidden}-{config.hidden}-10, target "
        f"{100 * config.target_accuracy:g}% test accuracy (chosen before the runs; FedSGD must reach it), "
        f"learning rate per (E, B) the best of {list(config.lrs)}. Rounds to target (speed-up over FedSGD, "
        f"best lr): {table(parts, config)}. Non-IID clients hold at most "
        f"{max(parts['non_iid']['labels_per_client'])} digits. Best FedAvg: IID {best['iid']}, non-IID "
        f"{best['non_iid']}."
    )

    for split in SPLITS:
        if parts[split]["settings"][setting_name(1, 0)]["rounds"] is None:
            text += (
                f" FedSGD did not reach the target on {split} within {config.max_rounds} rounds: its "
                f"speed-ups there are lower bounds (the metric best_fedavg_speedup is then 0)."
            )

    def shown(split, epochs, batch):
        value = parts[split]["settings"][setting_name(epochs, batch)]["rounds"]
        return f">{config.max_rounds}" if value is None else str(value)

    comparisons = [
        f"E={e}, B={b}: IID {shown('iid', e, b)} vs {shown('iid', e, 0)}, "
        f"non-IID {shown('non_iid', e, b)} vs {shown('non_iid', e, 0)}"
        for e in sorted(set(config.epochs))
        for b in sorted(b for b in set(config.batch_sizes) if b)
    ]
    if comparisons:
        text += f" Rounds with a finite B vs B=inf at the same E: {'; '.join(comparisons)}."
    for split in SPLITS:
        chosen = parts[split]["settings"][best[split]]
        if chosen["rounds"] is not None and chosen["epochs"] < max(config.epochs):
            text += (
                f" {'IID' if split == 'iid' else 'Non-IID'}: more local epochs help only up to a point, "
                f"the best is at E={chosen['epochs']} and larger E needs as many rounds or more."
            )
    text += (
        " One seed: client draws and minibatch orders make rounds-to-target noisy by a few rounds, and a "
        "few-round count is coarse (ties), so small differences between neighbouring (E, B) are not "
        "significant. rounds_by_lr in the stages: None = not reached before the best rate so far (or "
        "diverged)."
    )
    return text


def figure_curves(parts: dict, config: Config, ctx) -> None:
    from papers.core.plots import figure

    fig, axes = figure(ncols=2, width=5.0, height=3.8)
    for ax, split in zip(axes, SPLITS, strict=True):
        for i, (name, s) in enumerate(parts[split]["settings"].items()):
            curve = torch.tensor(s["curve"])
            best_so_far = torch.cummax(curve, 0).values  # monotone, as the paper's figures
            label = ("FedSGD " if s["epochs"] == 1 and s["batch"] == 0 else "") + name.replace("_", ", ")
            label += f" (lr {s['lr']:g})" if s["lr"] is not None else " (not reached)"
            is_sgd = name == setting_name(1, 0)
            color, width = ("k", 2.0) if is_sgd else (f"C{i}", 1.3)
            rounds = range(1, len(curve) + 1)
            ax.plot(rounds, curve, color=color, lw=0.6, alpha=0.35)
            ax.plot(rounds, best_so_far, color=color, lw=width, label=label)
        ax.axhline(config.target_accuracy, color="0.4", ls="--", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("communication rounds")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{SPLIT_LABELS[split]}: best so far (faint: each round)", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    ctx.save_figure(fig, "accuracy_vs_rounds")
