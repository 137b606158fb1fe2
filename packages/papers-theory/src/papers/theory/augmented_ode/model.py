"""ODE flows with zero-padded extra dimensions, and three ways for the dynamics to see time.

    ODE flow        φ(x) = h(T),  dh/dt = f(h, t),  h(0) = x                      (state in R^d)
    augmented flow  φ(x) = P h(T),  h(0) = [x, 0_p] ∈ R^{d+p},  P = first d coordinates
    autonomous      f(h)          = W₂ tanh(W₁ h + b₁) + b₂
    time as input   f(h, t)       = W₂ tanh(W₁ [h, t] + b₁) + b₂
    hypernetwork    f(h; θ(t))    = W₂(t) tanh(W₁(t) h + b₁(t)) + b₂(t),   θ(t) = g(t) a small MLP

In one dimension two solutions of dh/dt = f(h, t) cannot cross (uniqueness), so φ is increasing for
every f: an ODE flow cannot map x to −x, and its MSE on that task is at least that of the best
increasing map (:func:`isotonic_regression`). If f does not depend on t, every 1-D trajectory t ↦ h(t)
is monotone too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from papers.theory.neural_ode import NFECounter, odeint

__all__ = ["DYNAMICS", "AutonomousField", "ConcatTimeField", "HyperField", "ODEFlow", "isotonic_regression",
           "make_field", "monotone_trajectory_bound"]

DYNAMICS = ("autonomous", "concat", "hyper")


def _check_state(h: Tensor, dim: int, who: str) -> None:
    if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[-1] != dim:
        shape = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(f"{who}: expected a batch of shape [n, {dim}], got {shape}")


class AutonomousField(nn.Module):
    """``f(h) = W₂ tanh(W₁ h + b₁) + b₂``: the time argument is ignored."""

    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.net(h)


class ConcatTimeField(nn.Module):
    """``f(h, t) = W₂ tanh(W₁ [h, t] + b₁) + b₂``: time is one more input."""

    def __init__(self, dim: int, hidden: int = 32):
        super().__init__()
        self.dim = dim
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.net(torch.cat([h, t.to(h).expand(*h.shape[:-1], 1)], dim=-1))


class HyperField(nn.Module):
    """``f(h; θ(t)) = W₂(t) tanh(W₁(t) h + b₁(t)) + b₂(t)`` with θ(t) = g(t), g an MLP 1 → H → |θ|."""

    def __init__(self, dim: int, hidden: int = 32, hyper_hidden: int = 16):
        super().__init__()
        self.dim, self.hidden = dim, hidden
        self.shapes = {"w1": (hidden, dim), "b1": (hidden,), "w2": (dim, hidden), "b2": (dim,)}
        n_weights = sum(torch.Size(s).numel() for s in self.shapes.values())
        self.hyper = nn.Sequential(nn.Linear(1, hyper_hidden), nn.Tanh(), nn.Linear(hyper_hidden, n_weights))

    def weights(self, t: Tensor) -> dict[str, Tensor]:
        """θ(t) split into the dynamics net's W₁ [hidden, dim], b₁, W₂ [dim, hidden] and b₂."""
        flat = self.hyper(t.reshape(1, 1).to(self.hyper[0].weight)).squeeze(0)
        parts = flat.split([torch.Size(s).numel() for s in self.shapes.values()])
        return {name: part.reshape(shape)
                for (name, shape), part in zip(self.shapes.items(), parts, strict=True)}

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        theta = self.weights(t)
        return torch.tanh(h @ theta["w1"].T + theta["b1"]) @ theta["w2"].T + theta["b2"]


def make_field(kind: str, dim: int, hidden: int = 32, hyper_hidden: int = 16) -> nn.Module:
    """The vector field of one of :data:`DYNAMICS`: ``autonomous``, ``concat`` (t as input) or ``hyper``."""
    if kind == "autonomous":
        return AutonomousField(dim, hidden)
    if kind == "concat":
        return ConcatTimeField(dim, hidden)
    if kind == "hyper":
        return HyperField(dim, hidden, hyper_hidden)
    raise ValueError(f"unknown dynamics {kind!r}; choose one of {', '.join(DYNAMICS)}")


class ODEFlow(nn.Module):
    """``x ↦ P h(t1)``, ``dh/dt = field(t, h)``, ``h(0) = [x, 0_augment]``, solved by ``odeint``.

    ``field`` acts on ``dim + augment`` coordinates; ``augment = 0`` is a plain (native-dimension) ODE
    flow. ``nfe`` counts the field's evaluations since :meth:`reset_nfe` (backward passes included).
    """

    def __init__(self, field: nn.Module, dim: int, augment: int = 0, t1: float = 1.0, *,
                 rtol: float = 1e-3, atol: float = 1e-4, method: str = "dopri5", options: dict | None = None):
        super().__init__()
        if dim < 1 or augment < 0:
            raise ValueError(f"need dim >= 1 and augment >= 0, got dim={dim}, augment={augment}")
        width = getattr(field, "dim", dim + augment)
        if width != dim + augment:
            raise ValueError(f"the field acts on {width} coordinates but the state has dim + augment = "
                             f"{dim + augment}")
        self.field = NFECounter(field)
        self.dim, self.augment, self.t1 = dim, augment, t1
        self.rtol, self.atol, self.method, self.options = rtol, atol, method, options

    @property
    def nfe(self) -> int:
        return self.field.nfe

    def reset_nfe(self) -> None:
        self.field.nfe = 0

    def initial_state(self, x: Tensor) -> Tensor:
        """``[x, 0, …, 0]`` with ``augment`` zeros appended to every point."""
        _check_state(x, self.dim, "ODEFlow")
        return torch.cat([x, x.new_zeros(len(x), self.augment)], dim=-1)

    def trajectory(self, x: Tensor, times: Tensor) -> Tensor:
        """``P h(t)`` at every time in ``times`` (starting at 0): shape [len(times), n, dim]."""
        ys = odeint(self.field, self.initial_state(x), times.to(x), rtol=self.rtol, atol=self.atol,
                    method=self.method, options=self.options)
        return ys[..., : self.dim]

    def forward(self, x: Tensor) -> Tensor:
        return self.trajectory(x, torch.tensor([0.0, self.t1]))[-1]


def isotonic_regression(y: Tensor) -> Tensor:
    """The non-decreasing sequence closest to ``y`` in squared error (pool adjacent violators)."""
    if y.dim() != 1:
        raise ValueError(f"isotonic_regression: expected a 1-D sequence, got shape {tuple(y.shape)}")
    means, sizes = [], []
    for value in y.tolist():
        means.append(value)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:  # pool the violating pair into one block
            size = sizes[-2] + sizes[-1]
            means[-2:] = [(means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size]
            sizes[-2:] = [size]
    return torch.tensor([m for m, s in zip(means, sizes, strict=True) for _ in range(s)], dtype=y.dtype)


def monotone_trajectory_bound(targets: Tensor) -> float:
    """Mean squared error of the best monotone (increasing or decreasing) fit to each row of ``targets``.

    ``targets`` is [n, T] (a trajectory per row, observed at increasing times). An autonomous 1-D ODE
    trajectory is monotone in t, so no autonomous 1-D model fits these trajectories better.
    """
    errors = []
    for row in targets:
        rising = (isotonic_regression(row) - row).pow(2).mean()
        falling = (-isotonic_regression(-row) - row).pow(2).mean()
        errors.append(torch.minimum(rising, falling))
    return torch.stack(errors).mean().item()
