"""2-D toy data (8 Gaussians, two moons, swiss roll), the exact noise predictor of a Gaussian mixture,
and the sample-quality metrics (sliced Wasserstein distance, MMD).

Every data set is centred and scaled by fixed constants to a per-coordinate variance of about 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from .model import Diffusion


class GaussianMixture:
    """p(x) = Σ_k π_k N(x; m_k, s_k² I) in D dimensions.

    Noised by the forward process, q_t(x_t) = Σ_k π_k N(x_t; √ᾱ_t m_k, (ᾱ_t s_k² + 1 − ᾱ_t) I), so the
    optimal noise predictor E[ε | x_t] = −√(1 − ᾱ_t) ∇ log q_t(x_t) is known in closed form (``eps``).
    """

    def __init__(self, means: Tensor, stds: Tensor, weights: Tensor):
        if means.ndim != 2 or stds.shape != (len(means),) or weights.shape != (len(means),):
            raise ValueError(f"need means [K, D], stds [K], weights [K]; got {tuple(means.shape)}, "
                             f"{tuple(stds.shape)}, {tuple(weights.shape)}")
        if not (bool((stds > 0).all()) and bool((weights > 0).all())):
            raise ValueError("stds and weights must be positive")
        self.means, self.stds = means.double(), stds.double()
        self.weights = weights.double() / weights.sum()

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``n`` samples [n, D] (float32) and the component each came from [n]."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        x = self.means[component] + self.stds[component, None] * noise
        return x.float(), component

    def noised(self, alpha_bar: Tensor) -> tuple[Tensor, Tensor]:
        """Means [B, K, D] and variances [B, K] of q_t's components for per-sample ᾱ_t [B]."""
        a = alpha_bar.double()[:, None]
        return a.sqrt()[..., None] * self.means, a * self.stds**2 + 1 - a

    def eps(self, x_t: Tensor, t: Tensor, diffusion: Diffusion) -> Tensor:
        """E[ε | x_t] = Σ_k r_k(x_t) √(1−ᾱ_t) (x_t − √ᾱ_t m_k) / (ᾱ_t s_k² + 1 − ᾱ_t), r_k the posterior
        responsibilities of the components given x_t."""
        alpha_bar = diffusion.at(diffusion.alpha_bars, t, x_t).flatten()
        means, variances = self.noised(alpha_bar)
        x = x_t.double()[:, None, :]
        sq = (x - means).pow(2).sum(-1)
        log_r = self.weights.log() - 0.5 * sq / variances - 0.5 * x_t.shape[1] * variances.log()
        r = torch.softmax(log_r, dim=1)
        eps_k = (1 - alpha_bar).sqrt()[:, None, None] * (x - means) / variances[..., None]
        return (r[..., None] * eps_k).sum(1).to(x_t.dtype)


def eight_gaussians(radius: float = 1.4, std: float = 0.1) -> GaussianMixture:
    """Eight equal modes on a circle: m_k = r (cos 2πk/8, sin 2πk/8); variance r²/2 + s² ≈ 1 per axis."""
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=1)
    return GaussianMixture(means, torch.full((8,), std), torch.ones(8))


def two_moons(n: int, generator: torch.Generator, noise: float = 0.05) -> Tensor:
    """Two interleaved half circles (cos θ, sin θ) and (1 − cos θ, ½ − sin θ), θ ~ U[0, π], plus
    N(0, noise²) jitter; centred at (½, ¼) and scaled by √2 (per-axis variance 0.75, 0.24 before)."""
    theta = math.pi * torch.rand(n, generator=generator)
    lower = torch.rand(n, generator=generator) < 0.5
    x = torch.where(lower, 1 - theta.cos(), theta.cos())
    y = torch.where(lower, 0.5 - theta.sin(), theta.sin())
    points = torch.stack([x, y], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return (points - torch.tensor([0.5, 0.25])) * math.sqrt(2)


def swiss_roll(n: int, generator: torch.Generator, noise: float = 0.5) -> Tensor:
    """A 2-D swiss roll θ (cos θ, sin θ), θ = 1.5π (1 + 2u), u ~ U[0, 1], plus N(0, noise²) jitter;
    centred at (2.0, 0.2) and divided by 6.8 (its root-mean per-axis standard deviation)."""
    theta = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=generator))
    points = theta[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
    points = points + noise * torch.randn(n, 2, generator=generator)
    return (points - torch.tensor([2.0, 0.2])) / 6.8


DATASETS: dict[str, Callable[[int, torch.Generator], Tensor]] = {
    "8gaussians": lambda n, generator: eight_gaussians().sample(n, generator)[0],
    "moons": two_moons,
    "swiss_roll": swiss_roll,
}


def sliced_wasserstein(x: Tensor, y: Tensor, projections: int = 256, generator: torch.Generator | None = None,
                       ) -> float:
    """SW₂(x, y) = (E_u W₂²(uᵀx, uᵀy))^½ over ``projections`` random unit directions u, each 1-D W₂
    from the sorted projections (x and y of equal size)."""
    _check_pair(x, y)
    if len(x) != len(y):
        raise ValueError(f"sliced_wasserstein needs equal sample sizes, got {len(x)} and {len(y)}")
    directions = torch.randn(x.shape[1], projections, generator=generator, dtype=torch.float64)
    directions = directions / directions.norm(dim=0, keepdim=True)
    px, py = (x.double() @ directions).sort(0).values, (y.double() @ directions).sort(0).values
    return (px - py).pow(2).mean().sqrt().item()


def mmd2(x: Tensor, y: Tensor, bandwidths: tuple[float, ...] = (0.05, 0.1, 0.2, 0.5, 1.0)) -> float:
    """Unbiased squared maximum mean discrepancy with the kernel Σ_h exp(−‖a − b‖² / (2h²))."""
    _check_pair(x, y)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("mmd2 needs at least two samples on each side")
    x, y = x.double(), y.double()

    def kernel(a: Tensor, b: Tensor) -> Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * h**2)) for h in bandwidths)

    def mean_off_diagonal(k: Tensor) -> Tensor:
        return (k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1))

    return (mean_off_diagonal(kernel(x, x)) + mean_off_diagonal(kernel(y, y))
            - 2 * kernel(x, y).mean()).item()


def _check_pair(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need two sample sets [n, D] of the same D, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
