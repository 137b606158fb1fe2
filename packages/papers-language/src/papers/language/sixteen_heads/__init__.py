"""Are Sixteen Heads Really Better than One?

Paul Michel, Omer Levy, Graham Neubig. *Are Sixteen Heads Really Better than One?* NeurIPS 2019.
arXiv:1905.10650. Catalogue id 001:81:1.

Multi-head attention with a mask variable ξ_h ∈ {0, 1} on each head's output (Sec. 2-3):

    MHAtt(x, q) = Σ_{h=1..N_h} ξ_h Att_{W_k^h, W_q^h, W_v^h, W_o^h}(x, q)

ξ_h = 0 removes head h at test time (single-head ablation, Sec. 3.1; "all but one head" in a layer,
Sec. 3.2). The importance of a head is the expected sensitivity of the loss to its mask (Sec. 4.1):

    I_h = E_{x~X} | ∂L(x) / ∂ξ_h |  =  E_x | Att_h(x)ᵀ ∂L(x) / ∂Att_h(x) |      (at ξ = 1)

normalised per layer by the ℓ2 norm of the layer's scores; heads are pruned iteratively, 10 % of the
heads at a time, least important first (Sec. 4.2), and compared by attention type — encoder self,
decoder self, encoder–decoder attention — the last being the most sensitive (Sec. 5).

    from papers.language.sixteen_heads import HeadMasks, head_importance, pruning_order
    masks = HeadMasks(transformer)        # swaps each attention for HeadMaskedAttention (same weights)
    masks.set(mask)                       # (n_layers, n_heads) gates; masks.clear() = the original model
    scores = head_importance(masks, batches, loss_fn)      # (n_layers, n_heads), ℓ2-normalised per layer
    order = pruning_order(scores)         # [(layer, head), ...] least important first
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="sixteen-heads",
    papers=Paper(
        "Are Sixteen Heads Really Better than One?",
        "Paul Michel, Omer Levy, Graham Neubig",
        2019,
        venue="NeurIPS",
        arxiv="1905.10650",
        catalog_ids=("001:81:1",),
    ),
    claim=(
        "Most single attention heads, and in most layers all but one head, can be removed at test time "
        "without a significant drop; pruning by gradient importance I_h keeps accuracy flat up to a large "
        "fraction of heads, better than random order, and encoder-decoder attention is the most sensitive."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy scale: a 2+2-layer, 8-head encoder-decoder Transformer on reverse-plus-dictionary "
        "'translation'; single-head ablation heat map, one head per layer, importance vs random pruning "
        "curves, pruning per attention type."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ATTENTION_TYPES": "model",
        "AttentionLayer": "model",
        "HeadMaskedAttention": "model",
        "HeadMasks": "model",
        "head_importance": "model",
        "mask_without": "model",
        "normalize_by_layer": "model",
        "pruning_order": "model",
        "sequence_losses": "model",
    },
)
