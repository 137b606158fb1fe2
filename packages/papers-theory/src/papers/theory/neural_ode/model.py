"""ODE-Net modules: a continuous-depth block, its vector field, and the classifier around it.

    ResNet:   h_{k+1} = h_k + f(h_k, θ_k),         k = 0..N−1       (N blocks, N parameter sets)
    ODE-Net:  dh/dt   = f(h(t), t, θ),  h(1) = h(0) + ∫_0^1 f dt     (one parameter set, adaptive depth)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .adjoint import odeint_adjoint
from .solver import NFECounter, odeint

__all__ = ["ConcatLinear", "ODEFunc", "ODEBlock", "ODENet", "ResBlock", "ResNet"]


class ConcatLinear(nn.Module):
    """Linear layer that sees the time too: ``W [x, t] + b`` (the paper's time-as-input option)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.linear = nn.Linear(dim_in + 1, dim_out)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.linear(torch.cat([x, t.to(x).expand(*x.shape[:-1], 1)], dim=-1))


class ODEFunc(nn.Module):
    """The vector field ``f(h, t) = W₂ [σ(W₁ [h, t]), t]`` of an ODE block (an MLP with time inputs)."""

    def __init__(self, dim: int, hidden: int = 64, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.layer1 = ConcatLinear(dim, hidden)
        self.act = activation()
        self.layer2 = ConcatLinear(hidden, dim)

    def forward(self, t: Tensor, h: Tensor) -> Tensor:
        return self.layer2(t, self.act(self.layer1(t, h)))


class ODEBlock(nn.Module):
    """``h ↦ h(t1)`` where ``dh/dt = func(t, h)`` and ``h(0) = h``.

    Gradients use the adjoint method (``adjoint=True``, O(1) memory) or backprop through the solver.
    ``rtol``/``atol``/``method``/``options`` may be changed at any time (e.g. looser at test time).
    ``nfe`` counts the evaluations of ``func`` since the last :meth:`reset_nfe`, backward passes included.
    """

    def __init__(
        self,
        func: nn.Module,
        t1: float = 1.0,
        *,
        rtol: float = 1e-3,
        atol: float = 1e-3,
        method: str = "dopri5",
        options: dict | None = None,
        adjoint: bool = True,
    ):
        super().__init__()
        self.func = NFECounter(func)
        self.t1, self.rtol, self.atol, self.method = t1, rtol, atol, method
        self.options, self.adjoint = options, adjoint

    @property
    def nfe(self) -> int:
        return self.func.nfe

    def reset_nfe(self) -> None:
        self.func.nfe = 0

    def forward(self, h: Tensor) -> Tensor:
        t = torch.tensor([0.0, self.t1], dtype=h.dtype, device=h.device)
        solve = odeint_adjoint if self.adjoint else odeint
        ys = solve(self.func, h, t, rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        return ys[-1]


class ODENet(nn.Module):
    """Classifier: ``Linear(dim_in, width)`` → :class:`ODEBlock` → ``Linear(width, n_classes)``."""

    def __init__(self, dim_in: int, n_classes: int, width: int = 32, hidden: int = 64, **block_kwargs):
        super().__init__()
        self.encoder = nn.Linear(dim_in, width)
        self.block = ODEBlock(ODEFunc(width, hidden), **block_kwargs)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.encoder(x)))


class ResBlock(nn.Module):
    """``h + W₂ σ(W₁ h)``: one Euler step of size 1 of an untied, time-free vector field."""

    def __init__(self, dim: int, hidden: int = 64, activation: type[nn.Module] = nn.Tanh):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), activation(), nn.Linear(hidden, dim))

    def forward(self, h: Tensor) -> Tensor:
        return h + self.net(h)


class ResNet(nn.Module):
    """The discrete baseline: the same encoder and head around ``n_blocks`` :class:`ResBlock` s."""

    def __init__(self, dim_in: int, n_classes: int, width: int = 32, hidden: int = 64, n_blocks: int = 6):
        super().__init__()
        self.encoder = nn.Linear(dim_in, width)
        self.blocks = nn.Sequential(*(ResBlock(width, hidden) for _ in range(n_blocks)))
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.encoder(x)))
