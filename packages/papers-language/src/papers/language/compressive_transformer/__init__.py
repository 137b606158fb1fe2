"""Compressive Transformers for Long-Range Sequence Modelling.

Jack W. Rae, Anna Potapenko, Siddhant M. Jayakumar, Timothy P. Lillicrap. *Compressive Transformers for
Long-Range Sequence Modelling*. ICLR 2020. arXiv:1911.05507. Catalogue id 001:2:1.

Each layer keeps a FIFO memory m ∈ R^{n_m × d} of past layer inputs (stop-gradient, as in Transformer-XL)
and a compressed memory cm ∈ R^{n_cm × d}. A segment h ∈ R^{n_s × d} attends (causally within h) over

    [cm; m; h]                                         n_cm + n_m + n_s slots per query

then the memories move: [m; h] keeps its newest n_m states, the oldest n_s are evicted as m_old and

    cm ← newest n_cm rows of [cm; f_c(m_old)],         f_c: R^{n_s × d} → R^{(n_s / c) × d}

with compression rate c; f_c is a 1-D convolution with kernel = stride = c (mean pooling as a variant).
f_c is trained by the attention-reconstruction loss, with stop-gradients on h, m_old and the layer's
attention parameters (so the loss does not flow into the main network, and the task loss does not flow
into f_c):

    L_attn = || attn(h, m_old) − attn(h, f_c(m_old)) ||²,   attn(h, x) = softmax(h W_q (x W_k)ᵀ / √d_k) x W_v

or, as the ablation, by the autoencoding loss L_ae = || m_old − g(f_c(m_old)) ||² with a decoder g.
With the same number of attended slots a Transformer-XL with memory n_m + n_cm reaches n_m + n_cm tokens
back; the compressive model reaches n_m + c · n_cm.

Positions here: a learned per-head bias for each (query offset, slot) pair of the window, a learned
relative-position bias because the window slides by whole segments (the paper uses Transformer-XL's
relative encodings).

    from papers.language.compressive_transformer import CompressiveTransformerLM
    model = CompressiveTransformerLM(vocab_size=33, segment=8, memory=8, compressed=8, rate=4)
    logits, compression_loss = model(ids)              # ids (B, T), T a multiple of segment
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="compressive-transformer",
    papers=Paper(
        "Compressive Transformers for Long-Range Sequence Modelling",
        "Jack W. Rae, Anna Potapenko, Siddhant M. Jayakumar, Timothy P. Lillicrap",
        2020,
        venue="ICLR",
        arxiv="1911.05507",
        catalog_ids=("001:2:1",),
    ),
    claim=(
        "At the same attention cost (attended slots) a Compressive Transformer recalls tokens beyond a "
        "Transformer-XL's memory, and its attention-reconstruction loss beats an autoencoding loss and "
        "mean pooling."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy long-range recall (value token at distance d, query at the end), one layer, segments of 8: "
        "Transformer-XL with memory 16 vs compressive memory 8 + 8 compressed slots at rate 4; "
        "attention-reconstruction vs autoencoding vs mean pooling; accuracy by distance over 2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "COMPRESSIONS": "model",
        "LOSSES": "model",
        "CompressiveLayer": "model",
        "CompressiveTransformerLM": "model",
        "Compressor": "model",
        "LayerState": "model",
        "MemoryAttention": "model",
        "attention_reconstruction": "model",
        "content_attention": "model",
        "update_memory": "model",
    },
)
