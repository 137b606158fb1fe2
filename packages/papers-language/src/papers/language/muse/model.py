"""The MUSE mechanism: orthogonal map, discriminator, CSLS, mutual-NN dictionary, Procrustes.

Row convention: embeddings are rows, ``X [n, d]`` source, ``Y [m, d]`` target, and the map sends a
source row x to ``x Wᵀ`` (= W x in the paper's column notation).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_matrix(name: str, m: Tensor) -> None:
    if m.dim() != 2:
        raise ValueError(f"{name} must be a 2-D [n, d] matrix, got shape {tuple(m.shape)}")


def normalize_embeddings(e: Tensor, center: bool = True) -> Tensor:
    """Unit length, then (optionally) mean-centred and unit length again."""
    _check_matrix("embeddings", e)
    e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    if center:
        e = e - e.mean(0, keepdim=True)
        e = e / e.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return e


def orthogonalize(w: Tensor, beta: float = 0.01) -> Tensor:
    """One step of W ← (1 + β) W − β (W Wᵀ) W, which pulls W towards the orthogonal manifold."""
    _check_matrix("W", w)
    if w.shape[0] != w.shape[1]:
        raise ValueError(f"W must be square, got shape {tuple(w.shape)}")
    if not 0 < beta < 0.5:
        raise ValueError(f"beta must be in (0, 0.5), got {beta}")
    return (1 + beta) * w - beta * (w @ w.T) @ w


def procrustes(x: Tensor, y: Tensor) -> Tensor:
    """argmin over orthogonal W of ‖x Wᵀ − y‖_F for paired rows: W = U Vᵀ, U Σ Vᵀ = SVD(Yᵀ X)."""
    _check_matrix("x", x)
    _check_matrix("y", y)
    if x.shape != y.shape:
        raise ValueError(f"paired rows need equal shapes, got x {tuple(x.shape)} and y {tuple(y.shape)}")
    u, _, vh = torch.linalg.svd(y.T @ x)
    return u @ vh


def _cosines(a: Tensor, b: Tensor) -> Tensor:
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a @ b.T


def mean_knn_similarity(queries: Tensor, keys: Tensor, k: int = 10) -> Tensor:
    """r(q) = mean cosine of q to its k nearest rows of ``keys``, for every query row."""
    _check_matrix("queries", queries)
    _check_matrix("keys", keys)
    if not 1 <= k <= keys.shape[0]:
        raise ValueError(f"k must be in [1, {keys.shape[0]}] (rows of keys), got {k}")
    return _cosines(queries, keys).topk(k, dim=1).values.mean(1)


def csls_scores(mapped: Tensor, target: Tensor, k: int = 10) -> Tensor:
    """CSLS(Wx, y) = 2 cos(Wx, y) − r_T(Wx) − r_S(y) for every (mapped source row, target row) pair.

    r_T(Wx) is the mean cosine of Wx to its k nearest target words, r_S(y) that of y to its k nearest
    mapped source words.
    """
    _check_matrix("mapped", mapped)
    _check_matrix("target", target)
    if mapped.shape[1] != target.shape[1]:
        raise ValueError(f"dimension mismatch: mapped has {mapped.shape[1]}, target {target.shape[1]}")
    cos = _cosines(mapped, target)
    if not 1 <= k <= min(cos.shape):
        raise ValueError(f"k must be in [1, {min(cos.shape)}], got {k}")
    r_t = cos.topk(k, dim=1).values.mean(1)
    r_s = cos.topk(k, dim=0).values.mean(0)
    return 2 * cos - r_t[:, None] - r_s[None, :]


def retrieval_scores(mapped: Tensor, target: Tensor, method: str = "csls", k: int = 10) -> Tensor:
    """Scores of every target for every mapped source row: ``nn`` (cosine) or ``csls``."""
    if method == "nn":
        _check_matrix("mapped", mapped)
        _check_matrix("target", target)
        return _cosines(mapped, target)
    if method == "csls":
        return csls_scores(mapped, target, k)
    raise ValueError(f"unknown retrieval method {method!r}; expected 'nn' or 'csls'")


def mutual_nn_dictionary(mapped: Tensor, target: Tensor, method: str = "csls", k: int = 10) -> Tensor:
    """Pairs (i, j) where j is i's best target AND i is j's best source: the synthetic dictionary [p, 2]."""
    scores = retrieval_scores(mapped, target, method, k)
    forward = scores.argmax(1)
    backward = scores.argmax(0)
    src = torch.arange(scores.shape[0])
    keep = backward[forward] == src
    return torch.stack([src[keep], forward[keep]], dim=1)


def precision_at_k(scores: Tensor, gold: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Fraction of queries whose gold target index is among the top-k scores, for each k."""
    _check_matrix("scores", scores)
    if gold.shape != (scores.shape[0],):
        raise ValueError(f"gold must have one index per query ({scores.shape[0]}), got {tuple(gold.shape)}")
    top = scores.topk(max(ks), dim=1).indices
    hit = top == gold[:, None]
    return {k: hit[:, :k].any(1).float().mean().item() for k in ks}


def k_occurrence(scores: Tensor, k: int = 10) -> Tensor:
    """N_k(y): how many queries have target y among their k best — large values are hubs."""
    _check_matrix("scores", scores)
    top = scores.topk(k, dim=1).indices.flatten()
    return torch.bincount(top, minlength=scores.shape[1])


def selection_criterion(mapped: Tensor, target: Tensor, k: int = 10) -> float:
    """Unsupervised model selection: mean cosine of each mapped source word to its CSLS translation."""
    scores = csls_scores(mapped, target, k)
    best = scores.argmax(1)
    cos = _cosines(mapped, target)
    return cos.gather(1, best[:, None]).mean().item()


class Discriminator(nn.Module):
    """MLP telling mapped source rows (label 1) from target rows (label 0); dropout on its input."""

    def __init__(self, dim: int, hidden: int = 2048, layers: int = 2, input_dropout: float = 0.1):
        super().__init__()
        if dim < 1 or hidden < 1 or layers < 0:
            raise ValueError(f"bad discriminator shape: dim={dim}, hidden={hidden}, layers={layers}")
        if not 0 <= input_dropout < 1:
            raise ValueError(f"input_dropout must be in [0, 1), got {input_dropout}")
        blocks: list[nn.Module] = [nn.Dropout(input_dropout)]
        width = dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        blocks.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)  # logits of "comes from the mapped source"


def discriminator_loss(disc: Discriminator, mapped: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """L_D: source rows labelled 1 − s, target rows s (label smoothing s)."""
    logits = disc(torch.cat([mapped, target]))
    labels = torch.cat([torch.full((len(mapped),), 1 - smoothing), torch.full((len(target),), smoothing)])
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def mapping_loss(disc: Discriminator, mapped: Tensor, target: Tensor, smoothing: float) -> Tensor:
    """L_W: the same classifier with flipped labels, so W learns to fool the discriminator."""
    logits = disc(torch.cat([mapped, target]))
    labels = torch.cat([torch.full((len(mapped),), smoothing), torch.full((len(target),), 1 - smoothing)])
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
