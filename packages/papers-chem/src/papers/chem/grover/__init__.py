"""Self-Supervised Graph Transformer on Large-Scale Molecular Data (GROVER).

Yu Rong, Yatao Bian, Tingyang Xu, Weiyang Xie, Ying Wei, Wenbing Huang, Junzhou Huang. NeurIPS 2020.
arXiv:2007.02835. Catalogue id 001:19:1.

Two GTransformers, each with its own dyMPN (dynamic message passing run for K hops, K drawn at every
training step from a normal N(μ, σ²) rounded and truncated to [a, b], the paper's φ(μ, σ, a, b); at
evaluation K = μ) and no per-hop residual:

  node view (states on atoms, h⁰_v = ReLU(W x_v)):
    m_v = Σ_{u ∈ N(v)} W_m [h_u ; e_uv],        h_v ← ReLU(W_s h_v + m_v)           (K times)
  edge view (states on directed bonds, b⁰_uv = ReLU(W [x_u ; e_uv]); messages on the line graph):
    m_uv = Σ_{w ∈ N(u), w ≠ v} b_wu,             b_uv ← ReLU(W_s b_uv + W_m m_uv)     (K times)

In each view Q, K, V = dyMPN_q(s), dyMPN_k(s), dyMPN_v(s) and
    A = softmax(Q Kᵀ / √d_head) V     per head, over the atoms (bonds) of the same molecule only
    s' = LayerNorm(W_o A + W_r s)      the long-range residual from the layer's input to its output
followed by aggregate2node and aggregate2edge, four embedding sets in all:
    atom_from_atom_v = FFN([h'_v ; Σ_{u ∈ N(v)} h'_u])      bond_from_atom_uv = FFN([h'_u ; e_uv])
    atom_from_bond_v = FFN([Σ_{w ∈ N(v)} b'_wv ; x_v])      bond_from_bond_uv = FFN([b'_uv ; m'_uv])

Self-supervision (no labels):
    contextual property, k=1: the context string of an atom, e.g. "C_N-DOUBLE1_O-SINGLE1" (centre
        element, then each neighbour element-bond type with its count), and of a bond, e.g.
        "C-O-DOUBLE_C-SINGLE1_O-SINGLE1" (end elements and type, then the other bonds at both ends);
        the most frequent of the pretraining set are classes, the rest "other";
        L_ctx = Σ_{atom_from_*} CE(W h_v, c_v) + Σ_{bond_from_*} CE(W' h_uv, c_uv)
    motif: m ∈ {0,1}^85, presence of each RDKit ``fr_*`` functional group;
        L_motif = Σ over the four sets BCE(U mean_pool h, m)
    L = L_ctx + L_motif

Fine-tuning (as in the paper): ŷ_node = MLP(mean_v atom_from_atom_v), ŷ_edge = MLP'(mean_v
atom_from_bond_v), prediction (ŷ_node + ŷ_edge) / 2, loss MSE(ŷ_node, y) + MSE(ŷ_edge, y) +
λ MSE(ŷ_node, ŷ_edge) with λ = 0.1; from the pretrained encoder or from random init.
``views="node"`` (Config) is the earlier reduced model: node view only, its two outputs as atom-level
embeddings (bond_from_atom summed into atoms), one MLP on their concatenated mean pools.

Toy scale (see README): hidden 64, one layer per view, pretraining on ~4.5k NCI molecules instead of
10M for 300 steps, fine-tuning 45 steps; downstream ChEMBL pIC50 with 50/100/200 labels.

    from papers.chem.grover import GroverEncoder, GroverPretrainer, atom_contexts
    encoder = GroverEncoder(atom_features, bond_features, hidden=64, views="both")
    parts = GroverPretrainer(encoder, contexts=201, motifs=85, bond_contexts=201).loss(batch, generator)
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
        "Toy-scale GROVER: node-view and edge-view GTransformers with dyMPN Q/K/V, pretrained on NCI "
        "with k=1 atom and bond contexts and 85 RDKit functional groups; fine-tuned on ChEMBL pIC50 with "
        "50/100/200 labels vs the same model from random init."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ContextVocabulary": "model",
        "DyMPN": "model",
        "EdgeDyMPN": "model",
        "EdgeGTransformer": "model",
        "GTransformer": "model",
        "GroverEncoder": "model",
        "GroverPretrainer": "model",
        "GroverRegressor": "model",
        "atom_contexts": "model",
        "bond_contexts": "model",
        "fragment_names": "model",
        "mean_pool": "model",
        "line_graph_sum": "model",
        "motif_labels": "model",
        "reverse_edges": "model",
        "sample_hops": "model",
    },
)
