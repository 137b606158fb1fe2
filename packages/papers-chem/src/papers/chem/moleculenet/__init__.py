"""MoleculeNet: A Benchmark for Molecular Machine Learning.

Zhenqin Wu, Bharath Ramsundar, Evan N. Feinberg, Joseph Gomes, Caleb Geniesse, Aneesh S. Pappu,
Karl Leswing, Vijay Pande. *MoleculeNet: A Benchmark for Molecular Machine Learning*. Chemical
Science 9, 513–530 (2018). arXiv:1703.00564. Catalogue id 001:56:1.

The benchmark's protocol point reproduced here: the same model is scored on a random split and on a
scaffold split, where molecules are grouped by their Bemis–Murcko scaffold (ring systems plus linkers)
and whole groups are assigned, largest to train and the rarest to test, so test scaffolds are never
seen in training. Scores are test RMSE over seeds,

    RMSE = sqrt( (1/n) Σ_i (ŷ_i − y_i)² ),      scaffold gap = mean RMSE(scaffold) − mean RMSE(random).

Two baselines of the paper's families, on the bundled ChEMBL pIC50 series (a stand-in for its
physical-chemistry sets, which need a download):

    ECFP4 + ridge   x = Morgan bits (radius 2, 2048 bits),  w = argmin ||X w + b − y||² + λ ||w||²
    GCN             H^(l+1) = ReLU(D̃^(-1/2) (A + I) D̃^(-1/2) H^(l) W^(l)),  ŷ = MLP(mean_atoms H^(L))

    from papers.chem.moleculenet import ecfp_fingerprints, RidgeRegression, GCNRegressor, make_split
    bits, report = ecfp_fingerprints(["CCO", "c1ccccc1O"])          # [2, 2048] 0/1, skipped rows reported
    split = make_split("scaffold", smiles, (0.8, 0.1, 0.1), seed=0)  # or "random"
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="moleculenet",
    papers=Paper(
        "MoleculeNet: A Benchmark for Molecular Machine Learning",
        "Zhenqin Wu, Bharath Ramsundar, Evan N. Feinberg, Joseph Gomes, Caleb Geniesse, Aneesh S. Pappu, "
        "Karl Leswing, Vijay Pande",
        2018,
        venue="Chemical Science",
        arxiv="1703.00564",
        catalog_ids=("001:56:1",),
    ),
    claim=(
        "A scaffold split is harder than a random split: the same model has a higher test RMSE when test "
        "molecules have Bemis–Murcko scaffolds unseen in training."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "ChEMBL pIC50 series (1,017 molecules): ECFP4 + ridge and a small GCN, each under a random and a "
        "scaffold 80/10/10 split, test RMSE over 3 seeds; the scaffold gap against the seeds' spread."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "GCNRegressor": "model",
        "RidgeRegression": "model",
        "ecfp_fingerprints": "model",
        "SPLITS": "experiment",
        "make_split": "experiment",
    },
)
