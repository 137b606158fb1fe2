"""Generated shape images with known factors of variation (in the spirit of dSprites, Matthey et al. 2017).

Every image shows one shape on a black background, fixed by six factors:

    shape      index into SHAPES = square, circle, ellipse, triangle, heart
    scale      radius of the shape's circumscribed circle, as a fraction of the image side
    rotation   radians, counterclockwise as seen on screen
    x, y       the shape's centroid (centre of area), as fractions of the image side (y runs down)
    hue        colour in HSV with full saturation and value, in [0, 1) (0 red, 1/3 green, 2/3 blue)

Each shape has a signed distance function in its own frame (negative inside; exact for the circle, zero
on every outline and close to the distance near it), moved so that its centroid is at 0 and scaled to
circumradius 1.
A pixel centre ``p`` is mapped into that frame, ``q = R(-rotation) (p - (x, y)) / scale``; the distance
in pixels, ``d``, gives the pixel's coverage ``clamp(0.5 - d, 0, 1)`` when antialiased, ``d < 0`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

SHAPES = ("square", "circle", "ellipse", "triangle", "heart")
FACTOR_NAMES = ("shape", "scale", "rotation", "x", "y", "hue")
_ROOT2 = math.sqrt(2.0)
_CHUNK = 512  # images rendered at once, which bounds the memory used


def _square(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.maximum(x.abs(), y.abs()) - 1.0


def _circle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.hypot(x, y) - 1.0


def _ellipse(x: torch.Tensor, y: torch.Tensor, a: float = 1.0, b: float = 0.5) -> torch.Tensor:
    """First-order distance f / |grad f| of f = (x/a)^2 + (y/b)^2 - 1 (exact on the outline)."""
    level = (x / a) ** 2 + (y / b) ** 2 - 1.0
    gradient = 2.0 * torch.sqrt((x / a**2) ** 2 + (y / b**2) ** 2)
    return level / gradient.clamp_min(1e-6)


def _triangle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Equilateral, apex up (y runs down): the largest distance past its three edge lines."""
    edges = [
        (math.cos(angle), math.sin(angle))
        for angle in (math.pi / 2, math.pi / 2 + 2 * math.pi / 3, math.pi / 2 + 4 * math.pi / 3)
    ]
    return torch.stack([nx * x + ny * y - 0.5 for nx, ny in edges]).amax(dim=0)


def _heart(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A diamond of side 2 with two discs of diameter 2 on its upper edges."""
    diamond = (x.abs() + y.abs()) / _ROOT2 - 1.0
    lobe = torch.hypot(x.abs() - 1.0 / _ROOT2, y + 1.0 / _ROOT2) - 1.0
    return torch.minimum(diamond, lobe)


_RAW_DISTANCES = {"square": _square, "circle": _circle, "ellipse": _ellipse, "triangle": _triangle,
                  "heart": _heart}  # fmt: skip


# Heart centroid: the diamond (area 4, centroid 0) and the two half-discs outside it (area pi/2 each, centroid
# 4 / (3 pi) beyond the edge midpoint); its farthest point from the centroid is the bottom corner.
_HEART_CENTROID_Y = -math.pi * (1.0 + 4.0 / (3.0 * math.pi)) / (_ROOT2 * (4.0 + math.pi))
_FRAMES = {  # (centroid y, circumradius about it) of each raw shape; every centroid x is 0 by symmetry
    "square": (0.0, _ROOT2),
    "circle": (0.0, 1.0),
    "ellipse": (0.0, 1.0),
    "triangle": (0.0, 1.0),
    "heart": (_HEART_CENTROID_Y, _ROOT2 - _HEART_CENTROID_Y),
}


def shape_distance(shape: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Signed distance (< 0 inside) to ``shape`` in its own frame: centroid at 0, circumradius 1."""
    if shape not in _RAW_DISTANCES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(SHAPES)}")
    centroid_y, radius = _FRAMES[shape]
    return _RAW_DISTANCES[shape](x * radius, y * radius + centroid_y) / radius


def _shape_indices(shapes: Sequence[str]) -> torch.Tensor:
    unknown = [name for name in shapes if name not in SHAPES]
    if unknown or not shapes:
        raise ValueError(f"shapes must be a non-empty subset of {', '.join(SHAPES)}, got {list(shapes)}")
    return torch.tensor([SHAPES.index(name) for name in shapes], dtype=torch.long)


@dataclass
class ShapeFactors:
    """The factors of ``N`` shape images, one ``(N,)`` tensor each (see the module docstring)."""

    shape: torch.Tensor
    scale: torch.Tensor
    rotation: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    hue: torch.Tensor

    def __post_init__(self) -> None:
        shapes = {f.name: tuple(getattr(self, f.name).shape) for f in fields(self)}
        if len(set(shapes.values())) != 1 or self.shape.dim() != 1:
            raise ValueError(f"factors must be 1-D tensors of one length, got shapes {shapes}")
        if len(self.shape) and not 0 <= int(self.shape.min()) <= int(self.shape.max()) < len(SHAPES):
            raise ValueError(f"shape indices must lie in [0, {len(SHAPES)}), got {self.shape.tolist()[:10]}")
        if len(self.scale) and float(self.scale.min()) <= 0:
            raise ValueError("scale must be positive")
        self.shape = self.shape.long()

    def __len__(self) -> int:
        return len(self.shape)

    def __getitem__(self, index) -> ShapeFactors:
        return ShapeFactors(*(getattr(self, name)[index].reshape(-1) for name in FACTOR_NAMES))

    def as_tensor(self) -> torch.Tensor:
        """The factors as ``(N, 6)`` floats, columns in the order of ``FACTOR_NAMES``."""
        return torch.stack([getattr(self, name).float() for name in FACTOR_NAMES], dim=1)


def hue_to_rgb(hue: torch.Tensor) -> torch.Tensor:
    """Fully saturated, full-value HSV colours ``(N,)`` -> RGB ``(N, 3)`` in [0, 1]."""
    h6 = (hue % 1.0).unsqueeze(-1) * 6.0
    offsets = h6.new_tensor([3.0, 2.0, 4.0])
    signs = h6.new_tensor([1.0, -1.0, -1.0])
    bases = h6.new_tensor([-1.0, 2.0, 2.0])
    return (bases + signs * (h6 - offsets).abs()).clamp(0.0, 1.0)


def render_shapes(
    factors: ShapeFactors, *, size: int = 64, rgb: bool = True, antialias: bool = True
) -> torch.Tensor:
    """Images ``(N, 3, size, size)`` (``(N, 1, ...)`` white shapes if not ``rgb``) of ``factors``."""
    if not isinstance(size, int) or size < 4:
        raise ValueError(f"size must be an int >= 4, got {size!r}")
    if len(factors) > _CHUNK:
        parts = (factors[start : start + _CHUNK] for start in range(0, len(factors), _CHUNK))
        return torch.cat([render_shapes(part, size=size, rgb=rgb, antialias=antialias) for part in parts])
    centres = (torch.arange(size, dtype=torch.float64, device=factors.x.device) + 0.5) / size
    pixel_y, pixel_x = (c.flatten() for c in torch.meshgrid(centres, centres, indexing="ij"))
    dx = pixel_x - factors.x.double()[:, None]
    dy = pixel_y - factors.y.double()[:, None]
    cos, sin = factors.rotation.double().cos()[:, None], factors.rotation.double().sin()[:, None]
    scale = factors.scale.double()[:, None]
    local_x = (dx * cos - dy * sin) / scale  # R(-rotation) in y-down coordinates
    local_y = (dx * sin + dy * cos) / scale
    distance_px = torch.empty_like(local_x)
    for index, name in enumerate(SHAPES):
        members = factors.shape == index
        distance = shape_distance(name, local_x[members], local_y[members])
        distance_px[members] = distance * scale[members] * size
    coverage = (0.5 - distance_px).clamp(0.0, 1.0) if antialias else (distance_px < 0).double()
    masks = coverage.float().view(-1, 1, size, size)
    if not rgb:
        return masks
    return masks * hue_to_rgb(factors.hue.float()).view(-1, 3, 1, 1)


def sample_shapes(
    count: int,
    *,
    size: int = 64,
    seed: int = 0,
    shapes: Sequence[str] = SHAPES,
    scale: tuple[float, float] = (0.1, 0.2),
    rotation: tuple[float, float] = (0.0, 2 * math.pi),
    x: tuple[float, float] = (0.25, 0.75),
    y: tuple[float, float] = (0.25, 0.75),
    hue: tuple[float, float] = (0.0, 1.0),
    rgb: bool = True,
    antialias: bool = True,
) -> tuple[torch.Tensor, ShapeFactors]:
    """``count`` random images and their factors: the shape uniform over ``shapes``, every other factor
    uniform in its ``(low, high)`` range. The same seed gives the same images."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    generator = torch.Generator().manual_seed(seed)
    choices = _shape_indices(shapes)

    def uniform(bounds: tuple[float, float]) -> torch.Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(count, generator=generator, dtype=torch.float64)

    factors = ShapeFactors(
        shape=choices[torch.randint(len(choices), (count,), generator=generator)],
        scale=uniform(scale),
        rotation=uniform(rotation),
        x=uniform(x),
        y=uniform(y),
        hue=uniform(hue),
    )
    return render_shapes(factors, size=size, rgb=rgb, antialias=antialias), factors


def shape_grid(
    *,
    size: int = 64,
    shapes: Sequence[str] = SHAPES,
    scales: Sequence[float] = (0.1, 0.15, 0.2),
    rotations: Sequence[float] = (0.0,),
    xs: Sequence[float] = (0.3, 0.5, 0.7),
    ys: Sequence[float] = (0.3, 0.5, 0.7),
    hues: Sequence[float] = (0.0,),
    rgb: bool = True,
    antialias: bool = True,
) -> tuple[torch.Tensor, ShapeFactors]:
    """Every combination of the given factor values, in the order of ``FACTOR_NAMES`` (the last, hue,
    varies fastest): ``len(shapes) * len(scales) * ... * len(hues)`` images and their factors."""
    values = [_shape_indices(shapes).double()] + [
        torch.tensor(list(v), dtype=torch.float64) for v in (scales, rotations, xs, ys, hues)
    ]
    factors = ShapeFactors(*(g.flatten() for g in torch.meshgrid(*values, indexing="ij")))
    return render_shapes(factors, size=size, rgb=rgb, antialias=antialias), factors
