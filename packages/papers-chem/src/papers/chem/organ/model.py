"""ORGAN's parts: a SeqGAN text-CNN discriminator, the objective-weighted reward with the uniqueness
penalty, Monte-Carlo rollout estimates of Q, the policy-gradient loss and the sample metrics.

The generator is :class:`papers.chem.reinvent.model.SmilesRNN` (imported, not redefined here).

    R(x)   = [λ · D(x) + (1 − λ) · O(x)] / n(x)      O = QED (0 if x is not a valid molecule),
                                                      n(x) = copies of x in its batch
    Q(x_<t, x_t) = mean_n R(rollout_n(x_1..x_t))      (every ``every`` positions, R(x) past the last one)
    ∇J(θ)  = E[Σ_t Q(x_<t, x_t) ∇ log G_θ(x_t | x_<t)]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from papers.chem.reinvent.model import END_ID, PAD_ID, SmilesRNN, sequence_mask

# SeqGAN's discriminator (Yu et al. 2017), used unchanged by ORGAN: widths 1..10, 15, 20 with
# 100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160 filters over 64-d embeddings.
PAPER_WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20)
PAPER_FILTERS = (100, 200, 200, 200, 200, 100, 100, 100, 100, 100, 160, 160)


class Highway(nn.Module):
    """y = τ ⊙ relu(W_H x + b_H) + (1 − τ) ⊙ x,  τ = σ(W_T x + b_T) (Srivastava et al. 2015)."""

    def __init__(self, size: int, gate_bias: float = 0.0):
        super().__init__()
        self.transform = nn.Linear(size, size)
        self.gate = nn.Linear(size, size)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        tau = torch.sigmoid(self.gate(x))
        return tau * F.relu(self.transform(x)) + (1 - tau) * x


class Discriminator(nn.Module):
    """SeqGAN's CNN: token embeddings → one conv per width (ReLU, max over time) → concatenation →
    highway → dropout → a logit of "real". :meth:`prob_real` gives D(x) ∈ (0, 1)."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        embedding: int = 64,
        widths: Sequence[int] = PAPER_WIDTHS,
        filters: Sequence[int] = PAPER_FILTERS,
        dropout: float = 0.25,
    ):
        super().__init__()
        if len(widths) != len(filters) or not widths:
            raise ValueError(
                f"widths and filters must be non-empty and of equal length, got {widths}, {filters}"
            )
        if max(widths) > max_len:
            raise ValueError(f"the widest filter ({max(widths)}) exceeds max_len {max_len}")
        if min(widths) < 1 or min(filters) < 1 or embedding < 1:
            raise ValueError("widths, filters and embedding must be >= 1")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = nn.Embedding(vocab_size, embedding)
        self.convs = nn.ModuleList(nn.Conv1d(embedding, n, w) for w, n in zip(widths, filters, strict=True))
        total = sum(filters)
        self.highway = Highway(total)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(total, 1)

    def forward(self, tokens: Tensor) -> Tensor:
        """The logit of "real" for each sequence ``[B]``; ``tokens`` is ``[B, max_len]``."""
        if tokens.dim() != 2 or tokens.shape[1] != self.max_len or tokens.dtype != torch.long:
            raise ValueError(
                f"tokens must be a [batch, {self.max_len}] LongTensor, "
                f"got {tuple(tokens.shape)} {tokens.dtype}"
            )
        x = self.embed(tokens).transpose(1, 2)  # [B, E, T]
        pooled = torch.cat([F.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)
        return self.out(self.dropout(self.highway(pooled))).squeeze(1)

    @torch.no_grad()
    def prob_real(self, tokens: Tensor) -> Tensor:
        """D(x) = σ(logit) in eval mode (no dropout), ``[B]``."""
        training = self.training
        self.eval()
        out = torch.sigmoid(self(tokens))
        self.train(training)
        return out


def discriminator_loss(model: Discriminator, real: Tensor, fake: Tensor, l2: float = 0.0) -> Tensor:
    """Binary cross-entropy, real → 1 and fake → 0, plus SeqGAN's ``l2 · ½‖W_out‖²`` on the output layer."""
    logits = model(torch.cat([real, fake]))
    target = torch.cat([torch.ones(len(real)), torch.zeros(len(fake))]).to(logits)
    loss = F.binary_cross_entropy_with_logits(logits, target)
    if l2:
        loss = loss + l2 * 0.5 * (model.out.weight.pow(2).sum() + model.out.bias.pow(2).sum())
    return loss


# ---------------------------------------------------------------------------------------- the reward
class QedObjective:
    """O(x) = RDKit QED of a SMILES, 0.0 for an empty or invalid one; values cached by string."""

    def __init__(self):
        self.cache: dict[str, float | None] = {}

    def qed(self, smiles: str) -> float | None:
        """QED, or ``None`` where the SMILES is not a valid molecule."""
        if smiles not in self.cache:
            from rdkit.Chem import QED

            from papers.chem.data import InvalidMoleculeError, parse_smiles

            try:
                self.cache[smiles] = float(QED.qed(parse_smiles(smiles)))
            except InvalidMoleculeError:
                self.cache[smiles] = None
        return self.cache[smiles]

    def __call__(self, smiles: Sequence[str]) -> Tensor:
        return torch.tensor([self.qed(s) or 0.0 for s in smiles])


def to_smiles(vocab, tokens: Tensor) -> list[str]:
    """The SMILES of each row up to its ``</s>``; ``""`` (invalid) where the row never emits ``</s>``."""
    rows = tokens.tolist()
    return [vocab.decode(row) if END_ID in row else "" for row in rows]


def repeat_counts(tokens: Tensor) -> Tensor:
    """n(x): how many rows of ``tokens`` equal each row (1 for a unique sequence), ``[B]`` float."""
    _, inverse, counts = torch.unique(tokens, dim=0, return_inverse=True, return_counts=True)
    return counts[inverse].float()


def organ_reward(
    tokens: Tensor,
    objective: Tensor,
    realness: Tensor | None,
    lam: float,
    *,
    unique_penalty: bool = True,
) -> Tensor:
    """R(x) = [λ D(x) + (1 − λ) O(x)] / n(x) for one batch ``[B]``; ``realness`` may be ``None`` at λ = 0."""
    if not 0 <= lam <= 1:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if objective.shape != (len(tokens),):
        raise ValueError(f"objective must have shape [{len(tokens)}], got {tuple(objective.shape)}")
    reward = (1 - lam) * objective
    if lam > 0:
        if realness is None or realness.shape != objective.shape:
            raise ValueError("lambda > 0 needs D(x) for every sequence")
        reward = reward + lam * realness
    return reward / repeat_counts(tokens) if unique_penalty else reward


def rollout_points(max_len: int, every: int) -> list[int]:
    """Prefix lengths t = every, 2·every, … < max_len at which Q is estimated by rollouts."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    return list(range(every, max_len, every))


def q_values(
    rollout_policy: SmilesRNN,
    tokens: Tensor,
    reward_fn: Callable[[Tensor], Tensor],
    *,
    rollouts: int,
    every: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Q ``[B, T]`` for the action at each position, and R(x) ``[B]`` of the sequences themselves.

    For prefix length t in :func:`rollout_points`, Q_t = mean over ``rollouts`` completions drawn from
    ``rollout_policy`` of R (each rollout batch of B scored together, so the uniqueness penalty counts
    repeats within it). Position i (the action x_i, 1-based) takes Q at the first rollout point ≥ i,
    and R(x) after the last one (SeqGAN: every = 1, R(x) at t = T)."""
    if rollouts < 1:
        raise ValueError(f"rollouts must be >= 1, got {rollouts}")
    batch, length = tokens.shape
    final = reward_fn(tokens)
    points = rollout_points(length, every)
    q_at = {}
    for t in points:
        prefix = tokens[:, :t].repeat(rollouts, 1)
        completed = rollout_policy.sample(batch * rollouts, length, generator=generator, prefix=prefix)
        rewards = torch.stack([reward_fn(chunk) for chunk in completed.split(batch)])
        q_at[t] = rewards.mean(0)
    q = torch.empty(batch, length)
    for i in range(1, length + 1):
        nxt = next((t for t in points if t >= i), None)
        q[:, i - 1] = final if nxt is None else q_at[nxt]
    return q, final


def policy_gradient_loss(model: SmilesRNN, tokens: Tensor, q: Tensor) -> Tensor:
    """−(1/B) Σ_b Σ_t Q_bt log G(x_bt | x_b,<t), over tokens up to and including ``</s>``."""
    if q.shape != tokens.shape:
        raise ValueError(f"q must have the shape of tokens {tuple(tokens.shape)}, got {tuple(q.shape)}")
    return -(model.token_log_probs(tokens) * q.detach()).sum(dim=1).mean()


@torch.no_grad()
def lagged_update(target: nn.Module, source: nn.Module, rate: float) -> None:
    """SeqGAN's rollout network: θ_roll ← rate · θ_roll + (1 − rate) · θ_G (rate 0 copies θ_G)."""
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate}")
    for p_target, p_source in zip(target.parameters(), source.parameters(), strict=True):
        p_target.mul_(rate).add_(p_source, alpha=1 - rate)


# ------------------------------------------------------------------------------------------- metrics
def fingerprints(smiles: Sequence[str], radius: int = 2, bits: int = 2048) -> list:
    """Morgan bit vectors of valid SMILES (radius 2, 2,048 bits)."""
    from rdkit.Chem import rdFingerprintGenerator

    from papers.chem.data import parse_smiles

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=radius, fpSize=bits)
    return [generator.GetFingerprint(parse_smiles(s)) for s in smiles]


def mean_pairwise_distance(fps: Sequence) -> float:
    """Mean Tanimoto distance 1 − T(a, b) over all pairs (a repeated pair counts 0); NaN below 2."""
    from rdkit import DataStructs

    if len(fps) < 2:
        return float("nan")
    total = 0.0
    for i in range(1, len(fps)):
        total += sum(1.0 - s for s in DataStructs.BulkTanimotoSimilarity(fps[i], list(fps[:i])))
    return total / (len(fps) * (len(fps) - 1) / 2)


def sample_metrics(smiles: Sequence[str], objective: QedObjective, corpus: set[str]) -> dict:
    """Validity, uniqueness (distinct / valid), mean QED of valid, diversity (mean pairwise Tanimoto
    distance of Morgan fingerprints among valid) and novelty (valid and not in ``corpus``, compared as
    canonical SMILES)."""
    from papers.chem.data import canonical_smiles

    valid = [s for s in smiles if s and objective.qed(s) is not None]
    canonical = [canonical_smiles(s) for s in valid]
    n = len(smiles)
    return {
        "validity": len(valid) / n if n else float("nan"),
        "uniqueness": len(set(canonical)) / len(valid) if valid else float("nan"),
        "qed_mean": sum(objective.qed(s) for s in valid) / len(valid) if valid else float("nan"),
        "diversity": mean_pairwise_distance(fingerprints(valid)),
        "novelty": sum(c not in corpus for c in canonical) / len(valid) if valid else float("nan"),
        "valid": len(valid),
    }


__all__ = [
    "END_ID",
    "PAD_ID",
    "PAPER_FILTERS",
    "PAPER_WIDTHS",
    "Discriminator",
    "Highway",
    "QedObjective",
    "discriminator_loss",
    "fingerprints",
    "lagged_update",
    "mean_pairwise_distance",
    "organ_reward",
    "policy_gradient_loss",
    "q_values",
    "repeat_counts",
    "rollout_points",
    "sample_metrics",
    "sequence_mask",
    "to_smiles",
]
