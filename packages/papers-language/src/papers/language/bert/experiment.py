"""Reproduction at toy scale: masked-LM pre-training against left-to-right pre-training and none.

Corpus: sentences of ``papers.language.data``'s ``TOY_GRAMMAR`` (a small English-like PCFG, word-level
vocabulary of 25 words plus the 5 special tokens), packed as sentence pairs ``[CLS] A [SEP] B [SEP]``
with segment ids 0 / 1, as in the paper's pre-training input (Sec. 3.1, Fig. 2).

Pre-training, the same network, steps, batches and sequence length for both objectives (equal compute):
    MLM     bidirectional encoder; 15 % of the tokens chosen, 80 / 10 / 10 [MASK] / random / unchanged
            (``mask_tokens``, drawn afresh every step), cross-entropy on the chosen tokens through the
            output layer tied to the input embeddings;
    causal  the same encoder with a left-to-right attention mask, cross-entropy of every next token
            through the same tied head (the paper's "LTR & No NSP", Sec. 5.1).
Optimiser as in Appendix A.2: Adam with L2 weight decay 0.01, linear warm-up over the first 10 % of the
steps then linear decay; dropout 0.1 on every layer.

Downstream task (few labelled sentences, three labels, the label is decided by the words to the RIGHT
of the verb): is the main verb's object an animate noun, an inanimate noun, or is there no object?
("the cat near the river sleeps under a house" → no object: the nouns after the verb are inside a
prepositional phrase; "a dog sees the old garden" → inanimate.) Fine-tuning (Sec. 3.2, A.3): every weight
trained, [CLS] pooled → dropout → linear, Adam with linear decay, a few epochs; the learning rate is
picked per model and seed from a small grid by dev accuracy, as the paper does. The left-to-right model
keeps its causal mask at fine-tuning (the paper: removing it hurt) and is pooled at its last token, the
only position that has seen the whole sentence. Measured: test accuracy, mean over seeds.
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
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    mlm_loss,
    next_token_loss,
)

OBJECTIVES = ("mlm", "causal")
MODELS = ("mlm", "causal", "none")
LABELS = ("no object", "animate object", "inanimate object")
ANIMATE = frozenset({"cat", "dog", "bird", "child", "teacher"})


@dataclass
class Config:
    # data
    max_words: int = 10  # sentences longer than this are resampled
    pretrain_sentences: int = 20000
    n_finetune: int = 200  # labelled training sentences (few)
    n_dev: int = 500
    n_test: int = 1000
    # encoder: reduced from BERT-base (L 12, H 768, A 12, FFN 3072)
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.1
    # pre-training (equal steps, batch and length for MLM and causal)
    pretrain_steps: int = 500
    pretrain_batch: int = 32
    pretrain_lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    mask_probability: float = 0.15
    # fine-tuning
    finetune_epochs: int = 8
    finetune_batch: int = 16
    finetune_lrs: tuple[float, ...] = (3e-4, 1e-3)
    seeds: int = 2
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "max_words",
            "pretrain_sentences",
            "n_finetune",
            "n_dev",
            "n_test",
            "hidden_size",
            "num_layers",
            "num_heads",
            "intermediate_size",
            "pretrain_steps",
            "pretrain_batch",
            "finetune_epochs",
            "finetune_batch",
            "seeds",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_words < 3:
            raise ValueError(
                f"max_words must be >= 3 (the shortest sentence has 3 words), got {self.max_words}"
            )
        if self.pretrain_sentences < 2 * self.pretrain_batch:
            raise ValueError(
                f"pretrain_sentences ({self.pretrain_sentences}) must give at least one batch of "
                f"{self.pretrain_batch} pairs"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {self.mask_probability}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not self.pretrain_lr > 0 or self.weight_decay < 0:
            raise ValueError("pretrain_lr must be > 0 and weight_decay >= 0")
        if not self.finetune_lrs or min(self.finetune_lrs) <= 0:
            raise ValueError(f"finetune_lrs must be a non-empty tuple of rates > 0, got {self.finetune_lrs}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")


PRESETS = {
    "smoke": {"pretrain_sentences": 256, "n_finetune": 32, "n_dev": 32, "n_test": 32, "hidden_size": 16,
              "num_heads": 2, "intermediate_size": 32, "num_layers": 1, "pretrain_steps": 4,
              "pretrain_batch": 16, "finetune_epochs": 1, "finetune_batch": 16, "finetune_lrs": (1e-3,),
              "seeds": 1},
    "default": {},
    "full": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512,
             "max_words": 12, "pretrain_sentences": 100000, "pretrain_steps": 5000, "pretrain_batch": 128,
             "finetune_lrs": (1e-4, 3e-4, 1e-3), "seeds": 5},
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ data


class WordVocab:
    """The special tokens (``papers.language.data``'s order: pad, unk, [CLS] = <s>, [SEP] = </s>, mask)
    then the grammar's words, sorted."""

    def __init__(self, words):
        from papers.language.data import SPECIAL_TOKENS

        self.tokens = [*SPECIAL_TOKENS, *sorted(set(words))]
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = range(len(SPECIAL_TOKENS))
        self.special_ids = list(range(len(SPECIAL_TOKENS)))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, sentence: str) -> list[int]:
        return [self.ids.get(word, self.unk_id) for word in sentence.split()]


def grammar_vocab() -> WordVocab:
    from papers.language.data import TOY_GRAMMAR

    nonterminals = set(TOY_GRAMMAR.rules)
    words = {w for options in TOY_GRAMMAR.rules.values() for _, rhs in options for w in rhs.split()}
    return WordVocab(words - nonterminals)


def object_label(sentence: str) -> int:
    """0: the main verb has no object; 1: its object's head noun is animate; 2: inanimate.

    In ``TOY_GRAMMAR`` the verb is the only V (noun phrases hold no verbs); it has an object exactly when
    a determiner follows it (``V NP``), and the object's head is the first noun after it."""
    from papers.language.data import TOY_GRAMMAR

    verbs = {rhs for _, rhs in TOY_GRAMMAR.rules["V"]}
    dets = {rhs for _, rhs in TOY_GRAMMAR.rules["Det"]}
    nouns = {rhs for _, rhs in TOY_GRAMMAR.rules["N"]}
    words = sentence.split()
    v = next((i for i, w in enumerate(words) if w in verbs), None)
    if v is None:
        raise ValueError(f"no verb in {sentence!r}")
    if v + 1 >= len(words) or words[v + 1] not in dets:
        return 0
    head = next(w for w in words[v + 1 :] if w in nouns)
    return 1 if head in ANIMATE else 2


def pair_batch(vocab: WordVocab, sentences: list[str], length: int) -> dict[str, Tensor]:
    """``[CLS] A [SEP] B [SEP]`` for consecutive pairs (A, B), right-padded: ``input_ids``,
    ``token_type_ids`` (0 for [CLS] A [SEP], 1 for B [SEP]) and ``attention_mask``."""
    pairs = len(sentences) // 2
    ids = torch.full((pairs, length), vocab.pad_id, dtype=torch.long)
    types = torch.zeros_like(ids)
    for row in range(pairs):
        a, b = vocab.encode(sentences[2 * row]), vocab.encode(sentences[2 * row + 1])
        first = [vocab.cls_id, *a, vocab.sep_id]
        tokens = first + [*b, vocab.sep_id]
        ids[row, : len(tokens)] = torch.tensor(tokens)
        types[row, len(first) : len(tokens)] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": ids != vocab.pad_id}


def single_batch(vocab: WordVocab, sentences: list[str], length: int) -> dict[str, Tensor]:
    """``[CLS] sentence [SEP]``, right-padded, with ``labels`` from :func:`object_label`."""
    ids = torch.full((len(sentences), length), vocab.pad_id, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        tokens = [vocab.cls_id, *vocab.encode(sentence), vocab.sep_id]
        ids[row, : len(tokens)] = torch.tensor(tokens)
    return {
        "input_ids": ids,
        "token_type_ids": torch.zeros_like(ids),
        "attention_mask": ids != vocab.pad_id,
        "labels": torch.tensor([object_label(s) for s in sentences]),
    }


def make_data(config: Config) -> dict:
    """Pre-training pairs, and disjoint labelled train / dev / test sentences (different grammar seeds)."""
    from papers.language.data import TOY_GRAMMAR

    vocab = grammar_vocab()
    corpus = TOY_GRAMMAR.sentences(config.pretrain_sentences, seed=1, max_words=config.max_words)
    labelled = TOY_GRAMMAR.sentences(
        config.n_finetune + config.n_dev + config.n_test, seed=2, max_words=config.max_words
    )
    cut1, cut2 = config.n_finetune, config.n_finetune + config.n_dev
    single = config.max_words + 2
    return {
        "vocab": vocab,
        "pretrain": pair_batch(vocab, corpus, 2 * config.max_words + 3),
        "train": single_batch(vocab, labelled[:cut1], single),
        "dev": single_batch(vocab, labelled[cut1:cut2], single),
        "test": single_batch(vocab, labelled[cut2:], single),
    }


# ------------------------------------------------------------------------------------------- training


def bert_config(config: Config, vocab_size: int, causal: bool) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=config.hidden_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size,
        hidden_dropout_prob=config.dropout,
        max_position_embeddings=2 * config.max_words + 3,
        num_labels=len(LABELS),
        causal=causal,
    )


def warmup_linear(optimizer, total: int, warmup_fraction: float):
    """Linear warm-up over ``warmup_fraction`` of the steps, then linear decay to 0 (Appendix A.2)."""
    warmup = max(1, round(total * warmup_fraction)) if warmup_fraction else 0

    def factor(index: int) -> float:
        step = index + 1
        if step <= warmup:
            return step / warmup
        return max(0.0, (total - step + 1) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adam_l2(model, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam(β1 0.9, β2 0.999) with decoupled weight decay, LayerNorm and bias parameters excluded."""
    decay = [p for n, p in model.named_parameters() if p.dim() > 1 and "norm" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.dim() > 1 and "norm" not in n)]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6)


def pretrain(objective: str, seed: int, data: dict, config: Config, ctx) -> dict:
    from papers.language.data import mask_tokens

    vocab, pairs = data["vocab"], data["pretrain"]
    torch.manual_seed(seed)
    model = BertForPreTraining(bert_config(config, len(vocab), causal=objective == "causal"))
    optimizer = adam_l2(model, config.pretrain_lr, config.weight_decay)
    scheduler = warmup_linear(optimizer, config.pretrain_steps, config.warmup_fraction)
    rows_generator = torch.Generator().manual_seed(seed + 17)  # same batches for both objectives
    mask_generator = torch.Generator().manual_seed(seed + 29)
    losses, tokens_seen = [], 0
    start = time.perf_counter()
    model.train()
    name = f"pretrain_{objective}_seed{seed}"
    with ctx.progress_bar(config.pretrain_steps, name) as bar:
        for step in range(1, config.pretrain_steps + 1):
            rows = torch.randint(len(pairs["input_ids"]), (config.pretrain_batch,), generator=rows_generator)
            ids, types, real = (pairs[k][rows] for k in ("input_ids", "token_type_ids", "attention_mask"))
            if objective == "mlm":
                inputs, labels = mask_tokens(
                    ids,
                    mask_id=vocab.mask_id,
                    vocab_size=len(vocab),
                    special_ids=vocab.special_ids,
                    probability=config.mask_probability,
                    generator=mask_generator,
                )
                logits, _ = model(inputs, types, real)
                loss = mlm_loss(logits, labels)
            else:
                logits, _ = model(ids, types, real)
                loss = next_token_loss(logits, ids, real)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if not math.isfinite(loss.item()):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            losses.append(loss.item())
            tokens_seen += int(real.sum())
            ctx.log({f"{name}_loss": loss.item()}, step=step)
            bar.update(1, loss=loss.item())
    model.save_pretrained(ctx.checkpoint_dir / name)
    return {"loss": losses, "tokens": tokens_seen, "time_s": time.perf_counter() - start,
            "params": model.num_parameters()}  # fmt: skip


@torch.no_grad()
def accuracy(model, split: dict[str, Tensor], batch: int = 500) -> float:
    model.eval()
    correct = 0
    for start in range(0, len(split["labels"]), batch):
        part = {k: v[start : start + batch] for k, v in split.items()}
        logits = model(part["input_ids"], part["token_type_ids"], part["attention_mask"])
        correct += (logits.argmax(-1) == part["labels"]).sum().item()
    model.train()
    return correct / len(split["labels"])


def finetune_once(kind: str, seed: int, lr: float, data: dict, config: Config, ctx) -> dict:
    """Fine-tune one model at one learning rate; dev accuracy after every epoch, test at the end."""
    torch.manual_seed(seed + 1000)
    if kind == "none":
        model = BertForSequenceClassification(bert_config(config, len(data["vocab"]), causal=False))
    else:
        model = BertForSequenceClassification.from_pretrained(
            ctx.checkpoint_dir / f"pretrain_{kind}_seed{seed}", num_labels=len(LABELS)
        )
    train = data["train"]
    steps_per_epoch = math.ceil(len(train["labels"]) / config.finetune_batch)
    total = steps_per_epoch * config.finetune_epochs
    optimizer = adam_l2(model, lr, config.weight_decay)
    scheduler = warmup_linear(optimizer, total, config.warmup_fraction)
    generator = torch.Generator().manual_seed(seed + 2000)
    curve = {"step": [0], "dev": [accuracy(model, data["dev"])]}
    model.train()
    step = 0
    for _ in range(config.finetune_epochs):
        order = torch.randperm(len(train["labels"]), generator=generator)
        for start in range(0, len(order), config.finetune_batch):
            rows = order[start : start + config.finetune_batch]
            logits = model(
                train["input_ids"][rows], train["token_type_ids"][rows], train["attention_mask"][rows]
            )
            loss = torch.nn.functional.cross_entropy(logits, train["labels"][rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if not math.isfinite(loss.item()):
                raise PapersError(f"fine-tuning {kind} seed {seed} lr {lr:g}: non-finite loss at step {step}")
        curve["step"].append(step)
        curve["dev"].append(accuracy(model, data["dev"]))
    return {"curve": curve, "dev": curve["dev"][-1], "test": accuracy(model, data["test"]), "lr": lr}


def finetune(kind: str, seed: int, data: dict, config: Config, ctx) -> dict:
    """Fine-tune at every rate of the grid; keep the one with the best final dev accuracy."""
    runs = [finetune_once(kind, seed, lr, data, config, ctx) for lr in config.finetune_lrs]
    best = max(runs, key=lambda r: r["dev"])
    ctx.log({f"finetune_{kind}_seed{seed}_test_accuracy": best["test"]}, step=seed)
    return {"best": best, "dev_by_lr": {f"{r['lr']:g}": r["dev"] for r in runs}}


# ------------------------------------------------------------------------------------------------- run


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = make_data(config)
    seeds = [ctx.seed + i for i in range(config.seeds)]
    pre = {
        f"{objective}_seed{seed}": ctx.stage(
            f"pretrain_{objective}_seed{seed}",
            lambda objective=objective, seed=seed: pretrain(objective, seed, data, config, ctx),
        )
        for seed in seeds
        for objective in OBJECTIVES
    }
    fine = {
        f"{kind}_seed{seed}": ctx.stage(
            f"finetune_{kind}_seed{seed}",
            lambda kind=kind, seed=seed: finetune(kind, seed, data, config, ctx),
        )
        for seed in seeds
        for kind in MODELS
    }
    test = {kind: [fine[f"{kind}_seed{s}"]["best"]["test"] for s in seeds] for kind in MODELS}
    mean = {kind: sum(v) / len(v) for kind, v in test.items()}
    labels = data["test"]["labels"]
    majority = max(labels.bincount(minlength=len(LABELS)).tolist()) / len(labels)

    metrics: dict = {f"{kind}_test_accuracy": mean[kind] for kind in MODELS}
    metrics.update({f"{kind}_test_accuracy_per_seed": test[kind] for kind in MODELS})
    metrics.update({f"{kind}_chosen_lr_per_seed": [fine[f"{kind}_seed{s}"]["best"]["lr"] for s in seeds]
                    for kind in MODELS})  # fmt: skip
    for objective in OBJECTIVES:
        runs = [pre[f"{objective}_seed{s}"] for s in seeds]
        tail = max(1, len(runs[0]["loss"]) // 10)
        last = [r["loss"][-tail:] for r in runs]
        before = [r["loss"][-2 * tail : -tail] or r["loss"][-tail:] for r in runs]
        metrics[f"pretrain_{objective}_final_loss"] = sum(sum(x) / len(x) for x in last) / len(runs)
        metrics[f"pretrain_{objective}_previous_loss"] = sum(sum(x) / len(x) for x in before) / len(runs)
        metrics[f"pretrain_{objective}_tokens"] = runs[0]["tokens"]
        metrics[f"pretrain_{objective}_time_s"] = sum(r["time_s"] for r in runs)
    metrics["params"] = pre[f"mlm_seed{seeds[0]}"]["params"]
    metrics["test_majority_class"] = majority
    metrics["n_finetune"] = config.n_finetune

    se = {kind: _stderr(v) for kind, v in test.items()}
    checks = [
        Check("MLM pre-training beats left-to-right pre-training (test accuracy)", mean["mlm"], ">",
              mean["causal"], "causal-LM pre-training, same steps and tokens"),
        Check("left-to-right pre-training beats no pre-training (test accuracy)", mean["causal"], ">",
              mean["none"], "no pre-training (random init)"),
        Check("MLM pre-training beats no pre-training (test accuracy)", mean["mlm"], ">", mean["none"],
              "no pre-training (random init)"),
    ]  # fmt: skip
    figures(config, ctx, pre, fine, seeds, test)
    notes = _notes(config, mean, test, se, majority, metrics)
    return Result(metrics=metrics, checks=checks, notes=notes)


def _stderr(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def _notes(config: Config, mean: dict, test: dict, se: dict, majority: float, metrics: dict) -> str:
    def show(kind: str) -> str:
        spread = f" ± {se[kind]:.3f}" if math.isfinite(se[kind]) else ""
        return f"{mean[kind]:.3f}{spread} ({', '.join(f'{v:.3f}' for v in test[kind])})"

    text = (
        f"Toy scale: L={config.num_layers}, H={config.hidden_size}, A={config.num_heads}, FFN "
        f"{config.intermediate_size} ({metrics['params']} parameters), {config.pretrain_steps} pre-training "
        f"steps of {config.pretrain_batch} sentence pairs ({metrics['pretrain_mlm_tokens']} tokens) per "
        f"objective and seed, on a PCFG corpus. Downstream: the main verb's object (none / animate / "
        f"inanimate), {config.n_finetune} labelled sentences, {config.finetune_epochs} epochs, learning rate "
        f"picked by dev accuracy from {list(config.finetune_lrs)}. Test accuracy, mean ± s.e. over "
        f"{config.seeds} seeds (per seed): MLM {show('mlm')}, left-to-right {show('causal')}, no "
        f"pre-training {show('none')}; majority class {majority:.3f}."
    )
    order = sorted(mean, key=mean.get, reverse=True)
    if order != ["mlm", "causal", "none"]:
        text += f" The expected order MLM > causal > none did not hold: measured {' > '.join(order)}."
    pairs = (("mlm", "causal"), ("causal", "none"), ("mlm", "none"))
    close = [
        (a, b)
        for a, b in pairs
        if math.isfinite(se[a] + se[b]) and abs(mean[a] - mean[b]) < 2 * math.hypot(se[a], se[b])
    ]
    if close:
        text += (
            " Differences within two standard errors of the difference (seed noise, "
            f"{config.seeds} seeds): " + ", ".join(f"{a} vs {b}" for a, b in close) + "."
        )
    text += (
        f" Pre-training loss over the last tenth of the steps vs the tenth before (mean over seeds): MLM "
        f"{metrics['pretrain_mlm_final_loss']:.3f} vs {metrics['pretrain_mlm_previous_loss']:.3f}, "
        f"left-to-right {metrics['pretrain_causal_final_loss']:.3f} vs "
        f"{metrics['pretrain_causal_previous_loss']:.3f} (different targets: the two are not comparable "
        "with each other; see pretraining_losses)."
    )
    text += (
        " Equal compute means equal steps, batches and sequence length: the MLM loss counts ~15 % of the "
        "tokens per step, the causal loss all of them. NSP is implemented (BertForPreTraining(next_sentence="
        "True)) but not used: sentences of a PCFG are independent, so 'is B the next sentence' carries no "
        "signal; the paper's own ablation (Table 5) also runs the LTR model without NSP."
    )
    return text


def figures(config: Config, ctx, pre: dict, fine: dict, seeds: list[int], test: dict) -> None:
    from papers.core.plots import figure, moving_average

    fig, axes = figure(ncols=2)
    ax_mlm, ax_causal = axes[0], axes[1]
    for seed in seeds:
        for ax, objective in ((ax_mlm, "mlm"), (ax_causal, "causal")):
            loss = pre[f"{objective}_seed{seed}"]["loss"]
            ax.plot(range(1, len(loss) + 1), moving_average(loss), label=f"seed {seed}")
    ax_mlm.set(xlabel="step", ylabel="cross-entropy (nats, smoothed)", title="MLM loss (chosen 15 %)")
    ax_causal.set(xlabel="step", ylabel="cross-entropy (nats, smoothed)", title="left-to-right LM loss")
    ax_mlm.legend(fontsize=8)
    ax_causal.legend(fontsize=8)
    ctx.save_figure(fig, "pretraining_losses")

    names = {"mlm": "MLM (BERT)", "causal": "left-to-right", "none": "no pre-training"}
    fig, axes = figure(ncols=2)
    ax_curve, ax_bar = axes[0], axes[1]
    for kind in MODELS:
        curves = [fine[f"{kind}_seed{s}"]["best"]["curve"] for s in seeds]
        steps = curves[0]["step"]
        dev = [sum(c["dev"][i] for c in curves) / len(curves) for i in range(len(steps))]
        ax_curve.plot(steps, dev, marker="o", markersize=3, label=names[kind])
    ax_curve.set(xlabel="fine-tuning step", ylabel="dev accuracy (mean over seeds)", ylim=(0, 1.02),
                 title="fine-tuning (best lr per seed)")  # fmt: skip
    ax_curve.legend(fontsize=8)
    for i, kind in enumerate(MODELS):
        ax_bar.bar(i, sum(test[kind]) / len(test[kind]), color=f"C{i}", alpha=0.6)
        ax_bar.scatter([i] * len(test[kind]), test[kind], color="k", s=12, zorder=3)
    ax_bar.set_xticks(range(len(MODELS)), [names[k] for k in MODELS], fontsize=8)
    ax_bar.set(ylabel="test accuracy", ylim=(0, 1.02), title="downstream: object of the verb")
    ctx.save_figure(fig, "finetuning_accuracy")
