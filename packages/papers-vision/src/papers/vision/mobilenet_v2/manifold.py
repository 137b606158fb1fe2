"""The toy of the paper's Figure 1 (Sec. 3.2): ReLU destroys a low-dimensional manifold unless the
space it is embedded in is wide enough.

A 2-D spiral x (points in R²) is embedded into R^n by a random matrix T (n × 2, Gaussian entries),
passed through ReLU and mapped back with the pseudo-inverse:

    x̂ = T⁺ ReLU(T x),      T⁺ = (TᵀT)⁻¹Tᵀ

Measured, as relative squared errors Σ‖x̂ − x‖² / Σ‖x‖² over the spiral:

    pinv_error      the paper's reconstruction T⁺ ReLU(T x). For large n it tends to x / 2 (each row
                    is active on half of the directions), so it falls towards 1/4, not 0
    scaled_error    the same after the best single scale factor a (x̂ → a x̂), the shape distortion
    linear_error    the best linear decoder B (2 × n, least squares over the spiral) of y = ReLU(T x):
                    how much of the manifold survives linearly
    lost_fraction   the share of points with fewer than two active units: ReLU(T x) keeps at most one
                    direction of them, so no decoder can recover them (the information is destroyed)

With n = 2 or 3 much of the spiral collapses; with n = 15 or 30 almost every point keeps ≥ 2 active
units, and on that set ReLU is the linear map T restricted to the active rows (the paper's argument).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def spiral(points: int = 1000, *, turns: float = 2.0, dtype: torch.dtype = torch.float64) -> Tensor:
    """``(points, 2)`` on the spiral r(s) = s, angle 2π·turns·s, s ∈ [0, 1], centred at the origin."""
    if points < 2:
        raise ValueError(f"points must be >= 2, got {points}")
    if not turns > 0:
        raise ValueError(f"turns must be > 0, got {turns}")
    s = torch.linspace(0.0, 1.0, points, dtype=dtype)
    angle = 2 * math.pi * turns * s
    return torch.stack([s * angle.cos(), s * angle.sin()], dim=1)


def random_embedding(n: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """``T``: an ``(n, 2)`` matrix of standard normal entries."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (T must have a left inverse), got {n}")
    return torch.randn(n, 2, generator=generator, dtype=dtype)


def relu_roundtrip(x: Tensor, T: Tensor) -> tuple[Tensor, Tensor]:
    """``(y, x̂)`` with ``y = ReLU(x Tᵀ)`` of shape ``(P, n)`` and ``x̂ = y (T⁺)ᵀ`` of shape ``(P, 2)``."""
    if x.dim() != 2 or x.shape[1] != 2:
        raise ValueError(f"x must have shape (P, 2), got {tuple(x.shape)}")
    if T.dim() != 2 or T.shape[1] != 2:
        raise ValueError(f"T must have shape (n, 2), got {tuple(T.shape)}")
    y = torch.relu(x @ T.T)
    return y, y @ torch.linalg.pinv(T).T


def _relative(error: Tensor, x: Tensor) -> float:
    return (error.pow(2).sum() / x.pow(2).sum()).item()


def roundtrip_errors(x: Tensor, T: Tensor) -> dict[str, float]:
    """The four measures of the module docstring for one embedding ``T``."""
    y, x_hat = relu_roundtrip(x, T)
    scale = (x_hat * x).sum() / x_hat.pow(2).sum().clamp_min(1e-300)
    decoder = torch.linalg.pinv(y) @ x  # least squares (SVD: unlike lstsq's gelsy, bit-reproducible)
    return {
        "pinv_error": _relative(x_hat - x, x),
        "scaled_error": _relative(scale * x_hat - x, x),
        "linear_error": _relative(y @ decoder - x, x),
        "lost_fraction": ((y > 0).sum(dim=1) < 2).double().mean().item(),
    }


def manifold_sweep(
    dims: tuple[int, ...], *, trials: int, points: int = 1000, turns: float = 2.0, seed: int = 0
) -> dict[int, dict[str, list[float]]]:
    """For each n in ``dims``, the measures of ``trials`` independent random embeddings (seeded)."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    x = spiral(points, turns=turns)
    out: dict[int, dict[str, list[float]]] = {}
    for n in dims:
        generator = torch.Generator().manual_seed(seed * 1000 + n)
        rows = [roundtrip_errors(x, random_embedding(n, generator=generator)) for _ in range(trials)]
        out[n] = {key: [row[key] for row in rows] for key in rows[0]}
    return out
