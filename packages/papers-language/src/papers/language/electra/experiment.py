"""Reproduction at toy scale: MLM vs ELECTRA vs ELECTRA with the discriminator loss on masked tokens only.

Corpus, downstream task and fine-tuning are the BERT reproduction's (``papers.language.bert.experiment``):
sentence pairs ``[CLS] A [SEP] B [SEP]`` of the ``TOY_GRAMMAR`` PCFG for pre-training; then 200 labelled
sentences of a 3-way task (does the main verb take an object, animate or inanimate?), every weight
fine-tuned, [CLS] pooled, the learning rate picked per model and seed from a small grid by dev accuracy.

Pre-training (same encoder size, optimiser, learning rate, batches; the same rows of the corpus in the
same order for every method):
    mlm        BERT's masked LM (15 %, 80 / 10 / 10), the baseline;
    electra    generator (``generator_fraction`` of the width) + discriminator, L_MLM + 50 L_Disc, the
               discriminator's loss on every real token;
    electra15  the same, with the discriminator's loss only on the 15 % masked positions (Sec. 3.2's
               "ELECTRA 15 %").
Equal compute = matched FLOPs: an ELECTRA step (generator + discriminator, forward + backward) is
measured by ``torch.utils.flop_counter`` and so is an MLM step; MLM is given
round(pretrain_steps × FLOPs_electra / FLOPs_mlm) steps. Only the discriminator is fine-tuned. The same
classifier fine-tuned from random initialisation ("none") is reported as a reference (no check).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.language.bert.experiment import LABELS, adam_l2, bert_config, finetune, make_data, warmup_linear
from papers.language.bert.experiment import Config as BertExperimentConfig
from papers.language.bert.model import BertForPreTraining, mlm_loss

from .model import ElectraForPreTraining, training_flops

METHODS = ("mlm", "electra", "electra15")
MODELS = (*METHODS, "none")  # "none": fine-tuned from random initialisation, a reference
NAMES = {"mlm": "MLM (BERT)", "electra": "ELECTRA", "electra15": "ELECTRA 15 %", "none": "no pre-training"}


@dataclass
class Config(BertExperimentConfig):
    """The BERT reproduction's settings (data, encoder = the discriminator and the MLM baseline,
    pre-training, fine-tuning) plus ELECTRA's; reduced from ELECTRA-Small (L 12, H 256, A 4, FFN 1024).
    The MLM baseline gets the pre-training steps of equal FLOPs."""

    # ELECTRA (paper: generator 1/4 of the width for Small, λ = 50, 15 % masked)
    generator_fraction: float = 0.25
    disc_weight: float = 50.0

    def validate(self) -> None:
        super().validate()
        if not 0 < self.generator_fraction <= 1:
            raise ValueError(f"generator_fraction must be in (0, 1], got {self.generator_fraction}")
        if not self.disc_weight > 0:
            raise ValueError(f"disc_weight must be > 0, got {self.disc_weight}")


PRESETS = {
    "smoke": {"pretrain_sentences": 256, "n_finetune": 32, "n_dev": 32, "n_test": 32, "hidden_size": 16,
              "num_heads": 2, "intermediate_size": 32, "num_layers": 1, "pretrain_steps": 3,
              "pretrain_batch": 16, "finetune_epochs": 1, "finetune_batch": 16, "finetune_lrs": (1e-3,),
              "seeds": 1},
    "default": {},
    "full": {"hidden_size": 128, "num_layers": 4, "num_heads": 4, "intermediate_size": 512,
             "max_words": 12, "pretrain_sentences": 100000, "pretrain_steps": 5000, "pretrain_batch": 128,
             "finetune_lrs": (1e-4, 3e-4, 1e-3), "seeds": 5},
}  # fmt: skip


# ------------------------------------------------------------------------------------------- models


def build(method: str, config: Config, vocab_size: int):
    bert = bert_config(config, vocab_size, causal=False)
    if method == "mlm":
        return BertForPreTraining(bert)
    return ElectraForPreTraining(
        bert,
        generator_fraction=config.generator_fraction,
        disc_weight=config.disc_weight,
        mask_probability=config.mask_probability,
        loss_positions="all" if method == "electra" else "masked",
    )


def step_loss(method: str, model, batch, vocab, config: Config, generator: torch.Generator) -> dict:
    """One forward pass: ``{"loss": ..., logged scalars ...}``."""
    from papers.language.data import mask_tokens

    ids, types, real = batch
    if method == "mlm":
        inputs, labels = mask_tokens(
            ids, mask_id=vocab.mask_id, vocab_size=len(vocab), special_ids=vocab.special_ids,
            probability=config.mask_probability, generator=generator,
        )  # fmt: skip
        logits, _ = model(inputs, types, real)
        loss = mlm_loss(logits, labels)
        return {"loss": loss, "mlm_loss": loss.detach()}
    out = model(ids, types, real, mask_id=vocab.mask_id, special_ids=vocab.special_ids, generator=generator)
    chosen, replaced = out["chosen"], out["is_replaced"]
    where = real.bool() if method == "electra" else chosen
    share = replaced[where].float().mean() if where.any() else torch.tensor(0.0)
    classes = word_classes(vocab)
    cross = (classes[out["corrupted"]] != classes[ids]) & replaced
    return {
        "loss": out["loss"],
        "mlm_loss": out["mlm_loss"].detach(),
        "disc_loss": out["disc_loss"].detach(),
        "disc_accuracy": out["disc_accuracy"],
        # accuracy of always answering the more frequent label at the loss positions
        "disc_constant_accuracy": torch.maximum(share, 1 - share),
        "replaced_of_masked": (replaced & chosen).sum() / chosen.sum().clamp_min(1),
        # replacements by a word of another part of speech: the only ones a PCFG makes detectable
        "cross_class_of_replaced": cross.sum() / replaced.sum().clamp_min(1),
    }


def word_classes(vocab) -> torch.Tensor:
    """The preterminal (part of speech) of every vocabulary id in ``TOY_GRAMMAR``; -1 for special tokens.

    A word is drawn from its preterminal independently of the context, so a replacement by a word of the
    same class leaves a grammatical sentence that the context cannot give away."""
    from papers.language.data import TOY_GRAMMAR

    names = sorted(k for k, options in TOY_GRAMMAR.rules.items() if all(len(r.split()) == 1 and r not in
                   TOY_GRAMMAR.rules for _, r in options))  # fmt: skip
    table = torch.full((len(vocab),), -1, dtype=torch.long)
    for index, name in enumerate(names):
        for _, word in TOY_GRAMMAR.rules[name]:
            table[vocab.ids[word]] = index
    return table


def flops_per_step(method: str, config: Config, data: dict) -> int:
    """Forward + backward FLOPs of one training step on a full batch (all batches share one padded shape)."""
    vocab, pairs = data["vocab"], data["pretrain"]
    torch.manual_seed(0)
    model = build(method, config, len(vocab)).train()
    batch = tuple(
        pairs[k][: config.pretrain_batch] for k in ("input_ids", "token_type_ids", "attention_mask")
    )
    generator = torch.Generator().manual_seed(0)
    return training_flops(
        lambda: step_loss(method, model, batch, vocab, config, generator)["loss"].backward()
    )


def pretrain(method: str, steps: int, seed: int, data: dict, config: Config, ctx) -> dict:
    vocab, pairs = data["vocab"], data["pretrain"]
    torch.manual_seed(seed)
    model = build(method, config, len(vocab))
    optimizer = adam_l2(model, config.pretrain_lr, config.weight_decay)
    scheduler = warmup_linear(optimizer, steps, config.warmup_fraction)
    rows_generator = torch.Generator().manual_seed(seed + 17)  # same rows, same order, for every method
    mask_generator = torch.Generator().manual_seed(seed + 29)
    history: dict[str, list[float]] = {}
    start = time.perf_counter()
    model.train()
    name = f"pretrain_{method}_seed{seed}"
    with ctx.progress_bar(steps, name) as bar:
        for step in range(1, steps + 1):
            rows = torch.randint(len(pairs["input_ids"]), (config.pretrain_batch,), generator=rows_generator)
            batch = tuple(pairs[k][rows] for k in ("input_ids", "token_type_ids", "attention_mask"))
            out = step_loss(method, model, batch, vocab, config, mask_generator)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            scheduler.step()
            scalars = {k: float(v.detach()) for k, v in out.items()}
            if not math.isfinite(scalars["loss"]):
                raise PapersError(f"{name}: non-finite loss at step {step}")
            for key, value in scalars.items():
                history.setdefault(key, []).append(value)
            ctx.log({f"{name}_{k}": v for k, v in scalars.items()}, step=step)
            bar.update(1, loss=scalars["loss"])
    encoder = model.bert if method == "mlm" else model.discriminator.bert
    encoder.save_pretrained(ctx.checkpoint_dir / name)  # only the (discriminator's) encoder is fine-tuned
    return {"history": history, "steps": steps, "time_s": time.perf_counter() - start,
            "params": sum(p.numel() for p in model.parameters()),
            "encoder_params": encoder.num_parameters()}  # fmt: skip


# ------------------------------------------------------------------------------------------------- run


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    data = make_data(config)
    flops = ctx.stage("flops", lambda: {m: flops_per_step(m, config, data) for m in ("mlm", "electra")})
    flops["electra15"] = flops["electra"]
    steps = {
        "mlm": max(1, round(config.pretrain_steps * flops["electra"] / flops["mlm"])),
        "electra": config.pretrain_steps,
        "electra15": config.pretrain_steps,
    }
    seeds = [ctx.seed + i for i in range(config.seeds)]
    pre = {
        f"{m}_seed{s}": ctx.stage(
            f"pretrain_{m}_seed{s}", lambda m=m, s=s: pretrain(m, steps[m], s, data, config, ctx)
        )
        for s in seeds
        for m in METHODS
    }
    fine = {
        f"{m}_seed{s}": ctx.stage(f"finetune_{m}_seed{s}", lambda m=m, s=s: finetune(m, s, data, config, ctx))
        for s in seeds
        for m in MODELS
    }
    test = {m: [fine[f"{m}_seed{s}"]["best"]["test"] for s in seeds] for m in MODELS}
    mean = {m: sum(v) / len(v) for m, v in test.items()}
    labels = data["test"]["labels"]
    majority = max(labels.bincount(minlength=len(LABELS)).tolist()) / len(labels)

    metrics: dict = {f"{m}_test_accuracy": mean[m] for m in MODELS}
    metrics.update({f"{m}_test_accuracy_per_seed": test[m] for m in MODELS})
    metrics.update(
        {f"{m}_chosen_lr_per_seed": [fine[f"{m}_seed{s}"]["best"]["lr"] for s in seeds] for m in MODELS}
    )
    for m in METHODS:
        metrics[f"{m}_pretrain_steps"] = steps[m]
        metrics[f"{m}_flops_per_step"] = flops[m]
        metrics[f"{m}_pretrain_flops"] = flops[m] * steps[m]
        metrics[f"{m}_pretrain_time_s"] = sum(pre[f"{m}_seed{s}"]["time_s"] for s in seeds)
    for m in ("electra", "electra15"):
        tail = [pre[f"{m}_seed{s}"]["history"] for s in seeds]
        n = max(1, steps[m] // 10)
        for key in ("mlm_loss", "disc_loss", "disc_accuracy", "disc_constant_accuracy", "replaced_of_masked",
                    "cross_class_of_replaced"):  # fmt: skip
            metrics[f"{m}_final_{key}"] = sum(sum(h[key][-n:]) / n for h in tail) / len(tail)
    n = max(1, steps["mlm"] // 10)
    metrics["mlm_final_mlm_loss"] = sum(
        sum(pre[f"mlm_seed{s}"]["history"]["mlm_loss"][-n:]) / n for s in seeds
    ) / len(seeds)
    metrics["encoder_params"] = pre[f"mlm_seed{seeds[0]}"]["encoder_params"]
    metrics["electra_params_with_generator"] = pre[f"electra_seed{seeds[0]}"]["params"]
    metrics["test_majority_class"] = majority

    checks = [
        Check("ELECTRA >= MLM at equal pre-training FLOPs (fine-tuned test accuracy)", mean["electra"], ">=",
              mean["mlm"], "MLM (BERT), matched FLOPs"),
        Check("the discriminator loss on all tokens beats it on the 15 % masked only (test accuracy)",
              mean["electra"], ">", mean["electra15"], "ELECTRA 15 %, same steps"),
    ]  # fmt: skip
    figures(ctx, pre, fine, seeds, test, steps)
    return Result(
        metrics=metrics, checks=checks, notes=_notes(config, mean, test, majority, metrics, steps, flops)
    )


def _stderr(values: list[float]) -> float:
    if len(values) < 2:
        return float("nan")
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def _notes(config: Config, mean, test, majority, metrics, steps, flops) -> str:
    se = {m: _stderr(v) for m, v in test.items()}

    def show(m: str) -> str:
        spread = f" ± {se[m]:.3f}" if math.isfinite(se[m]) else ""
        return f"{mean[m]:.3f}{spread} ({', '.join(f'{v:.3f}' for v in test[m])})"

    text = (
        f"Toy scale: discriminator / MLM encoder L={config.num_layers}, H={config.hidden_size}, "
        f"A={config.num_heads}, FFN {config.intermediate_size} ({metrics['encoder_params']} parameters); "
        f"generator {config.generator_fraction:g} of the width, embeddings shared; "
        f"λ = {config.disc_weight:g}; batches of {config.pretrain_batch} PCFG sentence pairs. "
        f"Equal compute = matched FLOPs (counted by torch's FlopCounterMode, forward + backward): an "
        f"ELECTRA step costs {flops['electra'] / 1e6:.1f} MFLOPs, an MLM step {flops['mlm'] / 1e6:.1f}, "
        f"so ELECTRA and ELECTRA 15 % ran {steps['electra']} steps and MLM {steps['mlm']}. "
        f"Fine-tuned test accuracy, mean ± s.e. over {config.seeds} seeds (per seed): "
        f"ELECTRA {show('electra')}, MLM {show('mlm')}, ELECTRA 15 % {show('electra15')}; no pre-training "
        f"(random init, a reference) {show('none')}; majority class {majority:.3f}."
    )
    order = sorted(METHODS, key=mean.get, reverse=True)
    if not (mean["electra"] >= mean["mlm"] and mean["electra"] > mean["electra15"]):
        text += (
            " The expected ELECTRA ≥ MLM and ELECTRA > ELECTRA 15 % did not both hold: measured "
            + " > ".join(NAMES[m] for m in order) + "."
        )  # fmt: skip
    close = [
        (a, b) for a, b in (("electra", "mlm"), ("electra", "electra15"))
        if math.isfinite(se[a] + se[b]) and abs(mean[a] - mean[b]) < 2 * math.hypot(se[a], se[b])
    ]  # fmt: skip
    if close:
        text += (
            f" Within two standard errors of the difference ({config.seeds} seeds): "
            + ", ".join(f"{NAMES[a]} vs {NAMES[b]}" for a, b in close) + "."
        )  # fmt: skip
    text += (
        f" End of pre-training (last tenth of the steps, mean over seeds): the generator's MLM loss "
        f"{metrics['electra_final_mlm_loss']:.3f} (MLM baseline {metrics['mlm_final_mlm_loss']:.3f}, a "
        f"bigger network), {metrics['electra_final_replaced_of_masked']:.0%} of the masked tokens actually "
        f"replaced, the discriminator right on {metrics['electra_final_disc_accuracy']:.1%} of all tokens "
        f"(ELECTRA) and {metrics['electra15_final_disc_accuracy']:.1%} of the masked ones (ELECTRA 15 %), "
        f"against {metrics['electra_final_disc_constant_accuracy']:.1%} and "
        f"{metrics['electra15_final_disc_constant_accuracy']:.1%} for a constant answer. "
        f"{metrics['electra_final_cross_class_of_replaced']:.0%} of the replacements put a word of another "
        "part of speech (detectable from the context; in this PCFG a same-class replacement is not), yet the "
        "discriminator is barely better than always answering 'original': at this size and budget it has "
        "not yet learned replaced-token detection, so its encoder transfers little, while the MLM's "
        "25-way prediction gives a denser signal (exploratory runs with an easier corruption and 3x the "
        "steps are in the README): a toy-scale sample-efficiency limit, not evidence against the paper at "
        "its scale."
    )
    return text


def figures(ctx, pre, fine, seeds, test, steps) -> None:
    from papers.core.plots import figure, moving_average

    fig, axes = figure(ncols=3)
    for m in METHODS:
        for i, s in enumerate(seeds):
            h = pre[f"{m}_seed{s}"]["history"]
            label = NAMES[m] if i == 0 else None
            x = range(1, len(h["mlm_loss"]) + 1)
            style = {"color": f"C{METHODS.index(m)}", "alpha": 0.8, "label": label}
            axes[0].plot(x, moving_average(h["mlm_loss"]), **style)
            if m != "mlm":
                axes[1].plot(x, moving_average(h["disc_loss"]), **style)
                axes[2].plot(x, moving_average(h["replaced_of_masked"]), **style)
                axes[2].plot(
                    x, moving_average(h["cross_class_of_replaced"]), **{**style, "label": None}, ls="--"
                )
    axes[0].set(xlabel="step", ylabel="MLM cross-entropy (smoothed)", title="MLM loss (baseline / generator)")
    axes[1].set(xlabel="step", ylabel="binary cross-entropy (smoothed)", title="discriminator loss")
    axes[2].set(
        xlabel="step",
        ylabel="fraction",
        ylim=(0, 1),
        title="replaced / masked (—), other class / replaced (--)",
    )
    for ax in axes:
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "pretraining_curves")

    fig, axes = figure(ncols=2)
    for i, m in enumerate(MODELS):
        curves = [fine[f"{m}_seed{s}"]["best"]["curve"] for s in seeds]
        x = curves[0]["step"]
        dev = [sum(c["dev"][j] for c in curves) / len(curves) for j in range(len(x))]
        axes[0].plot(
            x, dev, marker="o", markersize=3, label=f"{NAMES[m]} ({steps.get(m, 0)} pre-training steps)"
        )
        axes[1].bar(i, sum(test[m]) / len(test[m]), color=f"C{i}", alpha=0.6)
        axes[1].scatter([i] * len(test[m]), test[m], color="k", s=12, zorder=3)
    axes[0].set(xlabel="fine-tuning step", ylabel="dev accuracy (mean over seeds)", ylim=(0, 1.02),
                title="fine-tuning (best lr per seed)")  # fmt: skip
    axes[0].legend(fontsize=8)
    axes[1].set_xticks(range(len(MODELS)), [NAMES[m] for m in MODELS], fontsize=8)
    axes[1].set(ylabel="test accuracy", ylim=(0, 1.02), title="downstream at equal pre-training FLOPs")
    ctx.save_figure(fig, "finetuning_accuracy")
