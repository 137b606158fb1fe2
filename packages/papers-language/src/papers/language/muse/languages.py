"""Two synthetic "languages" drawn from one latent model, and PPMI-SVD embeddings trained on each.

A shared vocabulary of V concepts has Zipfian log-frequencies b_w and latent vectors z_w (clustered, so
some regions are dense — the source of hubs). Text is a random-walk discourse model: a context vector
c_t follows a stationary AR(1) walk and each token is drawn from p(w | c_t) ∝ exp(b_w + z_w · c_t).

Language B shares the concepts but not the surface: its words are a random permutation of A's (the
ground-truth dictionary), its z_w and b_w are perturbed (meaning and frequency drift), and its corpus
is sampled independently. Each language's embedding is the rank-d truncated SVD of its own
positive-PMI co-occurrence matrix (Levy & Goldberg 2014), U_d Σ_d^{1/2}, in a random basis (an
embedding trainer has no preferred basis). The two spaces are therefore only approximately isometric.
"""

from __future__ import annotations

import torch
from torch import Tensor


def latent_model(
    vocab: int,
    latent_dim: int,
    clusters: int,
    zipf: float,
    generator: torch.Generator,
    cluster_spread: float = 0.6,
    scale: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """(log-frequency b [V], latent vectors z [V, k]) of the shared concepts, in frequency order."""
    if vocab < 2 or latent_dim < 1 or clusters < 1:
        raise ValueError(f"bad latent model: vocab={vocab}, latent_dim={latent_dim}, clusters={clusters}")
    centres = torch.randn(clusters, latent_dim, generator=generator, dtype=torch.float64)
    member = torch.randint(clusters, (vocab,), generator=generator)
    z = centres[member] + cluster_spread * torch.randn(
        vocab, latent_dim, generator=generator, dtype=torch.float64
    )
    z = scale * z / (1 + cluster_spread**2) ** 0.5 / latent_dim**0.5 * 2.0
    b = -zipf * torch.log(torch.arange(1, vocab + 1, dtype=torch.float64))
    return b, z


def sample_corpus(
    b: Tensor,
    z: Tensor,
    streams: int,
    segments: int,
    segment_length: int,
    persistence: float,
    generator: torch.Generator,
) -> Tensor:
    """Token ids [streams, segments * segment_length] from the random-walk discourse model.

    The context c is held for ``segment_length`` tokens, then takes one AR(1) step
    c ← ρ c + √(1 − ρ²) ε, so the walk drifts slowly and sampling costs O(V) per segment.
    """
    k = z.shape[1]
    c = torch.randn(streams, k, generator=generator, dtype=torch.float64)
    a = (1 - persistence**2) ** 0.5
    out = torch.empty(streams, segments, segment_length, dtype=torch.long)
    for t in range(segments):
        cdf = torch.softmax(b[None, :] + c @ z.T, dim=1).cumsum(1)
        u = torch.rand(streams, segment_length, generator=generator, dtype=torch.float64) * cdf[:, -1:]
        out[:, t] = torch.searchsorted(cdf, u).clamp_max(len(b) - 1)
        c = persistence * c + a * torch.randn(streams, k, generator=generator, dtype=torch.float64)
    return out.view(streams, segments * segment_length)


def cooccurrence(tokens: Tensor, vocab: int, window: int) -> Tensor:
    """Symmetric counts of word pairs within ``window`` positions, each weighted 1/distance."""
    counts = torch.zeros(vocab * vocab, dtype=torch.float64)
    for offset in range(1, window + 1):
        left, right = tokens[:, :-offset].flatten(), tokens[:, offset:].flatten()
        pair = torch.bincount(left * vocab + right, minlength=vocab * vocab).to(torch.float64) / offset
        counts += pair
    counts = counts.view(vocab, vocab)
    return counts + counts.T


def ppmi_svd(counts: Tensor, dim: int, generator: torch.Generator, alpha: float = 0.75) -> Tensor:
    """Rows U_d Σ_d^{1/2} of the truncated SVD of PPMI with context smoothing p_α(c) ∝ count(c)^α."""
    total = counts.sum()
    p_w = counts.sum(1) / total
    p_c = counts.sum(0) ** alpha
    p_c = p_c / p_c.sum()
    with torch.no_grad():
        pmi = (
            torch.log((counts / total).clamp_min(1e-300))
            - torch.log(p_w.clamp_min(1e-300))[:, None]
            - torch.log(p_c.clamp_min(1e-300))[None, :]
        )
        ppmi = torch.where(counts > 0, pmi.clamp_min(0), torch.zeros_like(pmi))
    u, s = truncated_svd(ppmi, dim, generator)
    return u * s.sqrt()


def truncated_svd(
    a: Tensor, rank: int, generator: torch.Generator, oversample: int = 10, iterations: int = 4
) -> tuple[Tensor, Tensor]:
    """Top ``rank`` left singular vectors and values by seeded randomized subspace iteration."""
    q = torch.randn(a.shape[1], rank + oversample, generator=generator, dtype=a.dtype)
    q = torch.linalg.qr(a @ q).Q
    for _ in range(iterations):
        q = torch.linalg.qr(a @ torch.linalg.qr(a.T @ q).Q).Q
    u, s, _ = torch.linalg.svd(q.T @ a, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank]


def random_orthogonal(dim: int, generator: torch.Generator, dtype=torch.float64) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).to(dtype)


def make_language_pair(
    *,
    vocab: int,
    latent_dim: int,
    clusters: int,
    zipf: float,
    streams: int,
    segments: int,
    segment_length: int,
    persistence: float,
    window: int,
    dim: int,
    drift: float,
    freq_drift: float,
    seed: int,
) -> dict:
    """Embeddings of languages A and B, each row-indexed by its own frequency rank, and the dictionary.

    Returns ``{"x": [V, d], "y": [V, d], "gold": [V]}`` with ``gold[i]`` the B index of A's word i, plus
    the corpora's token counts. Words that never occur in a corpus are kept (their rows are zero).
    """
    generator = torch.Generator().manual_seed(seed)
    b, z = latent_model(vocab, latent_dim, clusters, zipf, generator)
    z_b = z + drift * z.std() * torch.randn(z.shape, generator=generator, dtype=torch.float64)
    b_b = b + freq_drift * torch.randn(vocab, generator=generator, dtype=torch.float64)
    tokens_a = sample_corpus(b, z, streams, segments, segment_length, persistence, generator)
    tokens_b = sample_corpus(b_b, z_b, streams, segments, segment_length, persistence, generator)
    # B's surface form: a word-id bijection. Index B's words by their own frequency rank in B's corpus.
    freq_b = torch.bincount(tokens_b.flatten(), minlength=vocab)
    order_b = torch.argsort(-freq_b.to(torch.float64) - torch.rand(vocab, generator=generator) * 0.5)
    rank_b = torch.empty(vocab, dtype=torch.long)
    rank_b[order_b] = torch.arange(vocab)
    freq_a = torch.bincount(tokens_a.flatten(), minlength=vocab)
    order_a = torch.argsort(-freq_a.to(torch.float64) - torch.rand(vocab, generator=generator) * 0.5)
    rank_a = torch.empty(vocab, dtype=torch.long)
    rank_a[order_a] = torch.arange(vocab)
    emb_a = ppmi_svd(cooccurrence(rank_a[tokens_a], vocab, window), dim, generator)
    emb_b = ppmi_svd(cooccurrence(rank_b[tokens_b], vocab, window), dim, generator)
    emb_a = emb_a @ random_orthogonal(dim, generator)
    emb_b = emb_b @ random_orthogonal(dim, generator)
    gold = rank_b[order_a]  # A's i-th most frequent word -> its B row
    return {
        "x": emb_a.float(),
        "y": emb_b.float(),
        "gold": gold,
        "tokens": int(tokens_a.numel()),
        "counts_a": freq_a[order_a],
        "counts_b": freq_b[order_b],
    }
