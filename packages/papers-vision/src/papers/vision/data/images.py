"""Checks and resampling for image tensors.

Conventions of the whole data layer: a batch of images is a float tensor ``(N, C, H, W)`` with values
in [0, 1], channels first; a single image is ``(C, H, W)``. Sizes are ``int`` (square) or ``(height,
width)``. Pixel ``(i, j)`` covers the square ``[j, j + 1] x [i, i + 1]``, its centre is at
``(j + 0.5, i + 0.5)``, and ``x`` runs along the width, ``y`` down the height.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601: grey = 0.299 R + 0.587 G + 0.114 B


def check_images(images: torch.Tensor, *, channels: int | None = None, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a floating ``(N, C, H, W)`` tensor (with ``channels``)."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got {tuple(images.shape)}")
    if channels is not None and images.shape[1] != channels:
        raise ValueError(f"{name} must have {channels} channel(s), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor with values in [0, 1], got {images.dtype}")


def as_size(size: int | tuple[int, int], name: str = "size") -> tuple[int, int]:
    """``size`` as ``(height, width)`` of positive integers."""
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if not (isinstance(height, int) and isinstance(width, int) and height > 0 and width > 0):
        raise ValueError(f"{name} must be a positive int or (height, width), got {size!r}")
    return height, width


def uint8_to_float(pixels: torch.Tensor) -> torch.Tensor:
    """``uint8`` pixels ``(..., H, W, C)`` (as files hold them) as floats ``(..., C, H, W)`` in [0, 1]."""
    return pixels.movedim(-1, -3).to(torch.float32).div(255.0).contiguous()


def resize(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(N, C, H, W)`` images to ``size`` (antialiased when shrinking)."""
    check_images(images)
    height, width = as_size(size)
    shrinking = height < images.shape[-2] or width < images.shape[-1]
    return F.interpolate(images, (height, width), mode="bilinear", align_corners=False, antialias=shrinking)


def resize_shorter_side(images: torch.Tensor, length: int) -> torch.Tensor:
    """Resize so that the shorter side is ``length`` pixels, keeping the aspect ratio."""
    check_images(images)
    height, width = images.shape[-2:]
    scale = length / min(height, width)
    return resize(images, (max(1, round(height * scale)), max(1, round(width * scale))))


def center_crop(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The central ``size`` window of ``(N, C, H, W)`` images."""
    check_images(images)
    height, width = as_size(size)
    if height > images.shape[-2] or width > images.shape[-1]:
        raise ValueError(f"crop {(height, width)} is larger than the images, shape {tuple(images.shape)}")
    top = (images.shape[-2] - height) // 2
    left = (images.shape[-1] - width) // 2
    return images[..., top : top + height, left : left + width]


def to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` RGB images as ``(N, 1, H, W)`` luma (BT.601 weights)."""
    check_images(images, channels=3)
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)
