"""The molecular data layer: featurisation, datasets, splits and metrics.

    featurize    SMILES / RDKit molecules -> torch_geometric ``Data`` graphs (documented atom and bond
                 features, optional explicit hydrogens, chirality and seeded 3-D conformers), with a
                 report of the rows that could not be used and why
    dataset      ``MoleculeDataset`` (graphs with ``y`` and ``y_mask``) and its disk cache
    bundled      offline datasets from the rdkit wheel: ChEMBL pIC50 (1,017) and NCI properties (4,991)
    moleculenet  ESOL, FreeSolv, Lipophilicity, BACE, BBBP, Tox21, QM9: download, checksum, cache, parse
    splits       random, scaffold (MoleculeNet's and a balanced variant) and stratified splits, seeded
    metrics      RMSE, MAE, ROC-AUC, PR-AUC with masks for missing labels and per-task averaging
    smiles       SMILES tokens and vocabulary, canonical SMILES, the NCI corpus for generators, and
                 the generators' scores (synthetic accessibility, penalised logP)

Names are imported on first use; ``torch_geometric`` (seconds to import) only when a graph is built.
"""

from papers.core.lazy import lazy_exports

_MODULE_OF = {
    "featurize": (
        "ATOM_ELEMENTS", "ATOM_FEATURE_LAYOUT", "ATOM_FEATURE_SIZE", "BOND_FEATURE_LAYOUT",
        "BOND_FEATURE_SIZE", "CHIRALITY_FEATURE_SIZE", "InvalidMoleculeError", "MoleculeReport",
        "SkippedMolecule", "SkippedMoleculesWarning", "atom_features", "bond_features", "embed_conformer",
        "featurize_smiles", "mol_to_graph", "parse_smiles", "smiles_to_graph", "valid_smiles",
    ),
    "dataset": ("MoleculeDataset", "cached_dataset", "data_dir"),
    "bundled": (
        "NCI_PROPERTIES", "load_chembl_pic50", "load_nci_properties", "molecular_properties", "nci_smiles",
    ),
    "moleculenet": ("MOLECULENET", "MoleculeNetSpec", "download_moleculenet", "load_moleculenet"),
    "splits": ("Split", "murcko_scaffold", "random_split", "scaffold_split", "stratified_split"),
    "metrics": ("mae", "pr_auc", "rmse", "roc_auc"),
    "smiles": (
        "Vocabulary", "canonical_smiles", "nci_corpus", "penalized_logp", "ring_penalty", "sa_score",
        "tokenize",
    ),
}  # fmt: skip

__getattr__, __all__ = lazy_exports(
    __name__, {name: module for module, names in _MODULE_OF.items() for name in names}
)
