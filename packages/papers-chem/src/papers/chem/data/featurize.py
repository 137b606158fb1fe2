"""RDKit molecules as ``torch_geometric.data.Data`` graphs.

Atom features (one row of ``x`` per atom; every one-hot block has a last "other" column for values
outside its list):

    element         one-hot over ``ATOM_ELEMENTS`` (H, B, C, N, O, F, Si, P, S, Cl, Se, Br, I) + other
    degree          number of bonded neighbours (explicit hydrogens count), one-hot 0..5 + other
    formal_charge   one-hot -2..+2 + other
    hybridisation   one-hot S, SP, SP2, SP3, SP3D, SP3D2 + other (unspecified included)
    aromatic        1 if the atom is aromatic
    in_ring         1 if the atom is in a ring
    hydrogens       total attached hydrogens, implicit and explicit, one-hot 0..4 + other
    chirality       (only with ``chirality=True``) unspecified, tetrahedral CW, tetrahedral CCW + other

Bond features (one row of ``edge_attr`` per directed edge; both directions of a bond share a row's values):

    bond_type       one-hot single, double, triple, aromatic + other
    conjugated      1 if the bond is conjugated
    in_ring         1 if the bond is in a ring
    stereo          one-hot none, Z, E, cis, trans + other (any, atropisomers)

``ATOM_FEATURE_LAYOUT`` and ``BOND_FEATURE_LAYOUT`` map each block's name to its columns, so
``x[:, ATOM_FEATURE_LAYOUT["element"]]`` is the element one-hot. The sizes are ``ATOM_FEATURE_SIZE``
(``ATOM_FEATURE_SIZE + CHIRALITY_FEATURE_SIZE`` with chirality) and ``BOND_FEATURE_SIZE``.

A graph also holds ``z`` (atomic numbers), ``smiles`` (the input string) and, when a conformer is
asked for, ``pos`` (ångström): ETKDG v3 embedding with the given seed, then MMFF94 optimisation
(skipped for molecules MMFF has no parameters for). Hydrogens are added for the embedding and removed
again unless ``explicit_hydrogens=True``.

Parsing never prints: RDKit's log messages are captured and become the reason of an
:class:`InvalidMoleculeError`. :func:`featurize_smiles` turns a list of SMILES into graphs plus a
:class:`MoleculeReport` of the rows it skipped and why.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import AllChem

ATOM_ELEMENTS = ("H", "B", "C", "N", "O", "F", "Si", "P", "S", "Cl", "Se", "Br", "I")
ATOM_DEGREES = (0, 1, 2, 3, 4, 5)
FORMAL_CHARGES = (-2, -1, 0, 1, 2)
HYBRIDISATIONS = tuple(
    getattr(Chem.HybridizationType, name) for name in ("S", "SP", "SP2", "SP3", "SP3D", "SP3D2")
)
HYDROGEN_COUNTS = (0, 1, 2, 3, 4)
CHIRAL_TAGS = (
    Chem.ChiralType.CHI_UNSPECIFIED,
    Chem.ChiralType.CHI_TETRAHEDRAL_CW,
    Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
)
BOND_TYPES = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
BOND_STEREOS = tuple(
    getattr(Chem.BondStereo, name)
    for name in ("STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS")
)


def _layout(widths: Sequence[tuple[str, int]]) -> dict[str, slice]:
    layout, start = {}, 0
    for name, width in widths:
        layout[name] = slice(start, start + width)
        start += width
    return layout


ATOM_FEATURE_LAYOUT = _layout(
    [
        ("element", len(ATOM_ELEMENTS) + 1),
        ("degree", len(ATOM_DEGREES) + 1),
        ("formal_charge", len(FORMAL_CHARGES) + 1),
        ("hybridisation", len(HYBRIDISATIONS) + 1),
        ("aromatic", 1),
        ("in_ring", 1),
        ("hydrogens", len(HYDROGEN_COUNTS) + 1),
        ("chirality", len(CHIRAL_TAGS) + 1),
    ]
)
CHIRALITY_FEATURE_SIZE = len(CHIRAL_TAGS) + 1
ATOM_FEATURE_SIZE = ATOM_FEATURE_LAYOUT["chirality"].start
BOND_FEATURE_LAYOUT = _layout(
    [("bond_type", len(BOND_TYPES) + 1), ("conjugated", 1), ("in_ring", 1), ("stereo", len(BOND_STEREOS) + 1)]
)
BOND_FEATURE_SIZE = BOND_FEATURE_LAYOUT["stereo"].stop


class InvalidMoleculeError(ValueError):
    """A SMILES string RDKit cannot parse or sanitise, or a molecule that cannot be featurised."""


def one_hot(value, choices: Sequence) -> list[float]:
    """``len(choices) + 1`` floats: a 1 at ``value``'s position, or in the last ("other") column."""
    encoding = [0.0] * (len(choices) + 1)
    encoding[choices.index(value) if value in choices else len(choices)] = 1.0
    return encoding


def atom_features(atom: Chem.Atom, chirality: bool = False) -> list[float]:
    """The feature row of one atom (see the module docstring for the blocks and their order)."""
    features = (
        one_hot(atom.GetSymbol(), ATOM_ELEMENTS)
        + one_hot(atom.GetDegree(), ATOM_DEGREES)
        + one_hot(atom.GetFormalCharge(), FORMAL_CHARGES)
        + one_hot(atom.GetHybridization(), HYBRIDISATIONS)
        + [float(atom.GetIsAromatic()), float(atom.IsInRing())]
        + one_hot(atom.GetTotalNumHs(includeNeighbors=True), HYDROGEN_COUNTS)
    )
    if chirality:
        features += one_hot(atom.GetChiralTag(), CHIRAL_TAGS)
    return features


def bond_features(bond: Chem.Bond) -> list[float]:
    """The feature row of one bond (see the module docstring for the blocks and their order)."""
    return (
        one_hot(bond.GetBondType(), BOND_TYPES)
        + [float(bond.GetIsConjugated()), float(bond.IsInRing())]
        + one_hot(bond.GetStereo(), BOND_STEREOS)
    )


def _capture_error_log():
    """RDKit's error log captured (``rdBase.CaptureErrorLog``), or only silenced on RDKits without it."""
    capture = getattr(rdBase, "CaptureErrorLog", None)
    return capture() if capture is not None else contextlib.nullcontext()


def _first_message(log: str) -> str:
    """The first line RDKit logged, without its ``[hh:mm:ss]`` time stamp."""
    for line in log.splitlines():
        text = line.split("] ", 1)[-1].strip()
        if text:
            return text
    return ""


def parse_smiles(smiles: str) -> Chem.Mol:
    """The sanitised molecule of ``smiles``; :class:`InvalidMoleculeError` with RDKit's reason if invalid."""
    if not isinstance(smiles, str) or not smiles.strip():
        raise InvalidMoleculeError(f"empty or non-string SMILES {smiles!r}")
    with rdBase.BlockLogs(), _capture_error_log() as log:
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        reason = _first_message(getattr(log, "messages", "") or "")
        raise InvalidMoleculeError(reason or f"RDKit cannot read SMILES {smiles!r}")
    if mol.GetNumAtoms() == 0:
        raise InvalidMoleculeError(f"SMILES {smiles!r} has no atoms")
    return mol


def embed_conformer(mol: Chem.Mol, seed: int) -> Chem.Mol:
    """A copy of ``mol`` with hydrogens and one 3-D conformer (ETKDG v3 with ``seed``, then MMFF94)."""
    with_hydrogens = Chem.AddHs(mol)
    params = AllChem.ETKDGv3()
    params.randomSeed = seed
    with rdBase.BlockLogs():
        if AllChem.EmbedMolecule(with_hydrogens, params) != 0:
            raise InvalidMoleculeError(f"ETKDG could not embed a conformer (seed {seed})")
        if AllChem.MMFFHasAllMoleculeParams(with_hydrogens):
            AllChem.MMFFOptimizeMolecule(with_hydrogens)
    return with_hydrogens


def _float_matrix(rows: list[list[float]], width: int) -> torch.Tensor:
    # numpy converts nested lists several times faster than torch.tensor does
    return torch.from_numpy(np.array(rows, dtype=np.float32).reshape(-1, width))


def mol_to_graph(
    mol: Chem.Mol,
    *,
    chirality: bool = False,
    explicit_hydrogens: bool = False,
    conformer_seed: int | None = None,
    smiles: str | None = None,
):
    """A ``Data`` graph of ``mol``: ``x``, ``edge_index`` (both directions of every bond), ``edge_attr``,
    ``z``, ``smiles`` (RDKit's canonical SMILES unless given) and, if ``conformer_seed`` is an int,
    ``pos`` of a conformer embedded with that seed."""
    from torch_geometric.data import Data  # importing torch_geometric takes seconds: only when used

    smiles = Chem.MolToSmiles(mol) if smiles is None else smiles
    if conformer_seed is not None:
        mol = embed_conformer(mol, conformer_seed)
        if not explicit_hydrogens:
            mol = Chem.RemoveHs(mol)
    elif explicit_hydrogens:
        mol = Chem.AddHs(mol)

    atoms = [mol.GetAtomWithIdx(i) for i in range(mol.GetNumAtoms())]
    atom_width = ATOM_FEATURE_SIZE + (CHIRALITY_FEATURE_SIZE if chirality else 0)
    sources, targets, edge_rows = [], [], []
    for bond in (mol.GetBondWithIdx(i) for i in range(mol.GetNumBonds())):
        begin, end, row = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), bond_features(bond)
        sources += [begin, end]
        targets += [end, begin]
        edge_rows += [row, row]
    graph = Data(
        x=_float_matrix([atom_features(atom, chirality) for atom in atoms], width=atom_width),
        edge_index=torch.tensor([sources, targets], dtype=torch.long).view(2, -1),
        edge_attr=_float_matrix(edge_rows, width=BOND_FEATURE_SIZE),
        z=torch.tensor([atom.GetAtomicNum() for atom in atoms], dtype=torch.long),
        smiles=smiles,
    )
    if conformer_seed is not None:
        graph.pos = torch.tensor(mol.GetConformer().GetPositions(), dtype=torch.float32)
    return graph


def smiles_to_graph(smiles: str, **options):
    """:func:`mol_to_graph` of :func:`parse_smiles`; ``graph.smiles`` is ``smiles`` as given."""
    return mol_to_graph(parse_smiles(smiles), smiles=smiles, **options)


@dataclass(frozen=True)
class SkippedMolecule:
    """One input row that was skipped: its position in the input, its SMILES and why."""

    row: int
    smiles: str
    reason: str


@dataclass
class MoleculeReport:
    """Which input rows were kept and which were skipped, with reasons. ``print(report)`` lists them."""

    total: int
    kept_rows: list[int] = field(default_factory=list)
    skipped: list[SkippedMolecule] = field(default_factory=list)

    @property
    def num_kept(self) -> int:
        return len(self.kept_rows)

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self) -> str:
        """One line: how many rows were kept and skipped, and the first reason."""
        line = f"kept {self.num_kept} of {self.total} molecules, skipped {self.num_skipped}"
        if self.skipped:
            first = self.skipped[0]
            line += f" (first: row {first.row} {first.smiles!r}: {first.reason})"
        return line

    def __str__(self) -> str:
        lines = [self.summary()] + [f"  row {s.row}: {s.smiles!r}: {s.reason}" for s in self.skipped]
        return "\n".join(lines)


class SkippedMoleculesWarning(UserWarning):
    """Some input rows were skipped; the :class:`MoleculeReport` returned alongside lists them."""


def _convert_rows(smiles: Sequence[str], convert: Callable[[str], Any]) -> tuple[list, MoleculeReport]:
    results, report = [], MoleculeReport(total=len(smiles))
    for row, text in enumerate(smiles):
        try:
            results.append(convert(text))
        except InvalidMoleculeError as error:
            report.skipped.append(SkippedMolecule(row, str(text), str(error)))
        else:
            report.kept_rows.append(row)
    if report.skipped:
        warnings.warn(report.summary(), SkippedMoleculesWarning, stacklevel=3)
    return results, report


def featurize_smiles(smiles: Sequence[str], **options) -> tuple[list, MoleculeReport]:
    """Graphs of every valid SMILES (``options`` as :func:`mol_to_graph`) and a report of the rest.

    Invalid rows are skipped, each recorded with its row (position in ``smiles``) and the reason; if
    any were skipped a :class:`SkippedMoleculesWarning` gives the count and the first reason.
    ``report.kept_rows[i]`` is the input row of ``graphs[i]``.
    """
    return _convert_rows(smiles, lambda text: smiles_to_graph(text, **options))


def valid_smiles(smiles: Sequence[str]) -> tuple[list[str], MoleculeReport]:
    """The SMILES that RDKit parses, as given, and a report of the rest (as :func:`featurize_smiles`)."""

    def keep_if_valid(text: str) -> str:
        parse_smiles(text)
        return text

    return _convert_rows(smiles, keep_if_valid)
