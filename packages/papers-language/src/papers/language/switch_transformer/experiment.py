"""Reproduction at toy scale: dense vs Switch decoder LMs at equal FLOPs per token, with and without the
load-balancing loss.

A character LM on CPython's documentation prose (``papers.language.data``: ``documentation_texts``, split
by document). Three pre-LN decoder-only Transformers of the same shape, trained for the same steps on the
same batches with the same optimiser and schedule:

    dense          FFN width d_ff in every layer
    switch         every FFN replaced by a Switch layer of ``n_experts`` experts, each of width d_ff
                   (equal FLOPs per token, N× the FFN parameters), top-1 routing, float32 router,
                   train capacity factor 1.25, loss = CE + α · Σ_layers N Σ_i f_i P_i with α = 1e-2
    switch_no_aux  the same with α = 0

Measured: validation loss per step (eval capacity factor 2.0), expert load f_i on the validation set, and
for both Switch models the fraction of dropped (overflowed) tokens and the validation loss as the
capacity factor sweeps 0.5 … 2.0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .model import SwitchTransformerLM

CAPACITY_SWEEP = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@dataclass
class Config:
    # model: reduced from Switch-Base (d_model 768, 12 + 12 layers, 128 experts, d_ff 3072)
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    n_experts: int = 8
    expert_every: int = 1  # Switch layer in every FFN slot (the paper's models: every other)
    capacity_factor: float = 1.25  # training (paper: 1.0–1.25)
    eval_capacity_factor: float = 2.0  # validation curves
    aux_alpha: float = 1e-2  # α of the balancing loss (paper: 1e-2)
    init_scale: float = 0.1  # s of the truncated-normal init std sqrt(s / fan_in) (paper: 0.1)
    expert_dropout: float = 0.0  # pre-training: no dropout (the paper's expert dropout is for fine-tuning)
    # training: Adam(0.9, 0.98) with linear warmup then inverse square root, peak ``peak_lr``
    steps: int = 400
    batch: int = 16
    block: int = 64
    warmup: int = 50
    peak_lr: float = 3e-3
    eval_blocks: int = 64
    eval_points: int = 8
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "d_model", "n_heads", "d_ff", "n_layers", "expert_every", "steps", "batch", "block", "warmup",
            "eval_blocks", "eval_points",
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_experts < 2:
            raise ValueError(f"n_experts must be >= 2, got {self.n_experts}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for name in ("capacity_factor", "eval_capacity_factor", "peak_lr", "init_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.aux_alpha < 0:
            raise ValueError(f"aux_alpha must be >= 0, got {self.aux_alpha}")
        if not 0 <= self.expert_dropout < 1:
            raise ValueError(f"expert_dropout must be in [0, 1), got {self.expert_dropout}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"d_model": 16, "n_heads": 2, "d_ff": 32, "n_layers": 1, "n_experts": 4, "steps": 6, "batch": 4,
              "block": 32, "warmup": 3, "eval_blocks": 8, "eval_points": 2},
    "default": {},
    "full": {"d_model": 128, "n_heads": 8, "d_ff": 512, "n_layers": 4, "steps": 4000, "batch": 32,
             "block": 128, "warmup": 400, "eval_blocks": 256, "peak_lr": 2e-3},
}  # fmt: skip

VARIANTS = ("dense", "switch", "switch_no_aux")


# ------------------------------------------------------------------------------------------------- data


def lm_data(config: Config) -> dict:
    from papers.language.data import CharTokenizer, documentation_texts, pack_causal_lm, split_documents

    split = split_documents(documentation_texts(), (0.8, 0.1, 0.1), seed=0)
    tokenizer = CharTokenizer.train(split.train.values())
    blocks = {
        part: pack_causal_lm(
            [tokenizer.encode(t) for t in texts.values()], block_size=config.block, eos_id=tokenizer.eos_id
        )
        for part, texts in (("train", split.train), ("valid", split.valid))
    }
    blocks["valid"] = {k: v[: config.eval_blocks] for k, v in blocks["valid"].items()}
    return {"blocks": blocks, "vocab_size": tokenizer.vocab_size}


# ----------------------------------------------------------------------------------------------- models


def build(config: Config, vocab_size: int, n_experts: int) -> SwitchTransformerLM:
    from papers.language.transformer import TransformerConfig

    transformer = TransformerConfig(
        vocab_size=vocab_size,
        d_model=config.d_model,
        n_heads=config.n_heads,
        d_ff=config.d_ff,
        n_encoder_layers=0,
        n_decoder_layers=config.n_layers,
        dropout=0.0,
        max_len=config.block,
        pre_ln=True,
    )
    return SwitchTransformerLM(
        transformer,
        n_experts=n_experts,
        expert_every=config.expert_every,
        capacity_factor=config.capacity_factor,
        eval_capacity_factor=config.eval_capacity_factor,
        expert_dropout=config.expert_dropout,
        init_scale=config.init_scale,
    )


def ffn_flops_per_token(model: SwitchTransformerLM) -> int:
    """Multiply-adds per token in the FFN slots: d_model · d_ff · 2 per FFN (one expert for a Switch
    layer) plus d_model · N for each router."""
    total = 0
    for layer in model.decoder:
        ffn = layer.ffn
        if hasattr(ffn, "n_experts"):
            total += 2 * ffn.d_model * ffn.d_ff + ffn.d_model * ffn.n_experts
        else:
            total += 2 * ffn.w_1.in_features * ffn.w_1.out_features
    return total


def evaluate(model: SwitchTransformerLM, valid: dict[str, Tensor], batch: int) -> dict:
    """Validation cross-entropy (nats/char), and per Switch layer the load f_i, mean probability P_i and
    the dropped-token fraction, pooled over the validation batches (batches of ``batch`` blocks, the
    training batch's token count, so that the capacity is the same)."""
    model.eval()
    nats, count = 0.0, 0
    layers = len(model.switch_layers())
    f_sum = [0.0] * layers
    p_sum = [0.0] * layers
    dropped = [0.0] * layers
    gates = [0.0] * layers
    tokens = 0
    with torch.no_grad():
        for start in range(0, len(valid["input_ids"]), batch):
            ids, labels = valid["input_ids"][start : start + batch], valid["labels"][start : start + batch]
            logits = model(ids)
            nats += nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), reduction="sum"
            ).item()
            count += labels.numel()
            for index, stats in enumerate(model.routing_stats()):
                f_sum[index] = f_sum[index] + stats["f"] * ids.numel()
                p_sum[index] = p_sum[index] + stats["P"] * ids.numel()
                dropped[index] += stats["dropped"] * ids.numel()
                gates[index] += stats["gate"] * ids.numel()
            tokens += ids.numel()
    model.train()
    out = {"loss": nats / count}
    if layers:
        f = [(x / tokens).tolist() for x in f_sum]
        p = [(x / tokens).tolist() for x in p_sum]
        n = model.n_experts
        out.update(
            f=f,
            P=p,
            dropped=[d / tokens for d in dropped],
            gate=[g / tokens for g in gates],
            aux=[n * sum(a * b for a, b in zip(fi, pi, strict=True)) for fi, pi in zip(f, p, strict=True)],
            max_load=[n * max(fi) for fi in f],  # 1 = uniform, N = all tokens on one expert
            load_cv=[float(torch.tensor(fi).std(unbiased=False) * n) for fi in f],  # std / mean
        )
    return out


def _eval_steps(total: int, points: int) -> list[int]:
    return sorted({max(1, round(total * (i + 1) / points)) for i in range(points)})


def train_variant(name: str, config: Config, data: dict, ctx) -> dict:
    from papers.language.transformer import make_optimizer, noam_lr

    n_experts = 0 if name == "dense" else config.n_experts
    alpha = config.aux_alpha if name == "switch" else 0.0
    torch.manual_seed(ctx.seed)
    model = build(config, data["vocab_size"], n_experts)
    factor = config.peak_lr / noam_lr(config.warmup, config.d_model, config.warmup)
    optimizer, scheduler = make_optimizer(model, d_model=config.d_model, warmup=config.warmup, factor=factor)
    train, valid = data["blocks"]["train"], data["blocks"]["valid"]
    generator = torch.Generator().manual_seed(ctx.seed + 1)  # the same batches for every variant
    evals = set(_eval_steps(config.steps, config.eval_points))
    history: dict[str, list] = {"loss": [], "aux": [], "dropped": [], "eval_step": [], "eval_loss": []}
    start = time.perf_counter()
    with ctx.progress_bar(config.steps, f"training {name}") as bar:
        for step in range(1, config.steps + 1):
            rows = torch.randint(len(train["input_ids"]), (config.batch,), generator=generator)
            logits = model(train["input_ids"][rows])
            ce = nn.functional.cross_entropy(logits.flatten(0, 1), train["labels"][rows].flatten())
            aux = model.aux_loss()
            loss = ce + alpha * aux
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            stats = model.routing_stats()
            history["loss"].append(ce.item())
            history["aux"].append(aux.item() / max(1, len(stats)))
            history["dropped"].append(sum(s["dropped"] for s in stats) / max(1, len(stats)))
            if step in evals:
                history["eval_step"].append(step)
                history["eval_loss"].append(evaluate(model, valid, config.batch)["loss"])
            ctx.log({f"{name}_loss": ce.item(), f"{name}_aux": history["aux"][-1]}, step=step)
            bar.update(1, loss=ce.item())
    train_time = time.perf_counter() - start
    final = evaluate(model, valid, config.batch)
    result = {
        "history": history,
        "train_time_s": train_time,
        "final": final,
        "params": sum(p.numel() for p in model.parameters()),
        "ffn_flops_per_token": ffn_flops_per_token(model),
        "alpha": alpha,
        "vocab_size": data["vocab_size"],
    }
    if n_experts:
        sweep = []
        for cf in CAPACITY_SWEEP:
            model.set_capacity_factor(config.capacity_factor, cf)
            point = evaluate(model, valid, config.batch)
            sweep.append({"capacity_factor": cf, "loss": point["loss"], "dropped": point["dropped"]})
        result["capacity_sweep"] = sweep
    return result


def steps_to_reach(history: dict, target: float) -> float:
    """First evaluation step (linearly interpolated) whose validation loss is <= target; inf if never."""
    steps, losses = history["eval_step"], history["eval_loss"]
    for i, (step, loss) in enumerate(zip(steps, losses, strict=True)):
        if loss <= target:
            if i == 0:
                return float(step)
            s0, l0 = steps[i - 1], losses[i - 1]
            return s0 + (step - s0) * (l0 - target) / (l0 - loss)
    return math.inf


def speedup(dense: dict, switch: dict) -> float:
    """The paper's "speedup" (Fig. 5): steps the dense model took to its final validation loss over the
    steps the Switch model needed to reach it (interpolated between evaluations); 0 if it never did."""
    steps = steps_to_reach(switch, dense["eval_loss"][-1])
    return dense["eval_step"][-1] / steps if math.isfinite(steps) else 0.0


# -------------------------------------------------------------------------------------------------- run


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    cache: dict = {}

    def blocks() -> dict:
        if not cache:
            cache.update(lm_data(config))
        return cache

    parts = {name: ctx.stage(f"train_{name}", lambda name=name: train_variant(name, config, blocks(), ctx))
             for name in VARIANTS}  # fmt: skip
    dense, switch, no_aux = (parts[n] for n in VARIANTS)

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    def at_cf(part: dict, cf: float) -> dict:
        return next(p for p in part["capacity_sweep"] if p["capacity_factor"] == cf)

    metrics = {
        "vocab_size": dense["vocab_size"],
        "dense_valid_loss": dense["final"]["loss"],
        "switch_valid_loss": switch["final"]["loss"],
        "switch_no_aux_valid_loss": no_aux["final"]["loss"],
        "dense_params": dense["params"],
        "switch_params": switch["params"],
        "dense_ffn_flops_per_token": dense["ffn_flops_per_token"],
        "switch_ffn_flops_per_token": switch["ffn_flops_per_token"],
        "switch_speedup_to_dense_final_loss": speedup(dense["history"], switch["history"]),
        "switch_ahead_of_dense_eval_points": sum(
            a < b for a, b in zip(switch["history"]["eval_loss"], dense["history"]["eval_loss"], strict=True)
        ),
        "eval_points": len(dense["history"]["eval_loss"]),
        "switch_max_load": mean(switch["final"]["max_load"]),
        "switch_no_aux_max_load": mean(no_aux["final"]["max_load"]),
        "switch_load_cv": mean(switch["final"]["load_cv"]),
        "switch_no_aux_load_cv": mean(no_aux["final"]["load_cv"]),
        "switch_aux_over_min": mean(switch["final"]["aux"]),
        "switch_no_aux_aux_over_min": mean(no_aux["final"]["aux"]),
        "switch_mean_gate": mean(switch["final"]["gate"]),
        "switch_dropped_cf1": mean(at_cf(switch, 1.0)["dropped"]),
        "switch_no_aux_dropped_cf1": mean(at_cf(no_aux, 1.0)["dropped"]),
        "switch_dropped_train": mean(switch["history"]["dropped"][-50:]),
        "switch_no_aux_dropped_train": mean(no_aux["history"]["dropped"][-50:]),
    }
    for name in VARIANTS:
        metrics[f"{name}_train_time_s"] = parts[name]["train_time_s"]
    checks = [
        Check(
            "Switch LM has lower validation loss than dense at equal FLOPs/token and steps",
            metrics["switch_valid_loss"],
            "<",
            metrics["dense_valid_loss"],
            "dense LM, same d_ff, steps and batches",
        ),
        Check(
            "balancing loss keeps expert load nearer uniform (max_i N f_i; 1 = uniform)",
            metrics["switch_max_load"],
            "<",
            metrics["switch_no_aux_max_load"],
            "Switch LM trained with alpha = 0",
        ),
        Check(
            "balancing loss: fewer tokens dropped at capacity factor 1.0",
            metrics["switch_dropped_cf1"],
            "<",
            metrics["switch_no_aux_dropped_cf1"],
            "Switch LM trained with alpha = 0",
        ),
        Check(
            "Switch (alpha=1e-2) reaches lower validation loss than Switch without balancing",
            metrics["switch_valid_loss"],
            "<",
            metrics["switch_no_aux_valid_loss"],
            "Switch LM trained with alpha = 0",
        ),
    ]
    figures(config, ctx, parts)
    return Result(metrics=metrics, checks=checks, notes=notes(config, metrics))


def notes(config: Config, m: dict) -> str:
    text = (
        f"Char LM on CPython docs, {config.n_layers} pre-LN layers, d_model {config.d_model}, d_ff "
        f"{config.d_ff}, {config.n_experts} experts per Switch layer, {config.steps} steps of "
        f"{config.batch}x{config.block} tokens. FFN multiply-adds per token: dense "
        f"{m['dense_ffn_flops_per_token']}, Switch {m['switch_ffn_flops_per_token']} (router included); "
        f"parameters {m['dense_params']} vs {m['switch_params']}. Validation loss (nats/char): dense "
        f"{m['dense_valid_loss']:.4f}, Switch {m['switch_valid_loss']:.4f}, Switch without balancing "
        f"{m['switch_no_aux_valid_loss']:.4f}; Switch is ahead of dense at "
        f"{m['switch_ahead_of_dense_eval_points']} of {m['eval_points']} evaluations; speedup to "
        f"dense's final loss {m['switch_speedup_to_dense_final_loss']:.2f}x (0 = not reached). Expert "
        f"load max_i N f_i: {m['switch_max_load']:.2f} with the balancing loss vs "
        f"{m['switch_no_aux_max_load']:.2f} without (N Sum f_i P_i {m['switch_aux_over_min']:.3f} vs "
        f"{m['switch_no_aux_aux_over_min']:.3f}, minimum 1); tokens dropped at capacity factor 1.0: "
        f"{m['switch_dropped_cf1']:.3f} vs {m['switch_no_aux_dropped_cf1']:.3f}."
    )
    if m["switch_valid_loss"] >= m["dense_valid_loss"]:
        text += (
            " The Switch model does NOT beat the dense one at the end of this run"
            + (" although it leads early on" if m["switch_ahead_of_dense_eval_points"] else "")
            + ". Likely reasons at this toy scale: each expert sees ~1/N of the tokens, so after a few "
            "hundred steps the experts have had few updates each; the 2-layer model is limited by "
            "optimisation, not by parameter count; and the expert output is scaled by the gate p_i(x) "
            f"(mean {m['switch_mean_gate']:.2f} at the end, vs 1 for a dense FFN) while the router is "
            "still unsure. The paper's gains are measured over far longer training at scale."
        )
    if m["switch_max_load"] >= m["switch_no_aux_max_load"]:
        text += " Without the balancing loss the routing stayed about as balanced in this short run."
    if m["switch_valid_loss"] >= m["switch_no_aux_valid_loss"]:
        text += (
            " Training without the balancing loss did not hurt the validation loss in this run (the paper "
            "reports the loss as needed for quality at scale, where unbalanced experts drop many tokens)."
        )
    return text


def figures(config: Config, ctx, parts: dict) -> None:
    from papers.core.plots import figure, moving_average

    labels = {"dense": "dense", "switch": "Switch, alpha=1e-2", "switch_no_aux": "Switch, alpha=0"}
    fig, (ax_train, ax_valid) = figure(ncols=2)
    for name, part in parts.items():
        history = part["history"]
        ax_train.plot(range(1, len(history["loss"]) + 1), moving_average(history["loss"]), label=labels[name])
        ax_valid.plot(
            history["eval_step"], history["eval_loss"], marker="o", markersize=3, label=labels[name]
        )
    ax_train.set(xlabel="step", ylabel="training cross-entropy (nats/char, smoothed)")
    ax_valid.set(xlabel="step", ylabel="validation cross-entropy (nats/char)", title="equal FLOPs per token")
    ax_train.legend(fontsize=8)
    ax_valid.legend(fontsize=8)
    ctx.save_figure(fig, "loss_curves")

    layers = len(parts["switch"]["final"]["f"])
    fig, axes = figure(ncols=layers, nrows=2, width=3.4, height=2.6)
    for row, name in enumerate(("switch", "switch_no_aux")):
        for layer in range(layers):
            ax = axes[row * layers + layer]
            f = parts[name]["final"]["f"][layer]
            ax.bar(range(len(f)), f, color="C1" if row else "C0")
            ax.axhline(1 / len(f), color="k", linestyle="--", linewidth=1)
            ax.set(
                xlabel="expert", ylabel="fraction of tokens f_i", title=f"{labels[name]}, layer {layer + 1}"
            )
            ax.title.set_fontsize(8)
    ctx.save_figure(fig, "load_histograms")

    fig, (ax_drop, ax_loss) = figure(ncols=2)
    for name in ("switch", "switch_no_aux"):
        sweep = parts[name]["capacity_sweep"]
        cfs = [p["capacity_factor"] for p in sweep]
        ax_drop.plot(
            cfs, [sum(p["dropped"]) / len(p["dropped"]) for p in sweep], marker="o", label=labels[name]
        )
        ax_loss.plot(cfs, [p["loss"] for p in sweep], marker="o", label=labels[name])
    ax_loss.axhline(parts["dense"]["final"]["loss"], color="k", linestyle="--", linewidth=1, label="dense")
    ax_drop.set(xlabel="capacity factor (evaluation)", ylabel="fraction of tokens dropped")
    ax_loss.set(xlabel="capacity factor (evaluation)", ylabel="validation cross-entropy (nats/char)")
    ax_drop.legend(fontsize=8)
    ax_loss.legend(fontsize=8)
    ctx.save_figure(fig, "capacity_factor")
