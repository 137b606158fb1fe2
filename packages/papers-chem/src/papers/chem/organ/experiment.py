"""Toy-scale ORGAN on the NCI SMILES set (Guimaraes et al. 2017), objective QED.

1. G (``SmilesRNN``) is pretrained by maximum likelihood on the NCI corpus (canonical SMILES of at most
   ``max_len - 1`` tokens): this model is the likelihood-only baseline ``mle``.
2. D (SeqGAN's CNN) is pretrained on corpus batches (real) against G samples (fake).
3. From the same pretrained G (and D), one adversarial/RL run per λ in ``lambdas`` with the same seeds
   and steps: per step a batch of G samples, Q by Monte-Carlo rollouts every ``rollout_every``
   positions (``rollouts`` completions each, drawn from SeqGAN's lagged rollout copy of G), reward
   R = [λ D + (1 − λ) QED] / n (0 objective for invalid, n = repeats in the batch), one policy-gradient
   step on G, then ``d_steps`` D updates on fresh samples (skipped at λ = 0, where D plays no role:
   that run is naive RL).
4. Every model draws ``final_samples`` SMILES with the same seed; validity, uniqueness, mean QED of
   valid, diversity (mean pairwise Tanimoto distance of Morgan fingerprints, radius 2, 2,048 bits,
   among valid, repeats included) and novelty (valid and not in the corpus).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from torch import nn

from papers.core.experiment import Check, Result
from papers.core.io import load_checkpoint, save_checkpoint

from .model import (
    Discriminator,
    QedObjective,
    discriminator_loss,
    fingerprints,
    lagged_update,
    mean_pairwise_distance,
    organ_reward,
    policy_gradient_loss,
    q_values,
    rollout_points,
    sample_metrics,
    to_smiles,
)


@dataclass
class Config:
    # data: NCI canonical SMILES with at most max_len - 1 tokens
    max_len: int = 40
    molecules: int = 0  # 0 = the whole corpus
    # generator (paper: one LSTM layer, 32-d embedding, 32 hidden units)
    embedding: int = 32
    hidden: int = 64
    layers: int = 1
    pretrain_steps: int = 500
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    # discriminator (paper: SeqGAN's 64-d embedding, widths 1..10, 15, 20 with 100-200 filters each)
    d_embedding: int = 32
    d_widths: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20)
    d_filters: tuple[int, ...] = (16, 32, 32, 32, 32, 16, 16, 16, 20, 20)
    d_dropout: float = 0.25  # SeqGAN keep probability 0.75
    d_l2: float = 0.2
    d_lr: float = 1e-3
    d_batch: int = 64
    d_pretrain_steps: int = 100
    d_steps: int = 2  # D updates after every G step of the adversarial phase
    # adversarial / RL phase (paper: 16 rollouts at every position, rollout lag 0.8)
    lambdas: tuple[float, ...] = (0.0, 0.5, 0.8)
    rl_steps: int = 60
    batch_size: int = 32
    rollouts: int = 4
    rollout_every: int = 8
    rollout_update: float = 0.8
    lr: float = 1e-3
    clip: float = 5.0
    unique_penalty: bool = True
    # evaluation
    final_samples: int = 500
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "embedding",
            "hidden",
            "layers",
            "pretrain_batch",
            "d_embedding",
            "d_batch",
            "rl_steps",
            "batch_size",
            "rollouts",
            "rollout_every",
            "final_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pretrain_steps", "d_pretrain_steps", "d_steps", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.molecules < 0 or self.molecules == 1:
            raise ValueError(f"molecules must be 0 (all) or >= 2, got {self.molecules}")
        if self.max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {self.max_len}")
        if len(self.d_widths) != len(self.d_filters) or not self.d_widths:
            raise ValueError(
                f"d_widths and d_filters must have the same non-zero length, got {self.d_widths}"
            )
        if max(self.d_widths) > self.max_len:
            raise ValueError(
                f"the widest discriminator filter {max(self.d_widths)} exceeds max_len {self.max_len}"
            )
        if not self.lambdas or 0.0 not in self.lambdas or not any(v > 0 for v in self.lambdas):
            raise ValueError(f"lambdas must hold 0.0 (naive RL) and at least one λ > 0, got {self.lambdas}")
        if any(not 0 <= v <= 1 for v in self.lambdas):
            raise ValueError(f"every lambda must lie in [0, 1], got {self.lambdas}")
        if not 0 <= self.rollout_update < 1:
            raise ValueError(f"rollout_update must be in [0, 1), got {self.rollout_update}")
        if not 0 <= self.d_dropout < 1:
            raise ValueError(f"d_dropout must be in [0, 1), got {self.d_dropout}")
        for name in ("pretrain_lr", "d_lr", "lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.d_l2 < 0:
            raise ValueError(f"d_l2 must be >= 0, got {self.d_l2}")


PRESETS = {
    "smoke": {
        "molecules": 300,
        "max_len": 30,
        "embedding": 8,
        "hidden": 16,
        "pretrain_steps": 10,
        "pretrain_batch": 16,
        "d_embedding": 8,
        "d_widths": (1, 3, 5),
        "d_filters": (4, 4, 4),
        "d_batch": 16,
        "d_pretrain_steps": 3,
        "d_steps": 1,
        "lambdas": (0.0, 0.5),
        "rl_steps": 3,
        "batch_size": 8,
        "rollouts": 2,
        "rollout_every": 10,
        "final_samples": 40,
    },
    "default": {},
    "full": {
        "hidden": 256,
        "layers": 2,
        "pretrain_steps": 5000,
        "d_embedding": 64,
        "d_widths": (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20),
        "d_filters": (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160),
        "d_pretrain_steps": 1000,
        "d_steps": 5,
        "lambdas": (0.0, 0.5, 0.8),
        "rl_steps": 400,
        "batch_size": 64,
        "rollouts": 16,
        "rollout_every": 1,
        "final_samples": 5000,
    },
}


def _run_name(lam: float) -> str:
    return "rl" if lam == 0 else f"organ_{lam:g}"


# ------------------------------------------------------------------------------------------- phases
def prepare_data(config: Config) -> dict:
    from papers.chem.data import nci_corpus

    corpus, skipped = nci_corpus(config.max_len - 1)
    if config.molecules:
        corpus = corpus[: config.molecules]
    return {"corpus": corpus, "skipped": skipped}


def build_generator(config: Config, vocab_size: int):
    from papers.chem.reinvent.model import SmilesRNN

    return SmilesRNN(vocab_size, embedding=config.embedding, hidden=config.hidden, layers=config.layers)


def build_discriminator(config: Config, vocab_size: int) -> Discriminator:
    return Discriminator(
        vocab_size,
        config.max_len,
        embedding=config.d_embedding,
        widths=config.d_widths,
        filters=config.d_filters,
        dropout=config.d_dropout,
    )


def train_discriminator(d, g, tokens, optimizer, steps, config: Config, generator) -> list[float]:
    """``steps`` Adam steps of D on ``d_batch`` corpus rows (real) against as many G samples (fake)."""
    losses = []
    d.train()
    for _ in range(steps):
        real = tokens[torch.randint(len(tokens), (config.d_batch,), generator=generator)]
        fake = g.sample(config.d_batch, config.max_len, generator=generator)
        loss = discriminator_loss(d, real, fake, config.d_l2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@torch.no_grad()
def discriminator_accuracy(d, g, tokens, config: Config, generator, n: int = 256) -> float:
    real = tokens[torch.randint(len(tokens), (n,), generator=generator)]
    fake = g.sample(n, config.max_len, generator=generator)
    return 0.5 * ((d.prob_real(real) > 0.5).float().mean() + (d.prob_real(fake) <= 0.5).float().mean()).item()


def pretrain(config: Config, tokens, vocab_size: int, ctx) -> dict:
    from papers.chem.reinvent.model import fit_likelihood

    torch.manual_seed(ctx.seed)
    g = build_generator(config, vocab_size)
    d = build_discriminator(config, vocab_size)
    start = time.process_time()
    nll = fit_likelihood(
        g,
        tokens,
        steps=config.pretrain_steps,
        batch_size=config.pretrain_batch,
        lr=config.pretrain_lr,
        generator=torch.Generator().manual_seed(ctx.seed + 1),
        on_step=lambda step, loss: ctx.log({"pretrain_nll": loss}, step) if step % 25 == 0 else None,
    )
    g_time = time.process_time() - start
    d_gen = torch.Generator().manual_seed(ctx.seed + 2)
    optimizer = torch.optim.Adam(d.parameters(), lr=config.d_lr)
    d_losses = train_discriminator(d, g, tokens, optimizer, config.d_pretrain_steps, config, d_gen)
    save_checkpoint(ctx.checkpoint_dir / "pretrained.pt", {"g": g.state_dict(), "d": d.state_dict()})
    return {
        "nll": nll,
        "d_loss": d_losses,
        "d_accuracy": discriminator_accuracy(d, g, tokens, config, d_gen),
        "g_pretrain_cpu_time_s": g_time,
    }


def adversarial(config: Config, lam: float, g, d, tokens, vocab, objective: QedObjective, ctx) -> dict:
    """One ORGAN run at weight ``lam`` from the pretrained ``g`` and ``d`` (modified in place)."""
    rollout_net = copy.deepcopy(g)
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr)
    opt_d = torch.optim.Adam(d.parameters(), lr=config.d_lr)
    sample_gen = torch.Generator().manual_seed(ctx.seed + 10)  # same stream for every λ
    d_gen = torch.Generator().manual_seed(ctx.seed + 20)

    def reward_fn(batch):
        realness = d.prob_real(batch) if lam > 0 else None
        return organ_reward(
            batch, objective(to_smiles(vocab, batch)), realness, lam, unique_penalty=config.unique_penalty
        )

    history = {k: [] for k in ("reward", "qed", "validity", "diversity", "uniqueness", "d_loss", "pg_loss")}
    name = _run_name(lam)
    start = time.process_time()
    for step in range(config.rl_steps):
        x = g.sample(config.batch_size, config.max_len, generator=sample_gen)
        q, final = q_values(
            rollout_net,
            x,
            reward_fn,
            rollouts=config.rollouts,
            every=config.rollout_every,
            generator=sample_gen,
        )
        loss = policy_gradient_loss(g, x, q)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{name}: non-finite policy-gradient loss at step {step}")
        opt_g.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(g.parameters(), config.clip)
        opt_g.step()
        lagged_update(rollout_net, g, config.rollout_update)
        d_losses = train_discriminator(d, g, tokens, opt_d, config.d_steps, config, d_gen) if lam > 0 else []

        smiles = to_smiles(vocab, x)
        valid = [s for s in smiles if s and objective.qed(s) is not None]
        row = {
            "reward": final.mean().item(),
            "qed": sum(objective.qed(s) for s in valid) / len(valid) if valid else float("nan"),
            "validity": len(valid) / len(smiles),
            "diversity": mean_pairwise_distance(fingerprints(valid)),
            "uniqueness": len(set(valid)) / len(valid) if valid else float("nan"),
            "d_loss": sum(d_losses) / len(d_losses) if d_losses else float("nan"),
            "pg_loss": loss.item(),
        }
        for key, value in row.items():
            history[key].append(value)
        ctx.log({f"{name}_{k}": v for k, v in row.items()}, step)
    return {"history": history, "rl_cpu_time_s": time.process_time() - start}


def evaluate(g, vocab, objective: QedObjective, corpus: set[str], config: Config, seed: int) -> dict:
    x = g.sample(config.final_samples, config.max_len, generator=torch.Generator().manual_seed(seed + 30))
    smiles = to_smiles(vocab, x)
    out = sample_metrics(smiles, objective, corpus)
    out["examples"] = [s for s in smiles if s and objective.qed(s) is not None][:5]
    return out


# ------------------------------------------------------------------------------------------------ run
def run(config: Config, ctx) -> Result:
    from papers.chem.data import Vocabulary

    if config.threads:
        torch.set_num_threads(config.threads)
    data = ctx.stage("data", lambda: prepare_data(config))
    corpus = data["corpus"]
    vocab = Vocabulary.from_smiles(corpus)
    tokens = torch.tensor([vocab.encode(s, config.max_len) for s in corpus])
    corpus_set = set(corpus)
    objective = QedObjective()

    pre = ctx.stage("pretrain", lambda: pretrain(config, tokens, len(vocab), ctx))
    state = load_checkpoint(ctx.checkpoint_dir / "pretrained.pt")

    def fresh():
        g = build_generator(config, len(vocab))
        d = build_discriminator(config, len(vocab))
        g.load_state_dict(state["g"])
        d.load_state_dict(state["d"])
        return g, d

    g0, _ = fresh()
    results = {
        "mle": ctx.stage("evaluate_mle", lambda: evaluate(g0, vocab, objective, corpus_set, config, ctx.seed))
    }
    histories = {}
    for lam in config.lambdas:
        name = _run_name(lam)

        def go(lam=lam):
            g, d = fresh()
            trained = adversarial(config, lam, g, d, tokens, vocab, objective, ctx)
            return trained | evaluate(g, vocab, objective, corpus_set, config, ctx.seed)

        out = ctx.stage(name, go)
        histories[name] = out.pop("history")
        results[name] = out

    organ = _run_name(0.5) if 0.5 in config.lambdas else _run_name(min(v for v in config.lambdas if v > 0))
    mle, rl, og = results["mle"], results["rl"], results[organ]
    metrics = {
        "corpus_molecules": len(corpus),
        "vocabulary": len(vocab),
        "rollout_points": len(rollout_points(config.max_len, config.rollout_every)),
        "pretrain_final_nll": sum(pre["nll"][-20:]) / max(1, len(pre["nll"][-20:])),
        "d_pretrain_accuracy": pre["d_accuracy"],
        "g_pretrain_cpu_time_s": pre["g_pretrain_cpu_time_s"],
    }
    for name, r in results.items():
        for key in ("validity", "uniqueness", "qed_mean", "diversity", "novelty", "valid"):
            metrics[f"{name}_{key}"] = r[key]
        if "rl_cpu_time_s" in r:
            metrics[f"{name}_rl_cpu_time_s"] = r["rl_cpu_time_s"]
    metrics["examples"] = {name: r["examples"] for name, r in results.items()}

    checks = [
        Check(
            "naive RL (λ = 0) raises mean QED over the likelihood-only generator",
            rl["qed_mean"],
            ">",
            mle["qed_mean"],
            "MLE-only mean QED of valid samples",
        ),
        Check(
            f"ORGAN ({organ}) samples are more diverse than naive RL",
            og["diversity"],
            ">",
            rl["diversity"],
            "naive RL mean pairwise Tanimoto distance",
        ),
        Check(
            f"ORGAN ({organ}) keeps mean QED at least at the likelihood-only level",
            og["qed_mean"],
            ">=",
            mle["qed_mean"],
            "MLE-only mean QED of valid samples",
        ),
    ]
    figures(ctx, histories, results)
    rows = "; ".join(
        f"{name}: validity {r['validity']:.3f}, uniqueness {r['uniqueness']:.3f}, QED {r['qed_mean']:.3f}, "
        f"diversity {r['diversity']:.3f}, novelty {r['novelty']:.3f}"
        for name, r in results.items()
    )
    notes = (
        f"Toy scale: {len(corpus)} NCI molecules of at most {config.max_len - 1} tokens, one GRU layer of "
        f"{config.hidden} pretrained for {config.pretrain_steps} steps (final NLL "
        f"{metrics['pretrain_final_nll']:.1f} nats per molecule), D pretrained to accuracy "
        f"{pre['d_accuracy']:.3f}; {config.rl_steps} policy-gradient steps of {config.batch_size} "
        f"sequences with {config.rollouts} rollouts at every {config.rollout_every}th position, one seed. "
        f"On {config.final_samples} samples per model: {rows}. QED and diversity are over valid samples "
        "only, and diversity counts repeated molecules (distance 0); the valid subsets differ in size "
        "between models, so a mean QED is over different molecules. MLE-only is the pretrained "
        "generator itself."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(ctx, histories: dict, results: dict) -> None:
    from papers.core.plots import figure, moving_average, plot_lines

    fig, axes = figure(ncols=3, width=4.6)
    steps = list(range(len(next(iter(histories.values()))["qed"])))
    window = max(1, len(steps) // 8)
    for ax, key, label in zip(axes[:2], ("qed", "diversity"), ("mean QED", "diversity"), strict=True):
        series = {name: moving_average(_fill(h[key]), window) for name, h in histories.items()}
        plot_lines(ax, steps, series, xlabel="RL step", ylabel=label, marker="")
        ax.set_title(f"batch {label} of valid (smoothed; dashes: MLE)", fontsize=9)
        ax.axhline(results["mle"]["qed_mean" if key == "qed" else "diversity"], color="grey", ls="--", lw=1)
    ax = axes[2]
    colours = {"mle": "grey"} | {name: f"C{i}" for i, name in enumerate(histories)}
    for name, r in results.items():
        ax.scatter(r["diversity"], r["qed_mean"], s=30, color=colours[name])
        ax.annotate(name, (r["diversity"], r["qed_mean"]), fontsize=8)
    ax.set_xlabel("diversity")
    ax.set_ylabel("mean QED of valid")
    ax.set_title("final samples", fontsize=9)
    ctx.save_figure(fig, "rl_curves")


def _fill(values: list[float]) -> list[float]:
    """NaN (no valid molecule in a batch) replaced by the previous value (0 at the start), for plotting."""
    out, last = [], 0.0
    for v in values:
        last = last if v != v else v
        out.append(last)
    return out
