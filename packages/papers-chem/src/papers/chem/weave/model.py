"""The weave module, pair features and Gaussian histogram pooling (Kearnes et al. 2016).

Molecules are held densely, padded to the largest in a batch:

    atoms      [B, N, F_atom]       atom features (the data layer's featuriser), zero rows for padding
    pairs      [B, N, N, F_pair]    pair features of every ordered pair of distinct atoms (not only bonds)
    atom_mask  [B, N]               True for real atoms
    pair_mask  [B, N, N]            True for pairs (a, b) of real atoms with a != b

One weave module (every g is a ReLU after a linear map; [u, v] is concatenation):

    A→A   g(W_AA x_a)
    P→A   Σ_b g(W_PA p_ab)                               order-invariant sum over the pairs of atom a
    A→P   g(W_AP [x_a, x_b]) + g(W_AP [x_b, x_a])         order-invariant in (a, b), so p'_ab = p'_ba
    P→P   g(W_PP p_ab)
    x'_a  = g(W_A [A→A, P→A])                            p'_ab = g(W_P [A→P, P→P])

Readout: a per-atom linear layer W x_a to ``readout_features`` (128 in the paper), batch normalisation
over the atoms of the batch (so each feature is about N(0, 1)), then either the paper's Gaussian "fuzzy
histogram" — the membership of each feature value x in 11 Gaussians N(μ_k, σ_k²) with fixed means and
variances,

    m_k(x) = N(x; μ_k, σ_k²) / Σ_j N(x; μ_j, σ_j²)        (Σ_k m_k(x) = 1)

summed over the atoms (a molecule vector of readout_features × 11) — or the plain sum over the atoms
of g(BN(W x_a)) (the ablation). A Linear-ReLU-Linear head maps the molecule vector to one number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

# The paper's 11 Gaussians (mean, variance), chosen so each bin holds about the same mass of N(0, 1).
GAUSSIANS = (
    (-1.645, 0.283),
    (-1.080, 0.170),
    (-0.739, 0.134),
    (-0.468, 0.118),
    (-0.228, 0.114),
    (0.0, 0.114),
    (0.228, 0.114),
    (0.468, 0.118),
    (0.739, 0.134),
    (1.080, 0.170),
    (1.645, 0.283),
)

MAX_GRAPH_DISTANCE = 7  # the paper's graph-distance features: "shortest path <= d bonds" for d = 1..7
PAIR_FEATURE_LAYOUT = {"bond_type": slice(0, 4), "graph_distance": slice(4, 11), "same_ring": slice(11, 12)}
PAIR_FEATURE_SIZE = 12
POOLINGS = ("histogram", "sum")


def pair_features(mol) -> np.ndarray:
    """``[n, n, 12]`` float32 features of every ordered atom pair of an RDKit molecule (the paper's Table 2,
    without the 3-D distance): bond type one-hot (single, double, triple, aromatic; all zero when the
    atoms are not bonded), graph distance ("shortest path <= d bonds", d = 1..7), same ring. The
    diagonal (a, a) is all zero and is masked out of the model; ``features[a, b] == features[b, a]``."""
    from rdkit import Chem

    n = mol.GetNumAtoms()
    features = np.zeros((n, n, PAIR_FEATURE_SIZE), dtype=np.float32)
    types = (Chem.BondType.SINGLE, Chem.BondType.DOUBLE, Chem.BondType.TRIPLE, Chem.BondType.AROMATIC)
    for bond in mol.GetBonds():
        a, b = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        if bond.GetBondType() in types:
            column = types.index(bond.GetBondType())
            features[a, b, column] = features[b, a, column] = 1.0
    distance = Chem.GetDistanceMatrix(mol)  # disconnected fragments: a large number (> 7)
    for d in range(1, MAX_GRAPH_DISTANCE + 1):
        features[:, :, 3 + d] = (distance <= d) & (distance > 0)
    ring = np.zeros((n, n), dtype=bool)
    for atoms in mol.GetRingInfo().AtomRings():
        index = np.array(atoms)
        ring[np.ix_(index, index)] = True
    np.fill_diagonal(ring, False)
    features[:, :, 11] = ring
    return features


def pair_features_from_smiles(smiles: str) -> np.ndarray:
    """:func:`pair_features` of a SMILES (atoms in the order the data layer's featuriser uses);
    ``InvalidMoleculeError`` with RDKit's reason if it cannot be read."""
    from papers.chem.data import parse_smiles

    return pair_features(parse_smiles(smiles))


def collate(atoms: Sequence[Tensor], pairs: Sequence[Tensor]) -> dict[str, Tensor]:
    """Pad molecules (``atoms[i]`` ``[n_i, F]``, ``pairs[i]`` ``[n_i, n_i, P]``) to a dense batch."""
    if len(atoms) != len(pairs) or not atoms:
        raise ValueError(
            f"need as many pair tensors as atom tensors (>= 1), got {len(atoms)} and {len(pairs)}"
        )
    sizes = [a.shape[0] for a in atoms]
    for a, p in zip(atoms, pairs, strict=True):
        if a.dim() != 2 or p.dim() != 3 or p.shape[:2] != (a.shape[0], a.shape[0]):
            raise ValueError(
                f"atoms must be [n, F] and pairs [n, n, P], got {tuple(a.shape)} and {tuple(p.shape)}"
            )
    n, batch = max(sizes), len(atoms)
    x = atoms[0].new_zeros(batch, n, atoms[0].shape[1])
    pp = pairs[0].new_zeros(batch, n, n, pairs[0].shape[2])
    atom_mask = torch.zeros(batch, n, dtype=torch.bool)
    for i, (a, p) in enumerate(zip(atoms, pairs, strict=True)):
        k = a.shape[0]
        x[i, :k], pp[i, :k, :k], atom_mask[i, :k] = a, p, True
    pair_mask = atom_mask[:, :, None] & atom_mask[:, None, :]
    pair_mask &= ~torch.eye(n, dtype=torch.bool)
    return {"atoms": x, "pairs": pp, "atom_mask": atom_mask, "pair_mask": pair_mask}


class WeaveModule(nn.Module):
    """One weave module: new atom features from A→A and P→A, new pair features from A→P and P→P.

    ``use_pairs=False`` drops P→A (atom layers only: the pair-feature ablation); ``update_pairs=False``
    skips the pair half (the last module, whose pair output nothing reads).
    """

    def __init__(
        self,
        atom_in: int,
        pair_in: int,
        *,
        atom_hidden: int = 50,
        pair_hidden: int = 50,
        atom_out: int = 50,
        pair_out: int = 50,
        use_pairs: bool = True,
        update_pairs: bool = True,
    ):
        super().__init__()
        self.use_pairs, self.update_pairs = use_pairs, update_pairs and use_pairs
        self.atom_to_atom = nn.Linear(atom_in, atom_hidden)
        self.pair_to_atom = nn.Linear(pair_in, atom_hidden) if use_pairs else None
        self.atom_out = nn.Linear(atom_hidden * (2 if use_pairs else 1), atom_out)
        if self.update_pairs:
            # W_AP [x_a, x_b] = W_first x_a + W_second x_b + bias: computed per atom, broadcast to pairs
            self.atom_to_pair = nn.Linear(2 * atom_in, pair_hidden)
            self.pair_to_pair = nn.Linear(pair_in, pair_hidden)
            self.pair_out = nn.Linear(2 * pair_hidden, pair_out)

    def forward(
        self, atoms: Tensor, pairs: Tensor | None, atom_mask: Tensor, pair_mask: Tensor | None
    ) -> tuple[Tensor, Tensor | None]:
        relu = torch.relu
        parts = [relu(self.atom_to_atom(atoms))]
        if self.use_pairs:
            parts.append((relu(self.pair_to_atom(pairs)) * pair_mask[..., None]).sum(dim=2))
        new_atoms = relu(self.atom_out(torch.cat(parts, dim=-1))) * atom_mask[..., None]
        if not self.update_pairs:
            return new_atoms, None
        width = atoms.shape[-1]
        weight, bias = self.atom_to_pair.weight, self.atom_to_pair.bias
        first, second = atoms @ weight[:, :width].T, atoms @ weight[:, width:].T  # [B, N, H]
        ab = first[:, :, None, :] + second[:, None, :, :] + bias  # W [x_a, x_b]
        ba = second[:, :, None, :] + first[:, None, :, :] + bias  # W [x_b, x_a]
        atom_to_pair = relu(ab) + relu(ba)
        pair_to_pair = relu(self.pair_to_pair(pairs))
        new_pairs = relu(self.pair_out(torch.cat([atom_to_pair, pair_to_pair], dim=-1)))
        return new_atoms, new_pairs * pair_mask[..., None]


def gaussian_memberships(values: Tensor, gaussians=GAUSSIANS) -> Tensor:
    """``[..., K]`` memberships of each value in the K Gaussians: N(x; μ_k, σ_k²) normalised over k."""
    means = values.new_tensor([m for m, _ in gaussians])
    variances = values.new_tensor([v for _, v in gaussians])
    log_density = -((values[..., None] - means) ** 2) / (2 * variances) - 0.5 * torch.log(
        2 * math.pi * variances
    )
    return torch.softmax(log_density, dim=-1)


class MaskedBatchNorm(nn.Module):
    """Batch normalisation of the real atoms' features (padding excluded from the statistics)."""

    def __init__(self, features: int):
        super().__init__()
        self.norm = nn.BatchNorm1d(features)

    def forward(self, h: Tensor, atom_mask: Tensor) -> Tensor:
        out = torch.zeros_like(h)
        out[atom_mask] = self.norm(h[atom_mask])
        return out


class WeaveRegressor(nn.Module):
    """Weave modules, a per-atom readout layer, batch norm, histogram (or sum) pooling and an MLP head."""

    def __init__(
        self,
        atom_features: int,
        pair_features: int = PAIR_FEATURE_SIZE,
        *,
        modules: int = 2,
        width: int = 50,
        readout_features: int = 128,
        head_hidden: int = 128,
        pooling: str = "histogram",
        use_pairs: bool = True,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if modules < 1 or width < 1 or readout_features < 1 or head_hidden < 1:
            raise ValueError("modules, width, readout_features and head_hidden must be >= 1")
        self.pooling, self.use_pairs, self.atom_features = pooling, use_pairs, atom_features
        layers, atom_in, pair_in = [], atom_features, pair_features
        for i in range(modules):
            last = i == modules - 1
            sizes = {"atom_hidden": width, "pair_hidden": width, "atom_out": width, "pair_out": width}
            layers.append(WeaveModule(atom_in, pair_in, **sizes, use_pairs=use_pairs, update_pairs=not last))
            atom_in, pair_in = width, width
        self.weave = nn.ModuleList(layers)
        self.readout = nn.Linear(width, readout_features)
        self.norm = MaskedBatchNorm(readout_features)
        bins = len(GAUSSIANS) if pooling == "histogram" else 1
        self.head = nn.Sequential(
            nn.Linear(readout_features * bins, head_hidden), nn.ReLU(), nn.Linear(head_hidden, 1)
        )

    def molecule_vectors(self, atoms: Tensor, pairs: Tensor, atom_mask: Tensor, pair_mask: Tensor) -> Tensor:
        if atoms.dim() != 3 or atoms.shape[-1] != self.atom_features:
            raise ValueError(f"atoms must be [B, N, {self.atom_features}], got {tuple(atoms.shape)}")
        if pairs.shape[:3] != (*atoms.shape[:2], atoms.shape[1]):
            raise ValueError(
                f"pairs must be [B, N, N, P] for atoms {tuple(atoms.shape)}, got {tuple(pairs.shape)}"
            )
        h, p = atoms, pairs if self.use_pairs else None
        for layer in self.weave:
            h, p = layer(h, p, atom_mask, pair_mask)
        h = self.norm(self.readout(h), atom_mask)  # about N(0, 1) per feature, as the Gaussians assume
        # the histogram is itself the nonlinearity; the sum ablation gets a ReLU in its place
        h = gaussian_memberships(h).flatten(-2) if self.pooling == "histogram" else torch.relu(h)
        return (h * atom_mask[..., None]).sum(dim=1)

    def forward(self, atoms: Tensor, pairs: Tensor, atom_mask: Tensor, pair_mask: Tensor) -> Tensor:
        return self.head(self.molecule_vectors(atoms, pairs, atom_mask, pair_mask)).squeeze(-1)


class FingerprintMLP(nn.Module):
    """The ECFP baseline: fingerprint bits → Linear → ReLU → Linear to one number."""

    def __init__(self, in_features: int = 2048, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, bits: Tensor) -> Tensor:
        return self.net(bits).squeeze(-1)


def featurize_molecules(smiles: Sequence[str]):
    """``(atoms, pairs, report)``: per valid SMILES its ``[n, 42]`` atom features (the data layer's
    featuriser) and ``[n, n, 12]`` pair features; invalid rows are skipped and listed in the data layer's
    ``MoleculeReport`` (with a ``SkippedMoleculesWarning``), never raised."""
    from papers.chem.data import featurize_smiles

    graphs, report = featurize_smiles(list(smiles))
    atoms = [graph.x for graph in graphs]
    pairs = [torch.from_numpy(pair_features_from_smiles(graph.smiles)) for graph in graphs]
    return atoms, pairs, report
