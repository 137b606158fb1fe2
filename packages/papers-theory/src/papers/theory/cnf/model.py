"""Continuous normalizing flows (Chen et al. 2018, Sec. 4) and the discrete planar flow compared with them.

    CNF:     dz/dt = f(z(t), t),      d log p(z(t))/dt = −tr(∂f/∂z(t))                     (Theorem 1)
             log p_1(z(t1)) = log p_0(z(t0)) − ∫_{t0}^{t1} tr(∂f/∂z(t)) dt,   p_0 = N(0, I)
    planar:  g(x) = x + û tanh(wᵀx + b),    log|det ∂g/∂x| = log|1 + ûᵀ w tanh'(wᵀx + b)|
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from papers.theory.neural_ode import NFECounter, odeint, odeint_adjoint

__all__ = ["HyperPlanarField", "CNFDynamics", "CNF", "PlanarFlow", "divergence_exact",
           "divergence_hutchinson", "standard_normal_log_prob", "TRACES"]

TRACES = ("exact", "hutchinson")


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * math.log(2 * math.pi))


def _check_points(x: Tensor, dim: int, who: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != dim:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{who}: expected points of shape [batch, {dim}], got {shape}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{who}: the points contain NaN or infinite values")


def divergence_exact(dz: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """tr(∂f/∂z) = Σ_i ∂f_i/∂z_i, one vector-Jacobian product per dimension (exact; cheap in 2-D)."""
    div = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    for i in range(z.shape[1]):
        keep = create_graph or i < z.shape[1] - 1
        column = torch.autograd.grad(dz[:, i].sum(), z, create_graph=create_graph, retain_graph=keep)[0]
        div = div + column[:, i]
    return div


def divergence_hutchinson(dz: Tensor, z: Tensor, noise: Tensor, create_graph: bool) -> Tensor:
    """Hutchinson's estimator εᵀ(∂f/∂z)ε, E[εεᵀ] = I: unbiased for tr(∂f/∂z), one vector-Jacobian product."""
    vjp = torch.autograd.grad(dz, z, noise, create_graph=create_graph)[0]
    return (vjp * noise).sum(-1)


class HyperPlanarField(nn.Module):
    """The paper's planar CNF field with M gated hidden units and time-dependent weights (Sec. 4).

        f(z, t) = Σ_m σ(s_m(t)) u_m(t) tanh(w_m(t)ᵀ z + b_m(t))

    where [u_m, w_m, b_m, s_m](t) come from a hypernetwork t → tanh(Linear(1, H)) → Linear(H, M(2D+2)).
    """

    def __init__(self, dim: int = 2, width: int = 16, hyper_hidden: int = 8):
        super().__init__()
        self.dim, self.width = dim, width
        self.hyper = nn.Sequential(nn.Linear(1, hyper_hidden), nn.Tanh(),
                                   nn.Linear(hyper_hidden, width * (2 * dim + 2)))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        params = self.hyper(t.reshape(1, 1).to(z)).reshape(self.width, 2 * self.dim + 2)
        u, w = params[:, : self.dim], params[:, self.dim: 2 * self.dim]
        b, gate = params[:, 2 * self.dim], torch.sigmoid(params[:, 2 * self.dim + 1])
        return torch.tanh(z @ w.T + b) @ (gate[:, None] * u)


class CNFDynamics(nn.Module):
    """The augmented field on the state [z, log p]:  d/dt [z, log p] = [f(z, t), −tr(∂f/∂z)].

    ``trace="exact"`` sums D vector-Jacobian products; ``"hutchinson"`` uses ``self.noise`` (one ε per
    point, fixed during a solve, as FFJORD) in εᵀ(∂f/∂z)ε. The graph of the trace is kept only when
    gradients are being recorded, so solves under ``torch.no_grad()`` stay cheap.
    """

    def __init__(self, field: nn.Module, dim: int, trace: str = "exact"):
        super().__init__()
        if trace not in TRACES:
            raise ValueError(f"trace must be one of {', '.join(TRACES)}, got {trace!r}")
        self.field, self.dim, self.trace = field, dim, trace
        self.noise: Tensor | None = None

    def forward(self, t: Tensor, state: Tensor) -> Tensor:
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            z = state[:, : self.dim]
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            if self.trace == "exact":
                div = divergence_exact(dz, z, create_graph)
            else:
                if self.noise is None or self.noise.shape != z.shape:
                    raise ValueError("trace='hutchinson' needs .noise of the shape of z (CNF.sample_noise)")
                div = divergence_hutchinson(dz, z, self.noise, create_graph)
        if not create_graph:
            dz, div = dz.detach(), div.detach()
        return torch.cat([dz, -div[:, None]], dim=1)


class CNF(nn.Module):
    """A continuous normalizing flow from N(0, I) at t = 0 to the data at t = t1.

    ``log_prob(x)`` integrates [x, 0] from t1 back to 0 and returns log N(z(0)) − ∫_0^{t1} tr(∂f/∂z) dt;
    ``sample(n)`` integrates [z, log N(z)] forward; ``flow`` solves between any two times. Gradients use
    the adjoint method (``adjoint=True``) or backprop through the solver. ``nfe`` counts evaluations of
    the augmented field since :meth:`reset_nfe` (backward passes included).
    """

    def __init__(self, field: nn.Module, dim: int = 2, t1: float = 1.0, *, trace: str = "exact",
                 noise: str = "rademacher", rtol: float = 1e-5, atol: float = 1e-5, method: str = "dopri5",
                 adjoint: bool = True):
        super().__init__()
        if noise not in ("rademacher", "gaussian"):
            raise ValueError(f"noise must be 'rademacher' or 'gaussian', got {noise!r}")
        if not t1 > 0:
            raise ValueError(f"t1 must be > 0, got {t1}")
        self.dynamics = NFECounter(CNFDynamics(field, dim, trace))
        self.dim, self.t1, self.noise = dim, t1, noise
        self.rtol, self.atol, self.method, self.adjoint = rtol, atol, method, adjoint

    @property
    def nfe(self) -> int:
        return self.dynamics.nfe

    def reset_nfe(self) -> None:
        self.dynamics.nfe = 0

    @property
    def trace(self) -> str:
        return self.dynamics.func.trace

    @trace.setter
    def trace(self, value: str) -> None:
        if value not in TRACES:
            raise ValueError(f"trace must be one of {', '.join(TRACES)}, got {value!r}")
        self.dynamics.func.trace = value

    def sample_noise(self, like: Tensor, generator: torch.Generator | None = None) -> None:
        """Draw the Hutchinson probes ε (Rademacher ±1 or standard normal) for the next solve."""
        if self.noise == "gaussian":
            eps = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        else:
            bits = torch.randint(0, 2, like.shape, generator=generator, device=like.device)
            eps = bits.to(like.dtype) * 2 - 1
        self.dynamics.func.noise = eps

    def flow(self, z: Tensor, logp: Tensor, t_start: float, t_end: float) -> tuple[Tensor, Tensor]:
        """Solve d[z, log p]/dt = [f, −tr ∂f/∂z] from ``t_start`` to ``t_end``; return (z, log p) there."""
        _check_points(z, self.dim, "CNF")
        if self.trace == "hutchinson" and (self.dynamics.func.noise is None
                                           or self.dynamics.func.noise.shape != z.shape):
            self.sample_noise(z)
        state = torch.cat([z, logp.reshape(-1, 1).to(z)], dim=1)
        t = torch.tensor([t_start, t_end], dtype=z.dtype, device=z.device)
        solve = odeint_adjoint if self.adjoint else odeint
        end = solve(self.dynamics, state, t, rtol=self.rtol, atol=self.atol, method=self.method)[-1]
        return end[:, : self.dim], end[:, self.dim]

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) of data points ``x`` [batch, dim] (instantaneous change of variables)."""
        z0, delta = self.flow(x, torch.zeros(len(x), dtype=x.dtype, device=x.device), self.t1, 0.0)
        return standard_normal_log_prob(z0) - delta

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` samples x = z(t1) from z(0) ~ N(0, I), with their log-densities."""
        param = next(self.parameters())
        z0 = torch.randn(n, self.dim, generator=generator, dtype=param.dtype, device=param.device)
        return self.flow(z0, standard_normal_log_prob(z0), 0.0, self.t1)


class PlanarFlow(nn.Module):
    """K planar layers (Rezende & Mohamed 2015) in the normalizing direction, z = g_K ∘ … ∘ g_1(x):

        g(x) = x + û tanh(wᵀx + b),   û = u + (m(wᵀu) − wᵀu) w / ‖w‖²,   m(a) = −1 + softplus(a)
        log p(x) = log N(z) + Σ_k log|1 + û_kᵀ w_k tanh'(w_kᵀ x_k + b_k)|

    The reparametrisation keeps ûᵀw > −1, so each layer is a bijection and the density is normalised.
    Initialised near the identity: w ~ N(0, I) and u = v + (m⁻¹(0) − wᵀv) w/‖w‖², so û = v⊥ (the part of
    v ~ N(0, init_scale² I) orthogonal to w).
    """

    def __init__(self, dim: int = 2, n_layers: int = 32, init_scale: float = 0.1):
        super().__init__()
        self.dim = dim
        w = torch.randn(n_layers, dim)
        v = init_scale * torch.randn(n_layers, dim)
        wv = (w * v).sum(-1, keepdim=True)
        self.w = nn.Parameter(w)
        self.u = nn.Parameter(v + (math.log(math.e - 1) - wv) * w / w.pow(2).sum(-1, keepdim=True))
        self.b = nn.Parameter(torch.zeros(n_layers))

    def u_hat(self) -> Tensor:
        wu = (self.w * self.u).sum(-1, keepdim=True)
        return self.u + (F.softplus(wu) - 1 - wu) * self.w / self.w.pow(2).sum(-1, keepdim=True)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """z = g(x) and log|det ∂g/∂x| for points ``x`` [batch, dim]."""
        _check_points(x, self.dim, "PlanarFlow")
        u_hat = self.u_hat()
        hidden = []
        for u, w, b in zip(u_hat.unbind(0), self.w.unbind(0), self.b.unbind(0), strict=True):
            h = torch.tanh(torch.addmv(b, x, w))  # tanh(wᵀx + b)
            hidden.append(h)
            x = torch.addr(x, h, u)  # x + û h
        slopes = 1 - torch.stack(hidden, dim=1).pow(2)
        logdet = torch.log((1 + slopes * (u_hat * self.w).sum(-1)).abs()).sum(1)
        return x, logdet

    def log_prob(self, x: Tensor) -> Tensor:
        z, logdet = self(x)
        return standard_normal_log_prob(z) + logdet
