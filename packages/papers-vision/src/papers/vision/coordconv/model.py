"""CoordConv: a convolution that also sees where it is (Liu et al. 2018, Sec. 3, Fig. 3).

For an input ``(N, C, H, W)`` the layer appends coordinate channels and convolves the result:

    i[h, w] = 2 h / (H − 1) − 1        (row, runs down the height, in [−1, 1])
    j[h, w] = 2 w / (W − 1) − 1        (column, runs along the width, in [−1, 1])
    r[h, w] = √(i² + j²) / √2          (optional radius from the centre, in [0, 1])
    CoordConv(x) = Conv2d([x, i, j (, r)])

A side of length 1 gets the coordinate 0. With the weights of the coordinate channels at zero the layer
is the plain convolution of ``x``; otherwise it can be as translation-dependent as the task asks.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from papers.vision.data import check_images


def coordinate_channels(height: int, width: int, *, with_r: bool = False,
                        dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The ``(2 or 3, H, W)`` channels i, j (and r) defined in the module docstring."""
    def axis(n: int) -> Tensor:
        if n == 1:
            return torch.zeros(1, dtype=dtype, device=device)
        return torch.arange(n, dtype=dtype, device=device) * (2.0 / (n - 1)) - 1.0

    i, j = torch.meshgrid(axis(height), axis(width), indexing="ij")
    channels = [i, j]
    if with_r:
        channels.append(torch.sqrt(i**2 + j**2) / math.sqrt(2.0))
    return torch.stack(channels)


def add_coordinates(x: Tensor, *, with_r: bool = False) -> Tensor:
    """``x`` of shape ``(N, C, H, W)`` with the coordinate channels appended: ``(N, C + 2 (+1), H, W)``."""
    check_images(x, name="x")
    n, _, height, width = x.shape
    coords = coordinate_channels(height, width, with_r=with_r, dtype=x.dtype, device=x.device)
    return torch.cat([x, coords.expand(n, -1, -1, -1)], dim=1)


class CoordConv2d(nn.Module):
    """``Conv2d`` over ``[x, i, j (, r)]``; keyword arguments go to ``nn.Conv2d``.

    ``conv.weight[:, :in_channels]`` acts on the image, ``conv.weight[:, in_channels:]`` on the
    coordinates.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, with_r: bool = False,
                 **conv_kwargs):
        super().__init__()
        self.in_channels, self.with_r = in_channels, with_r
        self.conv = nn.Conv2d(in_channels + 2 + int(with_r), out_channels, kernel_size, **conv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, channels=self.in_channels, name="x")
        return self.conv(add_coordinates(x, with_r=self.with_r))


class CoordinateRegressor(nn.Module):
    """Image ``(N, 1, H, W)`` → position ``(N, 2)`` as normalised (i, j) in [−1, 1].

    ``depth`` convolutions of ``channels`` features with ReLU, the first a 3×3 CoordConv when
    ``coords`` (a 3×3 Conv2d otherwise). ``head="max"`` (fully convolutional, the paper's CoordConv
    regressor): the later layers are 1×1, then a 1×1 convolution to 2 maps and a global max over
    positions. ``head="dense"``: the later layers are 3×3 with stride 2 (the first too), then a linear
    layer on the flattened features. With ``coords=False`` and the max head the net is a plain conv net
    whose only position cue is the zero padding at the border.
    """

    def __init__(self, *, coords: bool, channels: int = 8, depth: int = 3, head: str = "max",
                 image_size: int = 32, with_r: bool = False):
        super().__init__()
        if head not in ("max", "dense"):
            raise ValueError(f"head must be 'max' or 'dense', got {head!r}")
        if depth < 1 or channels < 1:
            raise ValueError(f"depth and channels must be >= 1, got {depth} and {channels}")
        stride = 2 if head == "dense" else 1
        first = (CoordConv2d(1, channels, 3, padding=1, stride=stride, with_r=with_r) if coords
                 else nn.Conv2d(1, channels, 3, padding=1, stride=stride))
        layers: list[nn.Module] = [first, nn.ReLU()]
        kernel = 3 if head == "dense" else 1
        for _ in range(depth - 1):
            layers += [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, stride=stride), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = head
        if head == "max":
            self.out = nn.Conv2d(channels, 2, 1)
        else:
            side = image_size
            for _ in range(depth):
                side = (side - 1) // 2 + 1
            self.out = nn.Linear(channels * side * side, 2)

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=1, name="images")
        h = self.features(images)
        if self.head == "max":
            return self.out(h).amax(dim=(2, 3))
        return self.out(h.flatten(1))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
