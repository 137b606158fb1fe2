"""Real molecular datasets that ship inside the rdkit wheel, so they load offline.

ChEMBL pIC50 (regression, :func:`load_chembl_pic50`)
    The ChEMBL series CHEMBL2321810 of RDKit's Free-Wilson contribution
    (``Contrib/FreeWilson/data``): ``CHEMBL2321810.smi`` holds SMILES and a compound id per line,
    ``CHEMBL2321810_act.csv`` the measured activity of each id (columns ``Name``, ``Act``), a pIC50
    (-log10 of the IC50 in mol/L; 4.27 to 9.22). 1,017 molecules, all of which RDKit parses.

NCI properties (regression, :func:`load_nci_properties`; SMILES only, :func:`nci_smiles`)
    ``Data/NCI/first_5K.smi``: 4,999 NCI compounds (SMILES, tab, id), of which RDKit parses 4,991; the
    other 8 (hypervalent Al, Be, Si, P, N and O) are reported as skipped. Targets are computed with
    RDKit: ``logp`` (Crippen), ``qed`` (quantitative estimate of drug-likeness), ``tpsa`` (Ertl's
    topological polar surface area, Å²) and ``mol_wt`` (average molecular weight, g/mol).

Computing QED and embedding conformers take seconds to minutes for these sets, so both loaders keep
the built dataset in the disk cache of :func:`~.dataset.cached_dataset` (``cache=False`` to skip it).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from papers.core.download import file_sha256
from papers.core.errors import PapersError

from .dataset import MoleculeDataset, cached_dataset
from .featurize import InvalidMoleculeError, parse_smiles, valid_smiles

NCI_PROPERTIES = ("logp", "qed", "tpsa", "mol_wt")


def bundled_file(*parts: str, contrib: bool = False) -> Path:
    """A file under rdkit's ``RDDataDir`` (or ``RDContribDir``); a clear error if it is missing."""
    from rdkit import RDConfig

    root = RDConfig.RDContribDir if contrib else RDConfig.RDDataDir
    path = Path(root, *parts)
    if not path.is_file():
        raise PapersError(
            f"the data file {os.path.join(*parts)} is not in this rdkit installation ({root}); "
            "install an rdkit wheel that ships its Data and Contrib folders"
        )
    return path


def read_smiles_file(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``(smiles, id)`` per non-empty line of a whitespace-separated ``.smi`` file."""
    rows = []
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise PapersError(f"{path}:{number}: expected 'SMILES id', got {line.strip()!r}")
            rows.append((fields[0], fields[1]))
    return rows


def load_chembl_pic50(*, cache: bool = True, **featurize_options) -> MoleculeDataset:
    """The 1,017 molecules of ChEMBL series CHEMBL2321810 with their measured pIC50 (one task)."""
    smiles_path = bundled_file("FreeWilson", "data", "CHEMBL2321810.smi", contrib=True)
    activity_path = bundled_file("FreeWilson", "data", "CHEMBL2321810_act.csv", contrib=True)

    def build() -> MoleculeDataset:
        with open(activity_path, encoding="utf-8", newline="") as file:
            pic50 = {row["Name"]: float(row["Act"]) for row in csv.DictReader(file)}
        molecules = read_smiles_file(smiles_path)
        missing = [name for _, name in molecules if name not in pic50]
        if missing:
            raise PapersError(f"{activity_path.name} has no activity for compound ids {missing[:5]}")
        return MoleculeDataset.from_smiles(
            [smiles for smiles, _ in molecules],
            [[pic50[name]] for _, name in molecules],
            name="chembl2321810",
            task_names=["pIC50"],
            task_type="regression",
            **featurize_options,
        )

    key = {"smiles": file_sha256(smiles_path), "activity": file_sha256(activity_path), **featurize_options}
    return cached_dataset("chembl2321810", key, build, cache)


def molecular_properties(smiles: str, properties=NCI_PROPERTIES) -> list[float]:
    """RDKit's value of each named property (see :data:`NCI_PROPERTIES`) for one molecule."""
    from rdkit.Chem import QED, Crippen, Descriptors, rdMolDescriptors

    calculators = {
        "logp": Crippen.MolLogP,
        "qed": QED.qed,
        "tpsa": rdMolDescriptors.CalcTPSA,
        "mol_wt": Descriptors.MolWt,
    }
    unknown = set(properties) - set(calculators)
    if unknown:
        raise ValueError(f"unknown properties {sorted(unknown)}; choose from {sorted(calculators)}")
    mol = parse_smiles(smiles)
    return [float(calculators[name](mol)) for name in properties]


def nci_smiles() -> list[str]:
    """The 4,991 SMILES of ``first_5K.smi`` that RDKit parses, as written there (a generator's
    training set); the 8 it cannot parse are reported by a warning."""
    smiles, _ = valid_smiles([smiles for smiles, _ in read_smiles_file(bundled_file("NCI", "first_5K.smi"))])
    return smiles


def load_nci_properties(
    properties=NCI_PROPERTIES, *, cache: bool = True, **featurize_options
) -> MoleculeDataset:
    """The 4,991 NCI molecules RDKit parses, with RDKit-computed ``properties`` as regression tasks
    (``report`` lists the 8 rows skipped)."""
    path = bundled_file("NCI", "first_5K.smi")
    properties = tuple(properties)

    def properties_or_missing(smiles: str) -> list[float]:
        try:
            return molecular_properties(smiles, properties)
        except InvalidMoleculeError:  # featurisation skips this row and reports why
            return [math.nan] * len(properties)

    def build() -> MoleculeDataset:
        smiles = [smiles for smiles, _ in read_smiles_file(path)]
        return MoleculeDataset.from_smiles(
            smiles,
            [properties_or_missing(text) for text in smiles],
            name="nci-properties",
            task_names=properties,
            task_type="regression",
            **featurize_options,
        )

    key = {"smiles": file_sha256(path), "properties": properties, **featurize_options}
    return cached_dataset("nci-properties", key, build, cache)
