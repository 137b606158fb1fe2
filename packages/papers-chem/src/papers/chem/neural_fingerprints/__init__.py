"""Convolutional Networks on Graphs for Learning Molecular Fingerprints.

David Duvenaud, Dougal Maclaurin, Jorge Aguilera-Iparraguirre, Rafael Gómez-Bombarelli, Timothy Hirzel,
Alán Aspuru-Guzik, Ryan P. Adams. NeurIPS 2015. arXiv:1509.09292. Catalogue id 001:58:1.

ECFP (circular fingerprints) hashes every atom's radius-L neighbourhood to an integer and sets the bit
at that index. The neural graph fingerprint (Algorithm 2) replaces each discrete step by a smooth one:

    r_a ← g(a)                                                   atom features
    f   ← 0 ∈ R^S
    for L = 1 .. R:
        for every atom a with neighbours N(a), degree d = |N(a)|:
            v   = [ r_a + Σ_{u ∈ N(a)} r_u ,  Σ_{u ∈ N(a)} e_au ]    bond features concatenated
            r_a ← σ(v H_L^d)                                     hash   → one layer, weights per degree
            i   = softmax(r_a W_L)                               index  → softmax over the S bins
            f   ← f + i                                          write  → sum (so Σ f = atoms × R)

With large random weights σ and the softmax saturate: the update becomes a random hash and the
softmax an argmax, so the fingerprint approaches ECFP-style counts and its continuous Tanimoto
distances 1 − Σ min(f, f') / Σ max(f, f') track ECFP's (Fig. 3). Trained end to end with a regression
head, it matches or beats ECFP on property prediction (Table 2).

    from papers.chem.neural_fingerprints import NeuralFingerprint, collate, fingerprints_from_smiles
    model = NeuralFingerprint(atom_features, bond_features, hidden=64, fp_length=2048, radius=4)
    fps, report = fingerprints_from_smiles(model, ["CCO", "c1ccccc1O"])     # invalid rows skipped
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="neural-fingerprints",
    papers=Paper(
        "Convolutional Networks on Graphs for Learning Molecular Fingerprints",
        "David Duvenaud, Dougal Maclaurin, Jorge Aguilera-Iparraguirre, Rafael Gómez-Bombarelli, "
        "Timothy Hirzel, Alán Aspuru-Guzik, Ryan P. Adams",
        2015,
        venue="NeurIPS",
        arxiv="1509.09292",
        catalog_ids=("001:58:1",),
    ),
    claim=(
        "With large random weights, distances between neural graph fingerprints correlate with ECFP "
        "distances (more so as the weights grow); trained end to end, neural fingerprints beat ECFP with "
        "the same MLP head on regression."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Random-weight neural fingerprints vs ECFP Tanimoto distances on NCI molecules over a weight-scale "
        "sweep; trained neural fingerprint vs ECFP4 + MLP on ChEMBL pIC50 and NCI logP, seeded splits."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "MLPHead": "model",
        "NONLINEARITIES": "model",
        "NeuralFingerprint": "model",
        "NeuralFingerprintRegressor": "model",
        "atom_degrees": "model",
        "collate": "model",
        "fingerprints_from_smiles": "model",
        "pearson": "model",
        "tanimoto_distances": "model",
    },
)
