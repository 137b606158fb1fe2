"""Residual networks as velocity models.

- A residual block ``h ↦ h + s·f(h)`` models the change of the state (a velocity times a step ``s``)
  rather than the new state; with ``f ≡ 0`` it is the identity.
- :class:`DeepMLP` is a plain or residual multilayer perceptron with the same layers in both forms:
  plain ``h_{k+1} = φ_k(h_k)``, residual ``h_{k+1} = h_k + α φ_k(h_k)``, ``φ_k(h) = W_k relu(h) + b_k``.
- :class:`TiedResNet` is the forward-Euler discretisation of ``dh/dt = f(h, t)`` on ``[0, 1]``:
  ``h_{k+1} = h_k + (1/N) f(h_k, k/N)`` with one weight-tied, time-conditioned ``f``; any ``N`` (or an
  adaptive ODE solver) can evaluate the same trained network.
- :class:`UntiedResNet` has one block per layer, ``h_{k+1} = h_k + s f_k(h_k)``; refining it splits each
  block into ``m`` sub-steps ``h ← h + (s/m) f_k(h)``.
- :class:`StepModel` predicts the next state of a dynamical system, ``x_t ↦ x_{t+Δt}``, from a network
  that outputs the next state itself, the increment ``x_{t+Δt} − x_t``, or the velocity ``dx/dt``
  integrated over ``Δt`` by one Runge–Kutta (or Euler) step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

VectorField = Callable[[float | Tensor, Tensor], Tensor]
Parametrisation = Literal["state", "increment", "derivative"]
PARAMETRISATIONS: tuple[str, ...] = ("state", "increment", "derivative")


def euler_step(field: VectorField, t: float | Tensor, h: Tensor, dt: float) -> Tensor:
    """One forward-Euler step ``h + dt·f(t, h)``."""
    return h + dt * field(t, h)


def rk4_step(field: VectorField, t: float | Tensor, h: Tensor, dt: float) -> Tensor:
    """One classical fourth-order Runge–Kutta step of ``dh/dt = f(t, h)``."""
    k1 = field(t, h)
    k2 = field(t + dt / 2, h + dt / 2 * k1)
    k3 = field(t + dt / 2, h + dt / 2 * k2)
    k4 = field(t + dt, h + dt * k3)
    return h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


class ResidualBlock(nn.Module):
    """``h ↦ h + step·branch(h)``: a forward-Euler step of the velocity ``branch``."""

    def __init__(self, branch: nn.Module, step: float = 1.0):
        super().__init__()
        self.branch = branch
        self.step = step

    def forward(self, h: Tensor) -> Tensor:
        return torch.add(h, self.branch(h), alpha=self.step)


class DeepMLP(nn.Module):
    """A ``depth``-layer MLP (``depth`` linear layers), plain or residual, without normalisation.

    ``h_0 = W_in x + b_in``; then ``depth − 2`` layers ``φ_k(h) = W_k relu(h) + b_k`` applied as
    ``h_{k+1} = φ_k(h_k)`` (plain) or ``h_{k+1} = h_k + α φ_k(h_k)`` (residual); the output is
    ``W_out relu(h_L) + b_out``. Both forms have exactly the same parameters. Weights use He
    (Kaiming-normal, fan-in) initialisation and biases start at zero.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int, depth: int, residual: bool,
                 residual_scale: float = 1.0):
        super().__init__()
        if depth < 2:
            raise ValueError(f"depth counts linear layers and must be at least 2, got {depth}")
        self.input_layer = nn.Linear(in_dim, width)
        layers = [nn.Sequential(nn.ReLU(), nn.Linear(width, width)) for _ in range(depth - 2)]
        if residual:
            layers = [ResidualBlock(layer, residual_scale) for layer in layers]
        self.hidden = nn.Sequential(*layers)
        self.output_layer = nn.Sequential(nn.ReLU(), nn.Linear(width, out_dim))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.output_layer(self.hidden(self.input_layer(x)))


class VelocityField(nn.Module):
    """``f(h, t) = W_3 tanh(W_2 tanh(W_1 [h, t] + b_1) + b_2) + b_3`` (``t`` only if ``time_input``).

    Called as ``f(t, h)``, the convention of ODE solvers."""

    def __init__(self, dim: int, width: int, time_input: bool = True):
        super().__init__()
        self.time_input = time_input
        self.net = nn.Sequential(
            nn.Linear(dim + int(time_input), width), nn.Tanh(),
            nn.Linear(width, width), nn.Tanh(),
            nn.Linear(width, dim),
        )

    def forward(self, t: float | Tensor, h: Tensor) -> Tensor:
        if self.time_input:
            time = torch.as_tensor(t, dtype=h.dtype, device=h.device).expand(*h.shape[:-1], 1)
            h = torch.cat([h, time], dim=-1)
        return self.net(h)


class TiedResNet(nn.Module):
    """Classifier ``readout(h(1))`` where ``h(0) = lift(x)`` and ``dh/dt = f(h, t)``.

    ``forward(x, steps=N)`` integrates with ``N`` forward-Euler steps, i.e. ``N`` weight-tied residual
    blocks ``h_{k+1} = h_k + (1/N) f(h_k, k/N)``; :meth:`hidden` exposes ``h(1)``.
    """

    def __init__(self, in_dim: int, dim: int, width: int, num_classes: int):
        super().__init__()
        self.lift = nn.Linear(in_dim, dim)
        self.field = VelocityField(dim, width, time_input=True)
        self.readout = nn.Linear(dim, num_classes)

    def hidden(self, x: Tensor, steps: int) -> Tensor:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        h = self.lift(x)
        for k in range(steps):
            h = euler_step(self.field, k / steps, h, 1.0 / steps)
        return h

    def forward(self, x: Tensor, steps: int) -> Tensor:
        return self.readout(self.hidden(x, steps))


class UntiedResNet(nn.Module):
    """Classifier with ``blocks`` residual blocks that do not share weights:
    ``h_{k+1} = h_k + step·f_k(h_k)``. ``hidden(x, substeps=m)`` applies each block ``m`` times with step
    ``step/m`` (``m = 1`` is the network itself)."""

    def __init__(self, in_dim: int, dim: int, width: int, num_classes: int, blocks: int, step: float = 1.0):
        super().__init__()
        self.step = step
        self.lift = nn.Linear(in_dim, dim)
        self.fields = nn.ModuleList(VelocityField(dim, width, time_input=False) for _ in range(blocks))
        self.readout = nn.Linear(dim, num_classes)

    def hidden(self, x: Tensor, substeps: int = 1) -> Tensor:
        if substeps < 1:
            raise ValueError(f"substeps must be >= 1, got {substeps}")
        h = self.lift(x)
        for field in self.fields:
            for _ in range(substeps):
                h = euler_step(field, 0.0, h, self.step / substeps)
        return h

    def forward(self, x: Tensor, substeps: int = 1) -> Tensor:
        return self.readout(self.hidden(x, substeps))


class StepModel(nn.Module):
    """Predicts ``x_{t+Δt}`` from ``x_t`` with a network ``g`` of standardised inputs ``z = (x − μ_x)/σ_x``:

        state       x̂ = μ_y + σ_y g(z)                 (y = x_{t+Δt})
        increment   x̂ = x + μ_δ + σ_δ g(z)             (δ = x_{t+Δt} − x_t)
        derivative  x̂ = RK4(v, x, Δt),  v(x) = μ_v + σ_v g(z)   (v ≈ dx/dt, statistics of δ/Δt)

    Each target is standardised by its own statistics (buffers ``target_mean``/``target_std``), so
    ``g`` always regresses a unit-scale quantity. :meth:`loss` is the squared next-state error in the
    units of the standardised target, ``‖(x̂ − x_{t+Δt}) / σ‖²`` with ``σ = σ_y`` (state) or ``σ_δ``
    (increment and derivative, since ``Δt·σ_v = σ_δ``).
    """

    def __init__(self, net: nn.Module, parametrisation: Parametrisation, dt: float,
                 input_mean: Tensor, input_std: Tensor, target_mean: Tensor, target_std: Tensor,
                 integrator: Literal["rk4", "euler"] = "rk4"):
        super().__init__()
        if parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {parametrisation!r}")
        if integrator not in ("rk4", "euler"):
            raise ValueError(f"integrator must be 'rk4' or 'euler', got {integrator!r}")
        if not dt > 0:
            raise ValueError(f"dt must be positive, got {dt}")
        self.net = net
        self.parametrisation = parametrisation
        self.dt = dt
        self.integrator = integrator
        self.register_buffer("input_mean", input_mean.clone())
        self.register_buffer("input_std", input_std.clone())
        self.register_buffer("target_mean", target_mean.clone())
        self.register_buffer("target_std", target_std.clone())

    @staticmethod
    def target_statistics(x: Tensor, x_next: Tensor, parametrisation: Parametrisation,
                          dt: float) -> tuple[Tensor, Tensor]:
        """Mean and std of the quantity the network regresses under ``parametrisation``."""
        target = {"state": x_next, "increment": x_next - x, "derivative": (x_next - x) / dt}[parametrisation]
        return target.mean(dim=0), target.std(dim=0)

    def target(self, x: Tensor) -> Tensor:
        """The de-standardised network output ``μ + σ g((x − μ_x)/σ_x)``."""
        return self.target_mean + self.target_std * self.net((x - self.input_mean) / self.input_std)

    def velocity(self, t: float | Tensor, x: Tensor) -> Tensor:
        """The learned vector field ``v(x)`` of the derivative parametrisation (``t`` is ignored)."""
        return self.target(x)

    def forward(self, x: Tensor) -> Tensor:
        if self.parametrisation == "derivative":
            step = rk4_step if self.integrator == "rk4" else euler_step
            return step(self.velocity, 0.0, x, self.dt)
        out = self.target(x)
        return x + out if self.parametrisation == "increment" else out

    def loss(self, x: Tensor, x_next: Tensor) -> Tensor:
        scale = self.target_std * (self.dt if self.parametrisation == "derivative" else 1.0)
        return (((self(x) - x_next) / scale) ** 2).sum(dim=-1).mean()

    @torch.no_grad()
    def rollout(self, x0: Tensor, steps: int) -> Tensor:
        """States ``x_0, x̂_1, …, x̂_steps`` fed back autoregressively; shape ``(batch, steps + 1, dim)``."""
        states = [x0]
        for _ in range(steps):
            states.append(self(states[-1]))
        return torch.stack(states, dim=1)
