"""Toy-scale reproduction: REINVENT's augmented-likelihood agent vs plain REINFORCE (Olivecrona et al. 2017).

Prior: a small GRU SMILES model (:class:`SmilesRNN`) fitted by maximum likelihood on the bundled NCI set
(canonical SMILES of at most ``max_tokens`` tokens, ``papers.chem.data.nci_corpus``). As in the paper's
"reduced prior", corpus molecules whose similarity to the target exceeds ``remove_similar`` are removed
before training, so the similarity target is held out. The prior is trained once per run
(stage ``prior``, checkpointed) and reused by every agent.

Two tasks, each run with two agents initialised as copies of the prior, on the same seeds:

* ``sulphur``: S(A) = 1 for a valid molecule without sulphur, −1 for a valid one with sulphur, 0 for an
  invalid SMILES (the paper's score), σ = ``sigma_sulphur`` (paper: 2).
* ``similarity``: S(A) = −1 + 2·min(J, k)/k with J the Jaccard similarity of FCFP4-like count
  fingerprints (RDKit Morgan radius 2 with feature invariants) to the target (Celecoxib), 0 for an
  invalid SMILES; k = ``k``, σ = ``sigma_similarity``.

``reinvent`` minimises mean (log P_prior(A) + σ·S(A) − log P_agent(A))²; ``reinforce`` minimises
mean −S(A)·log P_agent(A) (the paper's comparison without the prior). Both use Adam at ``agent_lr``
(paper 5e-4), batches of ``agent_batch`` sampled from the agent, duplicate sequences in a batch dropped
(as the authors' code does), no experience replay. After training, ``eval_samples`` molecules from the
prior and from each agent (the same sampling seed for all) are scored: validity (RDKit parses a
finished sequence), the task objective, and the mean NLL under the prior of the valid ones
(−log P_prior(A): how "prior-like", i.e. realistic, they are).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.core.io import load_checkpoint, save_checkpoint

from .model import END_ID, SmilesRNN, augmented_likelihood_loss, fit_likelihood, reinforce_loss, sequence_mask

CELECOXIB = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"
TASKS = ("sulphur", "similarity")
METHODS = ("reinvent", "reinforce")


@dataclass
class Config:
    # data
    max_tokens: int = 40  # SMILES tokens per molecule (sequences are max_tokens + 1 with </s>)
    target: str = CELECOXIB  # the similarity task's query (the paper's Celecoxib)
    remove_similar: float = 0.5  # drop corpus molecules with J > this to the target (paper's reduced prior)
    # prior (paper: embedding of the ~100 tokens, 3 GRU layers of 1,024, ChEMBL 1.5 M molecules)
    embedding: int = 32
    hidden: int = 128
    layers: int = 2
    prior_steps: int = 500
    prior_batch: int = 64
    prior_lr: float = 3e-3
    # agents
    agent_steps: int = 80
    agent_batch: int = 64
    agent_lr: float = 5e-4  # the paper's Adam learning rate
    sigma_sulphur: float = 2.0  # the paper's σ for the sulphur task
    sigma_similarity: float = 12.0  # the paper's σ for the Celecoxib analogue task
    k: float = 0.7  # similarity cap of the analogue task
    # evaluation
    eval_samples: int = 256
    threads: int = 1

    def validate(self) -> None:
        for name in (
            "max_tokens",
            "embedding",
            "hidden",
            "layers",
            "prior_batch",
            "agent_steps",
            "agent_batch",
            "eval_samples",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.prior_steps < 0:
            raise ValueError(f"prior_steps must be >= 0, got {self.prior_steps}")
        for name in ("prior_lr", "agent_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("sigma_sulphur", "sigma_similarity"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.k <= 1:
            raise ValueError(f"k must be in (0, 1], got {self.k}")
        if not 0 < self.remove_similar <= 1:
            raise ValueError(f"remove_similar must be in (0, 1], got {self.remove_similar}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        fingerprint(self.target)  # an invalid target SMILES fails here, in one line


PRESETS = {
    "smoke": {
        "max_tokens": 30,
        "hidden": 32,
        "layers": 1,
        "embedding": 16,
        "prior_steps": 20,
        "prior_batch": 32,
        "agent_steps": 3,
        "agent_batch": 16,
        "eval_samples": 32,
    },
    "default": {},
    "full": {"hidden": 512, "layers": 3, "prior_steps": 5000, "agent_steps": 1000, "max_tokens": 60},
}


# -------------------------------------------------------------------------------------------- scores
def _quiet_mol(smiles: str):
    """RDKit molecule of ``smiles`` or ``None`` (an empty string is an unfinished sequence)."""
    from rdkit import Chem, RDLogger

    if not smiles:
        return None
    RDLogger.DisableLog("rdApp.*")
    try:
        return Chem.MolFromSmiles(smiles)
    finally:
        RDLogger.EnableLog("rdApp.*")


def fingerprint(molecule) -> dict[int, int]:
    """FCFP4-like count fingerprint: RDKit Morgan radius 2 with feature invariants, {bit: count}.

    Raises ValueError (one line) for a SMILES RDKit cannot parse."""
    from rdkit.Chem import rdFingerprintGenerator

    mol = _quiet_mol(molecule) if isinstance(molecule, str) else molecule
    if mol is None:
        raise ValueError(f"invalid SMILES {molecule!r}: RDKit cannot parse it")
    generator = rdFingerprintGenerator.GetMorganGenerator(
        radius=2, atomInvariantsGenerator=rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
    )
    return dict(generator.GetSparseCountFingerprint(mol).GetNonzeroElements())


def count_jaccard(a: dict[int, int], b: dict[int, int]) -> float:
    """Jaccard index of two count vectors: Σ min(a, b) / Σ max(a, b) (1 for two empty vectors)."""
    keys = a.keys() | b.keys()
    union = sum(max(a.get(i, 0), b.get(i, 0)) for i in keys)
    return 1.0 if union == 0 else sum(min(a.get(i, 0), b.get(i, 0)) for i in keys) / union


def has_sulphur(mol) -> bool:
    return any(atom.GetAtomicNum() == 16 for atom in mol.GetAtoms())


def sulphur_score(smiles: list[str]) -> list[float]:
    """The paper's S(A): 1 valid without sulphur, −1 valid with sulphur, 0 invalid."""
    out = []
    for text in smiles:
        mol = _quiet_mol(text)
        out.append(0.0 if mol is None else (-1.0 if has_sulphur(mol) else 1.0))
    return out


def similarity_score(smiles: list[str], target: dict[int, int], k: float) -> tuple[list[float], list[float]]:
    """S(A) = −1 + 2·min(J, k)/k for valid molecules (0 for invalid), and J (NaN for invalid)."""
    if not 0 < k <= 1:
        raise ValueError(f"k must be in (0, 1], got {k}")
    scores, sims = [], []
    for text in smiles:
        mol = _quiet_mol(text)
        if mol is None:
            scores.append(0.0)
            sims.append(float("nan"))
            continue
        sim = count_jaccard(fingerprint(mol), target)
        scores.append(-1.0 + 2.0 * min(sim, k) / k)
        sims.append(sim)
    return scores, sims


# ---------------------------------------------------------------------------------------------- data
def prepare_corpus(config: Config) -> dict:
    """The NCI corpus without the molecules similar to the target; cached per (max_tokens, target, cut)."""
    return copy.deepcopy(_corpus(config.max_tokens, config.target, config.remove_similar))


@functools.lru_cache(maxsize=4)
def _corpus(max_tokens: int, target_smiles: str, remove_similar: float) -> dict:
    from papers.chem.data import nci_corpus

    corpus, skipped = nci_corpus(max_tokens)
    target = fingerprint(target_smiles)
    kept, removed = [], []
    for smiles in corpus:
        (removed if count_jaccard(fingerprint(smiles), target) > remove_similar else kept).append(smiles)
    mols = [_quiet_mol(s) for s in kept]
    return {
        "smiles": kept,
        "removed_similar": removed,
        "skipped": skipped,
        "sulphur_fraction": sum(has_sulphur(m) for m in mols) / len(mols),
    }


def decode(vocab, tokens: Tensor) -> list[str]:
    """SMILES of each sampled row; ``""`` (counted invalid) when no ``</s>`` came within the length."""
    return [vocab.decode(row) if END_ID in row else "" for row in tokens.tolist()]


def first_unique(tokens: Tensor) -> Tensor:
    """Indices of the first occurrence of each distinct row, in order."""
    seen, keep = set(), []
    for i, row in enumerate(tokens.tolist()):
        key = tuple(row)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return torch.tensor(keep, dtype=torch.long)


class Scorer:
    """S(A) of one task and the quantities the evaluation reports."""

    def __init__(self, task: str, config: Config):
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {task!r}")
        self.task, self.k = task, config.k
        self.sigma = config.sigma_sulphur if task == "sulphur" else config.sigma_similarity
        self.target = fingerprint(config.target)

    def __call__(self, smiles: list[str]) -> list[float]:
        if self.task == "sulphur":
            return sulphur_score(smiles)
        return similarity_score(smiles, self.target, self.k)[0]


# ------------------------------------------------------------------------------------------ training
def train_agent(prior: SmilesRNN, vocab, task: str, method: str, config: Config, ctx) -> dict:
    """``agent_steps`` policy updates of a copy of the prior; per-step score, validity and prior NLL."""
    scorer = Scorer(task, config)
    agent = copy.deepcopy(prior)  # the prior's parameters are frozen; the copy's are trained
    for p in agent.parameters():
        p.requires_grad_(True)
    agent.train()
    optimizer = torch.optim.Adam(agent.parameters(), lr=config.agent_lr)
    generator = torch.Generator().manual_seed(ctx.seed + 1000 + TASKS.index(task))  # same for both methods
    history = {"score": [], "validity": [], "prior_nll": [], "loss": [], "agent_nll": []}
    max_len = config.max_tokens + 1
    start = time.perf_counter()
    with ctx.progress_bar(config.agent_steps, f"{task} {method}") as bar:
        for step in range(config.agent_steps):
            tokens = agent.sample(config.agent_batch, max_len, generator=generator)
            tokens = tokens[first_unique(tokens)]
            smiles = decode(vocab, tokens)
            score = torch.tensor(scorer(smiles))
            agent_ll = agent.log_likelihood(tokens)
            with torch.no_grad():
                prior_ll = prior.log_likelihood(tokens)
            if method == "reinvent":
                loss = augmented_likelihood_loss(agent_ll, prior_ll, score, scorer.sigma)
            else:
                loss = reinforce_loss(agent_ll, score)
            if not torch.isfinite(loss):
                raise PapersError(f"{task} {method}: non-finite loss at step {step}")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            valid = torch.tensor([_quiet_mol(s) is not None for s in smiles])
            row = {
                "score": score.mean().item(),
                "validity": valid.float().mean().item(),
                "prior_nll": -prior_ll[valid].mean().item() if valid.any() else float("nan"),
                "loss": loss.item(),
                "agent_nll": -agent_ll.mean().item(),
            }
            for key, value in row.items():
                history[key].append(value)
            ctx.log({f"{task}_{method}_{k}": v for k, v in row.items()}, step=step)
            bar.update(1, score=row["score"])
    agent.eval()
    out = evaluate(agent, prior, vocab, config, ctx.seed)
    return {"history": history, "train_time_s": time.perf_counter() - start, "evaluation": out}


# ---------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: SmilesRNN, prior: SmilesRNN, vocab, config: Config, seed: int) -> dict:
    """Both tasks' metrics on ``eval_samples`` molecules sampled from ``model`` (a fixed sampling seed)."""
    from rdkit.Chem import Descriptors, rdMolDescriptors

    tokens = model.sample(
        config.eval_samples, config.max_tokens + 1, generator=torch.Generator().manual_seed(seed + 7)
    )
    smiles = decode(vocab, tokens)
    prior_nll = (-prior.log_likelihood(tokens)).tolist()
    lengths = sequence_mask(tokens).sum(dim=1).tolist()
    mols = [_quiet_mol(s) for s in smiles]
    valid = [i for i, m in enumerate(mols) if m is not None]
    n = len(smiles)
    _, sims = similarity_score(smiles, fingerprint(config.target), config.k)
    valid_sims = [sims[i] for i in valid]
    return {
        "validity": len(valid) / n,
        "unique_valid": len({smiles[i] for i in valid}) / n,
        "prior_nll_valid": _mean([prior_nll[i] for i in valid]),
        "prior_nll_all": _mean(prior_nll),
        "prior_nll_per_token_valid": _mean([prior_nll[i] / lengths[i] for i in valid]),
        "sulphur_free_valid_fraction": sum(not has_sulphur(mols[i]) for i in valid) / n,
        "sulphur_free_among_valid": _mean([float(not has_sulphur(mols[i])) for i in valid]),
        "similarity_mean": _mean(valid_sims),
        "similarity_max": max(valid_sims) if valid_sims else float("nan"),
        "similar_fraction": sum(s > 0.5 for s in valid_sims) / n,
        "mol_weight_mean": _mean([Descriptors.MolWt(mols[i]) for i in valid]),
        "aromatic_rings_mean": _mean([rdMolDescriptors.CalcNumAromaticRings(mols[i]) for i in valid]),
        "heavy_atoms_mean": _mean([mols[i].GetNumHeavyAtoms() for i in valid]),
        "examples": [smiles[i] for i in valid[:8]],
    }


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


# ----------------------------------------------------------------------------------------------- run
def run(config: Config, ctx) -> Result:
    from papers.chem.data import Vocabulary

    if config.threads:
        torch.set_num_threads(config.threads)
    data = ctx.stage("data", lambda: prepare_corpus(config))
    vocab = Vocabulary.from_smiles(data["smiles"])
    max_len = config.max_tokens + 1
    tokens = torch.tensor([vocab.encode(s, max_len) for s in data["smiles"]])

    torch.manual_seed(ctx.seed)
    prior = SmilesRNN(len(vocab), embedding=config.embedding, hidden=config.hidden, layers=config.layers)
    path = ctx.checkpoint_dir / "prior.pt"

    def fit_prior() -> dict:
        start = time.perf_counter()
        losses = fit_likelihood(
            prior,
            tokens,
            steps=config.prior_steps,
            batch_size=config.prior_batch,
            lr=config.prior_lr,
            generator=torch.Generator().manual_seed(ctx.seed + 1),
            on_step=lambda step, loss: ctx.log({"prior_nll": loss}, step=step),
        )
        save_checkpoint(path, {"model": prior.state_dict()})
        return {"losses": losses, "train_time_s": time.perf_counter() - start}

    prior_fit = ctx.stage("prior", fit_prior)
    prior.load_state_dict(load_checkpoint(path)["model"])
    prior.eval()
    for p in prior.parameters():
        p.requires_grad_(False)
    prior_eval = ctx.stage("prior_eval", lambda: evaluate(prior, prior, vocab, config, ctx.seed))

    runs = {}
    for task in TASKS:
        for method in METHODS:
            runs[task, method] = ctx.stage(
                f"{task}_{method}",
                lambda task=task, method=method: train_agent(prior, vocab, task, method, config, ctx),
            )

    ev = {"prior": prior_eval} | {f"{t}_{m}": r["evaluation"] for (t, m), r in runs.items()}
    metrics = {
        "corpus_molecules": len(data["smiles"]),
        "removed_similar_to_target": len(data["removed_similar"]),
        "corpus_sulphur_fraction": data["sulphur_fraction"],
        "vocabulary": len(vocab),
        "prior_final_nll": _mean(prior_fit["losses"][-50:]) if prior_fit["losses"] else float("nan"),
        "prior_train_time_s": prior_fit["train_time_s"],
    }
    keys = {
        "sulphur": ("validity", "sulphur_free_valid_fraction", "sulphur_free_among_valid", "prior_nll_valid",
                    "prior_nll_per_token_valid", "prior_nll_all", "unique_valid", "mol_weight_mean",
                    "aromatic_rings_mean", "heavy_atoms_mean"),
        "similarity": ("validity", "similarity_mean", "similarity_max", "similar_fraction", "prior_nll_valid",
                       "prior_nll_per_token_valid", "prior_nll_all", "unique_valid", "heavy_atoms_mean"),
    }  # fmt: skip
    for task in TASKS:
        for model in ("prior", *METHODS):
            e = prior_eval if model == "prior" else ev[f"{task}_{model}"]
            for key in keys[task]:
                metrics[f"{task}_{model}_{key}"] = e[key]
        for method in METHODS:
            metrics[f"{task}_{method}_final_batch_score"] = _mean(
                runs[task, method]["history"]["score"][-10:]
            )
            metrics[f"{task}_{method}_train_time_s"] = runs[task, method]["train_time_s"]
            metrics[f"{task}_{method}_examples"] = ev[f"{task}_{method}"]["examples"]
    metrics["prior_examples"] = prior_eval["examples"]

    s = {m: ev[f"sulphur_{m}"] for m in METHODS}
    c = {m: ev[f"similarity_{m}"] for m in METHODS}
    checks = [
        Check(
            "sulphur: REINVENT generates more valid sulphur-free molecules than the prior",
            s["reinvent"]["sulphur_free_valid_fraction"],
            ">",
            prior_eval["sulphur_free_valid_fraction"],
            "prior's fraction of valid sulphur-free samples",
        ),
        Check(
            "sulphur: REINVENT's valid molecules stay closer to the prior than REINFORCE's (prior NLL)",
            s["reinvent"]["prior_nll_valid"],
            "<",
            s["reinforce"]["prior_nll_valid"],
            "REINFORCE's mean NLL under the prior",
        ),
        Check(
            "sulphur: REINVENT's molecular weight stays closer to the prior's than REINFORCE's (|ΔMW|)",
            abs(s["reinvent"]["mol_weight_mean"] - prior_eval["mol_weight_mean"]),
            "<",
            abs(s["reinforce"]["mol_weight_mean"] - prior_eval["mol_weight_mean"]),
            "REINFORCE's |mean MW − prior's mean MW|",
        ),
        Check(
            "similarity: REINVENT raises the mean similarity to the held-out target over the prior",
            c["reinvent"]["similarity_mean"],
            ">",
            prior_eval["similarity_mean"],
            "prior's mean similarity",
        ),
        Check(
            "similarity: REINVENT yields more analogues (J > 0.5) than the prior",
            c["reinvent"]["similar_fraction"],
            ">",
            prior_eval["similar_fraction"],
            "prior's fraction with J > 0.5",
        ),
        Check(
            "similarity: REINVENT keeps more samples valid than REINFORCE",
            c["reinvent"]["validity"],
            ">",
            c["reinforce"]["validity"],
            "REINFORCE's validity",
        ),
        Check(
            "similarity: REINVENT's samples stay closer to the prior than REINFORCE's (prior NLL of all)",
            c["reinvent"]["prior_nll_all"],
            "<",
            c["reinforce"]["prior_nll_all"],
            "REINFORCE's mean NLL under the prior",
        ),
    ]
    figures(ctx, runs, prior_eval, prior_fit)
    notes = _notes(config, data, metrics, prior_eval, s, c)
    return Result(metrics=metrics, checks=checks, notes=notes)


def _notes(config: Config, data: dict, metrics: dict, p: dict, s: dict, c: dict) -> str:
    def row(e: dict, task: str) -> str:
        if task == "sulphur":
            return (
                f"valid {e['validity']:.3f}, valid & S-free {e['sulphur_free_valid_fraction']:.3f}, "
                f"prior NLL {e['prior_nll_valid']:.1f} ({e['prior_nll_per_token_valid']:.2f}/token), "
                f"MW {e['mol_weight_mean']:.0f}, aromatic rings {e['aromatic_rings_mean']:.2f}"
            )
        return (
            f"valid {e['validity']:.3f}, mean J {e['similarity_mean']:.3f}, "
            f"J>0.5 {e['similar_fraction']:.3f}, "
            f"prior NLL of valid {e['prior_nll_valid']:.1f}, of all samples {e['prior_nll_all']:.1f}"
        )

    return (
        f"Toy scale: prior GRU {config.layers}x{config.hidden} trained {config.prior_steps} steps of "
        f"{config.prior_batch} on {metrics['corpus_molecules']} NCI molecules "
        f"(<= {config.max_tokens} tokens; "
        f"{metrics['removed_similar_to_target']} with J > {config.remove_similar} to the target removed; "
        f"{data['sulphur_fraction']:.3f} contain sulphur); agents {config.agent_steps} steps of "
        f"{config.agent_batch} (the paper ran 1,000-3,000 steps on a 3x1024 ChEMBL prior); one seed. "
        f"Evaluated on {config.eval_samples} samples each. Sulphur (σ={config.sigma_sulphur:g}): prior "
        f"{row(p, 'sulphur')}; REINVENT {row(s['reinvent'], 'sulphur')}; REINFORCE "
        f"{row(s['reinforce'], 'sulphur')}. Similarity to the target (σ={config.sigma_similarity:g}, "
        f"k={config.k:g}): prior {row(p, 'similarity')}; REINVENT {row(c['reinvent'], 'similarity')}; "
        f"REINFORCE {row(c['reinforce'], 'similarity')}. Prior NLL is the mean −log P_prior of the valid "
        "samples (lower = more like the training distribution; it also falls with molecule size). Invalid "
        "SMILES score 0, above a valid molecule with J < k/2, so a weak prior's invalid samples are rewarded "
        "relative to dissimilar valid ones."
    )


def figures(ctx, runs: dict, prior_eval: dict, prior_fit: dict) -> None:
    from papers.core.plots import figure, moving_average, plot_lines

    fig, axes = figure(ncols=3, nrows=2)
    for row, task in enumerate(TASKS):
        for col, (key, label) in enumerate(
            (("score", "mean S(A) of the batch"), ("validity", "validity of the batch"),
             ("prior_nll", "prior NLL of valid samples"))
        ):  # fmt: skip
            ax = axes[3 * row + col]
            steps = list(range(len(runs[task, "reinvent"]["history"][key])))
            plot_lines(
                ax,
                steps,
                {m: moving_average(_finite(runs[task, m]["history"][key]), 5) for m in METHODS},
                xlabel="agent step",
                ylabel=label,
                title=task,
                marker="",
            )
            if key == "prior_nll":
                ax.axhline(prior_eval["prior_nll_valid"], color="grey", ls="--", lw=1, label="prior samples")
                ax.legend(fontsize=8)
            elif key == "validity":
                ax.axhline(prior_eval["validity"], color="grey", ls="--", lw=1, label="prior")
                ax.legend(fontsize=8)
    ctx.save_figure(fig, "agents")

    fig, (ax,) = figure()
    losses = prior_fit["losses"]
    plot_lines(ax, list(range(len(losses))), {"prior": moving_average(losses)}, xlabel="step",
               ylabel="NLL per molecule (smoothed)", marker="")  # fmt: skip
    ctx.save_figure(fig, "prior")


def _finite(values: list[float]) -> list[float]:
    """NaN (a batch with no valid molecule) replaced by the previous (or first) finite value, for plots."""
    finite = [v for v in values if math.isfinite(v)]
    out, last = [], finite[0] if finite else 0.0
    for v in values:
        last = v if math.isfinite(v) else last
        out.append(last)
    return out
