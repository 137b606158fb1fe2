"""Generated 2-D densities: two moons, eight Gaussians on a circle, three concentric rings.

Each sampler takes ``(n, generator)`` and returns ``n`` points [n, 2], roughly centred with unit scale.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["two_moons", "eight_gaussians", "rings", "DATASETS"]


def two_moons(n: int, generator: torch.Generator, noise: float = 0.1) -> Tensor:
    """Two interleaved half circles (upper: (cos θ, sin θ); lower: (1 − cos θ, ½ − sin θ)), centred, ×1.5."""
    theta = math.pi * torch.rand(n, generator=generator)
    lower = torch.rand(n, generator=generator) < 0.5
    x = torch.where(lower, 1 - theta.cos(), theta.cos())
    y = torch.where(lower, 0.5 - theta.sin(), theta.sin())
    points = torch.stack([x - 0.5, y - 0.25], dim=1) * 1.5
    return points + noise * torch.randn(n, 2, generator=generator)


def eight_gaussians(n: int, generator: torch.Generator, radius: float = 2.0, std: float = 0.2) -> Tensor:
    """An equal mixture of N(c_k, std² I), c_k = radius (cos(kπ/4), sin(kπ/4)), k = 0..7."""
    angle = torch.randint(8, (n,), generator=generator) * (math.pi / 4)
    centres = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return centres + std * torch.randn(n, 2, generator=generator)


def rings(n: int, generator: torch.Generator, radii: tuple[float, ...] = (0.8, 1.6, 2.4),
          noise: float = 0.1) -> Tensor:
    """Concentric circles, each point on a ring chosen in proportion to its radius, radial noise."""
    r = torch.tensor(radii)
    ring = torch.multinomial(r / r.sum(), n, replacement=True, generator=generator)
    angle = 2 * math.pi * torch.rand(n, generator=generator)
    radius = r[ring] + noise * torch.randn(n, generator=generator)
    return radius[:, None] * torch.stack([angle.cos(), angle.sin()], dim=1)


DATASETS = {"moons": two_moons, "8gaussians": eight_gaussians, "rings": rings}
