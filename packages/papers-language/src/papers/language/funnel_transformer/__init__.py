"""Funnel-Transformer: Filtering out Sequential Redundancy for Efficient Language Processing.

Zihang Dai, Guokun Lai, Yiming Yang, Quoc V. Le. NeurIPS 2020. arXiv:2006.03236. Catalogue id 001:12:1.

The encoder is a stack of M blocks of layers. At the start of every block after the first the hidden
sequence h (length T) is compressed by pooling ONLY the queries (Sec. 2.2, "pool-query-only"):

    h' = LayerNorm(pool(h) + MHA(Q = pool(h), K = h, V = h))      then the FFN sublayer as usual
    pool = mean pooling, window 2, stride 2, so block m works on T / 2^(m-1) states

with the [CLS] state kept apart and never pooled ("separate [cls]", App. A.3). Sequence-level tasks read
the last block's [CLS] state. For token-level outputs the decoder upsamples the last block's states h_M
by repetition back to length T and adds the first block's output h_1 as a residual (Sec. 2.3),

    g = Upsample(h_M) + h_1,    Upsample: position j takes compressed state floor(j / 2^(M-1))

then runs 2 more full-length Transformer layers on g. The FLOPs saved by compression are reinvested in
depth: a B6-6-6 funnel costs about as much as an L12 Transformer and is compared with it.

    from papers.language.funnel_transformer import FunnelTransformer, FunnelClassifier, matmul_flops
    body = FunnelTransformer(vocab_size, d_model=32, n_heads=4, d_ff=128, block_sizes=(3, 3, 3))
    model = FunnelClassifier(body, n_classes=5)
    matmul_flops(model, length=33)          # multiply-adds per sequence
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="funnel-transformer",
    papers=Paper(
        "Funnel-Transformer: Filtering out Sequential Redundancy for Efficient Language Processing",
        "Zihang Dai, Guokun Lai, Yiming Yang, Quoc V. Le",
        2020,
        venue="NeurIPS",
        arxiv="2006.03236",
        catalog_ids=("001:12:1",),
    ),
    claim=(
        "At equal FLOPs per sequence, a Funnel-Transformer (stride-2 mean pooling of the queries only, the "
        "saved FLOPs reinvested in depth) matches or beats a standard Transformer on a sequence-level task "
        "but not on a token-level one, where it needs an upsampling decoder."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: generated motif counting ([CLS] classification of the bigram count) and its token-level "
        "twin (tag each position with the running count); a standard L4 encoder vs a 3-block funnel with "
        "layers per block chosen to cost no more multiply-adds (plus a 2-layer decoder for tagging), 2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "FunnelClassifier": "model",
        "FunnelTagger": "model",
        "FunnelTransformer": "model",
        "PoolQueryLayer": "model",
        "attention_layer_flops": "model",
        "matmul_flops": "model",
        "mean_pool": "model",
        "measured_matmul_flops": "model",
        "pooled_length": "model",
        "upsample": "model",
    },
)
