"""Reproduction at toy scale: head ablation and importance pruning of a trained encoder–decoder Transformer.

Task ("translation-like"): the source is 4–8 random symbols + EOS; the target is the source reversed with
every symbol replaced by a fixed random permutation of the symbols (a word-for-word "dictionary" plus a
reordering), + EOS. A post-LN Transformer (``papers.language.transformer``: 2 + 2 layers, d_model 64,
8 heads of d_k 8, dropout 0.1, label smoothing 0.1, Adam with warmup / inverse square root) is trained on
it, then studied at test time with head masks ξ ∈ {0, 1} (``model.HeadMasks``):

(1) single-head ablation (Sec. 3.1): every one of the 48 heads removed alone; exact-sequence accuracy
    (greedy decoding) on the test set, and a one-sided exact McNemar test of the drop at p < 0.01 (the
    paper's significance level);
(2) all but one head per layer (Sec. 3.2): in each of the 6 attention layers only one head kept — the
    one that scores best on the dev set — all other layers intact;
(3) iterative pruning (Sec. 4): I_h = E_x |∂L(x)/∂ξ_h| on the dev set, normalised per layer by the ℓ2
    norm, heads removed in steps of ``prune_step`` of the total, least important first — with the
    scores computed once on the full model (the paper's procedure) and, as a variant, recomputed on the
    pruned model after every step; against random orders (mean of ``random_orders`` seeds);
(4) pruning per attention type (Sec. 5, Fig. 5): only encoder self-, decoder self- or encoder–decoder
    heads pruned, in importance order, the other types intact.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import (
    ATTENTION_TYPES,
    HeadMasks,
    head_importance,
    mask_without,
    pruning_order,
    sequence_losses,
)

PAD, BOS, EOS, OFFSET = 0, 1, 2, 3
IGNORE = -100
TYPE_LABELS = {"enc_self": "encoder self", "dec_self": "decoder self", "enc_dec": "encoder-decoder"}


@dataclass
class Config:
    num_symbols: int = 12
    min_len: int = 4
    max_len: int = 8
    n_train: int = 20000
    n_dev: int = 500
    n_test: int = 1000
    # Transformer: reduced from the base model (d_model 512, 16 heads, 6 + 6 layers) of the paper's WMT
    # experiments to 2 + 2 layers of 8 heads, d_model 64
    d_model: int = 64
    n_heads: int = 8
    d_ff: int = 256
    n_layers: int = 2
    dropout: float = 0.1
    label_smoothing: float = 0.1
    steps: int = 600
    batch: int = 64
    warmup: int = 100
    peak_lr: float = 3e-3  # the warmup / inverse-square-root schedule, scaled to peak at peak_lr
    # pruning
    prune_step: float = 0.1  # fraction of all heads removed per pruning step (the paper's 10 %)
    random_orders: int = 3
    recompute: bool = True  # also run the variant that recomputes I_h after every pruning step
    significance: float = 0.01  # p-value of a "significant" drop (the paper's level)
    flat_fraction: float = 0.2  # fraction the paper prunes "without noticeable impact" (WMT, Sec. 4.2)
    eval_batch: int = 500
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "num_symbols", "n_train", "n_dev", "n_test", "d_model", "n_heads", "d_ff", "n_layers",
            "steps", "batch", "warmup", "random_orders", "eval_batch",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.min_len <= self.max_len:
            raise ValueError(f"need 1 <= min_len <= max_len, got {self.min_len} and {self.max_len}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.peak_lr > 0:
            raise ValueError(f"peak_lr must be > 0, got {self.peak_lr}")
        if not 0 < self.prune_step <= 1:
            raise ValueError(f"prune_step must be in (0, 1], got {self.prune_step}")
        if not 0 < self.significance < 1:
            raise ValueError(f"significance must be in (0, 1), got {self.significance}")
        if not 0 < self.flat_fraction < 1:
            raise ValueError(f"flat_fraction must be in (0, 1), got {self.flat_fraction}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_train": 256, "n_dev": 32, "n_test": 48, "d_model": 16, "n_heads": 2, "d_ff": 32,
              "n_layers": 1, "steps": 8, "batch": 16, "warmup": 4, "random_orders": 1, "prune_step": 0.25,
              "max_len": 6},
    "default": {},
    "full": {"n_layers": 3, "n_heads": 16, "d_model": 128, "d_ff": 512, "steps": 3000, "max_len": 12,
             "warmup": 400, "random_orders": 10, "n_test": 3000},
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ data


def symbol_map(config: Config, seed: int) -> Tensor:
    """The fixed "dictionary": a random permutation of the symbol ids (seeded, not the identity)."""
    g = torch.Generator().manual_seed(seed * 7919 + 17)
    while True:
        perm = torch.randperm(config.num_symbols, generator=g)
        if config.num_symbols == 1 or (perm != torch.arange(config.num_symbols)).any():
            return perm + OFFSET


def translation_data(
    n: int, config: Config, mapping: Tensor, generator: torch.Generator
) -> dict[str, Tensor]:
    """``src`` = symbols + EOS; ``tgt_in`` = BOS + map(reverse(symbols)); ``tgt_out`` = map(reverse) + EOS
    (IGNORE after it). Lengths uniform in [min_len, max_len]."""
    lengths = torch.randint(config.min_len, config.max_len + 1, (n,), generator=generator)
    symbols = torch.randint(OFFSET, OFFSET + config.num_symbols, (n, config.max_len), generator=generator)
    width = config.max_len + 1
    src = torch.full((n, width), PAD, dtype=torch.long)
    tgt_in = src.clone()
    tgt_out = torch.full((n, width), IGNORE, dtype=torch.long)
    for b, length in enumerate(lengths.tolist()):
        x = symbols[b, :length]
        y = mapping[x.flip(0) - OFFSET]
        src[b, :length], src[b, length] = x, EOS
        tgt_in[b, 0], tgt_in[b, 1 : length + 1] = BOS, y
        tgt_out[b, :length], tgt_out[b, length] = y, EOS
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def splits(config: Config, seed: int) -> dict[str, dict[str, Tensor]]:
    mapping = symbol_map(config, seed)
    sizes = {"train": config.n_train, "dev": config.n_dev, "test": config.n_test}
    return {
        name: translation_data(size, config, mapping, torch.Generator().manual_seed(seed * 1000 + i))
        for i, (name, size) in enumerate(sizes.items())
    }


# ---------------------------------------------------------------------------------------- model, train


def build_model(config: Config):
    from papers.language.transformer import Transformer, TransformerConfig

    return Transformer(
        TransformerConfig(
            vocab_size=OFFSET + config.num_symbols,
            d_model=config.d_model,
            n_heads=config.n_heads,
            d_ff=config.d_ff,
            n_encoder_layers=config.n_layers,
            n_decoder_layers=config.n_layers,
            dropout=config.dropout,
            max_len=config.max_len + 2,
            pad_id=PAD,
        )
    )


@torch.no_grad()
def exact_correct(model, data: dict[str, Tensor], batch: int = 500) -> Tensor:
    """Per example: would greedy decoding reproduce the whole target (EOS included)? ``(N,)`` bool.

    Computed in one teacher-forced pass: greedy decoding emits the target exactly iff at every target
    position the argmax given the gold prefix is the gold token (by induction over positions, the
    decoder being causal), so this equals greedy exact-sequence accuracy at a fraction of the cost.
    """
    model.eval()
    out = []
    for start in range(0, len(data["src"]), batch):
        part = slice(start, start + batch)
        target = data["tgt_out"][part]
        pred = model(data["src"][part], data["tgt_in"][part]).argmax(-1)
        out.append(((pred == target) | (target == IGNORE)).all(1))
    return torch.cat(out)


@torch.no_grad()
def greedy_correct(model, data: dict[str, Tensor], batch: int = 500) -> Tensor:
    """Per example: does ``greedy_decode`` reproduce the whole target? (The slow reference.)"""
    model.eval()
    out = []
    width = data["tgt_out"].shape[1]
    for start in range(0, len(data["src"]), batch):
        part = slice(start, start + batch)
        target = data["tgt_out"][part].masked_fill(data["tgt_out"][part] == IGNORE, PAD)
        pred = model.greedy_decode(data["src"][part], bos_id=BOS, eos_id=EOS, max_new_tokens=width)
        padded = torch.full_like(target, PAD)
        padded[:, : pred.shape[1]] = pred[:, :width]
        out.append((padded == target).all(1))
    return torch.cat(out)


def train(config: Config, ctx, data: dict) -> dict:
    from papers.language.transformer import label_smoothed_loss, make_optimizer, noam_lr

    torch.manual_seed(ctx.seed)
    model = build_model(config)
    factor = config.peak_lr / noam_lr(config.warmup, config.d_model, config.warmup)
    optimizer, scheduler = make_optimizer(model, d_model=config.d_model, warmup=config.warmup, factor=factor)
    train_set = data["train"]
    generator = torch.Generator().manual_seed(ctx.seed + 1)
    losses, evals = [], []
    every = max(1, config.steps // 8)
    start = time.perf_counter()
    model.train()
    with ctx.progress_bar(config.steps, "training") as bar:
        for step in range(1, config.steps + 1):
            rows = torch.randint(len(train_set["src"]), (config.batch,), generator=generator)
            logits = model(train_set["src"][rows], train_set["tgt_in"][rows])
            loss = label_smoothed_loss(logits, train_set["tgt_out"][rows], config.label_smoothing, IGNORE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"non-finite training loss at step {step}")
            losses.append(loss.item())
            if step % every == 0 or step == config.steps:
                accuracy = exact_correct(model, data["dev"], config.eval_batch).float().mean().item()
                evals.append((step, accuracy))
                model.train()
            ctx.log({"loss": loss.item()}, step=step)
            bar.update(1, loss=loss.item())
    model.eval()
    model.save_pretrained(ctx.checkpoint_dir / "model")
    return {
        "loss": losses,
        "eval_steps": [s for s, _ in evals],
        "dev_accuracy": [a for _, a in evals],
        "train_time_s": time.perf_counter() - start,
        "params": model.num_parameters(),
    }


def load_model(ctx):
    from papers.language.transformer import Transformer

    model = Transformer.from_pretrained(ctx.checkpoint_dir / "model")
    return model, HeadMasks(model)


# ------------------------------------------------------------------------------------------- statistics


def mcnemar_drop_p(base: Tensor, other: Tensor) -> float:
    """One-sided exact McNemar p-value that ``other`` (per-example correctness) is worse than ``base``:
    P(Binomial(n, 1/2) >= b) with b = #(base right, other wrong), n = b + #(base wrong, other right)."""
    if base.shape != other.shape:
        raise ValueError(f"base {tuple(base.shape)} and other {tuple(other.shape)} differ")
    b = int((base & ~other).sum())
    n = b + int((~base & other).sum())
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(b, n + 1)) / 2**n)


def spearman(x: list[float], y: list[float]) -> float:
    def ranks(v):
        t = torch.tensor(v, dtype=torch.float64)
        order = t.argsort()
        r = torch.empty_like(t)
        r[order] = torch.arange(len(v), dtype=torch.float64)
        for value in t.unique():  # average ranks of ties
            same = t == value
            r[same] = r[same].mean()
        return r

    a, b = ranks(x), ranks(y)
    a, b = a - a.mean(), b - b.mean()
    denominator = (a.norm() * b.norm()).item()
    return (a @ b).item() / denominator if denominator > 0 else float("nan")


# ------------------------------------------------------------------------------------------- analyses


def _batches(data: dict[str, Tensor], size: int):
    for start in range(0, len(data["src"]), size):
        yield (
            data["src"][start : start + size],
            data["tgt_in"][start : start + size],
            data["tgt_out"][start : start + size],
        )


def _loss(model, src, tgt_in, tgt_out):
    return sequence_losses(model, src, tgt_in, tgt_out, IGNORE)


def importance(
    masks: HeadMasks, data: dict[str, Tensor], config: Config, base_mask: Tensor | None = None
) -> Tensor:
    masks.model.eval()
    return head_importance(masks, _batches(data, config.eval_batch), _loss, base_mask=base_mask)


def accuracy_with(masks: HeadMasks, mask: Tensor, data: dict[str, Tensor], config: Config) -> Tensor:
    masks.set(mask)
    try:
        return exact_correct(masks.model, data, config.eval_batch)
    finally:
        masks.clear()


def ablations(config: Config, ctx, data: dict) -> dict:
    """Single-head ablation on the test set; all-but-one-head per layer (head chosen on dev)."""
    model, masks = load_model(ctx)
    n_layers, n_heads = masks.shape
    base = exact_correct(model, data["test"], config.eval_batch)
    drop = torch.zeros(masks.shape)
    p_values = torch.ones(masks.shape)
    with ctx.progress_bar(n_layers * n_heads * 2, "ablations") as bar:
        for i in range(n_layers):
            for h in range(n_heads):
                correct = accuracy_with(masks, mask_without(masks.shape, [(i, h)]), data["test"], config)
                drop[i, h] = base.float().mean() - correct.float().mean()
                p_values[i, h] = mcnemar_drop_p(base, correct)
                bar.update(1)
        one_head = []
        for i in range(n_layers):
            dev_scores = []
            for h in range(n_heads):
                mask = masks.ones()
                mask[i] = 0.0
                mask[i, h] = 1.0
                dev_scores.append(accuracy_with(masks, mask, data["dev"], config).float().mean().item())
                bar.update(1)
            best = max(range(n_heads), key=lambda h: (dev_scores[h], -h))
            mask = masks.ones()
            mask[i] = 0.0
            mask[i, best] = 1.0
            correct = accuracy_with(masks, mask, data["test"], config)
            one_head.append({
                "layer": masks.layers[i].name, "kept_head": best, "dev_accuracy": dev_scores,
                "test_accuracy": correct.float().mean().item(), "p_value": mcnemar_drop_p(base, correct),
            })  # fmt: skip
    return {
        "layers": [layer.name for layer in masks.layers],
        "base_test_accuracy": base.float().mean().item(),
        "base_dev_accuracy": exact_correct(model, data["dev"], config.eval_batch).float().mean().item(),
        "base_test_greedy_accuracy": greedy_correct(model, data["test"], config.eval_batch)
        .float()
        .mean()
        .item(),
        "drop": drop.tolist(),
        "p_value": p_values.tolist(),
        "one_head": one_head,
    }


def _counts(total: int, step: float) -> list[int]:
    counts = sorted({min(total, round(k * step * total)) for k in range(int(math.ceil(1 / step)) + 1)})
    return counts if counts[-1] == total else [*counts, total]


def _curve(masks: HeadMasks, order: list[tuple[int, int]], counts: list[int], data, config, base) -> dict:
    accuracy, p = [], []
    for count in counts:
        correct = accuracy_with(masks, mask_without(masks.shape, order[:count]), data, config)
        accuracy.append(correct.float().mean().item())
        p.append(mcnemar_drop_p(base, correct))
    return {"accuracy": accuracy, "p_value": p}


def pruning(config: Config, ctx, data: dict, drops: list[list[float]]) -> dict:
    model, masks = load_model(ctx)
    n_layers, n_heads = masks.shape
    total = n_layers * n_heads
    counts = _counts(total, config.prune_step)
    base = exact_correct(model, data["test"], config.eval_batch)
    scores = importance(masks, data["dev"], config)
    raw = head_importance(masks, _batches(data["dev"], config.eval_batch), _loss, normalize=False)
    out = {
        "counts": counts,
        "fractions": [c / total for c in counts],
        "importance": scores.tolist(),
        "importance_raw": raw.tolist(),
    }
    with ctx.progress_bar(4 + config.random_orders + int(config.recompute), "pruning") as bar:
        out["importance_order"] = _curve(masks, pruning_order(scores), counts, data["test"], config, base)
        bar.update(1)
        # diagnostic, not a method: the order of the measured single-head drops (test set)
        oracle = pruning_order(torch.tensor(drops))
        out["oracle_order"] = _curve(masks, oracle, counts, data["test"], config, base)
        bar.update(1)
        if config.recompute:  # I_h recomputed on the pruned model before each step
            removed: list[tuple[int, int]] = []
            for previous, count in zip(counts, counts[1:], strict=False):
                alive = mask_without(masks.shape, removed)
                current = importance(masks, data["dev"], config, base_mask=alive)
                removed += pruning_order(current, alive.bool())[: count - previous]
            out["recomputed_order"] = _curve(masks, removed, counts, data["test"], config, base)
            bar.update(1)
        randoms = []
        all_heads = [(i, h) for i in range(n_layers) for h in range(n_heads)]
        for r in range(config.random_orders):
            g = torch.Generator().manual_seed(ctx.seed * 100 + r)
            order = [all_heads[j] for j in torch.randperm(total, generator=g).tolist()]
            randoms.append(_curve(masks, order, counts, data["test"], config, base)["accuracy"])
            bar.update(1)
        out["random_order"] = {"accuracy": torch.tensor(randoms).mean(0).tolist(), "runs": randoms}
        by_type = {}
        for kind in ATTENTION_TYPES:
            layers = masks.layer_indices(kind)
            type_total = len(layers) * n_heads
            type_counts = _counts(type_total, config.prune_step)
            curve = _curve(
                masks, pruning_order(scores, layers=layers), type_counts, data["test"], config, base
            )
            by_type[kind] = {**curve, "fractions": [c / type_total for c in type_counts]}
        out["by_type"] = by_type
        bar.update(2)
    return out


# ------------------------------------------------------------------------------------------------- run


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _accuracy_at(fractions: list[float], accuracy: list[float], fraction: float) -> float:
    """Linear interpolation of a pruning curve."""
    for (f0, a0), (f1, a1) in zip(
        zip(fractions, accuracy, strict=True), zip(fractions[1:], accuracy[1:], strict=True), strict=False
    ):
        if f0 <= fraction <= f1:
            return a0 if f1 == f0 else a0 + (a1 - a0) * (fraction - f0) / (f1 - f0)
    return accuracy[-1]


def figures(ctx, config: Config, trained: dict, abl: dict, pr: dict) -> None:
    from papers.core.plots import figure

    fig, (ax1, ax2) = figure(2, width=4.6, height=3.6)
    x = pr["fractions"]
    ax1.plot(
        x, pr["importance_order"]["accuracy"], "o-", color="C0", ms=3, label="importance order (I_h once)"
    )
    if "recomputed_order" in pr:
        ax1.plot(
            x, pr["recomputed_order"]["accuracy"], "s--", color="C1", ms=3, label="importance, recomputed"
        )
    runs = torch.tensor(pr["random_order"]["runs"])
    ax1.plot(x, pr["oracle_order"]["accuracy"], ":", color="gray", label="oracle: single-head drop order")
    ax1.plot(
        x, pr["random_order"]["accuracy"], "^-", color="C2", ms=3, label=f"random order (mean of {len(runs)})"
    )
    ax1.fill_between(x, runs.min(0).values.tolist(), runs.max(0).values.tolist(), alpha=0.2, color="C2")
    ax1.set_xlabel("fraction of all heads pruned")
    ax1.set_ylabel("test exact-sequence accuracy")
    ax1.set_title("pruning the whole model")
    ax1.legend(fontsize=7)
    for kind in ATTENTION_TYPES:
        part = pr["by_type"][kind]
        ax2.plot(part["fractions"], part["accuracy"], "o-", ms=3, label=TYPE_LABELS[kind])
    ax2.set_xlabel("fraction of that type's heads pruned (importance order)")
    ax2.set_ylabel("test exact-sequence accuracy")
    ax2.set_title("pruning one attention type")
    ax2.legend(fontsize=7)
    ctx.save_figure(fig, "pruning_curves")

    fig, (ax1, ax2) = figure(2, width=4.8, height=3.4)
    drop = torch.tensor(abl["drop"])
    limit = max(float(drop.abs().max()), 1e-3)
    image = ax1.imshow(drop.numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    fig.colorbar(image, ax=ax1, label="accuracy drop when removed")
    significant = torch.tensor(abl["p_value"]) < config.significance
    for i, h in significant.nonzero().tolist():
        ax1.text(h, i, "*", ha="center", va="center", fontsize=9)
    image = ax2.imshow(torch.tensor(pr["importance"]).numpy(), cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax2, label="I_h (ℓ2-normalised per layer)")
    for ax, title in (
        (ax1, f"single-head ablation (* p < {config.significance:g})"),
        (ax2, "head importance"),
    ):
        ax.set_yticks(range(len(abl["layers"])), abl["layers"], fontsize=7)
        ax.set_xlabel("head")
        ax.set_title(title, fontsize=9)
        ax.grid(False)
    ctx.save_figure(fig, "head_ablation")

    fig, (ax,) = figure(1, width=4.4, height=3.2)
    ax.plot(range(1, len(trained["loss"]) + 1), trained["loss"], lw=0.8, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("label-smoothed loss")
    twin = ax.twinx()
    twin.plot(trained["eval_steps"], trained["dev_accuracy"], "o-", color="C1", ms=3, label="dev accuracy")
    twin.set_ylabel("dev exact-sequence accuracy")
    ax.set_title("training")
    ctx.save_figure(fig, "training")


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = splits(config, ctx.seed)
    trained = ctx.stage("train", lambda: train(config, ctx, data))
    abl = ctx.stage("ablations", lambda: ablations(config, ctx, data))
    pr = ctx.stage("pruning", lambda: pruning(config, ctx, data, abl["drop"]))

    layers = abl["layers"]
    n_heads = config.n_heads
    p = torch.tensor(abl["p_value"])
    drop = torch.tensor(abl["drop"])
    not_significant = (p >= config.significance).float()
    one_head_ok = [entry["p_value"] >= config.significance for entry in abl["one_head"]]
    curve_imp, curve_rand = pr["importance_order"]["accuracy"], pr["random_order"]["accuracy"]
    fractions = pr["fractions"]
    flat_index = min(range(len(fractions)), key=lambda k: abs(fractions[k] - config.flat_fraction))
    by_type = {kind: _mean(pr["by_type"][kind]["accuracy"]) for kind in ATTENTION_TYPES}
    kinds = [layer.split(".")[0] for layer in layers]
    type_drop = {
        kind: drop[[i for i, k in enumerate(kinds) if k == kind]].mean().item() for kind in ATTENTION_TYPES
    }
    rho = spearman(torch.tensor(pr["importance"]).flatten().tolist(), drop.flatten().tolist())

    metrics = {
        "test_accuracy": abl["base_test_accuracy"],
        "dev_accuracy": abl["base_dev_accuracy"],
        "test_greedy_decoding_accuracy": abl["base_test_greedy_accuracy"],
        "params": trained["params"],
        "train_time_s": trained["train_time_s"],
        "heads_total": len(layers) * n_heads,
        "single_head_not_significant_fraction": not_significant.mean().item(),
        "single_head_max_drop": drop.max().item(),
        "single_head_mean_drop": drop.mean().item(),
        "one_head_layers_not_significant_fraction": _mean(map(float, one_head_ok)),
        "one_head_test_accuracy": {e["layer"]: e["test_accuracy"] for e in abl["one_head"]},
        "pruning_fractions": fractions,
        "pruning_importance_accuracy": curve_imp,
        "pruning_random_accuracy": curve_rand,
        "pruning_importance_mean_accuracy": _mean(curve_imp),
        "pruning_random_mean_accuracy": _mean(curve_rand),
        "pruning_oracle_accuracy": pr["oracle_order"]["accuracy"],
        "pruning_oracle_mean_accuracy": _mean(pr["oracle_order"]["accuracy"]),
        "type_pruning_accuracy": {kind: pr["by_type"][kind]["accuracy"] for kind in ATTENTION_TYPES},
        "accuracy_at_flat_fraction": curve_imp[flat_index],
        "flat_fraction_used": fractions[flat_index],
        "flat_fraction_p_value": pr["importance_order"]["p_value"][flat_index],
        "importance_vs_ablation_spearman": rho,
        "mean_single_head_drop_by_type": type_drop,
        "type_pruning_mean_accuracy": by_type,
    }
    for threshold in (0.99, 0.9):
        floor = threshold * abl["base_test_accuracy"]
        metrics[f"max_fraction_pruned_keeping_{int(threshold * 100)}pct"] = _max_prefix(
            fractions, curve_imp, floor
        )
    if "recomputed_order" in pr:
        metrics["pruning_recomputed_accuracy"] = pr["recomputed_order"]["accuracy"]
        metrics["pruning_recomputed_mean_accuracy"] = _mean(pr["recomputed_order"]["accuracy"])

    others = min(by_type["enc_self"], by_type["dec_self"])
    checks = [
        Check(
            "most single heads can be removed without a significant drop "
            f"(McNemar p >= {config.significance:g})",
            metrics["single_head_not_significant_fraction"], ">", 0.5, "half of the heads ('most')",
        ),
        Check(
            "most layers can be reduced to one head without a significant drop",
            metrics["one_head_layers_not_significant_fraction"], ">", 0.5, "half of the layers ('most')",
        ),
        Check(
            "importance-ordered pruning keeps more accuracy than random order (mean over the curve)",
            metrics["pruning_importance_mean_accuracy"], ">", metrics["pruning_random_mean_accuracy"],
            "random pruning order",
        ),
        Check(
            f"pruning {fractions[flat_index]:.0%} of heads by importance: no significant drop",
            metrics["flat_fraction_p_value"], ">=", config.significance,
            "the paper's significance level; it prunes 20% of WMT heads without noticeable impact",
        ),
        Check(
            "encoder-decoder heads are the most sensitive to pruning (mean accuracy over the per-type curve)",
            by_type["enc_dec"], "<", others, "the less robust of encoder self / decoder self",
        ),
    ]  # fmt: skip
    figures(ctx, config, trained, abl, pr)
    return Result(metrics=metrics, checks=checks, notes=_notes(config, metrics, abl))


def _max_prefix(fractions: list[float], accuracy: list[float], floor: float) -> float:
    """The largest pruned fraction up to which every point of the curve stays >= floor."""
    best = 0.0
    for f, a in zip(fractions, accuracy, strict=True):
        if a < floor:
            break
        best = f
    return best


def _notes(config: Config, m: dict, abl: dict) -> str:
    types = m["type_pruning_mean_accuracy"]
    drops = m["mean_single_head_drop_by_type"]
    kept = ", ".join(f"{e['layer']} {e['test_accuracy']:.3f}" for e in abl["one_head"])
    curve = ", ".join(f"{a:.2f}" for a in m["pruning_importance_accuracy"])
    recomputed = m.get("pruning_recomputed_accuracy")
    text = (
        f"Toy scale: a {config.n_layers} + {config.n_layers}-layer Transformer with {config.n_heads} "
        f"heads per attention layer ({m['heads_total']} heads, {m['params']} parameters), trained "
        f"{config.steps} steps on reverse-plus-dictionary 'translation' of "
        f"{config.min_len}-{config.max_len} symbols; full-model "
        f"test exact-sequence accuracy {m['test_accuracy']:.3f} (greedy decoding "
        f"{m['test_greedy_decoding_accuracy']:.3f}). "
        f"HELD: single-head ablation - {m['single_head_not_significant_fraction']:.0%} of the heads can be "
        f"removed alone with no significant drop (one-sided exact McNemar, p < {config.significance:g}; "
        f"largest drop {m['single_head_max_drop']:.3f}); the significant ones cluster in encoder-decoder "
        f"attention "
        f"(mean drop enc-self {drops['enc_self']:.4f}, dec-self {drops['dec_self']:.4f}, enc-dec "
        f"{drops['enc_dec']:.4f}), and pruning one attention type at a time, encoder-decoder attention "
        f"degrades first (mean accuracy over the curve enc-self {types['enc_self']:.3f}, dec-self "
        f"{types['dec_self']:.3f}, enc-dec {types['enc_dec']:.3f}). "
        f"DID NOT HOLD at this scale: reducing a layer to its best single head (chosen on dev) is "
        f"significant in most layers ({kept}; {m['one_head_layers_not_significant_fraction']:.0%} of "
        f"layers without a "
        f"significant drop); and pruning the whole model is not flat: by I_h computed once (per-layer "
        f"l2-normalised) the accuracy at fractions {', '.join(f'{f:.2f}' for f in m['pruning_fractions'])} "
        f"is {curve}, i.e. {m['accuracy_at_flat_fraction']:.3f} at {m['flat_fraction_used']:.0%} pruned "
        f"(p = {m['flat_fraction_p_value']:.2g}); >= 90% of the full accuracy is kept only up to "
        f"{m['max_fraction_pruned_keeping_90pct']:.0%}; its mean over the curve "
        f"{m['pruning_importance_mean_accuracy']:.3f} vs random order {m['pruning_random_mean_accuracy']:.3f}"
        f" (at the first step {m['pruning_importance_accuracy'][1]:.3f} vs "
        f"{m['pruning_random_accuracy'][1]:.3f}, at the third {m['pruning_importance_accuracy'][2]:.3f} vs "
        f"{m['pruning_random_accuracy'][2]:.3f})."
    )
    if recomputed is not None:
        text += (
            f" Recomputing I_h on the pruned model before each step: mean "
            f"{m['pruning_recomputed_mean_accuracy']:.3f}, {recomputed[2]:.3f} at the third point."
        )
    text += (
        f" Diagnostic: the oracle order (the measured single-head drops, test set) has mean "
        f"{m['pruning_oracle_mean_accuracy']:.3f} and {m['pruning_oracle_accuracy'][2]:.3f} at the third "
        f"point: this small model ({config.n_heads} heads of d_k {config.d_model // config.n_heads} per "
        f"layer, a task it solves almost perfectly) has "
        f"little redundancy and removed heads interact, so no order stays flat far; below that, the "
        f"one-shot I_h ranking is worse than the oracle and than recomputing it, the paper's first-order "
        f"estimate being only partly predictive here (per-head drops are tiny and noisy). "
        f"Spearman correlation of I_h with the single-head drop: "
        f"{m['importance_vs_ablation_spearman']:.2f}."
    )
    return text
