"""Hamiltonian systems, four integrators, and learned vector fields with and without Hamiltonian structure.

A state is y = (q, p), stored as one tensor [..., 2d] with q = y[..., :d] and p = y[..., d:]. The
systems are separable, H(q, p) = ½|p|² + V(q), so the force F(q) = −∇V(q) gives the vector field

    dq/dt = ∂H/∂p = p,        dp/dt = −∂H/∂q = F(q),        i.e. dy/dt = J ∇H(y),   J = [[0, I], [−I, 0]].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

INTEGRATORS = ("euler", "rk4", "symplectic_euler", "leapfrog")
ORDERS = {"euler": 1, "rk4": 4, "symplectic_euler": 1, "leapfrog": 2}


def split(y: Tensor) -> tuple[Tensor, Tensor]:
    """(q, p) halves of a state [..., 2d]."""
    if y.dim() < 1 or y.shape[-1] % 2:
        raise ValueError(f"a state must have an even last dimension (q, p), got shape {tuple(y.shape)}")
    d = y.shape[-1] // 2
    return y[..., :d], y[..., d:]


def symplectic_matrix(d: int, dtype=torch.float64) -> Tensor:
    """J = [[0, I], [−I, 0]] of size 2d."""
    eye, zero = torch.eye(d, dtype=dtype), torch.zeros(d, d, dtype=dtype)
    return torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)


@dataclass(frozen=True)
class HamiltonianSystem:
    """H(q, p) = ½|p|² + V(q) with its force F = −∇V written out (no autograd in the hot loop)."""

    name: str
    dim: int  # d, the number of positions
    potential: Callable[[Tensor], Tensor]  # V(q) [..., d] -> [...]
    force: Callable[[Tensor], Tensor]  # −∇V(q) [..., d] -> [..., d]

    def energy(self, y: Tensor) -> Tensor:
        q, p = split(y)
        return 0.5 * p.square().sum(-1) + self.potential(q)

    def field(self, y: Tensor) -> Tensor:
        """dy/dt = J∇H(y) = (p, F(q))."""
        q, p = split(y)
        return torch.cat([p, self.force(q)], -1)


def _kepler_potential(q: Tensor) -> Tensor:
    return -q.square().sum(-1).rsqrt()


def _kepler_force(q: Tensor) -> Tensor:  # −q / |q|³
    return q * -q.square().sum(-1, keepdim=True).pow(-1.5)


SYSTEMS = {
    # ω = 1: H = ½p² + ½q², exact solution a rotation of the (q, p) plane
    "oscillator": HamiltonianSystem("oscillator", 1, lambda q: 0.5 * q.square().sum(-1), lambda q: -q),
    # pendulum with g/l = 1: H = ½p² + 1 − cos q (≥ 0, zero at rest)
    "pendulum": HamiltonianSystem("pendulum", 1, lambda q: (1 - q.cos()).sum(-1), lambda q: -q.sin()),
    # Kepler problem in the plane: H = ½|p|² − 1/|q|
    "kepler": HamiltonianSystem("kepler", 2, _kepler_potential, _kepler_force),
}


def kepler_initial_state(eccentricity: Tensor) -> Tensor:
    """Start at the pericentre of the orbit with semi-major axis 1 (period 2π, H = −½).

    q0 = (1 − e, 0), p0 = (0, √((1 + e)/(1 − e))).
    """
    e = torch.as_tensor(eccentricity, dtype=torch.float64)
    if not bool(((e >= 0) & (e < 1)).all()):
        raise ValueError(f"eccentricity must lie in [0, 1), got {e.tolist()}")
    zero = torch.zeros_like(e)
    return torch.stack([1 - e, zero, zero, ((1 + e) / (1 - e)).sqrt()], -1)


# ----------------------------------------------------------------------------------------------------
# One step of each integrator
# ----------------------------------------------------------------------------------------------------


def euler_step(field: Callable[[Tensor], Tensor], y: Tensor, h: float) -> Tensor:
    """Explicit Euler, order 1: y' = y + h f(y)."""
    return y + h * field(y)


def rk4_step(field: Callable[[Tensor], Tensor], y: Tensor, h: float) -> Tensor:
    """Classical Runge–Kutta, order 4: y' = y + h/6 (k1 + 2k2 + 2k3 + k4)."""
    k1 = field(y)
    k2 = field(y + 0.5 * h * k1)
    k3 = field(y + 0.5 * h * k2)
    k4 = field(y + h * k3)
    return y + (h / 6) * (k1 + 2 * k2 + 2 * k3 + k4)


def symplectic_euler_step(force: Callable[[Tensor], Tensor], q: Tensor, p: Tensor,
                          h: float) -> tuple[Tensor, Tensor]:
    """Symplectic Euler (kick, then drift), order 1: p' = p + h F(q), q' = q + h p'."""
    p = p + h * force(q)
    return q + h * p, p


def leapfrog_step(force: Callable[[Tensor], Tensor], q: Tensor, p: Tensor,
                  h: float) -> tuple[Tensor, Tensor]:
    """Störmer–Verlet (velocity form: half kick, drift, half kick), order 2, symmetric.

    p½ = p + (h/2) F(q),   q' = q + h p½,   p' = p½ + (h/2) F(q').
    """
    p_half = p + (0.5 * h) * force(q)
    q = q + h * p_half
    return q, p_half + (0.5 * h) * force(q)


def step(system: HamiltonianSystem, method: str, y: Tensor, h: float) -> Tensor:
    """One step of ``method`` on ``system`` from the state ``y`` [..., 2d]."""
    if method == "euler":
        return euler_step(system.field, y, h)
    if method == "rk4":
        return rk4_step(system.field, y, h)
    q, p = split(y)
    if method == "symplectic_euler":
        return torch.cat(symplectic_euler_step(system.force, q, p, h), -1)
    if method == "leapfrog":
        return torch.cat(leapfrog_step(system.force, q, p, h), -1)
    raise ValueError(f"unknown integrator {method!r}; choose one of {', '.join(INTEGRATORS)}")


def integrate(system: HamiltonianSystem, method: str, y0: Tensor, h: float, n_steps: int,
              record_every: int = 1) -> Tensor:
    """``n_steps`` steps of size ``h`` from ``y0`` [batch, 2d]; states every ``record_every`` steps.

    Returns [n_steps // record_every + 1, batch, 2d] (the first row is ``y0``). Vectorised over the
    batch, and each step is written on (q, p) directly with fused ``add(alpha=…)`` operations, so a
    step costs a handful of tensor operations (leapfrog reuses the force of its last half kick). The
    results equal those of the single-step functions above. No gradients are recorded.
    """
    if method not in INTEGRATORS:
        raise ValueError(f"unknown integrator {method!r}; choose one of {', '.join(INTEGRATORS)}")
    if y0.dim() != 2 or y0.shape[-1] != 2 * system.dim:
        raise ValueError(f"{system.name}: y0 must have shape [batch, {2 * system.dim}], "
                         f"got {tuple(y0.shape)}")
    if not (h > 0 and math.isfinite(h)) or n_steps < 1 or record_every < 1:
        raise ValueError(f"need h > 0, n_steps >= 1 and record_every >= 1, "
                         f"got {h}, {n_steps}, {record_every}")
    records = torch.empty(n_steps // record_every + 1, *y0.shape, dtype=y0.dtype)
    records[0] = y0
    force, d = system.force, system.dim
    with torch.no_grad():
        q, p = (part.clone() for part in split(y0))
        f = force(q)  # the force at the current q (leapfrog keeps it from the previous step)
        for n in range(1, n_steps + 1):
            if method == "leapfrog":
                p = p.add(f, alpha=0.5 * h)
                q = q.add(p, alpha=h)
                f = force(q)
                p = p.add(f, alpha=0.5 * h)
            elif method == "symplectic_euler":
                p = p.add(force(q), alpha=h)
                q = q.add(p, alpha=h)
            elif method == "euler":
                q, p = q.add(p, alpha=h), p.add(force(q), alpha=h)
            else:  # rk4 on dq/dt = p, dp/dt = F(q): the stages k_i = (p_i, F(q_i))
                p2, q2 = p.add(f := force(q), alpha=0.5 * h), q.add(p, alpha=0.5 * h)
                f2 = force(q2)
                p3, q3 = p.add(f2, alpha=0.5 * h), q.add(p2, alpha=0.5 * h)
                f3 = force(q3)
                p4, q4 = p.add(f3, alpha=h), q.add(p3, alpha=h)
                q = q.add((p + p4).add_(p2.add(p3), alpha=2), alpha=h / 6)
                p = p.add((f + force(q4)).add_(f2.add(f3), alpha=2), alpha=h / 6)
            if n % record_every == 0:
                records[n // record_every, :, :d] = q
                records[n // record_every, :, d:] = p
    return records


def oscillator_leapfrog_modified_energy(y: Tensor, h: float, omega: float = 1.0) -> Tensor:
    """The quadratic invariant of leapfrog on H = ½p² + ½ω²q² (exactly conserved by the map):

    H̃ = ½p² + ½ω²q² (1 − h²ω²/4),   |H − H̃| = h²ω⁴q²/8 ≤ (h²ω²/4) H̃ / (1 − h²ω²/4).
    """
    q, p = split(y)
    return 0.5 * p.square().sum(-1) + 0.5 * omega**2 * q.square().sum(-1) * (1 - h**2 * omega**2 / 4)


# ----------------------------------------------------------------------------------------------------
# Learned dynamics: unconstrained MLP field vs Hamiltonian field f = J∇H_θ (Greydanus et al. 2019)
# ----------------------------------------------------------------------------------------------------


def _mlp(n_in: int, n_out: int, hidden: int, layers: int) -> nn.Sequential:
    modules: list[nn.Module] = []
    for i in range(layers):
        modules += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.Tanh()]
    modules.append(nn.Linear(hidden, n_out))
    return nn.Sequential(*modules)


class MLPField(nn.Module):
    """The baseline: dy/dt = g_θ(y), an MLP with 2d outputs and no structure."""

    def __init__(self, dim: int = 1, hidden: int = 200, layers: int = 2):
        super().__init__()
        self.dim = dim
        self.net = _mlp(2 * dim, 2 * dim, hidden, layers)

    def forward(self, y: Tensor) -> Tensor:
        _check_state(y, self.dim)
        return self.net(y)


class HamiltonianField(nn.Module):
    """Hamiltonian neural network: a scalar H_θ(q, p) (an MLP) and dy/dt = J∇H_θ(y) by autograd.

    dq/dt = ∂H_θ/∂p,  dp/dt = −∂H_θ/∂q. The field is divergence-free and dH_θ/dt = ∇H_θᵀ J ∇H_θ = 0.
    The graph of ∇H_θ is kept (``create_graph``) whenever the parameters or the input need gradients,
    so the field can be trained on derivative targets and differentiated again.
    """

    def __init__(self, dim: int = 1, hidden: int = 200, layers: int = 2):
        super().__init__()
        self.dim = dim
        self.net = _mlp(2 * dim, 1, hidden, layers)

    def hamiltonian(self, y: Tensor) -> Tensor:
        _check_state(y, self.dim)
        return self.net(y).squeeze(-1)

    def forward(self, y: Tensor) -> Tensor:
        keep_graph = torch.is_grad_enabled() and (y.requires_grad or self.training)
        with torch.enable_grad():
            x = y if y.requires_grad else y.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.hamiltonian(x).sum(), x, create_graph=keep_graph)
        dh_dq, dh_dp = split(grad)
        return torch.cat([dh_dp, -dh_dq], -1)


def _check_state(y: Tensor, dim: int) -> None:
    if y.dim() < 1 or y.shape[-1] != 2 * dim:
        raise ValueError(f"expected states of shape [..., {2 * dim}] (q, p), got {tuple(y.shape)}")


def rollout(field: Callable[[Tensor], Tensor], y0: Tensor, h: float, n_steps: int) -> Tensor:
    """RK4 trajectory of a (learned) field: [n_steps + 1, *y0.shape], without parameter gradients."""
    states = [y0.detach()]
    y = y0.detach()
    for _ in range(n_steps):
        y = rk4_step(field, y, h).detach()
        states.append(y)
    return torch.stack(states)
