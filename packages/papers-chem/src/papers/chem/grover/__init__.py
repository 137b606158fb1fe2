"""Self-Supervised Graph Transformer on Large-Scale Molecular Data (GROVER).

Yu Rong, Yatao Bian, Tingyang Xu, Weiyang Xie, Ying Wei, Wenbing Huang, Junzhou Huang. NeurIPS 2020.
arXiv:2007.02835. Catalogue id 001:19:1.

GTransformer (node view, as built here): atom states h (h⁰ = ReLU(W_in x)); Q, K and V each come from
their own dynamic message-passing network (dyMPN) run for K hops, K drawn at every training step from
a normal N(μ, σ²) rounded and truncated to [a, b] (the paper's φ(μ, σ, a, b)); at evaluation K = μ:

    m_v = Σ_{u ∈ N(v)} W_m [h_u ; e_uv],   h_v ← ReLU(W_s h_v + m_v)          (K times, no residual)
    Q, K, V = dyMPN_q(h), dyMPN_k(h), dyMPN_v(h)
    A = softmax(Q Kᵀ / √d_head) V     per head, over the atoms of the same molecule only
    h' = LayerNorm(W_o A + W_r h)      the long-range residual from the layer's input to its output
    aggregate2node:  n_v  = FFN([h'_v ; Σ_{u ∈ N(v)} h'_u])
    aggregate2edge:  e'_uv = FFN([h'_u ; e_uv]),  edge-derived atom embedding ê_v = Σ_u e'_uv

Self-supervision (no labels):
    contextual property: c_v = the k=1 context string of atom v, e.g. "C_N-DOUBLE1_O-SINGLE1" (centre
        element, then each neighbour element-bond type with its count); the most frequent contexts of
        the pretraining set are classes, the rest "other";  L_ctx = CE(W n_v, c_v) + CE(W' ê_v, c_v)
    motif: m ∈ {0,1}^85, presence of each RDKit ``fr_*`` functional group;
        L_motif = BCE(U mean_v n_v, m) + BCE(U' mean_v ê_v, m)
    L = L_ctx + L_motif

Fine-tuning: ŷ = MLP([mean_v n_v ; mean_v ê_v]), MSE, from the pretrained encoder or from random init.

Toy scale (see README): hidden 64, one node-view layer (no edge-view GTransformer), pretraining on
~4.5k NCI molecules instead of 10M; downstream ChEMBL pIC50 with 50/100/200 labels.

    from papers.chem.grover import GroverEncoder, GroverPretrainer, atom_contexts
    encoder = GroverEncoder(atom_features, bond_features, hidden=64)
    parts = GroverPretrainer(encoder, contexts=201, motifs=85).loss(batch, generator)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="grover",
    papers=Paper(
        "Self-Supervised Graph Transformer on Large-Scale Molecular Data",
        "Yu Rong, Yatao Bian, Tingyang Xu, Weiyang Xie, Ying Wei, Wenbing Huang, Junzhou Huang",
        2020,
        venue="NeurIPS",
        arxiv="2007.02835",
        catalog_ids=("001:19:1",),
    ),
    claim=(
        "Pretraining a GTransformer on unlabelled molecules with contextual-property and motif prediction "
        "lowers few-label downstream test RMSE below the same model trained from scratch."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy-scale GROVER: node-view GTransformer with dyMPN Q/K/V, pretrained on NCI with k=1 atom "
        "contexts and 85 RDKit functional groups; fine-tuned on ChEMBL pIC50 with 50/100/200 labels "
        "vs the same model from random init."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ContextVocabulary": "model",
        "DyMPN": "model",
        "GTransformer": "model",
        "GroverEncoder": "model",
        "GroverPretrainer": "model",
        "GroverRegressor": "model",
        "atom_contexts": "model",
        "fragment_names": "model",
        "mean_pool": "model",
        "motif_labels": "model",
        "sample_hops": "model",
    },
)
