"""The supervised coordinate-regression data (Liu et al. 2018, Sec. 4, Fig. 1b): one active pixel.

Every position (i, j) of a ``size`` × ``size`` canvas gives one image ``(1, size, size)`` with a 1 at
row i, column j and 0 elsewhere; the target is (i, j). Two train/test splits, as in the paper:

    uniform    a seeded random ``test_fraction`` of all positions is held out
    quadrant   the positions with i ≥ size/2 and j ≥ size/2 (the lower-right quadrant) are held out
"""

from __future__ import annotations

import torch
from torch import Tensor


def one_hot_pixels(size: int) -> tuple[Tensor, Tensor]:
    """All ``size²`` images ``(size², 1, size, size)`` in row-major order and their (i, j) ``(size², 2)``."""
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    positions = torch.cartesian_prod(torch.arange(size), torch.arange(size))
    images = torch.zeros(size * size, 1, size, size)
    images[torch.arange(size * size), 0, positions[:, 0], positions[:, 1]] = 1.0
    return images, positions


def in_held_out_quadrant(positions: Tensor, size: int) -> Tensor:
    """Boolean mask of the positions in the lower-right quadrant (i ≥ size/2 and j ≥ size/2)."""
    half = size / 2
    return (positions[:, 0] >= half) & (positions[:, 1] >= half)


def quadrant_split(positions: Tensor, size: int) -> tuple[Tensor, Tensor]:
    """Indices (train, test): test is exactly the lower-right quadrant."""
    held_out = in_held_out_quadrant(positions, size)
    return torch.nonzero(~held_out).flatten(), torch.nonzero(held_out).flatten()


def uniform_split(count: int, test_fraction: float, *, seed: int) -> tuple[Tensor, Tensor]:
    """Sorted indices (train, test) with ``round(test_fraction * count)`` random ones held out."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    num_test = round(test_fraction * count)
    return order[num_test:].sort().values, order[:num_test].sort().values
