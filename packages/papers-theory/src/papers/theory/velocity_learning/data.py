"""Generated data: interleaved spirals lifted to a few dimensions, and trajectories of three classic
two-dimensional dynamical systems simulated with a fine fourth-order Runge–Kutta integrator.

Systems (state ``x = (x1, x2)``):

    pendulum        dθ/dt = ω,        dω/dt = −sin θ               E = ω²/2 − cos θ conserved
    Van der Pol     dx/dt = y,        dy/dt = μ (1 − x²) y − x     (μ = 1; a limit cycle)
    Lotka–Volterra  dx/dt = x − x y,  dy/dt = x y − y              V = x − ln x + y − ln y conserved
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .model import rk4_step


def spirals(
    n: int, num_classes: int, dim: int, noise: float, generator: torch.Generator, turns: float = 1.5
) -> tuple[Tensor, Tensor]:
    """``n`` points on ``num_classes`` interleaved spiral arms in the plane, embedded in ``R^dim``.

    Arm ``c`` is ``r (cos(2π·turns·r + 2πc/C), sin(...))`` for radius ``r ~ U(0.05, 1)``, plus Gaussian
    noise of std ``noise``; the plane is mapped into ``R^dim`` by a random matrix with orthonormal
    columns (drawn from ``generator``), so the task is a 2-D problem seen in ``dim`` coordinates.
    Returns inputs ``(n, dim)`` and integer labels ``(n,)``.
    """
    if dim < 2:
        raise ValueError(f"dim must be at least 2, got {dim}")
    labels = torch.randint(num_classes, (n,), generator=generator)
    radius = 0.05 + 0.95 * torch.rand(n, generator=generator)
    angle = 2 * math.pi * (turns * radius + labels / num_classes)
    plane = radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)
    plane = plane + noise * torch.randn(n, 2, generator=generator)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=generator))
    return plane @ basis.T, labels


@dataclass(frozen=True)
class DynamicalSystem:
    """An autonomous ODE ``dx/dt = field(x)`` with a box of initial conditions and, optionally, a
    conserved quantity ``invariant(x)``."""

    name: str
    field: Callable[[Tensor], Tensor]
    initial_low: tuple[float, float]
    initial_high: tuple[float, float]
    invariant: Callable[[Tensor], Tensor] | None = None

    def sample_initial(self, n: int, generator: torch.Generator) -> Tensor:
        low = torch.tensor(self.initial_low, dtype=torch.float64)
        high = torch.tensor(self.initial_high, dtype=torch.float64)
        return low + (high - low) * torch.rand(n, 2, generator=generator, dtype=torch.float64)


def _pendulum(x: Tensor) -> Tensor:
    theta, omega = x[..., 0], x[..., 1]
    return torch.stack([omega, -torch.sin(theta)], dim=-1)


def _pendulum_energy(x: Tensor) -> Tensor:
    return 0.5 * x[..., 1] ** 2 - torch.cos(x[..., 0])


VAN_DER_POL_MU = 1.0


def _van_der_pol(x: Tensor) -> Tensor:
    p, q = x[..., 0], x[..., 1]
    return torch.stack([q, VAN_DER_POL_MU * (1 - p**2) * q - p], dim=-1)


LOTKA_VOLTERRA_ABCD = (1.0, 1.0, 1.0, 1.0)


def _lotka_volterra(x: Tensor) -> Tensor:
    a, b, c, d = LOTKA_VOLTERRA_ABCD
    prey, predator = x[..., 0], x[..., 1]
    return torch.stack([a * prey - b * prey * predator, d * prey * predator - c * predator], dim=-1)


def _lotka_volterra_invariant(x: Tensor) -> Tensor:
    a, b, c, d = LOTKA_VOLTERRA_ABCD
    prey, predator = x[..., 0], x[..., 1]
    return d * prey - c * torch.log(prey) + b * predator - a * torch.log(predator)


SYSTEMS: dict[str, DynamicalSystem] = {
    "pendulum": DynamicalSystem("pendulum", _pendulum, (-1.5, -1.0), (1.5, 1.0), _pendulum_energy),
    "van_der_pol": DynamicalSystem("van_der_pol", _van_der_pol, (-3.0, -3.0), (3.0, 3.0)),
    "lotka_volterra": DynamicalSystem(
        "lotka_volterra", _lotka_volterra, (0.5, 0.5), (1.5, 1.5), _lotka_volterra_invariant
    ),
}


def simulate(system: DynamicalSystem, x0: Tensor, dt: float, steps: int, substeps: int) -> Tensor:
    """States at times ``0, dt, …, steps·dt`` from ``x0`` of shape ``(batch, 2)``, by RK4 with step
    ``dt / substeps`` in float64. Returns ``(batch, steps + 1, 2)``."""
    if steps < 1 or substeps < 1:
        raise ValueError(f"steps and substeps must be >= 1, got {steps} and {substeps}")
    x = x0.to(torch.float64)
    h = dt / substeps
    states = [x]
    for _ in range(steps):
        for _ in range(substeps):
            x = rk4_step(lambda _t, y: system.field(y), 0.0, x, h)
        states.append(x)
    return torch.stack(states, dim=1)
