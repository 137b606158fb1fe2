"""Federated Averaging (FedAvg).

H. Brendan McMahan, Eider Moore, Daniel Ramage, Seth Hampson, Blaise Agüera y Arcas.
*Communication-Efficient Learning of Deep Networks from Decentralized Data*. AISTATS 2017.
arXiv:1602.05629. Catalogue id 001:6:1.

K clients hold data sets P_k of sizes n_k, n = Σ n_k; the objective is

    f(w) = Σ_k (n_k / n) F_k(w),     F_k(w) = (1 / n_k) Σ_{i ∈ P_k} ℓ(w; x_i, y_i).

FederatedAveraging (Algorithm 1), for rounds t = 1, 2, ...:

    S_t ← a random set of m = max(C · K, 1) clients
    for k ∈ S_t (in parallel):  w^k ← w_t, then E epochs over P_k in minibatches b of size B:
                                w^k ← w^k − η ∇ℓ(w^k; b)          (u_k = E n_k / B local steps)
    w_{t+1} ← Σ_{k ∈ S_t} (n_k / m_t) w^k,    m_t = Σ_{k ∈ S_t} n_k

FedSGD is E = 1, B = ∞: w_{t+1} = w_t − η Σ_k (n_k / m_t) ∇F_k(w_t), one gradient step on the union of
the chosen clients' data. The paper's claim: more local computation per round (larger E, smaller B)
reaches a target accuracy in many fewer communication rounds, also when every client sees only two
digits (the pathological non-IID split: sort by label, cut 2K shards, two per client).

    from papers.vision.fedavg import federated_training, init_mlp, iid_split, pathological_non_iid_split
    parts = pathological_non_iid_split(labels, num_clients=50)
    params, history = federated_training(init_mlp([64, 200, 200, 10]), x, labels, parts, rounds=50,
                                         fraction=0.1, epochs=5, batch_size=10, lr=0.1)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="fedavg",
    papers=Paper(
        "Communication-Efficient Learning of Deep Networks from Decentralized Data",
        "H. Brendan McMahan, Eider Moore, Daniel Ramage, Seth Hampson, Blaise Agüera y Arcas",
        2017,
        venue="AISTATS",
        arxiv="1602.05629",
        catalog_ids=("001:6:1",),
    ),
    claim=(
        "FederatedAveraging (E local epochs of batch-B SGD, weights averaged by n_k) reaches a target test "
        "accuracy in several times fewer communication rounds than FedSGD, on IID and on pathological "
        "non-IID (2 digits per client) splits, and more local computation (larger E, smaller B) helps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "8x8 digits over 50 clients (C=0.1), 2NN MLP 64-200-200-10; IID and 2-shards-per-client splits. "
        "Rounds to 90% test accuracy for FedSGD (E=1, B=inf) vs FedAvg over E in {1,5,20} x B in {inf,10}, "
        "learning rate tuned per setting; Table-2-style speed-ups and accuracy-vs-rounds curves."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        name: "model"
        for name in (
            "accuracy",
            "client_update",
            "federated_round",
            "federated_training",
            "iid_split",
            "init_mlp",
            "local_batches",
            "mlp_forward",
            "mlp_gradients",
            "pad_clients",
            "pathological_non_iid_split",
            "sample_clients",
            "stack_params",
            "weighted_average",
        )
    },
)
