"""Molecular Graph Convolutions: Moving Beyond Fingerprints.

Steven Kearnes, Kevin McCloskey, Marc Berndl, Vijay Pande, Patrick Riley. *Molecular Graph
Convolutions: Moving Beyond Fingerprints*. Journal of Computer-Aided Molecular Design 30, 2016.
arXiv:1603.00856. Catalogue id 001:57:1 ("Weave").

Every molecule keeps an atom representation x_a and a pair representation p_ab for ALL atom pairs
(not only bonds); a weave module updates both (g = ReLU after a linear map, [u, v] concatenation):

    A→A = g(W_AA x_a)                      P→A = Σ_b g(W_PA p_ab)
    A→P = g(W_AP [x_a, x_b]) + g(W_AP [x_b, x_a])                 P→P = g(W_PP p_ab)
    x'_a = g(W_A [A→A, P→A])               p'_ab = g(W_P [A→P, P→P])

Pair features (the paper's Table 2, no 3-D distance): bond type one-hot (4), graph distance
"shortest path <= d bonds" for d = 1..7, same ring (1). Readout: h_a = BN(W x_a) (128 features), then
the Gaussian "fuzzy histogram" of 11 fixed Gaussians N(μ_k, σ_k²),

    m_k(h) = N(h; μ_k, σ_k²) / Σ_j N(h; μ_j, σ_j²),     molecule = Σ_a [m_1(h_a), ..., m_11(h_a)]

and a Linear-ReLU-Linear head. Ablations: sum pooling (molecule = Σ_a g(h_a)), atom layers only (no pair
features, no P→A); baseline: ECFP4 (Morgan radius 2, 2048 bits) + MLP.

    from papers.chem.weave import WeaveRegressor, collate, featurize_molecules
    atoms, pairs, report = featurize_molecules(["CCO", "c1ccccc1O"])
    batch = collate(atoms, pairs)
    pred = WeaveRegressor(42)(**batch)    # [2]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="weave",
    papers=Paper(
        "Molecular Graph Convolutions: Moving Beyond Fingerprints",
        "Steven Kearnes, Kevin McCloskey, Marc Berndl, Vijay Pande, Patrick Riley",
        2016,
        venue="J. Comput.-Aided Mol. Des.",
        arxiv="1603.00856",
        catalog_ids=("001:57:1",),
    ),
    claim=(
        "Learned weave features (atom and pair representations, Gaussian histogram pooling) match or beat "
        "ECFP-based models on molecular property prediction; the pair features and the histogram pooling "
        "each help."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "ChEMBL pIC50 series (1,017 molecules), seeded random 80/10/10 split: Weave (2 modules, pair "
        "features, histogram pooling) against ECFP4 + MLP, sum pooling and atom layers only, test RMSE at "
        "equal epochs over 2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "WeaveModule": "model",
        "WeaveRegressor": "model",
        "FingerprintMLP": "model",
        "GAUSSIANS": "model",
        "PAIR_FEATURE_LAYOUT": "model",
        "PAIR_FEATURE_SIZE": "model",
        "collate": "model",
        "featurize_molecules": "model",
        "gaussian_memberships": "model",
        "pair_features": "model",
        "pair_features_from_smiles": "model",
        "ARMS": "experiment",
        "build_model": "experiment",
        "train_arm": "experiment",
    },
)
