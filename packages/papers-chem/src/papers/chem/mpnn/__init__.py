"""Neural Message Passing for Quantum Chemistry.

Justin Gilmer, Samuel S. Schoenholz, Patrick F. Riley, Oriol Vinyals, George E. Dahl. *Neural Message
Passing for Quantum Chemistry*. ICML 2017. arXiv:1704.01212. Catalogue id 001:54:1.

The message passing framework: T steps of messages and node updates, then a readout of the graph,

    m_v^{t+1} = Σ_{w ∈ N(v)} M_t(h_v^t, h_w^t, e_vw)        h_v^{t+1} = U_t(h_v^t, m_v^{t+1})
    ŷ = R({h_v^T | v ∈ G})

with the paper's best variant:

    h_v^0 = (x_v, 0, ..., 0)                  atom features zero-padded to the hidden size d
    M(h_v, h_w, e_vw) = A(e_vw) h_w           edge network: A an MLP from the bond features to a d×d matrix
    U = GRU(h_v^t, m_v^{t+1})                 one GRU, weights shared over the T steps
    R = set2set over {h_v^T}, M steps:        q_t = LSTM(q*_{t-1}),  a_v = softmax_v(h_v · q_t),
                                              r_t = Σ_v a_v h_v,  q*_t = (q_t, r_t) ∈ R^{2d};  ŷ = MLP(q*_M)

and explicit hydrogens as graph nodes. Baselines and ablations: sum or mean readout, a bond-blind
message (one learned matrix for every bond), hydrogens only as an atom feature.

    from papers.chem.mpnn import MPNN, EdgeNetwork, Set2Set
    model = MPNN(node_features=42, edge_features=13, hidden=64, message_steps=3, readout="set2set")
    pred = model(batch.x, batch.edge_index, batch.edge_attr, batch.batch)    # [num_graphs]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="mpnn",
    papers=Paper(
        "Neural Message Passing for Quantum Chemistry",
        "Justin Gilmer, Samuel S. Schoenholz, Patrick F. Riley, Oriol Vinyals, George E. Dahl",
        2017,
        venue="ICML",
        arxiv="1704.01212",
        catalog_ids=("001:54:1",),
    ),
    claim=(
        "The MPNN's choices each help: edge-network messages beat bond-blind ones, a set2set readout beats "
        "sum and mean readouts, and explicit hydrogens beat implicit ones (lower test error)."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "ChEMBL pIC50 series (1,017 molecules), seeded random 80/10/10 split: the MPNN (edge network, GRU, "
        "set2set, explicit H) against sum/mean readouts, bond-blind messages and implicit H, test RMSE at "
        "equal epochs over 2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "MPNN": "model",
        "EdgeNetwork": "model",
        "Set2Set": "model",
        "READOUTS": "model",
        "ARMS": "experiment",
        "build_model": "experiment",
        "train_mpnn": "experiment",
    },
)
