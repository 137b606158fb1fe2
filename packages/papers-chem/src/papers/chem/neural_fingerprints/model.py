"""Neural graph fingerprints (Duvenaud et al. 2015, Algorithm 2) in plain torch, and their distances.

A batch of molecules is given as flat tensors (see :func:`collate`):

    x            [N, atom_features]   atom feature rows of every molecule, one after another
    edge_index   [2, E]               directed edges (both directions of every bond), source row first
    edge_attr    [E, bond_features]   bond feature row of each directed edge
    batch        [N]                  the molecule of each atom (0 .. num_graphs - 1)

Algorithm 2 (for L = 1 .. R, each atom a with neighbours N(a) and degree d = |N(a)|):

    v_a  = [ r_a + Σ_{u ∈ N(a)} r_u ,  Σ_{u ∈ N(a)} e_au ]       atom sum, bond features concatenated
    r_a ← σ(v_a H_L^d + b_L^d)                                   degree-specific weights H_L^d
    f   ← f + softmax(r_a W_L + c_L)                            one smooth "bit" per atom and radius

with r_a = atom features at the start. The softmax is the smooth analogue of ECFP's hash-and-index:
with ``hard=True`` it is replaced by the one-hot of its argmax, and each atom adds exactly 1 to one
index per radius, so ``f`` sums to (number of atoms) × R either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def atom_degrees(edge_index: Tensor, num_atoms: int) -> Tensor:
    """Number of bonded neighbours of every atom (incoming directed edges)."""
    return torch.bincount(edge_index[1], minlength=num_atoms)


class NeuralFingerprint(nn.Module):
    """Differentiable ECFP: R rounds of degree-specific neighbour sums, softmax into ``fp_length`` bins.

    ``forward(x, edge_index, edge_attr, batch, num_graphs)`` → ``[num_graphs, fp_length]``.
    ``atom_contributions(...)`` → ``[R, N, fp_length]``, the softmax row each atom adds at each radius.
    """

    def __init__(
        self,
        atom_features: int,
        bond_features: int,
        *,
        hidden: int = 64,
        fp_length: int = 2048,
        radius: int = 4,
        max_degree: int = 6,
        nonlinearity: str = "tanh",
        hard: bool = False,
    ):
        super().__init__()
        for name, value, low in (
            ("atom_features", atom_features, 1),
            ("bond_features", bond_features, 0),
            ("hidden", hidden, 1),
            ("fp_length", fp_length, 1),
            ("radius", radius, 1),
            ("max_degree", max_degree, 0),
        ):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}")
        self.atom_features, self.bond_features = atom_features, bond_features
        self.hidden, self.fp_length, self.radius, self.max_degree = hidden, fp_length, radius, max_degree
        self.nonlinearity, self.hard = nonlinearity, hard
        degrees = max_degree + 1
        widths = [atom_features] + [hidden] * radius
        # H_L^d: [degrees, in + bond, hidden] per radius; W_L: [hidden, fp_length]
        self.hidden_weight = nn.ParameterList(
            nn.Parameter(torch.empty(degrees, width + bond_features, hidden)) for width in widths[:-1]
        )
        self.hidden_bias = nn.ParameterList(nn.Parameter(torch.empty(degrees, hidden)) for _ in range(radius))
        self.output = nn.ModuleList(nn.Linear(hidden, fp_length) for _ in range(radius))
        self.reset_parameters()

    def reset_parameters(self, scale: float = 1.0, generator: torch.Generator | None = None) -> None:
        """Every weight and bias ~ N(0, scale² / fan_in): ``scale`` ≫ 1 gives the "large random weights"
        regime where σ and the softmax saturate into a hash and an argmax (paper Sec. 3 and Fig. 3)."""
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        with torch.no_grad():
            for weight, bias in zip(self.hidden_weight, self.hidden_bias, strict=True):
                std = scale / weight.shape[1] ** 0.5
                weight.copy_(torch.randn(weight.shape, generator=generator) * std)
                bias.copy_(torch.randn(bias.shape, generator=generator) * std)
            for layer in self.output:
                std = scale / self.hidden**0.5
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator) * std)

    def _check(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.atom_features:
            raise ValueError(f"x must be [num_atoms, {self.atom_features}], got {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, num_edges], got {tuple(edge_index.shape)}")
        if edge_attr.shape != (edge_index.shape[1], self.bond_features):
            raise ValueError(
                f"edge_attr must be [{edge_index.shape[1]}, {self.bond_features}], "
                f"got {tuple(edge_attr.shape)}"
            )
        degree = atom_degrees(edge_index, x.shape[0])
        if len(degree) and int(degree.max()) > self.max_degree:
            raise ValueError(
                f"an atom has {int(degree.max())} neighbours, more than max_degree={self.max_degree}"
            )
        return degree

    def atom_contributions(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """``[R, N, fp_length]``: softmax(r_a W_L) (or its one-hot argmax if ``hard``) per radius and atom."""
        degree = self._check(x, edge_index, edge_attr)
        source, target = edge_index
        sigma = NONLINEARITIES[self.nonlinearity]
        num_atoms = x.shape[0]
        bond_sum = edge_attr.new_zeros(num_atoms, self.bond_features).index_add_(0, target, edge_attr)
        r, out = x, []
        for weight, bias, output in zip(self.hidden_weight, self.hidden_bias, self.output, strict=True):
            v = torch.cat([r.index_add(0, target, r[source]), bond_sum], dim=1)  # self + neighbours, bonds
            by_degree = torch.einsum("ni,dio->ndo", v, weight)  # v H^d for every d
            picked = by_degree.gather(1, degree.view(-1, 1, 1).expand(-1, 1, self.hidden)).squeeze(1)
            r = sigma(picked + bias[degree])
            logits = output(r)
            if self.hard:
                out.append(nn.functional.one_hot(logits.argmax(-1), self.fp_length).to(logits.dtype))
            else:
                out.append(torch.softmax(logits, dim=-1))
        return torch.stack(out)

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, num_graphs: int | None = None
    ) -> Tensor:
        num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
        per_atom = self.atom_contributions(x, edge_index, edge_attr).sum(0)
        return per_atom.new_zeros(num_graphs, self.fp_length).index_add_(0, batch, per_atom)


def collate(graphs: Sequence, dtype: torch.dtype = torch.float32) -> dict[str, Tensor]:
    """One flat batch (``x``, ``edge_index``, ``edge_attr``, ``batch``, ``num_graphs``) of graphs with
    ``x``, ``edge_index`` and ``edge_attr`` (the data layer's ``Data`` graphs)."""
    if not graphs:
        raise ValueError("collate needs at least one graph")
    xs, edges, attrs, batch, offset = [], [], [], [], 0
    for i, graph in enumerate(graphs):
        n = graph.x.shape[0]
        xs.append(graph.x)
        edges.append(graph.edge_index + offset)
        attrs.append(graph.edge_attr)
        batch.append(torch.full((n,), i, dtype=torch.long))
        offset += n
    return {
        "x": torch.cat(xs).to(dtype),
        "edge_index": torch.cat(edges, dim=1),
        "edge_attr": torch.cat(attrs).to(dtype),
        "batch": torch.cat(batch),
        "num_graphs": len(graphs),
    }


def fingerprints_from_smiles(model: NeuralFingerprint, smiles: Sequence[str], *, batch_size: int = 256):
    """``[n_valid, fp_length]`` neural fingerprints of the SMILES RDKit parses (no gradient), and the data
    layer's ``MoleculeReport``: invalid rows are skipped, listed with their reason, and warned about."""
    from papers.chem.data import featurize_smiles

    graphs, report = featurize_smiles(list(smiles))
    dtype = next(model.parameters()).dtype
    rows = []
    with torch.no_grad():
        for start in range(0, len(graphs), batch_size):
            batch = collate(graphs[start : start + batch_size], dtype)
            rows.append(model(**batch))
    fps = torch.cat(rows) if rows else torch.zeros(0, model.fp_length, dtype=dtype)
    return fps, report


def tanimoto_distances(a: Tensor, b: Tensor | None = None) -> Tensor:
    """Pairwise 1 − Σ min(a_i, b_i) / Σ max(a_i, b_i) (continuous Tanimoto; on 0/1 bits the usual
    Jaccard distance). ``[n, m]`` for ``a`` [n, d], ``b`` [m, d] (``b = a`` if omitted); 0 for two zeros."""
    b = a if b is None else b
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [n, d] and [m, d] fingerprints, got {tuple(a.shape)} and {tuple(b.shape)}")
    if (a < 0).any() or (b < 0).any():
        raise ValueError("Tanimoto distance needs non-negative fingerprints")
    rows = []
    for start in range(0, a.shape[0], 64):  # [64, m, d] at a time
        block = a[start : start + 64, None, :]
        low = torch.minimum(block, b[None]).sum(-1)
        high = torch.maximum(block, b[None]).sum(-1)
        rows.append(torch.where(high > 0, 1 - low / high.clamp_min(1e-30), torch.zeros_like(high)))
    return torch.cat(rows)


def pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double().flatten(), y.double().flatten()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-300))


class MLPHead(nn.Module):
    """The regression head shared by both fingerprints: Linear → ReLU → Linear to one number."""

    def __init__(self, in_features: int, hidden: int = 100):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, fp: Tensor) -> Tensor:
        return self.net(fp).squeeze(-1)


class NeuralFingerprintRegressor(nn.Module):
    """A trained neural fingerprint followed by :class:`MLPHead` (the paper's end-to-end model)."""

    def __init__(self, atom_features: int, bond_features: int, *, head_hidden: int = 100, **fp_options):
        super().__init__()
        self.fingerprint = NeuralFingerprint(atom_features, bond_features, **fp_options)
        self.head = MLPHead(self.fingerprint.fp_length, head_hidden)

    def forward(self, x, edge_index, edge_attr, batch, num_graphs=None) -> Tensor:
        return self.head(self.fingerprint(x, edge_index, edge_attr, batch, num_graphs))
