"""Group Normalization and the normalizers it is compared with, in a small CNN.

    GN(x)_{n,c,...} = γ_c (x_{n,c,...} − μ_{n,g}) / √(σ²_{n,g} + ε) + β_c,    g = c // (C/G)

μ_{n,g}, σ²_{n,g}: mean and (biased) variance over the C/G channels of group g and all spatial
positions of sample n. G = 1 is LayerNorm over (C, H, W); G = C is InstanceNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

NORMS = ("batch", "group", "layer", "instance")


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalise ``x`` ``(N, C, *spatial)`` per sample over groups of C/G channels (and all positions),
    then apply the per-channel affine ``γ = weight``, ``β = bias``."""
    if x.dim() < 2:
        raise ValueError(f"group_norm expects (N, C, *spatial), got shape {tuple(x.shape)}")
    n, channels = x.shape[:2]
    if num_groups < 1 or channels % num_groups:
        raise ValueError(f"channels ({channels}) must be divisible by num_groups ({num_groups})")
    grouped = x.reshape(n, num_groups, -1)
    mean = grouped.mean(dim=-1, keepdim=True)
    var = grouped.var(dim=-1, unbiased=False, keepdim=True)
    y = ((grouped - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    per_channel = (1, channels) + (1,) * (x.dim() - 2)
    if weight is not None:
        y = y * weight.reshape(per_channel)
    if bias is not None:
        y = y + bias.reshape(per_channel)
    return y


class GroupNorm(nn.Module):
    """``group_norm`` with learned per-channel γ (init 1) and β (init 0)."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5):
        super().__init__()
        if num_groups < 1 or num_channels % num_groups:
            raise ValueError(f"num_channels ({num_channels}) must be divisible by num_groups ({num_groups})")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.shape[1] != self.num_channels:
            raise ValueError(f"expected (N, {self.num_channels}, ...), got shape {tuple(x.shape)}")
        return group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


def make_norm(kind: str, channels: int, groups: int) -> nn.Module:
    """``batch``: torch's BatchNorm2d (batch statistics in training, running ones at test);
    ``group``: GN with ``groups`` groups; ``layer``: GN with G = 1; ``instance``: GN with G = C."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return GroupNorm(groups, channels)
    if kind == "layer":
        return GroupNorm(1, channels)
    if kind == "instance":
        return GroupNorm(channels, channels)
    raise ValueError(f"unknown norm {kind!r}; expected one of {NORMS}")


class SmallCNN(nn.Module):
    """Conv3x3 → norm → ReLU blocks with a 2x2 max-pool after each, then a linear layer on the flattened map.

    ``channels=(32, 32)`` on 8 x 8 inputs: conv → 8 x 8 → pool → 4 x 4 → conv → pool → 2 x 2 → 10 logits.
    """

    def __init__(self, norm: str, *, in_channels: int = 1, image_size: int = 8, n_classes: int = 10,
                 channels: tuple[int, ...] = (32, 32), groups: int = 8):
        super().__init__()
        layers: list[nn.Module] = []
        for width in channels:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                       make_norm(norm, width, groups), nn.ReLU()]
            layers.append(nn.MaxPool2d(2))
            in_channels, image_size = width, image_size // 2
        if image_size < 1:
            raise ValueError(f"{len(channels)} poolings need images of at least {2 ** len(channels)} pixels")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = nn.Linear(in_channels * image_size**2, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4:
            raise ValueError(f"SmallCNN expects images (N, C, H, W), got shape {tuple(x.shape)}")
        return self.head(self.features(x))
