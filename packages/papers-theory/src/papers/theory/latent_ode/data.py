"""Irregularly sampled noisy 2-D spirals, clockwise and counter-clockwise (Chen et al. 2018, Sec. 5.1).

Every trajectory lies on one Archimedean spiral r = pitch · φ and turns at unit angular speed from its
own starting angle φ₀:

    counter-clockwise:  φ(t) = φ₀ + t      (moves outwards: r grows with t)
    clockwise:          φ(t) = φ₀ − t      (moves inwards:  r shrinks with t)
    x(t) = r(φ(t)) (cos φ(t), sin φ(t)) + ε,    ε ~ N(0, noise² I)

so the two kinds follow opposite autonomous vector fields, dx/dt = ±(pitch x / r + J x) with J the
rotation by +90°, and a model has to infer the direction from the observations. All trajectories are
evaluated on one regular grid of times; the observed window is its first part, of which a random
subset of points (different for every trajectory) is observed.
"""

from __future__ import annotations

import torch
from torch import Tensor


def spirals(
    n: int,
    *,
    n_grid: int,
    t_end: float,
    pitch: float,
    phi_min: float,
    noise: float,
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """``n`` spirals on the grid ``times = linspace(0, t_end, n_grid)``; half of each direction.

    Starting angles are uniform so that every trajectory stays in ``φ ∈ [phi_min, phi_min + 2 t_end]``.
    Returns ``times [n_grid]``, ``clean`` and ``noisy`` values ``[n, n_grid, 2]`` and ``direction [n]``
    (+1 counter-clockwise, −1 clockwise).
    """
    if n < 1 or n_grid < 2:
        raise ValueError(f"need n >= 1 and n_grid >= 2, got n={n}, n_grid={n_grid}")
    if not (t_end > 0 and pitch > 0 and phi_min > 0 and noise >= 0):
        raise ValueError(f"need t_end, pitch, phi_min > 0 and noise >= 0, got {t_end}, {pitch}, {phi_min}, "
                         f"{noise}")
    times = torch.linspace(0.0, t_end, n_grid)
    direction = torch.ones(n)
    direction[torch.randperm(n, generator=generator)[: n // 2]] = -1.0
    # counter-clockwise: φ₀ ∈ [phi_min, phi_min + t_end]; clockwise: φ₀ ∈ [phi_min + t_end, phi_min + 2 t_end]
    start = phi_min + t_end * (torch.rand(n, generator=generator) + (direction < 0).float())
    phi = start[:, None] + direction[:, None] * times
    clean = (pitch * phi)[..., None] * torch.stack([phi.cos(), phi.sin()], dim=-1)
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    return {"times": times, "clean": clean, "noisy": noisy, "direction": direction}


def observation_mask(n: int, window: int, n_obs: int, generator: torch.Generator) -> Tensor:
    """``[n, window]`` boolean mask, ``n_obs`` observed points per row drawn without replacement."""
    if not 1 <= n_obs <= window:
        raise ValueError(f"need 1 <= n_obs <= window, got n_obs={n_obs}, window={window}")
    order = torch.rand(n, window, generator=generator).argsort(dim=1)
    mask = torch.zeros(n, window, dtype=torch.bool)
    mask.scatter_(1, order[:, :n_obs], True)
    return mask


def observed_sequences(times: Tensor, values: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """The observed points of every row as sequences: times ``[n, k]`` and values ``[n, k, d]``.

    ``values [n, T, d]`` on the shared grid ``times [T]``, ``mask [n, T]`` with the same count ``k`` per row.
    """
    counts = mask.sum(dim=1)
    if not bool((counts == counts[0]).all()):
        raise ValueError(f"every row needs the same number of observations, got {counts.unique().tolist()}")
    rows, cols = mask.nonzero(as_tuple=True)  # row-major: columns increase within every row
    k = int(counts[0])
    return times[cols].reshape(-1, k), values[rows, cols].reshape(-1, k, values.shape[-1])
