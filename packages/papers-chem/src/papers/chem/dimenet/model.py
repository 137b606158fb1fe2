"""DimeNet: radius graph, triplets, the radial and spherical Bessel bases, and the network.

Everything geometric is built here in torch (no compiled graph libraries): ``radius_graph`` gives the
directed edges j -> i with d_ji < c, ``triplets`` the pairs of edges (k -> j, j -> i) with k != i, and
``geometry`` the distances and the angles α_kji between them. The bases:

    e_RBF,n(d)     = u(d/c) sqrt(2/c) sin(nπ d/c) / d                                   n = 1..N_RBF
    a_SBF,ln(d, α) = u(d/c) sqrt(2/(c³ j_{l+1}²(z_ln))) j_l(z_ln d/c) Y_l^0(α)          l < N_SHBF, n ≤ N_SRBF
    u(x)           = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2}            (x < 1; 0 beyond)

with z_ln the n-th positive root of the spherical Bessel function j_l (found numerically once, by
bisection between the interlacing roots of j_{l-1}).
"""

from __future__ import annotations

import math
from functools import cache
from typing import NamedTuple

import torch
from torch import Tensor, nn

# ----------------------------------------------------------------------------- graph construction


def _check_pos(pos: Tensor, batch: Tensor | None) -> Tensor:
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"pos must be [num_atoms, 3], got {tuple(getattr(pos, 'shape', ()))}")
    if not torch.isfinite(pos).all():
        raise ValueError("pos must be finite (found NaN or inf)")
    if batch is None:
        return torch.zeros(pos.shape[0], dtype=torch.long, device=pos.device)
    if batch.dim() != 1 or batch.shape[0] != pos.shape[0]:
        raise ValueError(f"batch must be [num_atoms={pos.shape[0]}], got {tuple(batch.shape)}")
    return batch


def radius_graph(pos: Tensor, cutoff: float, batch: Tensor | None = None) -> Tensor:
    """Directed edges ``[2, E]`` (row 0 the source j, row 1 the target i) of every ordered pair of
    distinct atoms of the same molecule with ``|x_i - x_j| < cutoff``, sorted by (target, source)."""
    if not cutoff > 0:
        raise ValueError(f"cutoff must be > 0, got {cutoff}")
    batch = _check_pos(pos, batch)
    sources, targets = [], []
    # molecules are contiguous or not: group atoms by molecule and compare within each group only
    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch[order]) if batch.numel() else batch.new_zeros(0)
    start = 0
    for count in counts.tolist():
        atoms = order[start : start + count]
        start += count
        if count < 2:
            continue
        dist = torch.cdist(pos[atoms].double(), pos[atoms].double())
        close = (dist < cutoff) & ~torch.eye(count, dtype=torch.bool, device=pos.device)
        target, source = close.nonzero(as_tuple=True)
        sources.append(atoms[source])
        targets.append(atoms[target])
    if not sources:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    source, target = torch.cat(sources), torch.cat(targets)
    key = torch.argsort(target * (pos.shape[0] + 1) + source)
    return torch.stack([source[key], target[key]])


def triplets(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """``(idx_kj, idx_ji)``: for every edge j -> i (index ``idx_ji``) each incoming edge k -> j of its
    source (index ``idx_kj``) with k != i. Both are ``[T]`` indices into the edges."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be [2, num_edges], got {tuple(edge_index.shape)}")
    source, target = edge_index
    num_edges = source.shape[0]
    if num_edges == 0:
        empty = torch.zeros(0, dtype=torch.long, device=edge_index.device)
        return empty, empty
    by_target = torch.argsort(target, stable=True)  # edges grouped by the atom they point to
    in_degree = torch.bincount(target, minlength=num_nodes)
    first = torch.cumsum(in_degree, 0) - in_degree  # position of atom a's first incoming edge
    per_edge = in_degree[source]  # edge j -> i meets every edge into j
    idx_ji = torch.repeat_interleave(torch.arange(num_edges, device=edge_index.device), per_edge)
    offset = torch.arange(idx_ji.shape[0], device=edge_index.device) - torch.repeat_interleave(
        torch.cumsum(per_edge, 0) - per_edge, per_edge
    )
    idx_kj = by_target[first[source[idx_ji]] + offset]
    keep = source[idx_kj] != target[idx_ji]  # k != i: no message straight back
    return idx_kj[keep], idx_ji[keep]


class Geometry(NamedTuple):
    """What the network reads from the coordinates: edges, triplets, distances and angles."""

    edge_index: Tensor  # [2, E] (j, i)
    idx_kj: Tensor  # [T]
    idx_ji: Tensor  # [T]
    distance: Tensor  # [E] d_ji
    angle: Tensor  # [T] α_kji, the angle at j between j->k and j->i, in [0, π]
    rbf: Tensor | None = None  # [E, N_RBF] the bases, if precomputed (``DimeNet.with_bases``)
    sbf: Tensor | None = None  # [T, N_SHBF * N_SRBF]


def geometry(pos: Tensor, cutoff: float, batch: Tensor | None = None) -> Geometry:
    """Radius graph, triplets, distances and angles of (a batch of) molecules."""
    batch = _check_pos(pos, batch)
    edge_index = radius_graph(pos, cutoff, batch)
    idx_kj, idx_ji = triplets(edge_index, pos.shape[0])
    source, target = edge_index
    vec = pos[target] - pos[source]  # j -> i
    distance = vec.norm(dim=-1)
    a, b = -vec[idx_kj], vec[idx_ji]  # at j: towards k (k->j reversed) and towards i
    angle = torch.atan2(torch.linalg.cross(a, b).norm(dim=-1), (a * b).sum(-1))
    return Geometry(edge_index, idx_kj, idx_ji, distance, angle)


def collate(parts: list[Geometry], num_atoms: list[int]) -> Geometry:
    """Concatenate per-molecule geometries into the geometry of their batch (atom/edge offsets)."""
    node_offset, edge_offset, out = 0, 0, {k: [] for k in Geometry._fields}
    for part, n in zip(parts, num_atoms, strict=True):
        out["edge_index"].append(part.edge_index + node_offset)
        out["idx_kj"].append(part.idx_kj + edge_offset)
        out["idx_ji"].append(part.idx_ji + edge_offset)
        out["distance"].append(part.distance)
        out["angle"].append(part.angle)
        out["rbf"].append(part.rbf)
        out["sbf"].append(part.sbf)
        node_offset += n
        edge_offset += part.edge_index.shape[1]
    bases = {k: None if any(v is None for v in out[k]) else torch.cat(out[k]) for k in ("rbf", "sbf")}
    return Geometry(torch.cat(out["edge_index"], 1), *(torch.cat(out[k]) for k in Geometry._fields[1:5]),
                    **bases)  # fmt: skip


# ----------------------------------------------------------------------------- bases


def envelope(x: Tensor, p: int = 6) -> Tensor:
    """u(x) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} - p(p+1)/2 x^{p+2} for x < 1, else 0.

    u(0) = 1 and u, u', u'' vanish at x = 1 (continuous cut-off)."""
    if p < 1:
        raise ValueError(f"envelope exponent p must be >= 1, got {p}")
    a, b, c = -(p + 1) * (p + 2) / 2, p * (p + 2), -p * (p + 1) / 2
    xp = x.pow(p)
    value = 1 + a * xp + b * xp * x + c * xp * x * x
    return torch.where(x < 1, value, torch.zeros_like(x))


def spherical_jn(order: int, x: Tensor) -> Tensor:
    """Spherical Bessel function of the first kind j_l(x) for x >= 0 (float64 inside).

    Upward recurrence j_{l+1} = (2l+1)/x j_l - j_{l-1} from j_0 = sin x / x where it is stable (x > l),
    the power series j_l(x) = x^l Σ_k (-x²/2)^k / (k! (2l+2k+1)!!) below."""
    if order < 0:
        raise ValueError(f"order must be >= 0, got {order}")
    dtype = x.dtype
    x = x.double()
    small = x < max(order, 1) + 0.5
    # series (accurate for x below a few units with 30 terms in float64)
    xs = torch.where(small, x, torch.zeros_like(x))
    term = xs.pow(order) / math.prod(range(1, 2 * order + 2, 2))
    series = term.clone()
    for k in range(1, 30):
        term = term * (-(xs**2) / 2) / (k * (2 * order + 2 * k + 1))
        series = series + term
    # recurrence (x away from zero)
    xr = torch.where(small, torch.ones_like(x), x)
    j_prev, j = torch.sin(xr) / xr, torch.sin(xr) / xr**2 - torch.cos(xr) / xr
    if order == 0:
        j = j_prev
    for l in range(1, order):
        j_prev, j = j, (2 * l + 1) / xr * j - j_prev
    return torch.where(small, series, j).to(dtype)


@cache
def bessel_roots(num_orders: int, num_roots: int) -> tuple[tuple[float, ...], ...]:
    """z_ln, the first ``num_roots`` positive roots of j_l for l < ``num_orders`` (numerically, once).

    The roots of j_0 are nπ; those of j_l interlace those of j_{l-1}, so each lies between two
    consecutive roots of the previous order and bisection finds it."""
    if num_orders < 1 or num_roots < 1:
        raise ValueError(f"num_orders and num_roots must be >= 1, got {num_orders}, {num_roots}")
    total = num_roots + num_orders  # lower orders need more roots to bracket the higher ones
    roots = [[(n + 1) * math.pi for n in range(total)]]
    for order in range(1, num_orders):
        prev = torch.tensor(roots[-1], dtype=torch.float64)
        a, b = prev[:-1], prev[1:]  # one root of j_order in each interval, all bisected at once
        fa = spherical_jn(order, a)
        for _ in range(64):
            m = (a + b) / 2
            fm = spherical_jn(order, m)
            same = (fm > 0) == (fa > 0)
            a, fa, b = torch.where(same, m, a), torch.where(same, fm, fa), torch.where(same, b, m)
        roots.append(((a + b) / 2).tolist())
    return tuple(tuple(r[:num_roots]) for r in roots)


def legendre(order: int, x: Tensor) -> Tensor:
    """Legendre polynomial P_l(x) by Bonnet's recurrence."""
    p_prev, p = torch.ones_like(x), x
    if order == 0:
        return p_prev
    for l in range(1, order):
        p_prev, p = p, ((2 * l + 1) * x * p - l * p_prev) / (l + 1)
    return p


class RadialBasis(nn.Module):
    """e_RBF,n(d) = u(d/c) sqrt(2/c) sin(nπ d/c)/d, n = 1..num_radial (fixed frequencies nπ)."""

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 6):
        super().__init__()
        if num_radial < 1 or not cutoff > 0:
            raise ValueError(f"num_radial must be >= 1 and cutoff > 0, got {num_radial}, {cutoff}")
        self.cutoff, self.p = cutoff, envelope_exponent
        self.register_buffer("frequency", torch.arange(1, num_radial + 1) * math.pi, persistent=False)

    def forward(self, d: Tensor) -> Tensor:
        x = (d / self.cutoff).unsqueeze(-1)
        value = math.sqrt(2 / self.cutoff) * torch.sin(self.frequency.to(d.dtype) * x) / d.unsqueeze(-1)
        return envelope(x, self.p) * value


class SphericalBasis(nn.Module):
    """a_SBF,ln(d, α) = u(d/c) sqrt(2/(c³ j_{l+1}²(z_ln))) j_l(z_ln d/c) Y_l^0(α), flattened l-major
    to ``[..., num_spherical * num_radial]``; Y_l^0(α) = sqrt((2l+1)/(4π)) P_l(cos α)."""

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int = 6):
        super().__init__()
        if num_spherical < 1 or num_radial < 1 or not cutoff > 0:
            raise ValueError(
                "num_spherical and num_radial must be >= 1 and cutoff > 0, "
                f"got {num_spherical}, {num_radial}, {cutoff}"
            )
        self.num_spherical, self.num_radial = num_spherical, num_radial
        self.cutoff, self.p = cutoff, envelope_exponent
        roots = torch.tensor(bessel_roots(num_spherical, num_radial), dtype=torch.float64)  # [L, N]
        norm = torch.stack(
            [math.sqrt(2 / cutoff**3) / spherical_jn(l + 1, roots[l]).abs() for l in range(num_spherical)]
        )
        self.register_buffer("roots", roots, persistent=False)
        self.register_buffer("norm", norm, persistent=False)

    def radial(self, d: Tensor) -> Tensor:
        """``[T, L, N]``: u(d/c) sqrt(2/(c³ j_{l+1}²(z_ln))) j_l(z_ln d / c)."""
        x = (d.double() / self.cutoff)[:, None]
        out = torch.stack([spherical_jn(l, self.roots[l] * x) for l in range(self.num_spherical)], 1)
        return (envelope(x, self.p)[:, :, None] * self.norm * out).to(d.dtype)

    def angular(self, angle: Tensor) -> Tensor:
        """``[T, L]``: Y_l^0(α)."""
        c = torch.cos(angle)
        return torch.stack(
            [math.sqrt((2 * l + 1) / (4 * math.pi)) * legendre(l, c) for l in range(self.num_spherical)], 1
        )

    def forward(self, d: Tensor, angle: Tensor) -> Tensor:
        out = self.radial(d) * self.angular(angle)[:, :, None]
        return out.reshape(d.shape[0], self.num_spherical * self.num_radial)


class DistanceOnlyBasis(nn.Module):
    """The ablation's basis of the triplet: e_RBF,n(d_kj) with n = 1..num_spherical·num_radial.

    Same width as the spherical basis, so the network keeps its parameter count; the angle is unused."""

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope_exponent: int = 6):
        super().__init__()
        self.rbf = RadialBasis(num_spherical * num_radial, cutoff, envelope_exponent)

    def forward(self, d: Tensor, angle: Tensor) -> Tensor:
        return self.rbf(d)


# ----------------------------------------------------------------------------- the network


class ResidualLayer(nn.Module):
    def __init__(self, hidden: int):
        super().__init__()
        self.lin1, self.lin2 = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)

    def forward(self, x: Tensor) -> Tensor:
        act = nn.functional.silu
        return x + act(self.lin2(act(self.lin1(x))))


class EmbeddingBlock(nn.Module):
    """m_ji = σ(W [h_j ‖ h_i ‖ σ(W_rbf e_RBF(d_ji))] + b), h = atom-type embedding."""

    def __init__(self, num_types: int, hidden: int, num_radial: int):
        super().__init__()
        self.embedding = nn.Embedding(num_types, hidden)
        self.lin_rbf = nn.Linear(num_radial, hidden)
        self.lin = nn.Linear(3 * hidden, hidden)

    def forward(self, z: Tensor, rbf: Tensor, edge_index: Tensor) -> Tensor:
        act = nn.functional.silu
        h = self.embedding(z)
        source, target = edge_index
        return act(self.lin(torch.cat([h[source], h[target], act(self.lin_rbf(rbf))], -1)))


class InteractionBlock(nn.Module):
    """m_ji <- f_update(m_ji, Σ_{k ∈ N_j \\ {i}} f_int(m_kj, e_RBF(d_ji), a_SBF(d_kj, α_kji))).

    f_int is the paper's bilinear layer: with x_kj = σ(W_kj m_kj + b), r_ji = W_rbf e_RBF(d_ji) and
    s = W_sbf a_SBF ∈ R^{n_bilinear},  f_int = Σ_{b,l} W_{·,b,l} s_b (r_ji ⊙ x_kj)_l.
    Because r_ji does not depend on k, Σ_k f_int = Σ_b W_b (r_ji ⊙ Σ_k s_b x_kj): the sum over k is
    taken first (exact, and the bilinear weight is applied per edge rather than per triplet).
    f_update: h = σ(W_ji m_ji + b) + that sum; residual layers; σ(W h + b) + m_ji; residual layers."""

    def __init__(self, hidden: int, num_bilinear: int, num_radial: int, num_basis: int,
                 before_skip: int = 1, after_skip: int = 1):  # fmt: skip
        super().__init__()
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.lin_sbf = nn.Linear(num_basis, num_bilinear, bias=False)
        self.lin_kj, self.lin_ji = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.bilinear = nn.Parameter(torch.empty(hidden, num_bilinear, hidden))  # W_{i, b, l}
        nn.init.normal_(self.bilinear, mean=0.0, std=2.0 / hidden)
        self.before = nn.ModuleList(ResidualLayer(hidden) for _ in range(before_skip))
        self.lin = nn.Linear(hidden, hidden)
        self.after = nn.ModuleList(ResidualLayer(hidden) for _ in range(after_skip))

    def forward(self, m: Tensor, rbf: Tensor, sbf: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
        act = nn.functional.silu
        x_ji = act(self.lin_ji(m))
        x_kj = act(self.lin_kj(m))[idx_kj]  # [T, H]
        s = self.lin_sbf(sbf)  # [T, B]
        r_ji = self.lin_rbf(rbf)
        h = x_ji
        for b in range(s.shape[1]):  # Σ_k s_b x_kj one b at a time: no [T, B, H] intermediate
            summed = m.new_zeros(m.shape).index_add_(0, idx_ji, s[:, b : b + 1] * x_kj)  # [E, H]
            h = h + (r_ji * summed) @ self.bilinear[:, b, :].T
        for layer in self.before:
            h = layer(h)
        h = act(self.lin(h)) + m
        for layer in self.after:
            h = layer(h)
        return h


class OutputBlock(nn.Module):
    """t_i = W_out σ(W (Σ_j (W_rbf e_RBF(d_ji)) ⊙ m_ji) + b): the block's per-atom contribution."""

    def __init__(self, hidden: int, num_radial: int, num_targets: int = 1, layers: int = 2):
        super().__init__()
        self.lin_rbf = nn.Linear(num_radial, hidden, bias=False)
        self.layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.out = nn.Linear(hidden, num_targets, bias=False)

    def forward(self, m: Tensor, rbf: Tensor, target: Tensor, num_atoms: int) -> Tensor:
        x = m.new_zeros(num_atoms, m.shape[1]).index_add_(0, target, self.lin_rbf(rbf) * m)
        for layer in self.layers:
            x = nn.functional.silu(layer(x))
        return self.out(x)


class DimeNet(nn.Module):
    """Directional message passing: messages on directed edges, updated from the incoming edges with
    distances and angles in Bessel / spherical-harmonic bases; t = Σ_atoms Σ_blocks t_i.

    ``angular=False`` is the distance-only ablation: the triplet basis a_SBF(d_kj, α_kji) is replaced
    by a radial basis of d_kj of the same width (``DistanceOnlyBasis``); everything else is identical.
    """

    def __init__(self, *, num_types: int = 10, hidden: int = 64, num_blocks: int = 2, num_bilinear: int = 8,
                 num_spherical: int = 5, num_radial: int = 6, cutoff: float = 5.0, envelope_exponent: int = 6,
                 num_targets: int = 1, before_skip: int = 1, after_skip: int = 1, output_layers: int = 2,
                 angular: bool = True):  # fmt: skip
        super().__init__()
        for name, value in (("num_types", num_types), ("hidden", hidden), ("num_blocks", num_blocks),
                            ("num_bilinear", num_bilinear), ("num_spherical", num_spherical),
                            ("num_radial", num_radial), ("num_targets", num_targets)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if not cutoff > 0:
            raise ValueError(f"cutoff must be > 0, got {cutoff}")
        self.num_types, self.cutoff, self.angular = num_types, cutoff, angular
        self.rbf = RadialBasis(num_radial, cutoff, envelope_exponent)
        basis = SphericalBasis if angular else DistanceOnlyBasis
        self.sbf = basis(num_spherical, num_radial, cutoff, envelope_exponent)
        self.embedding = EmbeddingBlock(num_types, hidden, num_radial)
        self.interactions = nn.ModuleList(
            InteractionBlock(
                hidden, num_bilinear, num_radial, num_spherical * num_radial, before_skip, after_skip
            )  # fmt: skip
            for _ in range(num_blocks)
        )
        self.outputs = nn.ModuleList(
            OutputBlock(hidden, num_radial, num_targets, output_layers) for _ in range(num_blocks + 1)
        )

    def geometry(self, pos: Tensor, batch: Tensor | None = None) -> Geometry:
        return geometry(pos, self.cutoff, batch)

    def with_bases(self, geom: Geometry) -> Geometry:
        """``geom`` with its radial and triplet bases computed (they depend on the geometry only)."""
        return geom._replace(
            rbf=self.rbf(geom.distance), sbf=self.sbf(geom.distance[geom.idx_kj], geom.angle)
        )

    def forward_geometry(self, z: Tensor, geom: Geometry, batch: Tensor, num_graphs: int) -> Tensor:
        """``[num_graphs, num_targets]`` from atom types and a precomputed :class:`Geometry`."""
        if z.dim() != 1 or z.shape[0] != batch.shape[0]:
            raise ValueError(f"z must be [num_atoms={batch.shape[0]}], got {tuple(z.shape)}")
        if z.numel() and (z.min() < 0 or z.max() >= self.num_types):
            raise ValueError(f"atom types must be in [0, {self.num_types}), got {z.min()}..{z.max()}")
        if geom.rbf is None or geom.sbf is None:
            geom = self.with_bases(geom)
        rbf, sbf = geom.rbf, geom.sbf
        target = geom.edge_index[1]
        m = self.embedding(z, rbf, geom.edge_index)
        atoms = self.outputs[0](m, rbf, target, z.shape[0])
        for interaction, output in zip(self.interactions, self.outputs[1:], strict=True):
            m = interaction(m, rbf, sbf, geom.idx_kj, geom.idx_ji)
            atoms = atoms + output(m, rbf, target, z.shape[0])
        return atoms.new_zeros(num_graphs, atoms.shape[1]).index_add_(0, batch, atoms)

    def forward(self, z: Tensor, pos: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:  # fmt: skip
        """``[num_graphs, num_targets]`` for atom types ``z`` ``[N]`` and coordinates ``pos`` ``[N, 3]``."""
        batch = _check_pos(pos, batch)
        num_graphs = (int(batch.max()) + 1 if batch.numel() else 0) if num_graphs is None else num_graphs
        return self.forward_geometry(z, self.geometry(pos, batch), batch, num_graphs)
