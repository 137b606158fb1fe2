"""Attention Is All You Need.

Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. Gomez, Łukasz Kaiser,
Illia Polosukhin. *Attention Is All You Need*. NeurIPS 2017. arXiv:1706.03762. Catalogue ids 003:1218:1
(self-attention without positions is permutation-equivariant, and with W_Q = W_K = 0 it is Deep Sets'
mean pooling: both tested exactly) and 000:9:1 (attention as a multiplicative interaction).

Scaled dot-product and multi-head attention (Sec. 3.2):

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V                       masked logits → −∞ (weight 0)
    MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O,   head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)

with d_k = d_v = d_model / h. Each of the N encoder layers is self-attention then a position-wise FFN,
each of the N decoder layers masked (causal) self-attention, encoder–decoder attention, FFN, every
sublayer wrapped as (post-LN, the paper; ``pre_ln`` optional)

    x ← LayerNorm(x + Dropout(Sublayer(x)))          FFN(x) = max(0, x W1 + b1) W2 + b2

Inputs are E[token] · √d_model + PE with the sinusoidal encoding (Sec. 3.5)

    PE(pos, 2i) = sin(pos / 10000^(2i/d_model)),     PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model))

(for each frequency, PE(pos + k) is a fixed rotation of PE(pos)); E is shared by source, target and the
pre-softmax projection. Training (Sec. 5): label smoothing ε_ls = 0.1, i.e. cross-entropy against
q = (1 − ε) one-hot + ε / V; Adam(β1 = 0.9, β2 = 0.98, ε = 1e-9) with

    lrate = d_model^−0.5 · min(step^−0.5, step · warmup_steps^−1.5).

    from papers.language.transformer import Transformer, TransformerConfig, TransformerLM
    model = Transformer(TransformerConfig(vocab_size=13, d_model=64, n_heads=4, d_ff=256,
                                          n_encoder_layers=2, n_decoder_layers=2))
    logits = model(src, tgt_in)                    # (B, T_tgt, vocab); padding and causal masks inside
    out = model.greedy_decode(src, bos_id=1, eos_id=2, max_new_tokens=20)
    model.save_pretrained("dir"); Transformer.from_pretrained("dir")   # config.json + model.safetensors
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="transformer",
    papers=Paper(
        "Attention Is All You Need",
        "Ashish Vaswani, Noam Shazeer, Niki Parmar, Jakob Uszkoreit, Llion Jones, Aidan N. Gomez, "
        "Łukasz Kaiser, Illia Polosukhin",
        2017,
        venue="NeurIPS",
        arxiv="1706.03762",
        catalog_ids=("003:1218:1", "000:9:1"),
    ),
    claim=(
        "A model built on attention alone (no recurrence) learns sequence transduction and language "
        "modelling "
        "at least as well as a recurrent model of the same size trained for the same steps; label smoothing "
        "hurts perplexity but not accuracy."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: encoder-decoder Transformer vs a parameter-matched LSTM encoder-decoder with attention "
        "on "
        "copy / reverse / sort (exact-sequence accuracy), decoder-only Transformer vs an LSTM LM on "
        "CPython's "
        "documentation (validation bits per character), and label smoothing 0.1 vs 0 on the LM."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DecoderLayer": "model",
        "EncoderLayer": "model",
        "MultiHeadAttention": "model",
        "PositionwiseFeedForward": "model",
        "Transformer": "model",
        "TransformerConfig": "model",
        "TransformerLM": "model",
        "causal_mask": "model",
        "label_smoothed_loss": "model",
        "make_optimizer": "model",
        "noam_lr": "model",
        "padding_mask": "model",
        "scaled_dot_product_attention": "model",
        "sinusoidal_positional_encoding": "model",
        "LSTMLM": "baselines",
        "LSTMSeq2Seq": "baselines",
        "matched_hidden": "baselines",
    },
)
