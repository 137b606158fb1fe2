"""MoleculeNet benchmark datasets (Wu et al. 2018, arXiv:1703.00564), downloaded on first use.

    name           file (DeepChem's copy)   SMILES  tasks
    esol           delaney-processed.csv    smiles  measured log solubility in mols per litre (regression)
    freesolv       SAMPL.csv                smiles  expt: hydration free energy, kcal/mol (regression)
    lipophilicity  Lipophilicity.csv        smiles  exp: octanol/water distribution logD (regression)
    bace           bace.csv                 mol     Class: BACE-1 inhibitor or not (classification)
    bbbp           BBBP.csv                 smiles  p_np: blood-brain barrier penetration (classification)
    tox21          tox21.csv.gz             smiles  12 assays, many labels missing (classification)
    qm9            qm9.csv                  smiles  12 quantum properties in the file's units (regression)

A file is downloaded once into ``data_dir() / "moleculenet"`` (``$PAPERS_DATA/chem`` or
``~/.cache/papers/chem``) and written only after its SHA-256 checksum is verified, atomically, so the
cache never holds a partial or corrupt download. No checksum is pinned yet (``sha256=None`` in every
spec): the first download prints the file's SHA-256 so it can be recorded and passed as ``sha256=``
(or put in the spec) to verify later downloads and the cached copy. Missing labels (empty cells) become
NaN targets with ``y_mask`` False. The featurised graphs are cached as :func:`~.dataset.cached_dataset`.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

from papers.core.download import download, file_sha256
from papers.core.errors import PapersError

from .dataset import MoleculeDataset, cached_dataset, data_dir

_DEEPCHEM = "https://deepchemdata.s3-us-west-1.amazonaws.com/datasets/"


@dataclass(frozen=True)
class MoleculeNetSpec:
    """Where a MoleculeNet dataset is published and which CSV columns hold its SMILES and tasks."""

    name: str
    url: str
    smiles_column: str
    task_columns: tuple[str, ...]
    task_type: str
    sha256: str | None = None  # None: not pinned; the first download prints the digest

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


TOX21_TASKS = (
    "NR-AR", "NR-AR-LBD", "NR-AhR", "NR-Aromatase", "NR-ER", "NR-ER-LBD",
    "NR-PPAR-gamma", "SR-ARE", "SR-ATAD5", "SR-HSE", "SR-MMP", "SR-p53",
)  # fmt: skip
QM9_TASKS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "cv", "u0", "u298", "h298", "g298")

MOLECULENET = {
    spec.name: spec
    for spec in (
        MoleculeNetSpec(
            "esol",
            _DEEPCHEM + "delaney-processed.csv",
            "smiles",
            ("measured log solubility in mols per litre",),
            "regression",
        ),
        MoleculeNetSpec("freesolv", _DEEPCHEM + "SAMPL.csv", "smiles", ("expt",), "regression"),
        MoleculeNetSpec("lipophilicity", _DEEPCHEM + "Lipophilicity.csv", "smiles", ("exp",), "regression"),
        MoleculeNetSpec("bace", _DEEPCHEM + "bace.csv", "mol", ("Class",), "classification"),
        MoleculeNetSpec("bbbp", _DEEPCHEM + "BBBP.csv", "smiles", ("p_np",), "classification"),
        MoleculeNetSpec("tox21", _DEEPCHEM + "tox21.csv.gz", "smiles", TOX21_TASKS, "classification"),
        MoleculeNetSpec("qm9", _DEEPCHEM + "qm9.csv", "smiles", QM9_TASKS, "regression"),
    )
}


def _spec(name: str) -> MoleculeNetSpec:
    if name not in MOLECULENET:
        raise PapersError(f"unknown MoleculeNet dataset {name!r}; choose from {', '.join(MOLECULENET)}")
    return MOLECULENET[name]


def download_moleculenet(
    name: str, *, sha256: str | None = None, root: str | os.PathLike | None = None
) -> Path:
    """The path of dataset ``name``'s file, downloading it on first use (see the module docstring).

    ``sha256`` (default: the spec's) is the digest to verify; a mismatch raises :class:`PapersError`
    and leaves the cache as it was. ``root`` defaults to ``data_dir() / "moleculenet"``.
    """
    spec = _spec(name)
    folder = Path(root) if root is not None else data_dir() / "moleculenet"
    return download(name, spec.url, folder / spec.filename, sha256 or spec.sha256)


def read_csv_columns(
    path: str | os.PathLike, smiles_column: str, task_columns: tuple[str, ...]
) -> tuple[list[str], list[list[float]]]:
    """SMILES and float targets (NaN for an empty cell) from a CSV file, gzipped if it ends in ``.gz``."""
    path = Path(path)
    raw = path.read_bytes()
    text = gzip.decompress(raw).decode("utf-8") if path.suffix == ".gz" else raw.decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [column for column in (smiles_column, *task_columns) if column not in (reader.fieldnames or [])]
    if missing:
        raise PapersError(f"{path.name} has no columns {missing}; it has {reader.fieldnames}")
    smiles, targets = [], []
    for line, row in enumerate(reader, start=2):
        try:
            targets.append([float(row[c]) if row[c].strip() else math.nan for c in task_columns])
        except ValueError as error:
            raise PapersError(f"{path.name}:{line}: a target is not a number ({error})") from None
        smiles.append(row[smiles_column])
    return smiles, targets


def load_moleculenet(
    name: str,
    *,
    sha256: str | None = None,
    root: str | os.PathLike | None = None,
    cache: bool = True,
    **featurize_options,
) -> MoleculeDataset:
    """MoleculeNet dataset ``name`` (see :data:`MOLECULENET`) as a :class:`MoleculeDataset`.

    Downloads as :func:`download_moleculenet`; rows whose SMILES RDKit rejects are skipped and listed in
    ``dataset.report`` (BBBP has a few). ``featurize_options`` go to :func:`~.featurize.mol_to_graph`.
    """
    spec = _spec(name)
    path = download_moleculenet(name, sha256=sha256, root=root)

    def build() -> MoleculeDataset:
        smiles, targets = read_csv_columns(path, spec.smiles_column, spec.task_columns)
        return MoleculeDataset.from_smiles(
            smiles,
            targets,
            name=name,
            task_names=spec.task_columns,
            task_type=spec.task_type,
            **featurize_options,
        )

    key = {"source": file_sha256(path), **featurize_options}
    return cached_dataset(f"moleculenet-{name}", key, build, cache)
