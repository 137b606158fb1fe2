"""GROVER at small scale: a node-view GTransformer whose Q, K and V come from dynamic message passing,
and the two self-supervised tasks (contextual property prediction, motif prediction).

Inputs are PyG graphs from :func:`papers.chem.data.smiles_to_graph` (``x``, ``edge_index`` with both
directions of every bond, ``edge_attr``, ``batch``). Attention runs over the atoms of each molecule only
(``to_dense_batch`` and a key mask).

Deviation from the paper: only the node-view GTransformer is built (the paper also has an edge-view
GTransformer whose hidden states live on directed bonds); its two outputs are kept, though:
``aggregate2node`` (atom embeddings) and ``aggregate2edge`` (bond embeddings, summed into their target
atoms), and both predict the context and motif labels as in the paper.
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


class DyMPN(nn.Module):
    """Message passing with a number of hops chosen per call (GROVER's dyMPN):

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
        from torch_geometric.utils import to_dense_batch

        dense_q, mask = to_dense_batch(q, batch)
        dense_k, _ = to_dense_batch(k, batch)
        dense_v, _ = to_dense_batch(v, batch)
        graphs, atoms, hidden = dense_q.shape
        split = hidden // self.heads

        def heads(t: Tensor) -> Tensor:
            return t.view(graphs, atoms, self.heads, split).transpose(1, 2)

        scores = heads(dense_q) @ heads(dense_k).transpose(-1, -2) / math.sqrt(split)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = self.dropout(scores.softmax(-1))
        attended = (weights @ heads(dense_v)).transpose(1, 2).reshape(graphs, atoms, hidden)
        return attended[mask]

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
    """Atom features -> GTransformer layers -> (atom embeddings, edge-derived atom embeddings)."""

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
    ):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be >= 1, got {layers}")
        self.atom_features, self.edge_features, self.hidden = atom_features, edge_features, hidden
        self.hops_mean, self.hops_std, self.hops_range = hops_mean, hops_std, tuple(hops_range)
        sample_hops(hops_mean, 0.0, *self.hops_range, torch.Generator())  # validates the range
        self.embed = nn.Linear(atom_features, hidden)
        self.layers = nn.ModuleList(
            [GTransformer(hidden, edge_features, heads=heads, dropout=dropout) for _ in range(layers)]
        )

    def eval_hops(self) -> int:
        return min(max(round(self.hops_mean), self.hops_range[0]), self.hops_range[1])

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_attr: Tensor, batch: Tensor, generator=None
    ) -> tuple[Tensor, Tensor]:
        """Training mode with a ``generator``: hops drawn per layer; otherwise the mean hop count."""
        _check_graph(x, edge_index, edge_attr, batch)
        if x.shape[1] != self.atom_features or edge_attr.shape[1] != self.edge_features:
            raise ValueError(
                f"expected {self.atom_features} atom / {self.edge_features} bond features, "
                f"got {x.shape[1]} / {edge_attr.shape[1]}"
            )
        h = F.relu(self.embed(x))
        for layer in self.layers:
            if self.training and generator is not None:
                hops = sample_hops(self.hops_mean, self.hops_std, *self.hops_range, generator)
            else:
                hops = self.eval_hops()
            node, edge = layer(h, edge_index, edge_attr, batch, hops)
            h = node
        from_edges = torch.zeros_like(node).index_add_(0, edge_index[1], edge)
        return node, from_edges


def mean_pool(h: Tensor, batch: Tensor, num_graphs: int) -> Tensor:
    total = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype).index_add_(0, batch, h)
    count = torch.zeros(num_graphs, dtype=h.dtype).index_add_(0, batch, torch.ones_like(batch, dtype=h.dtype))
    return total / count.clamp(min=1)[:, None]


class GroverPretrainer(nn.Module):
    """The encoder with GROVER's two self-supervised heads on both outputs (node and edge-derived):

    L = Σ_views CE(context_head(h_v), c_v)  (mean over atoms)
      + Σ_views BCE(motif_head(mean_pool h), m)  (mean over molecules and the 85 groups)"""

    def __init__(self, encoder: GroverEncoder, contexts: int, motifs: int):
        super().__init__()
        self.encoder = encoder
        hidden = encoder.hidden
        self.context_node = nn.Linear(hidden, contexts)
        self.context_edge = nn.Linear(hidden, contexts)
        self.motif_node = nn.Linear(hidden, motifs)
        self.motif_edge = nn.Linear(hidden, motifs)

    def forward(self, data, generator=None) -> dict[str, Tensor]:
        node, from_edges = self.encoder(data.x, data.edge_index, data.edge_attr, data.batch, generator)
        graphs = data.num_graphs
        return {
            "context_node": self.context_node(node),
            "context_edge": self.context_edge(from_edges),
            "motif_node": self.motif_node(mean_pool(node, data.batch, graphs)),
            "motif_edge": self.motif_edge(mean_pool(from_edges, data.batch, graphs)),
        }

    def loss(self, data, generator=None) -> dict[str, Tensor]:
        out = self(data, generator)
        context = F.cross_entropy(out["context_node"], data.context) + F.cross_entropy(
            out["context_edge"], data.context
        )
        motif = F.binary_cross_entropy_with_logits(
            out["motif_node"], data.motif
        ) + F.binary_cross_entropy_with_logits(out["motif_edge"], data.motif)
        return {"loss": context + motif, "context": context, "motif": motif, **out}


class GroverRegressor(nn.Module):
    """Fine-tuning model: mean-pooled node and edge-derived embeddings, concatenated, then an MLP."""

    def __init__(self, encoder: GroverEncoder, *, head_hidden: int = 64, tasks: int = 1):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(
            nn.Linear(2 * encoder.hidden, head_hidden), nn.ReLU(), nn.Linear(head_hidden, tasks)
        )

    def forward(self, data, generator=None) -> Tensor:
        node, from_edges = self.encoder(data.x, data.edge_index, data.edge_attr, data.batch, generator)
        graphs = data.num_graphs
        pooled = torch.cat(
            [mean_pool(node, data.batch, graphs), mean_pool(from_edges, data.batch, graphs)], dim=1
        )
        return self.head(pooled)
