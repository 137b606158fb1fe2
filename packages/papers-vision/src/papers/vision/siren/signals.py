"""Images as signals on a coordinate grid: the grid, Sobel gradients, a discrete Laplacian, PSNR.

Pixel (i, j) of an ``H`` × ``W`` image sits at the coordinate ``(y_i, x_j)`` with
``y_i = 2 i / (H − 1) − 1`` (down the rows) and ``x_j = 2 j / (W − 1) − 1`` (along the columns), the
grid of the paper's code (``get_mgrid``: ``linspace(−1, 1)``). One pixel step is ``2 / (H − 1)`` in
``y``, so a derivative per pixel is multiplied by ``(H − 1) / 2`` to be one per unit of coordinate.

    Sobel    ∂f/∂y ≈ ([−1, 0, 1]ᵀ ⊗ [1, 2, 1]) ⋆ f / 8 · (H − 1)/2     (and ∂f/∂x with the transposed kernel)
    Laplace  Δf ≈ (f[i±1, j] + f[i, j±1] − 4 f[i, j]) · ((H − 1)/2)²  (square pixels)
    PSNR     10 log10(1 / mean((clip(f̂, 0, 1) − f)²))                  for images in [0, 1]

Borders are padded by replicating the edge pixel (scipy's "reflect" mode for a 3 × 3 kernel).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

SOBEL_Y = ((-1.0, -2.0, -1.0), (0.0, 0.0, 0.0), (1.0, 2.0, 1.0))  # ∂/∂y (rows), up to the factor 8


def _check_image(image: Tensor, name: str = "image") -> None:
    if not isinstance(image, Tensor) or not image.is_floating_point() or image.dim() != 2:
        shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"{name} must be a floating (H, W) tensor, got {shape}")
    if min(image.shape) < 3:
        raise ValueError(f"{name} must be at least 3 x 3 pixels, got {tuple(image.shape)}")


def pixel_grid(height: int, width: int, *, dtype: torch.dtype = torch.float32) -> Tensor:
    """The ``(H · W, 2)`` coordinates ``(y, x)`` of the pixels in row-major order, in [−1, 1]."""
    if height < 2 or width < 2:
        raise ValueError(f"the grid needs at least 2 x 2 pixels, got {height} x {width}")
    y = torch.linspace(-1.0, 1.0, height, dtype=dtype)
    x = torch.linspace(-1.0, 1.0, width, dtype=dtype)
    return torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2)


def _filter(image: Tensor, kernel: Tensor) -> Tensor:
    padded = F.pad(image[None, None], (1, 1, 1, 1), mode="replicate")
    return F.conv2d(padded, kernel.to(image.dtype)[None, None])[0, 0]


def sobel_gradient(image: Tensor) -> Tensor:
    """``(H, W, 2)``: (∂f/∂y, ∂f/∂x) per unit of the grid coordinates, by the Sobel operator."""
    _check_image(image)
    kernel = torch.tensor(SOBEL_Y)
    height, width = image.shape
    d_y = _filter(image, kernel) / 8.0 * ((height - 1) / 2.0)
    d_x = _filter(image, kernel.T) / 8.0 * ((width - 1) / 2.0)
    return torch.stack([d_y, d_x], dim=-1)


def discrete_laplacian(image: Tensor) -> Tensor:
    """``(H, W)``: the 5-point Laplacian per squared unit of the grid coordinates (square pixels)."""
    _check_image(image)
    kernel = torch.tensor(((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0)))
    return _filter(image, kernel) * ((image.shape[0] - 1) / 2.0) ** 2


def psnr(estimate: Tensor, target: Tensor) -> float:
    """PSNR in dB of ``estimate`` (clipped to [0, 1]) against ``target`` in [0, 1]."""
    if estimate.shape != target.shape:
        raise ValueError(f"shapes differ: {tuple(estimate.shape)} vs {tuple(target.shape)}")
    mse = (estimate.clamp(0.0, 1.0) - target).pow(2).mean().item()
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def match_offset(estimate: Tensor, target: Tensor) -> Tensor:
    """``estimate`` shifted by a constant to the mean of ``target`` (a gradient fixes f only up to it)."""
    return estimate - estimate.mean() + target.mean()
