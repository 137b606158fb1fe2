"""Reformer: The Efficient Transformer.

Nikita Kitaev, Łukasz Kaiser, Anselm Levskaya. *Reformer: The Efficient Transformer*. ICLR 2020.
arXiv:2001.04451. Catalogue id 001:43:1.

Shared-QK attention (Sec. 3): one projection gives queries and keys, keys normalised,

    k_j = q_j / ‖q_j‖,      o_i = Σ_{j ∈ P_i} exp(q_i · k_j / √d − z(i, P_i)) v_j

and a token does not attend to itself unless nothing else is available (its logit is −1e5).
Angular LSH with a random matrix R (d_k × b/2) per hash round r:

    h_r(x) = argmax([x R_r ; −x R_r])  ∈ {0, …, b−1}

LSH attention: per round, sort positions by (bucket, position), split the sorted sequence into chunks
of m, and let each query attend to the keys of its own and the previous chunk that share its bucket
(and, causal, are not in the future). Rounds are combined with their log-sum-exp weights and pairs met
in several rounds are counted once:

    o_i = Σ_r exp(z_r(i) − logsumexp_r' z_r'(i)) o_i^(r),     logit_ij^(r) −= log N_ij,
    N_ij = |{r' : h_r'(i) = h_r'(j)}|

Reversible residual layers (Sec. 4, RevNet), recomputing activations in the backward pass:

    Y1 = X1 + Attention(X2),   Y2 = X2 + FeedForward(Y1)
    X2 = Y2 − FeedForward(Y1), X1 = Y1 − Attention(X2)

and the feed-forward applied to chunks of positions (its d_ff-wide intermediate exists per chunk).

    from papers.language.reformer import ReformerLM, lsh_attention, hash_vectors, RevBlock
    model = ReformerLM(vocab_size=64, max_len=64, mode="lsh", n_hashes=4, n_buckets=8, chunk_size=8)
    logits = model(ids)                                   # (B, L, vocab); reversible backward
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="reformer",
    papers=Paper(
        "Reformer: The Efficient Transformer",
        "Nikita Kitaev, Łukasz Kaiser, Anselm Levskaya",
        2020,
        venue="ICLR",
        arxiv="2001.04451",
        catalog_ids=("001:43:1",),
    ),
    claim=(
        "LSH attention solves the duplication task (0w0w) given enough hash rounds, accuracy rising with "
        "the number of hashes; reversible layers give the same gradients while the activation memory "
        "they hold stays flat as depth grows."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Reduced scale: duplication task at L = 64 with a 1-layer Reformer LM trained with full "
        "shared-QK attention and LSH at 1/2/4 hashes (each evaluated with 1/2/4/8 hashes and full "
        "attention); measured peak saved activations vs depth with and without reversible layers; "
        "reversible vs ordinary gradients in float64."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ChunkedFeedForward": "model",
        "ReformerLM": "model",
        "RevBlock": "model",
        "SharedQKAttention": "model",
        "full_shared_qk_attention": "model",
        "hash_vectors": "model",
        "lsh_attention": "model",
        "random_rotations": "model",
        "reversible_stack": "model",
        "duplication_batch": "experiment",
    },
)
