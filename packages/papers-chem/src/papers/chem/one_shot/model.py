"""Matching networks with graph-convolution embeddings and three ways to condition the embeddings on
the support set: none (siamese), AttnLSTM (query refined, Vinyals et al. 2016 / DeepChem) and the
IterRefLSTM of Altae-Tran et al. (2017), which refines query and support symmetrically.

Shapes: ``query`` [Q, d] embeddings f'(x), ``support`` [n, d] embeddings g'(S), ``labels`` [n] in {0, 1}.
Every refinement is equivariant in the support order (only attention over the support set touches it)
and treats each query independently of the other queries.

Encoder (DeepChem's GraphConv model used by the paper): three degree-specific graph convolutions
(64, 128, 64 channels), each followed by batch norm and a graph max-pool over the atom and its
neighbours, a dense layer of 128 with tanh, batch norm, and a graph gather over the atoms followed by
tanh. DeepChem's gather sums the atoms (the default); tanh of a sum of ~20 unit-variance atom
vectors is largely saturated at ±1, and ``gather="mean"`` averages the atoms instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

REFINEMENTS = ("siamese", "attn_lstm", "iter_ref")


# ------------------------------------------------------------------------------------------ encoder
class GraphConv(nn.Module):
    """h_v' = relu(W_self[d_v] h_v + W_nbr[d_v] Σ_{u ∈ N(v)} h_u + b[d_v]), one weight pair per degree."""

    def __init__(self, in_features: int, out_features: int, max_degree: int = 6):
        super().__init__()
        if in_features < 1 or out_features < 1 or max_degree < 0:
            raise ValueError(
                f"GraphConv needs in/out features >= 1 and max_degree >= 0, got "
                f"{in_features}, {out_features}, {max_degree}"
            )
        self.max_degree = max_degree
        bound = (6 / (in_features + out_features)) ** 0.5  # Glorot uniform
        self.self_weight = nn.Parameter(
            torch.empty(max_degree + 1, in_features, out_features).uniform_(-bound, bound)
        )
        self.neighbour_weight = nn.Parameter(
            torch.empty(max_degree + 1, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.zeros(max_degree + 1, out_features))

    def forward(self, h: Tensor, edge_index: Tensor, degree: Tensor) -> Tensor:
        source, target = edge_index
        neighbours = h.new_zeros(h.shape).index_add_(0, target, h[source])
        out = h.new_zeros(h.shape[0], self.bias.shape[1])
        for d in torch.unique(degree).tolist():
            rows = (degree == d).nonzero(as_tuple=True)[0]
            value = h[rows] @ self.self_weight[d] + neighbours[rows] @ self.neighbour_weight[d] + self.bias[d]
            out = out.index_copy(0, rows, value)
        return torch.relu(out)


def graph_pool(h: Tensor, edge_index: Tensor) -> Tensor:
    """Max over each atom and its neighbours (DeepChem GraphPool)."""
    source, target = edge_index
    index = target[:, None].expand(-1, h.shape[1])
    return h.scatter_reduce(0, index, h[source], reduce="amax", include_self=True)


class GraphEncoder(nn.Module):
    """f'(x) = g'(x): [num_graphs, embedding] molecule embeddings in (-1, 1) from a flat graph batch."""

    def __init__(
        self,
        atom_features: int,
        *,
        channels: Sequence[int] = (64, 128, 64),
        embedding: int = 128,
        max_degree: int = 6,
        gather: str = "sum",
    ):
        super().__init__()
        if gather not in ("sum", "mean"):
            raise ValueError(f"gather must be 'sum' or 'mean', got {gather!r}")
        self.gather = gather
        if atom_features < 1 or embedding < 1 or not channels or min(channels) < 1:
            raise ValueError(
                f"atom_features, embedding and channels must be >= 1, got {atom_features}, {embedding}, "
                f"{tuple(channels)}"
            )
        self.atom_features, self.max_degree, self.embedding = atom_features, max_degree, embedding
        widths = [atom_features, *channels]
        self.convs = nn.ModuleList(
            GraphConv(a, b, max_degree) for a, b in zip(widths, widths[1:], strict=False)
        )
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in channels)
        self.dense = nn.Linear(channels[-1], embedding)
        self.dense_norm = nn.BatchNorm1d(embedding)

    def forward(self, x: Tensor, edge_index: Tensor, batch: Tensor, num_graphs: int, **_) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.atom_features:
            raise ValueError(f"x must be [num_atoms, {self.atom_features}], got {tuple(x.shape)}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, num_edges], got {tuple(edge_index.shape)}")
        degree = torch.bincount(edge_index[1], minlength=x.shape[0])
        if len(degree) and int(degree.max()) > self.max_degree:
            raise ValueError(
                f"an atom has {int(degree.max())} neighbours, more than max_degree={self.max_degree}"
            )
        h = x
        for conv, norm in zip(self.convs, self.norms, strict=True):
            h = graph_pool(norm(conv(h, edge_index, degree)), edge_index)
        h = self.dense_norm(torch.tanh(self.dense(h)))
        total = h.new_zeros(num_graphs, self.embedding).index_add_(0, batch, h)
        if self.gather == "sum":
            return torch.tanh(total)
        atoms = torch.bincount(batch, minlength=num_graphs).clamp(min=1)
        return torch.tanh(total / atoms[:, None].to(h.dtype))


# ------------------------------------------------------------------------------- matching networks
def cosine(a: Tensor, b: Tensor) -> Tensor:
    """k(a, b): [len(a), len(b)] cosine similarities."""
    return F.normalize(a, dim=-1, eps=1e-8) @ F.normalize(b, dim=-1, eps=1e-8).T


def attention_readout(keys_from: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Σ_j softmax_j k(keys_from, keys_j) values_j (row-wise)."""
    return torch.softmax(cosine(keys_from, keys), dim=1) @ values


def matching_probability(query: Tensor, support: Tensor, labels: Tensor) -> Tensor:
    """P(y = 1 | x, S) = Σ_i a(x, x_i) y_i with a = softmax over the support of cosine similarities."""
    return attention_readout(query, support, labels[:, None].to(query.dtype))[:, 0]


class AttnLSTM(nn.Module):
    """Query refinement of matching networks' full context embedding (DeepChem AttnLSTMEmbedding):

    q_0 = 0;  for l = 1..L:  r = Σ_j softmax_j k(f'(x) + q, g'(S))_j g'(x_j);  q, c = LSTM([q, r], (q, c))
    f(x) = f'(x) + q,   g(S) = g'(S)   (the support is not changed).
    """

    def __init__(self, dim: int, steps: int):
        super().__init__()
        if dim < 1 or steps < 1:
            raise ValueError(f"dim and steps must be >= 1, got {dim}, {steps}")
        self.steps = steps
        self.cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
        q = torch.zeros_like(query)
        c = torch.zeros_like(query)
        for _ in range(self.steps):
            r = attention_readout(query + q, support, support)
            q, c = self.cell(torch.cat([q, r], dim=1), (q, c))
        return query + q, support


class IterRefLSTM(nn.Module):
    """Iterative refinement LSTM (Altae-Tran et al. 2017), query and support refined symmetrically:

    z = 0 [Q, d], Z = 0 [n, d];  for l = 1..L:
        e = k(f'(x) + z, g'(S) + Z);  a = softmax(e);  r = a (g'(S) + Z)        query reads the support
        A = k(g'(S) + Z, g'(S));      B = row-softmax(A);  R = B g'(S)         support reads itself
        z = LSTM_q([z, r])                                                       (the LSTM's output
        Z = LSTM_S([Z, R])                                                        replaces z and Z)
    f(x) = f'(x) + z,   g(S) = g'(S) + Z.
    """

    def __init__(self, dim: int, steps: int):
        super().__init__()
        if dim < 1 or steps < 1:
            raise ValueError(f"dim and steps must be >= 1, got {dim}, {steps}")
        self.steps = steps
        self.query_cell = nn.LSTMCell(2 * dim, dim)
        self.support_cell = nn.LSTMCell(2 * dim, dim)

    def forward(self, query: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
        z, Z = torch.zeros_like(query), torch.zeros_like(support)
        query_state = (torch.zeros_like(query), torch.zeros_like(query))
        support_state = (torch.zeros_like(support), torch.zeros_like(support))
        for _ in range(self.steps):
            r = attention_readout(query + z, support + Z, support + Z)
            R = attention_readout(support + Z, support, support)
            query_state = self.query_cell(torch.cat([z, r], dim=1), query_state)
            support_state = self.support_cell(torch.cat([Z, R], dim=1), support_state)
            z, Z = query_state[0], support_state[0]
        return query + z, support + Z


class Siamese(nn.Module):
    """No refinement: f = f', g = g' (cosine attention over the unconditioned embeddings)."""

    def forward(self, query: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
        return query, support


class MatchingNetwork(nn.Module):
    """Graph-conv encoder + refinement (``siamese``, ``attn_lstm`` or ``iter_ref``) + attention classifier."""

    def __init__(
        self,
        atom_features: int,
        refinement: str = "iter_ref",
        *,
        steps: int = 3,
        channels: Sequence[int] = (64, 128, 64),
        embedding: int = 128,
        max_degree: int = 6,
        gather: str = "sum",
    ):
        super().__init__()
        if refinement not in REFINEMENTS:
            raise ValueError(f"refinement must be one of {REFINEMENTS}, got {refinement!r}")
        self.encoder = GraphEncoder(
            atom_features, channels=channels, embedding=embedding, max_degree=max_degree, gather=gather
        )
        self.refinement_name = refinement
        if refinement == "siamese":
            self.refine = Siamese()
        elif refinement == "attn_lstm":
            self.refine = AttnLSTM(embedding, steps)
        else:
            self.refine = IterRefLSTM(embedding, steps)

    def classify(self, query: Tensor, support: Tensor, labels: Tensor) -> Tensor:
        """P(y = 1) of each query from embeddings: refine, then attention over the support labels."""
        if query.dim() != 2 or support.dim() != 2 or query.shape[1] != support.shape[1]:
            raise ValueError(
                "query and support must be [Q, d] and [n, d], got "
                f"{tuple(query.shape)}, {tuple(support.shape)}"
            )
        if labels.shape != (support.shape[0],):
            raise ValueError(f"labels must have shape ({support.shape[0]},), got {tuple(labels.shape)}")
        f, g = self.refine(query, support)
        return matching_probability(f, g, labels)

    def forward(self, graphs: dict, num_support: int, labels: Tensor) -> Tensor:
        """``graphs``: one collated batch, the support molecules first, then the queries."""
        embedded = self.encoder(**graphs)
        return self.classify(embedded[num_support:], embedded[:num_support], labels)


def matching_loss(probability: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """Binary cross-entropy of the matching probability (clamped away from 0 and 1)."""
    if probability.shape != target.shape:
        raise ValueError(f"probability {tuple(probability.shape)} and target {tuple(target.shape)} differ")
    return F.binary_cross_entropy(probability.clamp(eps, 1 - eps), target.to(probability.dtype))
