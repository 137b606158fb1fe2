"""Low Data Drug Discovery with One-Shot Learning.

Han Altae-Tran, Bharath Ramsundar, Aneesh S. Pappu, Vijay Pande. ACS Central Science 2017.
arXiv:1611.03199. Catalogue id 001:55:1.

A matching network classifies a query molecule x from a small labelled support set
S = {(x_i, y_i)}: f'(x) = g'(x) is a graph-convolution embedding (degree-specific GraphConv, graph
max-pool, dense, graph gather), k(a, b) the cosine similarity, and

    P(y = 1 | x, S) = Σ_i a(x, x_i) y_i,   a(x, x_i) = exp k(f(x), g(x_i)) / Σ_j exp k(f(x), g(x_j))

trained episodically on many tasks (BCE on held-back queries of each episode) and applied to new
tasks from their support set alone. The embeddings f, g are conditioned on the support set:

    siamese      f = f', g = g'
    AttnLSTM     q = 0;  L times: r = Σ_j softmax_j k(f'(x) + q, g'(x_j)) g'(x_j);  q = LSTM([q, r])
                 f = f' + q,  g = g'
    IterRefLSTM  δz = 0, δZ = 0;  L times:
                   e = k(f'(x) + δz, g'(S) + δZ),  a = softmax(e),  r = a (g'(S) + δZ)
                   A = k(g'(S) + δZ, g'(S)),  B = row-softmax(A),  R = B g'(S)
                   δz = LSTM([δz, r]),  δZ = LSTM([δZ, R])
                 f = f' + δz,  g = g' + δZ

IterRefLSTM refines the query and the support symmetrically and, unlike the bidirectional-LSTM
support embedding of matching networks, imposes no order on the support set. Here the tasks are
toy stand-ins for Tox21/SIDER/MUV: presence of RDKit substructure patterns on the NCI molecules.

    from papers.chem.one_shot import MatchingNetwork, IterRefLSTM
    model = MatchingNetwork(atom_features, "iter_ref", steps=3)
    p = model.classify(query_embeddings, support_embeddings, support_labels)   # [Q] in (0, 1)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="one-shot",
    papers=Paper(
        "Low Data Drug Discovery with One-Shot Learning",
        "Han Altae-Tran, Bharath Ramsundar, Aneesh S. Pappu, Vijay Pande",
        2017,
        venue="ACS Central Science",
        arxiv="1611.03199",
        catalog_ids=("001:55:1",),
    ),
    claim=(
        "On held-out few-shot tasks, the IterRefLSTM matching network (graph-conv embeddings refined "
        "symmetrically by attention + LSTM) beats siamese and AttnLSTM matching networks, and every "
        "model drops on structurally dissimilar molecules."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy-scale one-shot learning on NCI substructure-presence tasks: siamese vs AttnLSTM vs "
        "IterRefLSTM with the same graph-conv encoder, episodes and seed; ROC-AUC on held-out tasks at "
        "1 and 5 shots, on same-distribution and scaffold-disjoint molecules."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "AttnLSTM": "model",
        "GraphConv": "model",
        "GraphEncoder": "model",
        "IterRefLSTM": "model",
        "MatchingNetwork": "model",
        "REFINEMENTS": "model",
        "Siamese": "model",
        "attention_readout": "model",
        "cosine": "model",
        "graph_pool": "model",
        "matching_loss": "model",
        "matching_probability": "model",
    },
)
