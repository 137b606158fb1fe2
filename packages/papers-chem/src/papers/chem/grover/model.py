"""GROVER at small scale: the node-view and the edge-view GTransformer, whose Q, K and V come from
dynamic message passing, and the self-supervised tasks (contextual property prediction for atoms and
bonds, motif prediction).

Inputs are PyG graphs from :func:`papers.chem.data.smiles_to_graph` (``x``, ``edge_index`` with both
directions of every bond, ``edge_attr``, ``batch``). The node view keeps states on atoms and passes
messages over atoms; the edge view keeps states on directed bonds and passes messages over the line
graph (bond u->v hears from the bonds w->u with w != v, as in D-MPNN). Attention runs over the atoms
(node view) or the directed bonds (edge view) of each molecule only (``to_dense_batch`` and a key mask).
Each view has an ``aggregate2node`` and an ``aggregate2edge`` output, so there are four embedding
sets: ``atom_from_atom``, ``bond_from_atom`` (node view), ``atom_from_bond``, ``bond_from_bond`` (edge
view), named as in the authors' code. ``views="node"`` builds the node view alone (the earlier,
reduced model of this folder).
"""

from __future__ import annotations

import math
from collections import Counter

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# ------------------------------------------------------------------------------------------- labels
_FRAGMENT_NAMES: tuple[str, ...] | None = None


def fragment_names() -> tuple[str, ...]:
    """The 85 ``rdkit.Chem.Fragments`` functional-group counters (``fr_*``), sorted by name."""
    global _FRAGMENT_NAMES
    if _FRAGMENT_NAMES is None:
        from rdkit.Chem import Fragments

        _FRAGMENT_NAMES = tuple(sorted(n for n in dir(Fragments) if n.startswith("fr_")))
    return _FRAGMENT_NAMES


def motif_labels(mol) -> list[float]:
    """Multi-label motif target: 1.0 where the molecule contains the functional group, for each fr_*."""
    from rdkit.Chem import Fragments

    return [float(getattr(Fragments, name)(mol) > 0) for name in fragment_names()]


def atom_contexts(mol) -> list[str]:
    """The k=1 contextual property of every atom, as in the paper: the centre's element, then each
    (neighbour element, bond type) with its count, sorted: ``C_N-DOUBLE1_O-SINGLE1``."""
    out = []
    for atom in mol.GetAtoms():
        counts = Counter(
            (bond.GetOtherAtom(atom).GetSymbol(), str(bond.GetBondType())) for bond in atom.GetBonds()
        )
        parts = [f"{element}-{bond}{count}" for (element, bond), count in sorted(counts.items())]
        out.append("_".join([atom.GetSymbol(), *parts]))
    return out


def bond_contexts(mol) -> list[str]:
    """The k=1 contextual property of every bond (RDKit bond order): its type and sorted end elements,
    then each other bond at either end as (far element, bond type) with its count, sorted:
    ``C-O-DOUBLE_C-SINGLE1_O-SINGLE1`` for the C=O of acetic acid."""
    out = []
    for bond in mol.GetBonds():
        ends = (bond.GetBeginAtom(), bond.GetEndAtom())
        counts = Counter(
            (other.GetOtherAtom(atom).GetSymbol(), str(other.GetBondType()))
            for atom in ends
            for other in atom.GetBonds()
            if other.GetIdx() != bond.GetIdx()
        )
        centre = "-".join([*sorted(a.GetSymbol() for a in ends), str(bond.GetBondType())])
        parts = [f"{element}-{kind}{count}" for (element, kind), count in sorted(counts.items())]
        out.append("_".join([centre, *parts]))
    return out


class ContextVocabulary:
    """The ``size`` most frequent contexts as classes ``1..size``; class 0 is "other" (rare/unseen)."""

    def __init__(self, contexts: list[str], size: int):
        if size < 1:
            raise ValueError(f"context vocabulary size must be >= 1, got {size}")
        counts = Counter(contexts)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:size]
        self.classes = ["<other>"] + [name for name, _ in ranked]
        self.index = {name: i for i, name in enumerate(self.classes)}

    def __len__(self) -> int:
        return len(self.classes)

    def encode(self, contexts: list[str]) -> list[int]:
        return [self.index.get(c, 0) for c in contexts]


# --------------------------------------------------------------------------------------- mechanism
VIEWS = ("node", "edge", "both")


def _check_graph(x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must have shape (atoms, features), got {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must have shape (2, edges), got {tuple(edge_index.shape)}")
    if edge_attr.dim() != 2 or edge_attr.shape[0] != edge_index.shape[1]:
        raise ValueError(
            f"edge_attr must have shape ({edge_index.shape[1]}, features), got {tuple(edge_attr.shape)}"
        )
    if batch.shape != (x.shape[0],):
        raise ValueError(f"batch must have shape ({x.shape[0]},), got {tuple(batch.shape)}")


def reverse_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """``rev[e]`` = the index of the directed edge v->u for each edge e = u->v; every bond must be
    present in both directions (as :func:`papers.chem.data.smiles_to_graph` writes them)."""
    source, target = edge_index
    keys = source * num_nodes + target
    wanted = target * num_nodes + source
    order = keys.argsort()
    sorted_keys = keys[order]
    position = torch.searchsorted(sorted_keys, wanted).clamp(max=max(len(keys) - 1, 0))
    if len(keys) and not torch.equal(sorted_keys[position], wanted):
        raise ValueError("edge_index must hold every bond in both directions (u->v and v->u)")
    return order[position]


def line_graph_sum(b: Tensor, edge_index: Tensor, reverse: Tensor, num_nodes: int) -> Tensor:
    """For each directed bond u->v: Σ_{w->u, w != v} b_wu (the incoming bonds of u less the reverse)."""
    source, target = edge_index
    incoming = b.new_zeros(num_nodes, b.shape[1]).index_add_(0, target, b)
    return incoming[source] - b[reverse]


def _attention(q: Tensor, k: Tensor, v: Tensor, batch: Tensor, heads: int, dropout: nn.Module) -> Tensor:
    """Scaled dot-product attention of each row over the rows of the same molecule (``batch``)."""
    from torch_geometric.utils import to_dense_batch

    dense_q, mask = to_dense_batch(q, batch)
    dense_k, _ = to_dense_batch(k, batch)
    dense_v, _ = to_dense_batch(v, batch)
    graphs, rows, hidden = dense_q.shape
    split = hidden // heads

    def per_head(t: Tensor) -> Tensor:
        return t.view(graphs, rows, heads, split).transpose(1, 2)

    scores = per_head(dense_q) @ per_head(dense_k).transpose(-1, -2) / math.sqrt(split)
    scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    weights = dropout(scores.softmax(-1))
    attended = (weights @ per_head(dense_v)).transpose(1, 2).reshape(graphs, rows, hidden)
    return attended[mask]


class DyMPN(nn.Module):
    """Message passing with a number of hops chosen per call (GROVER's dyMPN), node view:

        m_v^(k) = Σ_{u ∈ N(v)} W_m [h_u^(k) ; e_uv],   h_v^(k+1) = ReLU(W_s h_v^(k) + m_v^(k))

    No per-hop residual: GROVER's long-range residual goes from the layer input to its output."""

    def __init__(self, hidden: int, edge_features: int):
        super().__init__()
        self.message = nn.Linear(hidden + edge_features, hidden)
        self.self_loop = nn.Linear(hidden, hidden, bias=False)

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, hops: int) -> Tensor:
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        source, target = edge_index
        for _ in range(hops):
            messages = self.message(torch.cat([h[source], edge_attr], dim=1))
            aggregated = torch.zeros_like(h).index_add_(0, target, messages)
            h = F.relu(self.self_loop(h) + aggregated)
        return h


class EdgeDyMPN(nn.Module):
    """dyMPN of the edge view, on the line graph (D-MPNN's directed-bond messages):

    m_uv^(k) = Σ_{w->u, w != v} b_wu^(k),   b_uv^(k+1) = ReLU(W_s b_uv^(k) + W_m m_uv^(k))"""

    def __init__(self, hidden: int):
        super().__init__()
        self.message = nn.Linear(hidden, hidden)
        self.self_loop = nn.Linear(hidden, hidden, bias=False)

    def forward(self, b: Tensor, edge_index: Tensor, reverse: Tensor, num_nodes: int, hops: int) -> Tensor:
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        for _ in range(hops):
            b = F.relu(self.self_loop(b) + self.message(line_graph_sum(b, edge_index, reverse, num_nodes)))
        return b


class GTransformer(nn.Module):
    """Node-view GTransformer layer: Q, K, V = dyMPN_q(h), dyMPN_k(h), dyMPN_v(h); multi-head attention
    over the atoms of each molecule; long-range residual h_out = LayerNorm(W_o · MHA + W_r · h);
    then aggregate2node (atom embeddings) and aggregate2edge (directed-bond embeddings)."""

    def __init__(self, hidden: int, edge_features: int, *, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.ModuleList([DyMPN(hidden, edge_features) for _ in range(3)])
        self.out = nn.Linear(hidden, hidden)
        self.residual = nn.Linear(hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.node_ffn = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.edge_ffn = nn.Sequential(
            nn.Linear(hidden + edge_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )

    def attention(self, q: Tensor, k: Tensor, v: Tensor, batch: Tensor) -> Tensor:
        """Scaled dot-product attention of each atom over the atoms of its own molecule."""
        return _attention(q, k, v, batch, self.heads, self.dropout)

    def forward(
        self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, hops: int
    ) -> tuple[Tensor, Tensor]:
        q, k, v = (mpn(h, edge_index, edge_attr, hops) for mpn in self.qkv)
        h_out = self.norm(self.dropout(self.out(self.attention(q, k, v, batch))) + self.residual(h))
        source, target = edge_index
        neighbours = torch.zeros_like(h_out).index_add_(0, target, h_out[source])
        node = self.node_ffn(torch.cat([h_out, neighbours], dim=1))  # aggregate2node
        edge = self.edge_ffn(torch.cat([h_out[source], edge_attr], dim=1))  # aggregate2edge (u -> v)
        return node, edge


class EdgeGTransformer(nn.Module):
    """Edge-view GTransformer layer: states b on directed bonds; Q, K, V from three edge dyMPNs; attention
    over the directed bonds of each molecule; b_out = LayerNorm(W_o · MHA + W_r · b); then

        aggregate2edge:  bond_from_bond_uv = FFN([b_out_uv ; Σ_{w->u, w != v} b_out_wu])
        aggregate2node:  atom_from_bond_v  = FFN([Σ_{w->v} b_out_wv ; x_v])"""

    def __init__(self, hidden: int, atom_features: int, *, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.ModuleList([EdgeDyMPN(hidden) for _ in range(3)])
        self.out = nn.Linear(hidden, hidden)
        self.residual = nn.Linear(hidden, hidden, bias=False)
        self.norm = nn.LayerNorm(hidden)
        self.dropout = nn.Dropout(dropout)
        self.edge_ffn = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.node_ffn = nn.Sequential(
            nn.Linear(hidden + atom_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden)
        )

    def attention(self, q: Tensor, k: Tensor, v: Tensor, bond_batch: Tensor) -> Tensor:
        """Scaled dot-product attention of each directed bond over the bonds of its own molecule."""
        return _attention(q, k, v, bond_batch, self.heads, self.dropout)

    def forward(
        self, b: Tensor, x: Tensor, edge_index: Tensor, reverse: Tensor, bond_batch: Tensor, hops: int
    ) -> tuple[Tensor, Tensor]:
        atoms = x.shape[0]
        q, k, v = (mpn(b, edge_index, reverse, atoms, hops) for mpn in self.qkv)
        b_out = self.norm(self.dropout(self.out(self.attention(q, k, v, bond_batch))) + self.residual(b))
        edge = self.edge_ffn(torch.cat([b_out, line_graph_sum(b_out, edge_index, reverse, atoms)], dim=1))
        incoming = b_out.new_zeros(atoms, b_out.shape[1]).index_add_(0, edge_index[1], b_out)
        node = self.node_ffn(torch.cat([incoming, x], dim=1))
        return node, edge


def sample_hops(mean: float, std: float, low: int, high: int, generator: torch.Generator) -> int:
    """A hop count from a rounded normal N(mean, std²) truncated to [low, high] (the paper's φ)."""
    if not 1 <= low <= high:
        raise ValueError(f"hop range must satisfy 1 <= low <= high, got [{low}, {high}]")
    for _ in range(100):
        value = round(mean + std * torch.randn((), generator=generator).item())
        if low <= value <= high:
            return value
    return min(max(round(mean), low), high)


class GroverEncoder(nn.Module):
    """Atom/bond features -> node-view and/or edge-view GTransformer layers -> embedding sets:

    ``atom_from_atom`` (atoms) and ``bond_from_atom`` (directed bonds) from the node view,
    ``atom_from_bond`` (atoms) and ``bond_from_bond`` (directed bonds) from the edge view.
    Node view: h⁰ = ReLU(W x_v); edge view: b⁰_uv = ReLU(W [x_u ; e_uv])."""

    def __init__(
        self,
        atom_features: int,
        edge_features: int,
        *,
        hidden: int = 64,
        layers: int = 1,
        heads: int = 4,
        dropout: float = 0.0,
        hops_mean: float = 2.0,
        hops_std: float = 1.0,
        hops_range: tuple[int, int] = (1, 3),
        views: str = "both",
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        if views not in VIEWS:
            raise ValueError(f"views must be one of {VIEWS}, got {views!r}")
        self.atom_features, self.edge_features, self.hidden = atom_features, edge_features, hidden
        self.views = views
        self.hops_mean, self.hops_std, self.hops_range = hops_mean, hops_std, tuple(hops_range)
        sample_hops(hops_mean, 0.0, *self.hops_range, torch.Generator())  # validates the range
        self.node_view = views in ("node", "both")
        self.edge_view = views in ("edge", "both")
        if self.node_view:  # created first: views="node" initialises exactly as the earlier model
            self.embed = nn.Linear(atom_features, hidden)
            self.layers = nn.ModuleList(
                [GTransformer(hidden, edge_features, heads=heads, dropout=dropout) for _ in range(layers)]
            )
        if self.edge_view:
            self.embed_edge = nn.Linear(atom_features + edge_features, hidden)
            self.edge_layers = nn.ModuleList(
                [EdgeGTransformer(hidden, atom_features, heads=heads, dropout=dropout) for _ in range(layers)]
            )

    def eval_hops(self) -> int:
        return min(max(round(self.hops_mean), self.hops_range[0]), self.hops_range[1])

    def _hops(self, generator) -> int:
        if self.training and generator is not None:
            return sample_hops(self.hops_mean, self.hops_std, *self.hops_range, generator)
        return self.eval_hops()

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, generator=None
    ) -> dict[str, Tensor]:
        """Training mode with a ``generator``: hops drawn per layer and view; otherwise the mean."""
        _check_graph(x, edge_index, edge_attr, batch)
        if x.shape[1] != self.atom_features or edge_attr.shape[1] != self.edge_features:
            raise ValueError(
                f"expected {self.atom_features} atom / {self.edge_features} bond features, "
                f"got {x.shape[1]} / {edge_attr.shape[1]}"
            )
        out = {}
        if self.node_view:
            h = F.relu(self.embed(x))
            for layer in self.layers:
                node, edge = layer(h, edge_index, edge_attr, batch, self._hops(generator))
                h = node
            out["atom_from_atom"], out["bond_from_atom"] = node, edge
        if self.edge_view:
            reverse = reverse_edges(edge_index, x.shape[0])
            source = edge_index[0]
            b = F.relu(self.embed_edge(torch.cat([x[source], edge_attr], dim=1)))
            for layer in self.edge_layers:
                node, edge = layer(b, x, edge_index, reverse, batch[source], self._hops(generator))
                b = edge
            out["atom_from_bond"], out["bond_from_bond"] = node, edge
        return out


def mean_pool(h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    total = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype).index_add_(0, batch, h)
    count = torch.zeros(num_graphs, dtype=h.dtype).index_add_(0, batch, torch.ones_like(batch, dtype=h.dtype))
    return total / count.clamp(min=1)[:, None]


def to_atoms(bonds: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """Σ of directed-bond rows into their target atoms."""
    return bonds.new_zeros(num_nodes, bonds.shape[1]).index_add_(0, edge_index[1], bonds)


def prediction_inputs(embeddings: dict[str, Tensor], data) -> dict[str, tuple[str, Tensor, Tensor]]:
    """name -> (level, embedding, row-to-graph index) for the self-supervised heads.

    views="node" (the earlier reduced model): ``atom_from_atom`` and ``bond_from_atom`` summed into
    atoms, both atom level. Otherwise as in the paper: atom-level ``atom_from_*`` and bond-level
    ``bond_from_*`` for each view present."""
    atoms, source = data.num_nodes, data.edge_index[0]
    if "atom_from_bond" not in embeddings:
        summed = to_atoms(embeddings["bond_from_atom"], data.edge_index, atoms)
        return {
            "node": ("atom", embeddings["atom_from_atom"], data.batch),
            "edge": ("atom", summed, data.batch),
        }
    out = {}
    for name, emb in embeddings.items():
        level = "atom" if name.startswith("atom") else "bond"
        out[name] = (level, emb, data.batch if level == "atom" else data.batch[source])
    return out


class GroverPretrainer(nn.Module):
    """The encoder with GROVER's self-supervised heads on every embedding set:

    L = Σ_atom-level CE(W h_v, c_v) + Σ_bond-level CE(W' h_uv, c_uv)   (means over atoms / bonds)
      + Σ_all BCE(U mean_pool h, m)                                  (mean over molecules, 85 groups)"""

    def __init__(self, encoder: GroverEncoder, contexts: int, motifs: int, bond_contexts: int | None = None):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.hidden
        if encoder.views == "node":
            names = {"node": "atom", "edge": "atom"}
        else:
            names = {}
            if encoder.node_view:
                names.update(atom_from_atom="atom", bond_from_atom="bond")
            if encoder.edge_view:
                names.update(atom_from_bond="atom", bond_from_bond="bond")
            if bond_contexts is None:
                raise ValueError("bond_contexts (bond vocabulary size) is needed when the edge view is on")
        self.levels = names
        self.context_heads = nn.ModuleDict(
            {n: nn.Linear(hidden, contexts if lvl == "atom" else bond_contexts) for n, lvl in names.items()}
        )
        self.motif_heads = nn.ModuleDict({n: nn.Linear(hidden, motifs) for n in names})

    def forward(self, data, generator=None) -> dict[str, Tensor]:
        embeddings = self.encoder(data.x, data.edge_index, data.edge_attr, data.batch, generator)
        out = {}
        for name, (_, emb, index) in prediction_inputs(embeddings, data).items():
            out[f"context_{name}"] = self.context_heads[name](emb)
            out[f"motif_{name}"] = self.motif_heads[name](mean_pool(emb, index, data.num_graphs))
        return out

    def loss(self, data, generator=None) -> dict[str, Tensor]:
        out = self(data, generator)
        context = sum(
            F.cross_entropy(out[f"context_{n}"], data.context if lvl == "atom" else data.bond_context)
            for n, lvl in self.levels.items()
        )
        motif = sum(F.binary_cross_entropy_with_logits(out[f"motif_{n}"], data.motif) for n in self.levels)
        return {"loss": context + motif, "context": context, "motif": motif, **out}


class GroverRegressor(nn.Module):
    """Fine-tuning model.

    views="both" (the paper): one MLP on the mean-pooled ``atom_from_atom`` and one on the mean-pooled
    ``atom_from_bond``; the prediction is their average, and training adds a disagreement term:
    L = MSE(ŷ_node, y) + MSE(ŷ_edge, y) + λ MSE(ŷ_node, ŷ_edge).
    views="node" / "edge": one MLP on [mean atom_from_X ; mean of bond_from_X summed into atoms]."""

    def __init__(self, encoder: GroverEncoder, *, head_hidden: int = 64, tasks: int = 1):
        super().__init__()
        self.encoder = encoder
        width = encoder.hidden if encoder.views == "both" else 2 * encoder.hidden
        count = 2 if encoder.views == "both" else 1
        self.heads = nn.ModuleList(
            [
                nn.Sequential(nn.Linear(width, head_hidden), nn.ReLU(), nn.Linear(head_hidden, tasks))
                for _ in range(count)
            ]
        )

    def predictions(self, data, generator=None) -> list[Tensor]:
        emb = self.encoder(data.x, data.edge_index, data.edge_attr, data.batch, generator)
        graphs, atoms = data.num_graphs, data.num_nodes

        def pool(t: Tensor) -> Tensor:
            return mean_pool(t, data.batch, graphs)

        if self.encoder.views == "both":
            inputs = [pool(emb["atom_from_atom"]), pool(emb["atom_from_bond"])]
        else:
            atom, bond = (
                ("atom_from_atom", "bond_from_atom")
                if self.encoder.node_view
                else (
                    "atom_from_bond",
                    "bond_from_bond",
                )
            )
            inputs = [torch.cat([pool(emb[atom]), pool(to_atoms(emb[bond], data.edge_index, atoms))], dim=1)]
        return [head(t) for head, t in zip(self.heads, inputs, strict=True)]

    def forward(self, data, generator=None) -> Tensor:
        preds = self.predictions(data, generator)
        return sum(preds) / len(preds)

    def loss(self, data, target: Tensor, generator=None, disagreement: float = 0.1) -> Tensor:
        """Σ_heads MSE(ŷ_head, y) (+ λ MSE between the two heads' predictions when there are two)."""
        preds = [p[:, 0] for p in self.predictions(data, generator)]
        loss = sum(F.mse_loss(p, target) for p in preds)
        if len(preds) == 2:
            loss = loss + disagreement * F.mse_loss(preds[0], preds[1])
        return loss
