"""Reproduction at toy scale: the Transformer against LSTM baselines of the same size at equal steps.

(a) Algorithmic seq2seq (copy / reverse / sort of 3–6 random symbols, ``papers.language.data``'s
    ``sequence_task``; batches mix lengths, so padding masks matter): an encoder–decoder Transformer
    (post-LN, shared embeddings × √d_model, label smoothing ε_ls, Adam(0.9, 0.98, 1e-9) with the warmup /
    inverse-square-root schedule) against an LSTM encoder–decoder WITH dot-product ("general") attention
    whose hidden size is chosen to match the Transformer's parameter count; both trained with the same
    label-smoothed loss for the same steps and batches. Measured: exact-sequence accuracy of greedy
    decoding on held-out sequences.
(b) Character LM on CPython's documentation prose (``documentation_texts``, split by document): the
    decoder-only Transformer against a parameter-matched LSTM LM, cross-entropy, equal steps and batches.
    Measured: validation bits per character.
(c) Label smoothing on the LM: the same decoder trained with ε_ls against ε = 0. The paper (Sec. 5.4):
    smoothing hurts perplexity but improves accuracy; measured: validation bpc and next-character
    top-1 accuracy.
The reverse-task Transformer is written with ``save_pretrained`` and read back with ``from_pretrained``
to draw its encoder–decoder attention on a test example.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result

from .baselines import LSTMLM, LSTMSeq2Seq, matched_hidden, n_params
from .model import (
    Transformer,
    TransformerConfig,
    TransformerLM,
    label_smoothed_loss,
    make_optimizer,
    noam_lr,
)

PAD, BOS, EOS, OFFSET = 0, 1, 2, 3  # seq2seq vocabulary: three specials, then the symbols
IGNORE = -100
TASKS = ("copy", "reverse", "sort")


@dataclass
class Config:
    # (a) seq2seq tasks
    tasks: tuple[str, ...] = TASKS
    num_symbols: int = 10
    min_len: int = 3
    max_len: int = 6
    n_train: int = 20000
    n_test: int = 500
    seq_steps: int = 300
    seq_batch: int = 32
    seq_warmup: int = 100
    # Transformer (both parts): reduced from the base model's d_model 512, 8 heads, d_ff 2048, 6 + 6 layers
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    n_layers: int = 2
    dropout: float = 0.0  # the paper's 0.1 is TransformerConfig's default; see the README
    pre_ln: bool = False
    # The paper's schedule, scaled so that its peak (at the warmup step) is ``peak_lr``: with d_model 64
    # and warmup 100 the unscaled formula peaks at 1.25e-2, 18x the base model's 7e-4; 0 = unscaled.
    peak_lr: float = 2e-3
    label_smoothing: float = 0.1
    # LSTM baselines: Adam at a constant rate, hidden size matched to the Transformer's parameters
    lstm_layers: int = 1
    lstm_lr: float = 2e-3
    # (b, c) character LM
    lm_steps: int = 200
    lm_batch: int = 16
    lm_block: int = 64
    lm_warmup: int = 60
    lm_eval_blocks: int = 64
    lm_smoothing_ablation: bool = True
    eval_points: int = 8
    threads: int = 1

    def validate(self) -> None:
        unknown = [t for t in self.tasks if t not in TASKS]
        if not self.tasks or unknown:
            raise ValueError(f"tasks must be a non-empty subset of {TASKS}, got {self.tasks}")
        if "reverse" not in self.tasks:
            raise ValueError("tasks must include 'reverse' (its attention map is drawn)")
        for name in (
            "num_symbols",
            "n_train",
            "n_test",
            "seq_steps",
            "seq_batch",
            "seq_warmup",
            "d_model",
            "n_heads",
            "d_ff",
            "n_layers",
            "lstm_layers",
            "lm_steps",
            "lm_batch",
            "lm_block",
            "lm_warmup",
            "lm_eval_blocks",
            "eval_points",
        ):
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
        for name in ("lstm_lr",):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.peak_lr < 0:
            raise ValueError(f"peak_lr must be >= 0, got {self.peak_lr}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"n_train": 256, "n_test": 32, "seq_steps": 6, "seq_batch": 16, "seq_warmup": 3, "d_model": 16,
              "n_heads": 2, "d_ff": 32, "n_layers": 1, "lm_steps": 6, "lm_batch": 4, "lm_block": 32,
              "lm_warmup": 3, "lm_eval_blocks": 4, "eval_points": 2, "max_len": 6},
    "default": {},
    "full": {"dropout": 0.1, "seq_steps": 3000, "lm_steps": 4000, "max_len": 12, "seq_batch": 64,
             "lm_batch": 32, "d_model": 128, "n_heads": 8, "d_ff": 512, "seq_warmup": 400, "lm_warmup": 400,
             "lm_block": 256, "lm_eval_blocks": 256},
}  # fmt: skip


# --------------------------------------------------------------------------------------------- seq2seq


def seq2seq_data(task: str, n: int, config: Config, generator: torch.Generator) -> dict[str, Tensor]:
    """``src`` = symbols + EOS, ``tgt_in`` = BOS + target, ``tgt_out`` = target + EOS, padded; lengths
    uniform in [min_len, max_len]."""
    from papers.language.data import sequence_task

    lengths = torch.randint(config.min_len, config.max_len + 1, (n,), generator=generator)
    width = config.max_len + 1
    src = torch.full((n, width), PAD, dtype=torch.long)
    tgt_in, tgt_out = src.clone(), torch.full((n, width), IGNORE, dtype=torch.long)
    for length in lengths.unique().tolist():
        rows = (lengths == length).nonzero().squeeze(1)
        x, y = sequence_task(
            task,
            num_examples=len(rows),
            length=length,
            num_symbols=config.num_symbols,
            offset=OFFSET,
            generator=generator,
        )
        src[rows, :length], src[rows, length] = x, EOS
        tgt_in[rows, 0], tgt_in[rows, 1 : length + 1] = BOS, y
        tgt_out[rows, :length], tgt_out[rows, length] = y, EOS
    return {"src": src, "tgt_in": tgt_in, "tgt_out": tgt_out}


def exact_accuracy(model: nn.Module, data: dict[str, Tensor], batch: int = 256) -> float:
    """Fraction of sequences whose greedy decoding equals target + EOS exactly."""
    model.eval()
    correct = 0
    width = data["tgt_out"].shape[1]
    for start in range(0, len(data["src"]), batch):
        src = data["src"][start : start + batch]
        target = data["tgt_out"][start : start + batch].clamp_min(PAD)  # IGNORE -> PAD after EOS
        pred = model.greedy_decode(src, bos_id=BOS, eos_id=EOS, max_new_tokens=width)
        pred = nn.functional.pad(pred, (0, width - pred.shape[1]), value=PAD)[:, :width]
        correct += (pred == target).all(1).sum().item()
    model.train()
    return correct / len(data["src"])


def schedule_factor(config: Config, warmup: int) -> float:
    """Multiplier of the paper's schedule that puts its peak at ``peak_lr`` (1 when ``peak_lr`` is 0)."""
    return config.peak_lr / noam_lr(warmup, config.d_model, warmup) if config.peak_lr else 1.0


def _eval_steps(total: int, points: int) -> set[int]:
    return {max(1, round(total * (i + 1) / points)) for i in range(points)}


def train_seq2seq(
    model: nn.Module, name: str, optimizer, scheduler, train: dict, test: dict, config: Config, ctx, seed: int
) -> dict:
    generator = torch.Generator().manual_seed(seed)
    history: dict[str, list] = {"loss": [], "eval_step": [], "eval_accuracy": []}
    evals = _eval_steps(config.seq_steps, config.eval_points)
    probe = {k: v[: min(200, len(v))] for k, v in test.items()}
    start = time.perf_counter()
    model.train()
    with ctx.progress_bar(config.seq_steps, f"training {name}") as bar:
        for step in range(1, config.seq_steps + 1):
            rows = torch.randint(len(train["src"]), (config.seq_batch,), generator=generator)
            logits = model(train["src"][rows], train["tgt_in"][rows])
            loss = label_smoothed_loss(logits, train["tgt_out"][rows], config.label_smoothing, IGNORE)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            history["loss"].append(loss.item())
            if step in evals:
                history["eval_step"].append(step)
                history["eval_accuracy"].append(exact_accuracy(model, probe))
            ctx.log({f"{name}_loss": loss.item()}, step=step)
            bar.update(1, loss=loss.item())
    train_time = time.perf_counter() - start
    return {
        "history": history,
        "train_time_s": train_time,
        "test_exact_accuracy": exact_accuracy(model, test),
        "params": n_params(model),
    }


def transformer_config(
    config: Config, vocab_size: int, max_len: int, encoder: bool = True
) -> TransformerConfig:
    return TransformerConfig(
        vocab_size=vocab_size,
        d_model=config.d_model,
        n_heads=config.n_heads,
        d_ff=config.d_ff,
        n_encoder_layers=config.n_layers if encoder else 0,
        n_decoder_layers=config.n_layers,
        dropout=config.dropout,
        max_len=max_len,
        pad_id=PAD,
        pre_ln=config.pre_ln,
    )


def seq2seq_task(task: str, config: Config, ctx, index: int) -> dict:
    vocab = OFFSET + config.num_symbols
    train = seq2seq_data(task, config.n_train, config, torch.Generator().manual_seed(ctx.seed * 1000 + index))
    test = seq2seq_data(
        task, config.n_test, config, torch.Generator().manual_seed(ctx.seed * 1000 + 500 + index)
    )
    torch.manual_seed(ctx.seed)
    transformer = Transformer(transformer_config(config, vocab, config.max_len + 2))
    optimizer, scheduler = make_optimizer(
        transformer,
        d_model=config.d_model,
        warmup=config.seq_warmup,
        factor=schedule_factor(config, config.seq_warmup),
    )
    ours = train_seq2seq(
        transformer, f"{task}_transformer", optimizer, scheduler, train, test, config, ctx, ctx.seed + 1
    )
    if task == "reverse":
        transformer.save_pretrained(ctx.checkpoint_dir / "reverse_transformer")

    def build(hidden: int) -> LSTMSeq2Seq:
        return LSTMSeq2Seq(vocab, hidden, n_layers=config.lstm_layers, pad_id=PAD)

    hidden = matched_hidden(build, ours["params"])
    torch.manual_seed(ctx.seed)
    lstm = build(hidden)
    lstm_optimizer = torch.optim.Adam(lstm.parameters(), lr=config.lstm_lr)
    theirs = train_seq2seq(lstm, f"{task}_lstm", lstm_optimizer, None, train, test, config, ctx, ctx.seed + 1)
    return {"transformer": ours, "lstm": theirs, "lstm_hidden": hidden}


def attention_map(config: Config, ctx) -> dict:
    """Encoder–decoder attention of the reloaded reverse model on one test example, and over the test
    set the mean weight a target position puts on its mirrored source position."""
    model = Transformer.from_pretrained(ctx.checkpoint_dir / "reverse_transformer")
    test = seq2seq_data(
        "reverse",
        config.n_test,
        config,
        torch.Generator().manual_seed(ctx.seed * 1000 + 500 + TASKS.index("reverse")),
    )
    model.set_keep_attention(True)
    with torch.no_grad():
        model(test["src"], test["tgt_in"])
    lengths = (test["src"] != PAD).sum(1) - 1  # symbols, EOS excluded
    mirror_mass = []
    for layer in model.decoder:
        weights = layer.cross_attn.last_weights.mean(1)  # (B, T_tgt, T_src), mean over heads
        total, count = 0.0, 0
        for b, length in enumerate(lengths.tolist()):
            t = torch.arange(length)
            total += weights[b, t, length - 1 - t].sum().item()
            count += length
        mirror_mass.append(total / count)
    example = int((lengths == config.max_len).nonzero()[0, 0]) if (lengths == config.max_len).any() else 0
    length = int(lengths[example]) + 1
    maps = [layer.cross_attn.last_weights[example, :, :length, :length].tolist() for layer in model.decoder]
    model.set_keep_attention(False)
    return {
        "mirror_mass_per_layer": mirror_mass,
        "uniform_mass": (1 / (lengths + 1).float()).mean().item(),
        "example_src": test["src"][example, :length].tolist(),
        "example_tgt": test["tgt_out"][example, :length].tolist(),
        "maps": maps,
    }


# ------------------------------------------------------------------------------------------ character LM


def lm_data(config: Config) -> dict:
    from papers.language.data import CharTokenizer, documentation_texts, pack_causal_lm, split_documents

    split = split_documents(documentation_texts(), (0.8, 0.1, 0.1), seed=0)
    tokenizer = CharTokenizer.train(split.train.values())
    blocks = {}
    for part, texts in (("train", split.train), ("valid", split.valid)):
        packed = pack_causal_lm(
            [tokenizer.encode(t) for t in texts.values()], block_size=config.lm_block, eos_id=tokenizer.eos_id
        )
        blocks[part] = packed
    blocks["valid"] = {k: v[: config.lm_eval_blocks] for k, v in blocks["valid"].items()}
    return {
        "blocks": blocks,
        "vocab_size": tokenizer.vocab_size,
        "train_chars": sum(map(len, split.train.values())),
        "valid_chars": sum(map(len, split.valid.values())),
    }


def lm_evaluate(model: nn.Module, valid: dict[str, Tensor], batch: int = 16) -> tuple[float, float]:
    """(bits per character, next-character top-1 accuracy) over the validation blocks."""
    model.eval()
    nats, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(valid["input_ids"]), batch):
            ids, labels = valid["input_ids"][start : start + batch], valid["labels"][start : start + batch]
            logits = model(ids)
            nats += nn.functional.cross_entropy(
                logits.flatten(0, 1), labels.flatten(), reduction="sum"
            ).item()
            correct += (logits.argmax(-1) == labels).sum().item()
            count += labels.numel()
    model.train()
    return nats / count / math.log(2), correct / count


def train_lm(
    model: nn.Module, name: str, optimizer, scheduler, data: dict, config: Config, ctx, epsilon: float
) -> dict:
    train, valid = data["blocks"]["train"], data["blocks"]["valid"]
    generator = torch.Generator().manual_seed(ctx.seed + 2)
    evals = _eval_steps(config.lm_steps, config.eval_points)
    history: dict[str, list] = {"loss": [], "eval_step": [], "eval_bpc": []}
    start = time.perf_counter()
    model.train()
    with ctx.progress_bar(config.lm_steps, f"training {name}") as bar:
        for step in range(1, config.lm_steps + 1):
            rows = torch.randint(len(train["input_ids"]), (config.lm_batch,), generator=generator)
            loss = label_smoothed_loss(model(train["input_ids"][rows]), train["labels"][rows], epsilon)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            history["loss"].append(loss.item())
            if step in evals and step != config.lm_steps:
                history["eval_step"].append(step)
                history["eval_bpc"].append(lm_evaluate(model, valid)[0])
            ctx.log({f"{name}_loss": loss.item()}, step=step)
            bar.update(1, loss=loss.item())
    train_time = time.perf_counter() - start
    bpc, accuracy = lm_evaluate(model, valid)
    history["eval_step"].append(config.lm_steps)
    history["eval_bpc"].append(bpc)
    return {
        "history": history,
        "train_time_s": train_time,
        "valid_bpc": bpc,
        "valid_accuracy": accuracy,
        "params": n_params(model),
    }


def char_lm(config: Config, ctx) -> dict:
    data = lm_data(config)
    vocab = data["vocab_size"]

    def transformer_lm(epsilon: float, name: str) -> dict:
        torch.manual_seed(ctx.seed)
        model = TransformerLM(transformer_config(config, vocab, config.lm_block, encoder=False))
        optimizer, scheduler = make_optimizer(
            model,
            d_model=config.d_model,
            warmup=config.lm_warmup,
            factor=schedule_factor(config, config.lm_warmup),
        )
        return train_lm(model, name, optimizer, scheduler, data, config, ctx, epsilon)

    ours = transformer_lm(0.0, "lm_transformer")

    def build(hidden: int) -> LSTMLM:
        return LSTMLM(vocab, hidden, n_layers=config.lstm_layers)

    hidden = matched_hidden(build, ours["params"])
    torch.manual_seed(ctx.seed)
    lstm = build(hidden)
    theirs = train_lm(
        lstm, "lm_lstm", torch.optim.Adam(lstm.parameters(), lr=config.lstm_lr), None, data, config, ctx, 0.0
    )
    out = {
        "transformer": ours,
        "lstm": theirs,
        "lstm_hidden": hidden,
        "vocab_size": vocab,
        "train_chars": data["train_chars"],
        "valid_chars": data["valid_chars"],
        "valid_eval_chars": int(data["blocks"]["valid"]["labels"].numel()),
    }
    if config.lm_smoothing_ablation:
        out["transformer_smoothed"] = transformer_lm(config.label_smoothing, "lm_transformer_smoothed")
    return out


# ------------------------------------------------------------------------------------------------- run


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    seq = {
        task: ctx.stage(
            f"seq2seq_{task}", lambda task=task: seq2seq_task(task, config, ctx, TASKS.index(task))
        )
        for task in config.tasks
    }
    attention = ctx.stage("attention_reverse", lambda: attention_map(config, ctx))
    lm = ctx.stage("char_lm", lambda: char_lm(config, ctx))

    metrics: dict = {}
    checks = []
    for task, part in seq.items():
        ours, theirs = part["transformer"], part["lstm"]
        metrics[f"{task}_transformer_exact_accuracy"] = ours["test_exact_accuracy"]
        metrics[f"{task}_lstm_exact_accuracy"] = theirs["test_exact_accuracy"]
        metrics[f"{task}_transformer_train_time_s"] = ours["train_time_s"]
        metrics[f"{task}_lstm_train_time_s"] = theirs["train_time_s"]
        checks.append(
            Check(
                f"{task}: Transformer exact-sequence accuracy >= LSTM+attention",
                ours["test_exact_accuracy"],
                ">=",
                theirs["test_exact_accuracy"],
                f"LSTM encoder-decoder with attention, hidden {part['lstm_hidden']}",
            )
        )
    first = next(iter(seq.values()))
    metrics["seq2seq_transformer_params"] = first["transformer"]["params"]
    metrics["seq2seq_lstm_params"] = first["lstm"]["params"]
    metrics["seq2seq_lstm_hidden"] = first["lstm_hidden"]
    metrics["reverse_mirror_attention_per_layer"] = attention["mirror_mass_per_layer"]
    metrics["reverse_mirror_attention_best_layer"] = max(attention["mirror_mass_per_layer"])
    metrics["reverse_uniform_attention"] = attention["uniform_mass"]

    ours, theirs = lm["transformer"], lm["lstm"]
    metrics.update({
        "lm_transformer_valid_bpc": ours["valid_bpc"], "lm_lstm_valid_bpc": theirs["valid_bpc"],
        "lm_transformer_valid_accuracy": ours["valid_accuracy"],
        "lm_lstm_valid_accuracy": theirs["valid_accuracy"],
        "lm_transformer_params": ours["params"], "lm_lstm_params": theirs["params"],
        "lm_lstm_hidden": lm["lstm_hidden"], "lm_vocab_size": lm["vocab_size"],
        "lm_valid_eval_chars": lm["valid_eval_chars"], "lm_train_chars": lm["train_chars"],
        "lm_transformer_train_time_s": ours["train_time_s"], "lm_lstm_train_time_s": theirs["train_time_s"],
    })  # fmt: skip
    checks.append(
        Check(
            "char LM: Transformer validation bpc < LSTM",
            ours["valid_bpc"],
            "<",
            theirs["valid_bpc"],
            f"LSTM LM, hidden {lm['lstm_hidden']}",
        )
    )
    smoothed = lm.get("transformer_smoothed")
    eps = config.label_smoothing
    if smoothed is not None:
        metrics.update(
            {
                "lm_smoothed_valid_bpc": smoothed["valid_bpc"],
                "lm_smoothed_valid_accuracy": smoothed["valid_accuracy"],
                "lm_smoothed_train_time_s": smoothed["train_time_s"],
            }
        )
        checks.append(
            Check(
                f"label smoothing eps={eps:g} hurts perplexity (higher bpc)",
                smoothed["valid_bpc"],
                ">",
                ours["valid_bpc"],
                "bpc with eps = 0",
            )
        )
        checks.append(
            Check(
                f"label smoothing eps={eps:g} does not hurt next-char accuracy",
                smoothed["valid_accuracy"],
                ">=",
                ours["valid_accuracy"],
                "accuracy with eps = 0",
            )
        )

    figures(config, ctx, seq, lm, attention)
    notes = _notes(config, seq, lm, attention, metrics)
    return Result(metrics=metrics, checks=checks, notes=notes)


def _binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / max(1, n))


def _notes(config: Config, seq: dict, lm: dict, attention: dict, metrics: dict) -> str:
    accs = "; ".join(
        f"{t} {p['transformer']['test_exact_accuracy']:.3f} vs {p['lstm']['test_exact_accuracy']:.3f}"
        for t, p in seq.items()
    )
    text = (
        f"Toy scale: d_model {config.d_model}, {config.n_heads} heads, d_ff {config.d_ff}, {config.n_layers} "
        f"encoder + {config.n_layers} decoder layers, {config.seq_steps} steps of batch {config.seq_batch} "
        f"per "
        f"task (warmup {config.seq_warmup}). Exact-sequence accuracy, Transformer vs LSTM with attention "
        f"({metrics['seq2seq_transformer_params']} vs {metrics['seq2seq_lstm_params']} parameters): {accs}. "
        f"Reverse model's encoder-decoder attention on the mirrored source position, per decoder layer "
        f"(mean over heads): {', '.join(f'{m:.2f}' for m in attention['mirror_mass_per_layer'])} "
        f"(uniform {attention['uniform_mass']:.2f}). "
        f"Char LM ({config.lm_steps} steps, batch {config.lm_batch} x {config.lm_block}, "
        f"{metrics['lm_valid_eval_chars']} validation characters): "
        f"bpc {metrics['lm_transformer_valid_bpc']:.3f} "
        f"(Transformer, {metrics['lm_transformer_params']} params) vs {metrics['lm_lstm_valid_bpc']:.3f} "
        f"(LSTM, {metrics['lm_lstm_params']} params)."
    )
    lost = [
        t
        for t, p in seq.items()
        if p["transformer"]["test_exact_accuracy"] < p["lstm"]["test_exact_accuracy"]
    ]
    if lost:
        text += (
            f" The Transformer is behind the LSTM with attention on {', '.join(lost)} at these equal, few "
            "steps: the runs compare learning speed far from convergence on tiny tasks, not the converged "
            "translation quality the paper reports, and an attentional LSTM already has a strong bias for "
            "monotone, position-by-position alignments."
        )
    if metrics["lm_transformer_valid_bpc"] >= metrics["lm_lstm_valid_bpc"]:
        text += (
            " On the LM the LSTM is ahead after the same steps; both curves are still falling steeply (see "
            "lm_curves), so this too compares early learning speed, not what either model converges to."
        )
    if "lm_smoothed_valid_bpc" in metrics:
        text += (
            f" Label smoothing {config.label_smoothing:g}: bpc {metrics['lm_smoothed_valid_bpc']:.3f} vs "
            f"{metrics['lm_transformer_valid_bpc']:.3f}, "
            f"accuracy {metrics['lm_smoothed_valid_accuracy']:.3f} vs "
            f"{metrics['lm_transformer_valid_accuracy']:.3f} (eps = 0; binomial standard error "
            f"{_binomial_se(metrics['lm_transformer_valid_accuracy'], metrics['lm_valid_eval_chars']):.3f})."
        )
    return text


def figures(config: Config, ctx, seq: dict, lm: dict, attention: dict) -> None:
    from papers.core.plots import figure, moving_average, plot_lines

    fig, axes = figure(ncols=len(seq), nrows=2, width=3.6, height=3.0)
    for column, (task, part) in enumerate(seq.items()):
        ax_loss, ax_acc = axes[column], axes[len(seq) + column]
        steps = list(range(1, len(part["transformer"]["history"]["loss"]) + 1))
        plot_lines(
            ax_loss,
            steps,
            {
                name: moving_average(part[key]["history"]["loss"])
                for name, key in (("Transformer", "transformer"), ("LSTM+attn", "lstm"))
            },
            xlabel="step",
            ylabel="label-smoothed loss",
            title=task,
            marker="",
        )
        ax_acc.plot(
            part["transformer"]["history"]["eval_step"],
            part["transformer"]["history"]["eval_accuracy"],
            marker="o",
            markersize=3,
            label="Transformer",
        )
        ax_acc.plot(
            part["lstm"]["history"]["eval_step"],
            part["lstm"]["history"]["eval_accuracy"],
            marker="o",
            markersize=3,
            label="LSTM+attn",
        )
        ax_acc.set(xlabel="step", ylabel="exact-sequence accuracy (200 test)", ylim=(-0.02, 1.02))
        ax_acc.legend(fontsize=8)
    ctx.save_figure(fig, "seq2seq_curves")

    fig, (ax_loss, ax_bpc) = figure(ncols=2)
    runs = {"Transformer": lm["transformer"], "LSTM": lm["lstm"]}
    if "transformer_smoothed" in lm:
        runs[f"Transformer, eps_ls={config.label_smoothing:g}"] = lm["transformer_smoothed"]
    for name, part in runs.items():
        history = part["history"]
        ax_loss.plot(range(1, len(history["loss"]) + 1), moving_average(history["loss"]), label=name)
        ax_bpc.plot(history["eval_step"], history["eval_bpc"], marker="o", markersize=3, label=name)
    ax_loss.set(xlabel="step", ylabel="training loss (nats, smoothed)")
    ax_bpc.set(xlabel="step", ylabel="validation bits per character", title="char LM, CPython docs")
    ax_loss.legend(fontsize=8)
    ax_bpc.legend(fontsize=8)
    ctx.save_figure(fig, "lm_curves")

    maps = attention["maps"]  # [layer][head][tgt][src]
    n_layers, n_heads = len(maps), len(maps[0])
    fig, axes = figure(ncols=n_heads, nrows=n_layers, width=2.4, height=2.4)

    def label(ids: list[int]) -> list[str]:
        return [{PAD: "", BOS: "<s>", EOS: "</s>"}.get(i, str(i - OFFSET)) for i in ids]

    src, tgt = label(attention["example_src"]), label(attention["example_tgt"])
    for layer in range(n_layers):
        for head in range(n_heads):
            ax = axes[layer * n_heads + head]
            ax.grid(False)
            ax.imshow(maps[layer][head], cmap="viridis", vmin=0, vmax=1)
            ax.set_xticks(range(len(src)), src, fontsize=6)
            ax.set_yticks(range(len(tgt)), tgt, fontsize=6)
            ax.set_title(f"layer {layer + 1}, head {head + 1}", fontsize=8)
            if head == 0:
                ax.set_ylabel("output (reversed)", fontsize=7)
            if layer == n_layers - 1:
                ax.set_xlabel("source", fontsize=7)
    ctx.save_figure(fig, "attention_reverse")
