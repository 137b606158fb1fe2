"""Generating Long Sequences with Sparse Transformers.

Rewon Child, Scott Gray, Alec Radford, Ilya Sutskever. *Generating Long Sequences with Sparse
Transformers*. 2019. arXiv:1904.10509. Catalogue id 001:108:1.

Factorised self-attention (Sec. 4). Attention over a connectivity pattern S = {S_1, …, S_n}:

    Attend(X, S) = (a(x_i, S_i))_{i ∈ 1..n},   a(x_i, S_i) = softmax((W_q x_i) K_{S_i}ᵀ / √d) V_{S_i}

Dense causal attention has S_i = {j : j ≤ i}: n² / 2 pairs. A factorised pattern splits it into p = 2
sets of size ≈ √n, with stride l ≈ √n, each position reaching every earlier one in two steps:

    strided   A(1)_i = {j : i − l < j ≤ i}                A(2)_i = {j : (i − j) mod l = 0}
    fixed     A(1)_i = {j : ⌊j / l⌋ = ⌊i / l⌋}            A(2)_i = {j : j mod l ∈ {l − c, …, l − 1}}

(all causal: j ≤ i). Combined (Sec. 4.3) as one pattern per residual block, interleaved
(attention(X) = W_p · attend(X, A^(r mod p))), merged (every position attends to A(1) ∪ A(2)), or
across heads. Cost per layer Σ_i |S_i| = O(n√n) instead of O(n²).

Residual blocks (Sec. 5.2), pre-activation, with N layers:

    H_0 = embed(X, W_e)                    (token + learned position embeddings)
    a(H) = dropout(attention(norm(H)))
    b(H) = dropout(ff(norm(H + a(H))))     ff(x) = W_2 f(W_1 x + b_1) + b_2,  f = GELU,  W_1: d → 4d
    H_k = H_{k−1} + a(H_{k−1}) + b(H_{k−1})
    y = softmax(norm(H_N) W_out)

Init (Sec. 5.3): W_e ~ N(0, 0.125/√d), position embeddings ~ N(0, 0.125/√(d n_emb)), and the output
projections W_p (attention) and W_2 (feed-forward) scaled by 1/√(2N). Recomputation of each block
in the backward pass (Sec. 5.4) trades compute for memory.

    from papers.language.sparse_transformer import SparseTransformerLM, strided_pattern
    model = SparseTransformerLM(vocab_size=18, n_positions=64, pattern="strided", stride=8,
                                combine="merged", image_shape=(8, 8), out_vocab=17)
    logits = model(ids)                     # (B, T, 17); causal, factorised masks inside
    a1, a2 = strided_pattern(64, 8)         # (64, 64) boolean masks
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="sparse-transformer",
    papers=Paper(
        "Generating Long Sequences with Sparse Transformers",
        "Rewon Child, Scott Gray, Alec Radford, Ilya Sutskever",
        2019,
        venue="arXiv",
        arxiv="1904.10509",
        catalog_ids=("001:108:1",),
    ),
    claim=(
        "Strided and fixed factorised attention match or beat dense attention in bits per dim while "
        "attending O(n√n) instead of O(n²) pairs, and two factorised layers connect every position to "
        "every earlier one."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: 2-layer autoregressive models of scikit-learn's 8 x 8 digits as 64-token sequences, "
        "dense vs strided vs fixed masks (test bits/dim, 2 seeds); attended pairs counted for n = 64..4096 "
        "and two-layer reach checked on the masks; CPU time of a gathered sparse kernel vs masked dense."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "COMBINES": "model",
        "PATTERNS": "model",
        "FeedForward": "model",
        "SparseBlock": "model",
        "SparseTransformerLM": "model",
        "attended_pairs": "model",
        "default_stride": "model",
        "fixed_pattern": "model",
        "gathered_attention": "model",
        "mask_to_index": "model",
        "pattern_masks": "model",
        "reach_within": "model",
        "strided_pattern": "model",
    },
)
