"""The message passing neural network (MPNN) of Gilmer et al. (2017): edge network, GRU, set2set.

A graph is given as node features ``x`` ``[N, F]``, directed edges ``edge_index`` ``[2, E]`` (row 0 the
source w, row 1 the target v: a bond appears once in each direction), edge features ``edge_attr``
``[E, B]`` and ``batch`` ``[N]`` (which graph each node belongs to). Equations:

    h_v^0      = (x_v, 0, ..., 0)                       x_v zero-padded to the hidden size d (as the paper)
    A(e)       = reshape(MLP(e), d × d)                 edge network, one d×d matrix per edge vector
    m_v^{t+1}  = Σ_{w ∈ N(v)} A(e_vw) h_w^t            messages (A shared over the T steps)
    h_v^{t+1}  = GRU(h_v^t, m_v^{t+1})                  update, weights shared over the T steps
    set2set:     q_t = LSTM(q*_{t-1}),  a_{v,t} = softmax_v(<h_v^T, q_t>),  r_t = Σ_v a_{v,t} h_v^T,
                 q*_t = (q_t, r_t)  for t = 1..M        readout of size 2d
    ŷ          = MLP(q*_M)

Baseline readouts: ``sum`` (Σ_v h_v^T) and ``mean`` (mean_v h_v^T), each followed by the same kind of MLP.
A bond-blind message is the edge network fed a constant: A is one learned d×d matrix for every bond
(``MPNN(use_edge_features=False)``).

Edge features here are categorical (bond type, conjugation, ring, stereo), so a batch holds only a few
distinct rows; :class:`EdgeNetwork` evaluates the MLP once per distinct row and multiplies each matrix
with the states of the edges of that kind, which is exact and avoids an ``[E, d, d]`` tensor
(``per_edge=True`` forces the direct form; the tests check that both agree).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

READOUTS = ("set2set", "sum", "mean")


def _check_graph(x: Tensor, edge_index: Tensor, edge_attr: Tensor | None, batch: Tensor | None) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must be [num_nodes, features], got shape {tuple(x.shape)}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be [2, num_edges], got shape {tuple(edge_index.shape)}")
    if edge_attr is not None and (edge_attr.dim() != 2 or edge_attr.shape[0] != edge_index.shape[1]):
        raise ValueError(
            f"edge_attr must be [num_edges={edge_index.shape[1]}, features], "
            f"got shape {tuple(edge_attr.shape)}"
        )
    if batch is not None and batch.shape != (x.shape[0],):
        raise ValueError(f"batch must be [num_nodes={x.shape[0]}], got shape {tuple(batch.shape)}")


def _distinct_rows(edge_attr: Tensor) -> tuple[Tensor, Tensor]:
    """The distinct rows of ``edge_attr`` and each row's index among them (``torch.unique(dim=0)``, fast
    for 0/1 features, which are read as binary numbers)."""
    binary = edge_attr.shape[1] <= 52 and bool(((edge_attr == 0) | (edge_attr == 1)).all())
    if not binary:
        return torch.unique(edge_attr, dim=0, return_inverse=True)
    weights = 2.0 ** torch.arange(edge_attr.shape[1], dtype=torch.float64, device=edge_attr.device)
    codes, kind = torch.unique(edge_attr.double() @ weights, return_inverse=True)
    first = torch.full((len(codes),), len(kind), dtype=torch.long, device=kind.device)
    first = first.scatter_reduce(0, kind, torch.arange(len(kind), device=kind.device), "amin")
    return edge_attr[first], kind


class EdgeNetwork(nn.Module):
    """``A(e)``: an MLP from an edge's features to a ``d × d`` matrix; ``forward`` gives the summed messages.

    ``matrices(edge_attr)`` is ``[E, d, d]``; ``forward(h, edge_index, edge_attr)`` is
    ``m_v = Σ_{(w, v) ∈ edges} A(e_wv) h_w`` of shape ``[N, d]`` (0 for a node without edges).
    """

    def __init__(self, edge_features: int, hidden: int, *, edge_hidden: int = 64):
        super().__init__()
        if edge_features < 1 or hidden < 1 or edge_hidden < 1:
            raise ValueError(
                "edge_features, hidden and edge_hidden must be >= 1, "
                f"got {edge_features}, {hidden}, {edge_hidden}"
            )
        self.edge_features, self.hidden = edge_features, hidden
        self.net = nn.Sequential(
            nn.Linear(edge_features, edge_hidden), nn.ReLU(), nn.Linear(edge_hidden, hidden * hidden)
        )

    def matrices(self, edge_attr: Tensor) -> Tensor:
        if edge_attr.dim() != 2 or edge_attr.shape[1] != self.edge_features:
            raise ValueError(
                f"edge_attr must be [num_edges, {self.edge_features}], got shape {tuple(edge_attr.shape)}"
            )
        return self.net(edge_attr).view(-1, self.hidden, self.hidden)

    def propagator(self, edge_index: Tensor, edge_attr: Tensor, *, per_edge: bool = False):
        """``h -> m``, the summed messages over these edges, with the matrices computed once (for T steps)."""
        source, target = edge_index
        if source.numel() == 0:  # no bonds: every message is 0
            return lambda h: h.new_zeros(h.shape)
        if per_edge:
            matrices = self.matrices(edge_attr)  # [E, d, d]

            def propagate(h: Tensor) -> Tensor:
                messages = torch.bmm(matrices, h[source].unsqueeze(-1)).squeeze(-1)
                return h.new_zeros(h.shape).index_add_(0, target, messages)

            return propagate
        # one matrix per distinct edge vector; the edges sorted by it, so each kind is one matmul
        rows, kind = _distinct_rows(edge_attr)
        matrices = self.matrices(rows)  # [K, d, d]
        order = torch.argsort(kind, stable=True)
        counts = torch.bincount(kind, minlength=len(rows)).tolist()
        source, target = source[order], target[order]

        def propagate(h: Tensor) -> Tensor:
            parts = h[source].split(counts)
            messages = torch.cat([part @ matrix.T for part, matrix in zip(parts, matrices, strict=True)])
            return h.new_zeros(h.shape).index_add_(0, target, messages)

        return propagate

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Tensor, *, per_edge: bool = False) -> Tensor:
        return self.propagator(edge_index, edge_attr, per_edge=per_edge)(h)


class Set2Set(nn.Module):
    """Order-invariant readout of Vinyals et al. (2016) with ``steps`` processing steps: ``[G, 2d]``."""

    def __init__(self, hidden: int, steps: int = 3):
        super().__init__()
        if hidden < 1 or steps < 1:
            raise ValueError(f"hidden and steps must be >= 1, got hidden={hidden}, steps={steps}")
        self.hidden, self.steps = hidden, steps
        self.lstm = nn.LSTMCell(2 * hidden, hidden)

    def forward(self, h: Tensor, batch: Tensor, num_graphs: int | None = None) -> Tensor:
        num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
        q_star = h.new_zeros(num_graphs, 2 * self.hidden)
        state = (h.new_zeros(num_graphs, self.hidden), h.new_zeros(num_graphs, self.hidden))
        for _ in range(self.steps):
            state = self.lstm(q_star, state)
            q = state[0]
            score = (h * q[batch]).sum(-1)  # e_v = <h_v, q_graph(v)>
            peak = score.new_full((num_graphs,), -torch.inf).scatter_reduce(0, batch, score, "amax")
            weight = (score - peak[batch]).exp()
            total = weight.new_zeros(num_graphs).index_add_(0, batch, weight)
            attention = weight / total[batch]
            r = h.new_zeros(num_graphs, self.hidden).index_add_(0, batch, attention.unsqueeze(-1) * h)
            q_star = torch.cat([q, r], dim=-1)
        return q_star


class MPNN(nn.Module):
    """Edge-network messages, a shared GRU update over ``message_steps`` (T) steps, and a readout.

    ``forward(x, edge_index, edge_attr, batch)`` gives one number per graph, ``[G]``. ``readout`` is
    ``"set2set"`` (with ``set2set_steps`` M), ``"sum"`` or ``"mean"``; ``edge_features=False`` makes the
    message blind to the bond (one learned matrix). ``hidden`` must be at least ``node_features`` since
    the node features are zero-padded to it.
    """

    def __init__(
        self,
        node_features: int,
        edge_features: int,
        *,
        hidden: int = 64,
        message_steps: int = 3,
        readout: str = "set2set",
        set2set_steps: int = 3,
        edge_hidden: int = 64,
        use_edge_features: bool = True,
    ):
        super().__init__()
        if readout not in READOUTS:
            raise ValueError(f"unknown readout {readout!r}; choose from {', '.join(READOUTS)}")
        if node_features < 1 or edge_features < 1:
            raise ValueError(
                f"node_features and edge_features must be >= 1, got {node_features}, {edge_features}"
            )
        if hidden < node_features:
            raise ValueError(
                f"hidden ({hidden}) must be >= node_features ({node_features}): x is zero-padded to it"
            )
        if message_steps < 1:
            raise ValueError(f"message_steps must be >= 1, got {message_steps}")
        self.node_features, self.edge_features, self.hidden = node_features, edge_features, hidden
        self.message_steps, self.readout, self.use_edge_features = message_steps, readout, use_edge_features
        self.edge_network = EdgeNetwork(
            edge_features if use_edge_features else 1, hidden, edge_hidden=edge_hidden
        )
        self.gru = nn.GRUCell(hidden, hidden)
        self.set2set = Set2Set(hidden, set2set_steps) if readout == "set2set" else None
        width = 2 * hidden if readout == "set2set" else hidden
        self.head = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def node_states(self, x: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        """``h^T`` ``[N, d]`` after T message steps."""
        _check_graph(x, edge_index, edge_attr, None)
        if x.shape[1] != self.node_features:
            raise ValueError(f"x must have {self.node_features} features per node, got {x.shape[1]}")
        if not self.use_edge_features:
            edge_attr = x.new_ones(edge_index.shape[1], 1)
        propagate = self.edge_network.propagator(edge_index, edge_attr)  # A(e) shared over the T steps
        h = nn.functional.pad(x, (0, self.hidden - self.node_features))
        for _ in range(self.message_steps):
            h = self.gru(propagate(h), h)
        return h

    def pool(self, h: Tensor, batch: Tensor, num_graphs: int | None = None) -> Tensor:
        """The readout's graph vectors: ``[G, 2d]`` for set2set, else ``[G, d]``."""
        num_graphs = int(batch.max()) + 1 if num_graphs is None else num_graphs
        if self.set2set is not None:
            return self.set2set(h, batch, num_graphs)
        total = h.new_zeros(num_graphs, self.hidden).index_add_(0, batch, h)
        if self.readout == "sum":
            return total
        count = h.new_zeros(num_graphs).index_add_(0, batch, h.new_ones(h.shape[0]))
        return total / count.clamp(min=1).unsqueeze(-1)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        batch: Tensor | None = None,
        num_graphs: int | None = None,
    ) -> Tensor:
        _check_graph(x, edge_index, edge_attr, batch)
        batch = x.new_zeros(x.shape[0], dtype=torch.long) if batch is None else batch
        h = self.node_states(x, edge_index, edge_attr)
        return self.head(self.pool(h, batch, num_graphs)).squeeze(-1)
