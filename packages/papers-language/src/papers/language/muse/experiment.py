"""Reproduction: unsupervised word translation between two synthetic languages (Conneau et al. 2018).

Data (option A): two corpora sampled from one latent random-walk discourse model with different word
ids (a bijection is the ground-truth dictionary), perturbed meanings/frequencies and independent
sampling noise; PPMI-SVD embeddings per language (``languages.py``), normalised and centred.

Measured, on held-out dictionary pairs (source words never used by the supervised baseline), retrieval
over the whole target vocabulary:
(a) adversarial only — W trained against the discriminator on the most frequent words, with the
    orthogonalisation update after every W step; epoch chosen by the unsupervised criterion;
(b) adversarial + Procrustes refinement on the CSLS mutual-NN dictionary, iterated;
(c) supervised Procrustes on the true training dictionary (upper bound);
each with NN (cosine) and CSLS retrieval, P@1 and P@5, and the hubness (k-occurrence) of NN vs CSLS.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .languages import make_language_pair
from .model import (
    Discriminator,
    discriminator_loss,
    k_occurrence,
    mapping_loss,
    mutual_nn_dictionary,
    normalize_embeddings,
    orthogonalize,
    precision_at_k,
    procrustes,
    retrieval_scores,
    selection_criterion,
)


@dataclass
class Config:
    # synthetic languages
    vocab: int = 1500
    latent_dim: int = 20
    clusters: int = 30
    zipf: float = 1.0
    streams: int = 1000
    segments: int = 50
    segment_length: int = 20
    persistence: float = 0.9
    window: int = 5
    dim: int = 40
    drift: float = 0.1
    freq_drift: float = 0.3
    # evaluation dictionary: held-out source words among the test_max_rank most frequent
    test_words: int = 300
    test_max_rank: int = 1000
    # adversarial training (paper: 2x2048 MLP, dropout 0.1, s = 0.2, SGD lr 0.1, batch 32, beta 0.01)
    adv_max_rank: int = 1000
    dis_hidden: int = 512
    dis_layers: int = 2
    dis_dropout: float = 0.1
    dis_smoothing: float = 0.2
    dis_steps: int = 5
    batch_size: int = 32
    lr: float = 0.1
    lr_decay: float = 0.95
    epochs: int = 5
    epoch_iters: int = 1000
    beta: float = 0.01
    # refinement and retrieval
    refine_iters: int = 5
    refine_max_rank: int = 1000
    csls_k: int = 10
    criterion_words: int = 1000
    hub_k: int = 10
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "vocab",
            "latent_dim",
            "clusters",
            "streams",
            "segments",
            "segment_length",
            "window",
            "dim",
            "test_words",
            "test_max_rank",
            "adv_max_rank",
            "dis_hidden",
            "dis_steps",
            "batch_size",
            "epochs",
            "epoch_iters",
            "refine_max_rank",
            "csls_k",
            "criterion_words",
            "hub_k",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.refine_iters < 0 or self.dis_layers < 0:
            raise ValueError("refine_iters and dis_layers must be >= 0")
        if self.dim > self.vocab:
            raise ValueError(f"dim must be <= vocab, got dim={self.dim}, vocab={self.vocab}")
        for name in ("test_max_rank", "adv_max_rank", "refine_max_rank", "criterion_words"):
            if getattr(self, name) > self.vocab:
                raise ValueError(f"{name} must be <= vocab ({self.vocab}), got {getattr(self, name)}")
        if self.test_words >= self.test_max_rank:
            raise ValueError(
                f"test_words must be < test_max_rank, got {self.test_words} >= {self.test_max_rank}"
            )
        if max(self.csls_k, self.hub_k) > min(self.refine_max_rank, self.criterion_words, self.test_words):
            raise ValueError("csls_k and hub_k must not exceed refine_max_rank, criterion_words, test_words")
        if not 0 < self.beta < 0.5:
            raise ValueError(f"beta must be in (0, 0.5), got {self.beta}")
        if not 0 <= self.dis_smoothing < 0.5:
            raise ValueError(f"dis_smoothing must be in [0, 0.5), got {self.dis_smoothing}")
        if not 0 <= self.dis_dropout < 1:
            raise ValueError(f"dis_dropout must be in [0, 1), got {self.dis_dropout}")
        if not 0 < self.persistence < 1:
            raise ValueError(f"persistence must be in (0, 1), got {self.persistence}")
        for name in ("lr", "lr_decay", "zipf"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("drift", "freq_drift"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {
        "vocab": 300,
        "segments": 10,
        "streams": 300,
        "dim": 16,
        "latent_dim": 10,
        "clusters": 8,
        "test_words": 60,
        "test_max_rank": 200,
        "adv_max_rank": 200,
        "refine_max_rank": 200,
        "criterion_words": 200,
        "dis_hidden": 64,
        "epochs": 2,
        "epoch_iters": 60,
        "refine_iters": 2,
    },
    "default": {},
    "full": {
        "vocab": 3000,
        "segments": 100,
        "streams": 2000,
        "dim": 60,
        "test_words": 1000,
        "test_max_rank": 2000,
        "adv_max_rank": 2000,
        "refine_max_rank": 2000,
        "criterion_words": 2000,
        "dis_hidden": 2048,
        "epochs": 10,
        "epoch_iters": 5000,
    },
}


def evaluate(w: Tensor, x: Tensor, y: Tensor, test: Tensor, gold: Tensor, k: int) -> dict:
    """P@1/P@5 with NN and CSLS for the held-out source words, retrieving among all target words.

    The CSLS neighbourhood r_S(y) is taken over every mapped source word (the whole vocabulary).
    """
    mapped = x @ w.T
    out = {}
    for method in ("nn", "csls"):
        scores = retrieval_scores(mapped, y, method, k)[test]
        p = precision_at_k(scores, gold[test], (1, 5))
        out[f"{method}_p1"], out[f"{method}_p5"] = p[1], p[5]
    return out


def criterion(w: Tensor, x: Tensor, y: Tensor, config: Config) -> float:
    n = config.criterion_words
    return selection_criterion(x[:n] @ w.T, y[:n], config.csls_k)


def adversarial(x: Tensor, y: Tensor, config: Config, ctx, seed: int) -> dict:
    """Train W against the discriminator; keep the W with the best unsupervised criterion per epoch."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    dim = x.shape[1]
    w = torch.eye(dim, requires_grad=True)
    disc = Discriminator(dim, config.dis_hidden, config.dis_layers, config.dis_dropout)
    opt_d = torch.optim.SGD(disc.parameters(), lr=config.lr)
    opt_w = torch.optim.SGD([w], lr=config.lr)
    xs, ys = x[: config.adv_max_rank], y[: config.adv_max_rank]
    n, bs = config.adv_max_rank, config.batch_size
    history, best, best_w = [], -math.inf, w.detach().clone()
    with ctx.progress_bar(config.epochs * config.epoch_iters, "adversarial") as bar:
        for epoch in range(config.epochs):
            d_losses = []
            for it in range(config.epoch_iters):
                disc.train()
                for _ in range(config.dis_steps):
                    sx = torch.randint(n, (bs,), generator=generator)
                    sy = torch.randint(n, (bs,), generator=generator)
                    with torch.no_grad():
                        mapped = xs[sx] @ w.T
                    loss_d = discriminator_loss(disc, mapped, ys[sy], config.dis_smoothing)
                    opt_d.zero_grad()
                    loss_d.backward()
                    opt_d.step()
                    d_losses.append(loss_d.item())
                disc.eval()
                sx = torch.randint(n, (bs,), generator=generator)
                sy = torch.randint(n, (bs,), generator=generator)
                loss_w = mapping_loss(disc, xs[sx] @ w.T, ys[sy], config.dis_smoothing)
                opt_w.zero_grad()
                loss_w.backward()
                opt_w.step()
                with torch.no_grad():
                    w.copy_(orthogonalize(w, config.beta))
                if not math.isfinite(loss_d.item()) or not math.isfinite(loss_w.item()):
                    raise PapersError(f"adversarial: non-finite loss at epoch {epoch}, iteration {it}")
                bar.update(1, d_loss=loss_d.item())
            wd = w.detach().clone()
            crit = criterion(wd, x, y, config)
            history.append(
                {
                    "epoch": epoch,
                    "criterion": crit,
                    "d_loss": sum(d_losses) / len(d_losses),
                    "lr": opt_w.param_groups[0]["lr"],
                    "w": wd.tolist(),
                }
            )
            ctx.log({"adv_criterion": crit, "adv_d_loss": history[-1]["d_loss"]}, step=epoch)
            if crit > best:
                best, best_w = crit, wd
            else:  # the paper halves the learning rate when the criterion stops improving
                for opt in (opt_d, opt_w):
                    opt.param_groups[0]["lr"] /= 2
            for opt in (opt_d, opt_w):
                opt.param_groups[0]["lr"] *= config.lr_decay
    return {"history": history, "w": best_w.tolist(), "criterion": best}


def refine(w: Tensor, x: Tensor, y: Tensor, config: Config) -> list[dict]:
    """Procrustes on the CSLS mutual-NN dictionary of the refine_max_rank most frequent words, iterated."""
    r = config.refine_max_rank
    steps = []
    for _ in range(config.refine_iters):
        pairs = mutual_nn_dictionary(x[:r] @ w.T, y[:r], "csls", config.csls_k)
        w = procrustes(x[pairs[:, 0]], y[pairs[:, 1]])
        steps.append({"w": w, "dictionary_size": len(pairs), "criterion": criterion(w, x, y, config)})
    return steps


def orthogonality_error(w: Tensor) -> float:
    return (w @ w.T - torch.eye(len(w))).norm().item()


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)

    def build() -> dict:
        start = time.perf_counter()
        pair = make_language_pair(
            vocab=config.vocab,
            latent_dim=config.latent_dim,
            clusters=config.clusters,
            zipf=config.zipf,
            streams=config.streams,
            segments=config.segments,
            segment_length=config.segment_length,
            persistence=config.persistence,
            window=config.window,
            dim=config.dim,
            drift=config.drift,
            freq_drift=config.freq_drift,
            seed=ctx.seed,
        )
        return {
            "x": pair["x"].tolist(),
            "y": pair["y"].tolist(),
            "gold": pair["gold"].tolist(),
            "tokens": pair["tokens"],
            "rarest_count": int(pair["counts_a"][config.test_max_rank - 1]),
            "time_s": time.perf_counter() - start,
        }

    data = ctx.stage("languages", build)
    x = normalize_embeddings(torch.tensor(data["x"]))
    y = normalize_embeddings(torch.tensor(data["y"]))
    gold = torch.tensor(data["gold"])
    generator = torch.Generator().manual_seed(ctx.seed + 7)
    test = torch.randperm(config.test_max_rank, generator=generator)[: config.test_words].sort().values
    train_mask = torch.ones(config.vocab, dtype=torch.bool)
    train_mask[test] = False
    train_src = torch.arange(config.vocab)[train_mask]

    # (c) supervised Procrustes on the true dictionary minus the test words
    w_sup = procrustes(x[train_src], y[gold[train_src]])
    supervised = evaluate(w_sup, x, y, test, gold, config.csls_k)
    # the identity (no alignment) as a chance-level reference
    identity = evaluate(torch.eye(config.dim), x, y, test, gold, config.csls_k)

    adv = ctx.stage("adversarial", lambda: adversarial(x, y, config, ctx, ctx.seed))
    w_adv = torch.tensor(adv["w"])
    adv_eval = evaluate(w_adv, x, y, test, gold, config.csls_k)
    adv_epochs = [
        dict(evaluate(torch.tensor(h["w"]), x, y, test, gold, config.csls_k), criterion=h["criterion"])
        for h in adv["history"]
    ]

    steps = refine(w_adv, x, y, config)
    refined = [
        dict(
            evaluate(s["w"], x, y, test, gold, config.csls_k),
            criterion=s["criterion"],
            dictionary_size=s["dictionary_size"],
        )
        for s in steps
    ]
    chosen = max(range(len(steps)), key=lambda i: steps[i]["criterion"]) if steps else None
    w_ref = steps[chosen]["w"] if steps else w_adv
    ref_eval = refined[chosen] if steps else adv_eval

    # hubness: k-occurrence of every target word over all source queries, for the supervised map (an
    # alignment known to be right, so hubs are a retrieval effect) and for the unsupervised refined map
    def hubness(w: Tensor) -> dict:
        mapped = x @ w.T
        return {
            m: k_occurrence(retrieval_scores(mapped, y, m, config.csls_k), config.hub_k)
            for m in ("nn", "csls")
        }

    hub, hub_ref = hubness(w_sup), hubness(w_ref)

    def skew(v: Tensor) -> float:
        v = v.double()
        return (((v - v.mean()) ** 3).mean() / v.std(unbiased=False) ** 3).item()

    # correlation of the unsupervised criterion with P@1 (CSLS) over every candidate map
    crit_vals = [e["criterion"] for e in adv_epochs] + [r["criterion"] for r in refined]
    p1_vals = [e["csls_p1"] for e in adv_epochs] + [r["csls_p1"] for r in refined]
    series = torch.tensor([crit_vals, p1_vals], dtype=torch.float64)
    constant = len(crit_vals) < 3 or bool((series.std(1) == 0).any())
    corr = 0.0 if constant else float(torch.corrcoef(series)[0, 1])  # undefined for a constant series

    metrics = {
        "tokens_per_language": data["tokens"],
        "count_of_rank_test_max": data["rarest_count"],
        "data_time_s": data["time_s"],
        **{f"identity_{k}": v for k, v in identity.items()},
        **{f"adversarial_{k}": v for k, v in adv_eval.items()},
        **{f"refined_{k}": v for k, v in ref_eval.items() if k.endswith(("p1", "p5"))},
        **{f"supervised_{k}": v for k, v in supervised.items()},
        "adversarial_criterion": adv["criterion"],
        "supervised_criterion": criterion(w_sup, x, y, config),
        "refined_criterion": ref_eval.get("criterion", adv["criterion"]),
        "refine_iteration_chosen": (chosen + 1) if steps else 0,
        "refine_dictionary_sizes": [r["dictionary_size"] for r in refined],
        "refine_csls_p1": [r["csls_p1"] for r in refined],
        "refine_nn_p1": [r["nn_p1"] for r in refined],
        "adversarial_epoch_csls_p1": [e["csls_p1"] for e in adv_epochs],
        "adversarial_epoch_criterion": [e["criterion"] for e in adv_epochs],
        "criterion_p1_correlation": corr,
        "adversarial_orthogonality_error": orthogonality_error(w_adv),
        "hub_nn_max_k_occurrence": int(hub["nn"].max()),
        "hub_csls_max_k_occurrence": int(hub["csls"].max()),
        "hub_nn_skewness": skew(hub["nn"]),
        "hub_csls_skewness": skew(hub["csls"]),
        "hub_nn_antihub_fraction": (hub["nn"] == 0).float().mean().item(),
        "hub_csls_antihub_fraction": (hub["csls"] == 0).float().mean().item(),
        "hub_refined_nn_skewness": skew(hub_ref["nn"]),
        "hub_refined_csls_skewness": skew(hub_ref["csls"]),
    }
    figures(ctx, config, adv_eval, ref_eval, adv_epochs, refined, supervised, identity, hub)

    checks = [
        Check(
            "Procrustes refinement improves on adversarial only (P@1, CSLS)",
            ref_eval["csls_p1"],
            ">",
            adv_eval["csls_p1"],
            "adversarial-only P@1 (CSLS)",
        ),
        Check(
            "CSLS beats NN retrieval for the refined map (P@1)",
            ref_eval["csls_p1"],
            ">",
            ref_eval["nn_p1"],
            "refined P@1 (NN)",
        ),
        Check(
            "CSLS beats NN retrieval for supervised Procrustes (P@1)",
            supervised["csls_p1"],
            ">",
            supervised["nn_p1"],
            "supervised P@1 (NN)",
        ),
        Check(
            "unsupervised (adv + refine, CSLS) within 1 point of supervised Procrustes (CSLS)",
            ref_eval["csls_p1"],
            ">=",
            supervised["csls_p1"] - 0.01,
            "supervised P@1 (CSLS) - 0.01 (paper Table 1: gaps within ±0.5 points on European pairs)",
        ),
        Check(
            "CSLS reduces hubness (k-occurrence skewness, supervised map)",
            metrics["hub_csls_skewness"],
            "<",
            metrics["hub_nn_skewness"],
            "NN k-occurrence skewness",
        ),
        Check(
            "the unsupervised criterion correlates positively with P@1", corr, ">", 0.0, "zero correlation"
        ),
    ]
    passed = sum(c.passed for c in checks)
    notes = (
        f"Option A data: two PPMI-SVD embedding spaces ({config.vocab} words, d={config.dim}) from "
        f"independent {data['tokens']:,}-token corpora of one latent discourse model with permuted word ids "
        f"and perturbed meanings/frequencies. Held-out test: {config.test_words} source words among the "
        f"{config.test_max_rank} most frequent, retrieval over all {config.vocab} targets. P@1 (NN / CSLS): "
        f"no map {identity['nn_p1']:.3f}/{identity['csls_p1']:.3f}; adversarial "
        f"{adv_eval['nn_p1']:.3f}/{adv_eval['csls_p1']:.3f}; + refinement {ref_eval['nn_p1']:.3f}/"
        f"{ref_eval['csls_p1']:.3f}; supervised Procrustes {supervised['nn_p1']:.3f}/"
        f"{supervised['csls_p1']:.3f}. "
        f"Hubness of the supervised map (k={config.hub_k}): max k-occurrence NN "
        f"{metrics['hub_nn_max_k_occurrence']} vs CSLS "
        f"{metrics['hub_csls_max_k_occurrence']}, skewness {metrics['hub_nn_skewness']:.2f} vs "
        f"{metrics['hub_csls_skewness']:.2f}. {passed}/{len(checks)} checks hold. "
        f"Adversarial diagnosis: ‖WWᵀ − I‖_F of the selected adversarial W is "
        f"{metrics['adversarial_orthogonality_error']:.2f} (0 = orthogonal) and its criterion "
        f"{adv['criterion']:.3f} vs {metrics['supervised_criterion']:.3f} for the supervised map; when the "
        f"adversarial P@1 is near zero, the refinement's mutual-NN dictionary is wrong and cannot recover. "
        f"Reduced scale: toy "
        f"vocabulary and dimension, discriminator {config.dis_layers}x{config.dis_hidden} instead of 2x2048, "
        f"{config.epochs} epochs of {config.epoch_iters} iterations instead of 1M-word epochs."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, config, adv_eval, ref_eval, adv_epochs, refined, supervised, identity, hub) -> None:
    from papers.core.plots import figure, plot_lines

    fig, (ax_ref, ax_bar) = figure(ncols=2, width=4.6)
    stages = [adv_eval] + refined
    xs = list(range(len(stages)))
    plot_lines(
        ax_ref,
        xs,
        {
            "CSLS": [s["csls_p1"] for s in stages],
            "NN": [s["nn_p1"] for s in stages],
            "supervised (CSLS)": [supervised["csls_p1"]] * len(xs),
            "supervised (NN)": [supervised["nn_p1"]] * len(xs),
        },
        xlabel="refinement iteration (0 = adversarial only)",
        ylabel="P@1 (held-out words)",
        title="Procrustes refinement",
    )
    methods = {
        "no map": identity,
        "adversarial": adv_eval,
        "adv + refine": ref_eval,
        "supervised": supervised,
    }
    pos = torch.arange(len(methods)).float()
    ax_bar.bar(pos - 0.2, [m["nn_p1"] for m in methods.values()], 0.4, label="NN")
    ax_bar.bar(pos + 0.2, [m["csls_p1"] for m in methods.values()], 0.4, label="CSLS")
    ax_bar.set_xticks(pos.tolist(), list(methods), fontsize=8)
    ax_bar.set_ylabel("P@1")
    ax_bar.set_title("NN vs CSLS retrieval")
    ax_bar.legend(fontsize=8)
    ctx.save_figure(fig, "precision")

    fig, (ax_hub, ax_adv) = figure(ncols=2, width=4.6)
    top = int(max(hub["nn"].max(), hub["csls"].max())) + 1
    for name, label in (("nn", "NN"), ("csls", "CSLS")):
        counts = torch.bincount(hub[name], minlength=top)
        ax_hub.plot(range(top), counts.tolist(), marker="o", markersize=3, label=label)
    ax_hub.set_yscale("log")
    ax_hub.set_xlabel(f"k-occurrence N_{config.hub_k}(y)")
    ax_hub.set_ylabel("number of target words")
    ax_hub.set_title("hubness, supervised Procrustes map")
    ax_hub.legend(fontsize=8)
    epochs = list(range(1, len(adv_epochs) + 1))
    plot_lines(
        ax_adv,
        epochs,
        {"P@1 (CSLS)": [e["csls_p1"] for e in adv_epochs], "criterion": [e["criterion"] for e in adv_epochs]},
        xlabel="adversarial epoch",
        ylabel="value",
        title="adversarial training",
    )
    ctx.save_figure(fig, "hubness")
