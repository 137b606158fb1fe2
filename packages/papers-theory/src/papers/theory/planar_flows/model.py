"""Planar and radial flows, the flow-based posterior q_K, and the four 2-D energies of Table 1.

    planar   f(z) = z + û h(wᵀz + b),        log|det ∂f/∂z| = log|1 + ûᵀψ(z)|,  ψ(z) = h'(wᵀz + b) w
             û = u + [m(wᵀu) − wᵀu] w/‖w‖²,  m(x) = −1 + log(1 + eˣ)    ⇒  wᵀû = m(wᵀu) > −1
    radial   f(z) = z + β h(α, r)(z − z0),   r = ‖z − z0‖,  h(α, r) = 1/(α + r)
             log|det ∂f/∂z| = (d − 1) log(1 + βh) + log(1 + βh + βh'(α, r) r)
             α = log(1 + e^α̃) > 0,  β = −α + log(1 + e^β̃) > −α
    flow     z_K = f_K ∘ … ∘ f_1(z_0),  z_0 ~ q_0 = N(μ, diag σ²),
             log q_K(z_K) = log q_0(z_0) − Σ_k log|det ∂f_k/∂z_{k−1}|
    free energy  F = E_q0[log q_0(z_0) − Σ_k log|det ∂f_k/∂z_{k−1}| + U(z_K)] = KL(q_K ‖ p) − log Z,
             p(z) = e^{−U(z)}/Z
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ENERGIES", "FLOW_KINDS", "NormalizingFlow", "PlanarFlow", "RadialFlow", "box_wall",
           "free_energy", "log_normaliser", "u1", "u2", "u3", "u4"]

FLOW_KINDS = ("planar", "radial")
_BISECTION_STEPS = 100


def _check_points(z: Tensor, dim: int, who: str) -> None:
    if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != dim:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{who}: expected points of shape [..., {dim}], got {shape}")


def _check_batch(z: Tensor, dim: int, who: str) -> None:
    if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[-1] != dim:
        shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"{who}: expected a batch of points of shape [n, {dim}], got {shape}")


def _check_sizes(dim: int, n_layers: int) -> None:
    if dim < 1 or n_layers < 0:
        raise ValueError(f"need dim >= 1 and n_layers >= 0, got dim={dim}, n_layers={n_layers}")


def _bisect(g: Callable[[Tensor], Tensor], target: Tensor, low: Tensor, high: Tensor) -> Tensor:
    """Solve g(x) = target for an increasing g, with g(low) ≤ target ≤ g(high), elementwise."""
    for _ in range(_BISECTION_STEPS):
        mid = (low + high) / 2
        below = g(mid) < target
        low, high = torch.where(below, mid, low), torch.where(below, high, mid)
    return (low + high) / 2


class PlanarFlow(nn.Module):
    """A chain of ``n_layers`` planar maps ``f_k(z) = z + û_k tanh(w_kᵀz + b_k)``, applied k = 1 … K.

    Every map is invertible: the reparametrisation gives ``w_kᵀû_k = m(w_kᵀu_k) > −1``.
    """

    def __init__(self, dim: int, n_layers: int = 1, init_scale: float = 0.01):
        super().__init__()
        _check_sizes(dim, n_layers)
        self.dim, self.n_layers = dim, n_layers
        self.u = nn.Parameter(torch.empty(n_layers, dim).uniform_(-init_scale, init_scale))
        self.w = nn.Parameter(torch.empty(n_layers, dim).uniform_(-init_scale, init_scale))
        self.b = nn.Parameter(torch.zeros(n_layers))

    def u_hat(self) -> Tensor:
        """û = u + [m(wᵀu) − wᵀu] w/‖w‖² for every layer, so that wᵀû = m(wᵀu) = −1 + softplus(wᵀu)."""
        wu = (self.w * self.u).sum(-1, keepdim=True)
        norm2 = (self.w * self.w).sum(-1, keepdim=True).clamp_min(1e-12)
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / norm2

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(f_K ∘ … ∘ f_1(z), Σ_k log|det ∂f_k/∂z_{k−1}|)`` for z of shape [n, dim]."""
        _check_batch(z, self.dim, "PlanarFlow")
        u = self.u_hat()
        hs = []
        for w, b, u_k in zip(self.w, self.b, u, strict=True):
            h = torch.tanh(torch.addmv(b, z, w))
            z = torch.addcmul(z, h[:, None], u_k)
            hs.append(h)
        if not hs:
            return z, z.new_zeros(len(z))
        wu = (self.w * u).sum(-1)  # log|1 + ûᵀψ(z)| with ψ = h'(wᵀz + b) w = (1 − h²) w
        return z, torch.log1p(wu[:, None] * (1 - torch.stack(hs) ** 2)).sum(0)

    def inverse(self, y: Tensor) -> Tensor:
        """z with f(z) = y, layer by layer: a = wᵀz solves wᵀy = a + wᵀû tanh(a + b), increasing in a."""
        _check_batch(y, self.dim, "PlanarFlow.inverse")
        u = self.u_hat()
        for w, b, u_k in zip(self.w.flip(0), self.b.flip(0), u.flip(0), strict=True):
            wu, wy = w @ u_k, y @ w
            a = _bisect(lambda a: a + wu * torch.tanh(a + b), wy, wy - wu.abs(), wy + wu.abs())  # noqa: B023
            y = y - torch.tanh(a + b)[:, None] * u_k
        return y


class RadialFlow(nn.Module):
    """A chain of ``n_layers`` radial maps ``f_k(z) = z + β_k (z − z0_k)/(α_k + ‖z − z0_k‖)``.

    Every map is invertible: α_k = softplus(α̃_k) > 0 and β_k = −α_k + softplus(β̃_k) > −α_k.
    """

    def __init__(self, dim: int, n_layers: int = 1, init_scale: float = 0.01):
        super().__init__()
        _check_sizes(dim, n_layers)
        self.dim, self.n_layers = dim, n_layers
        self.z0 = nn.Parameter(torch.empty(n_layers, dim).uniform_(-init_scale, init_scale))
        self.alpha_raw = nn.Parameter(torch.empty(n_layers).uniform_(-init_scale, init_scale))
        self.beta_raw = nn.Parameter(torch.empty(n_layers).uniform_(-init_scale, init_scale))

    def alpha_beta(self) -> tuple[Tensor, Tensor]:
        """α = softplus(α̃) > 0 and β = −α + softplus(β̃) > −α, one of each per layer."""
        alpha = F.softplus(self.alpha_raw)
        return alpha, -alpha + F.softplus(self.beta_raw)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(f_K ∘ … ∘ f_1(z), Σ_k log|det ∂f_k/∂z_{k−1}|)`` for z of shape [n, dim]."""
        _check_batch(z, self.dim, "RadialFlow")
        alpha, beta = self.alpha_beta()
        rs = []
        for z0, a, b in zip(self.z0, alpha, beta, strict=True):
            diff = z - z0
            r = diff.norm(dim=-1)
            z = torch.addcmul(z, (b / (a + r))[:, None], diff)
            rs.append(r)
        if not rs:
            return z, z.new_zeros(len(z))
        r, alpha, beta = torch.stack(rs), alpha[:, None], beta[:, None]
        # log det = (d − 1) log(1 + βh) + log(1 + βh + βh'(α, r) r),  1 + βh + βh' r = 1 + βα/(α + r)²
        log_det = (self.dim - 1) * torch.log1p(beta / (alpha + r))
        log_det = log_det + torch.log1p(beta * alpha / (alpha + r) ** 2)
        return z, log_det.sum(0)

    def inverse(self, y: Tensor) -> Tensor:
        """z with f(z) = y, layer by layer: ‖y − z0‖ = r + βr/(α + r) is increasing in r = ‖z − z0‖."""
        _check_batch(y, self.dim, "RadialFlow.inverse")
        alpha, beta = self.alpha_beta()
        for z0, a, b in zip(self.z0.flip(0), alpha.flip(0), beta.flip(0), strict=True):
            diff = y - z0
            r_y = diff.norm(dim=-1)
            r = _bisect(lambda r: r + b * r / (a + r), r_y, (r_y - b.abs()).clamp_min(0), r_y + b.abs())  # noqa: B023
            y = z0 + diff / (1 + b / (a + r))[:, None]
        return y


class NormalizingFlow(nn.Module):
    """q_K: a diagonal Gaussian q_0 = N(μ, diag σ²) pushed through ``n_layers`` planar or radial maps."""

    def __init__(self, dim: int = 2, n_layers: int = 8, kind: str = "planar", init_scale: float = 0.01):
        super().__init__()
        if kind not in FLOW_KINDS:
            raise ValueError(f"unknown flow kind {kind!r}; choose one of {', '.join(FLOW_KINDS)}")
        chain = PlanarFlow if kind == "planar" else RadialFlow
        self.dim, self.kind = dim, kind
        self.chain = chain(dim, n_layers, init_scale)
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_std = nn.Parameter(torch.zeros(dim))

    def base_log_prob(self, z0: Tensor) -> Tensor:
        """log N(z0; μ, diag σ²)."""
        scaled = (z0 - self.mean) * torch.exp(-self.log_std)
        return -0.5 * (scaled**2).sum(-1) - self.log_std.sum() - 0.5 * self.dim * math.log(2 * math.pi)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` reparametrised samples z_K and log q_K(z_K) = log q_0(z_0) − Σ_k log|det|."""
        eps = torch.randn(n, self.dim, generator=generator, dtype=self.mean.dtype)
        z0 = self.mean + torch.exp(self.log_std) * eps
        z, log_det = self.chain(z0)
        return z, self.base_log_prob(z0) - log_det

    def log_prob(self, y: Tensor) -> Tensor:
        """log q_K(y) through the inverse maps (for densities on a grid)."""
        _check_batch(y, self.dim, "NormalizingFlow.log_prob")
        z0 = self.chain.inverse(y)
        _, log_det = self.chain(z0)
        return self.base_log_prob(z0) - log_det


def free_energy(flow: NormalizingFlow, energy: Callable[[Tensor], Tensor], n: int,
                generator: torch.Generator | None = None, energy_weight: float = 1.0) -> Tensor:
    """Per-sample F = log q_K(z_K) + β U(z_K), z_K ~ q_K (β = 1: the paper's F, = KL − log Z in mean)."""
    z, log_q = flow.sample(n, generator)
    return log_q + energy_weight * energy(z)


# ---------- the four energies of Table 1, p(z) ∝ exp(−U(z)) ----------


def _w1(z1: Tensor) -> Tensor:
    return torch.sin(2 * math.pi * z1 / 4)


def _w2(z1: Tensor) -> Tensor:
    return 3 * torch.exp(-0.5 * ((z1 - 1) / 0.6) ** 2)


def _w3(z1: Tensor) -> Tensor:
    return 3 * torch.sigmoid((z1 - 1) / 0.3)


def _neg_log_sum_exp(a: Tensor, b: Tensor) -> Tensor:
    """−ln(e^a + e^b), computed stably."""
    return -torch.logaddexp(a, b)


def _split(z: Tensor, who: str) -> tuple[Tensor, Tensor]:
    _check_points(z, 2, who)
    return z[..., 0], z[..., 1]


def u1(z: Tensor) -> Tensor:
    """½((‖z‖ − 2)/0.4)² − ln(e^{−½((z1 − 2)/0.6)²} + e^{−½((z1 + 2)/0.6)²})."""
    z1, _ = _split(z, "U1")
    ring = 0.5 * ((z.norm(dim=-1) - 2) / 0.4) ** 2
    return ring + _neg_log_sum_exp(-0.5 * ((z1 - 2) / 0.6) ** 2, -0.5 * ((z1 + 2) / 0.6) ** 2)


def u2(z: Tensor) -> Tensor:
    """½((z2 − w1(z))/0.4)²."""
    z1, z2 = _split(z, "U2")
    return 0.5 * ((z2 - _w1(z1)) / 0.4) ** 2


def u3(z: Tensor) -> Tensor:
    """−ln(e^{−½((z2 − w1)/0.35)²} + e^{−½((z2 − w1 + w2)/0.35)²})."""
    z1, z2 = _split(z, "U3")
    first, second = z2 - _w1(z1), z2 - _w1(z1) + _w2(z1)
    return _neg_log_sum_exp(-0.5 * (first / 0.35) ** 2, -0.5 * (second / 0.35) ** 2)


def u4(z: Tensor) -> Tensor:
    """−ln(e^{−½((z2 − w1)/0.4)²} + e^{−½((z2 − w1 + w3)/0.35)²})."""
    z1, z2 = _split(z, "U4")
    first, second = z2 - _w1(z1), z2 - _w1(z1) + _w3(z1)
    return _neg_log_sum_exp(-0.5 * (first / 0.4) ** 2, -0.5 * (second / 0.35) ** 2)


ENERGIES = {"U1": u1, "U2": u2, "U3": u3, "U4": u4}


def box_wall(z: Tensor, half_width: float = 4.0, scale: float = 0.5) -> Tensor:
    """½ Σ_i (max(|z_i| − half_width, 0)/scale)²: zero on the paper's plotting box [−4, 4]².

    U2–U4 do not confine z1 (∫e^{−U} dz = ∞); adding this wall makes every target normalisable while
    leaving the energy unchanged on the box the paper shows.
    """
    return 0.5 * ((z.abs() - half_width).clamp_min(0) / scale).pow(2).sum(-1)


def log_normaliser(energy: Callable[[Tensor], Tensor], limit: float = 8.0, points: int = 1601) -> float:
    """log Z = log ∫ e^{−U(z)} dz by the midpoint rule on [−limit, limit]² with ``points``² cells."""
    edges = torch.linspace(-limit, limit, points + 1, dtype=torch.float64)
    centres = (edges[1:] + edges[:-1]) / 2
    cell = (2 * limit / points) ** 2
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1).reshape(-1, 2)
    log_mass = torch.logsumexp(torch.cat([-energy(chunk) for chunk in grid.split(1 << 18)]), dim=0)
    return (log_mass + math.log(cell)).item()
