"""Batched image augmentations in torch, with different random parameters for every image of a batch.

Each transform is a small frozen dataclass called as ``transform(images, generator=None)`` on float
images ``(N, C, H, W)`` in [0, 1]; its random numbers come from ``generator`` (a ``torch.Generator``),
so the same seed gives the same output, or from torch's global generator if it is ``None``.
:class:`Compose` chains transforms and :class:`RandomApply` applies one to a random subset of a batch.
Two calls on one batch give the two "views" of contrastive learning::

    augment = Compose([RandomResizedCrop(32), RandomHorizontalFlip(),
                       RandomApply(ColorJitter(0.4, 0.4, 0.4, 0.1), p=0.8), RandomGrayscale(0.2)])
    generator = torch.Generator().manual_seed(0)
    view_1, view_2 = augment(images, generator), augment(images, generator)

Geometry follows ``affine_grid`` / ``grid_sample`` (``align_corners=False``, bilinear): angles are in
degrees, counterclockwise as seen on screen (rotating a square image by 90 degrees is ``torch.rot90``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .images import as_size, check_images, to_grayscale

Transform = Callable[..., torch.Tensor]


def _rand(count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``count`` uniform numbers in [0, 1), drawn on the generator's device and moved to ``device``."""
    source = generator.device if generator is not None else device
    return torch.rand(count, generator=generator, device=source).to(device)


def _uniform(count: int, low: float, high: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return low + (high - low) * _rand(count, generator, device)


def _integers(count: int, high: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """Uniform integers in ``[0, high]``."""
    return (_rand(count, generator, device) * (high + 1)).floor().long().clamp(max=high)


def _check_probability(p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")


def _per_image(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def hflip(images: torch.Tensor) -> torch.Tensor:
    """Mirror ``(N, C, H, W)`` images left to right."""
    check_images(images)
    return images.flip(-1)


def rotate(images: torch.Tensor, degrees: torch.Tensor | float, padding_mode: str = "zeros") -> torch.Tensor:
    """Rotate each image about its centre by ``degrees`` (a number or one per image), counterclockwise.

    Output pixel ``p`` samples the input at ``R(-angle) p`` (bilinear, in pixel units about the centre);
    points outside are filled by ``padding_mode`` ("zeros", "border" or "reflection").
    """
    check_images(images)
    count, _, height, width = images.shape
    angle = torch.as_tensor(degrees, dtype=images.dtype, device=images.device).deg2rad().expand(count)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    # affine_grid works in [-1, 1] coordinates; the aspect terms keep the rotation rigid in pixels.
    theta = torch.stack(
        [
            torch.stack([cos, -sin * height / width, zero], -1),
            torch.stack([sin * width / height, cos, zero], -1),
        ],
        dim=1,
    )
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


@dataclass(frozen=True)
class Compose:
    """Apply ``transforms`` in order, all drawing from the same generator."""

    transforms: Sequence[Transform]

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for transform in self.transforms:
            images = transform(images, generator)
        return images


@dataclass(frozen=True)
class RandomApply:
    """Apply ``transform`` to each image with probability ``p`` (it is computed for the whole batch)."""

    transform: Transform
    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability(self.p)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        chosen = _rand(len(images), generator, images.device) < self.p
        return torch.where(_per_image(chosen), self.transform(images, generator), images)


@dataclass(frozen=True)
class RandomHorizontalFlip:
    """Mirror each image left to right with probability ``p``."""

    p: float = 0.5

    def __post_init__(self) -> None:
        _check_probability(self.p)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        flipped = _rand(len(images), generator, images.device) < self.p
        return torch.where(_per_image(flipped), images.flip(-1), images)


@dataclass(frozen=True)
class RandomCrop:
    """Pad by ``padding`` pixels on every side, then cut a random ``size`` window from each image.

    ``size=None`` keeps the input size, which makes this a random shift by up to ``padding`` pixels.
    ``padding_mode`` is that of ``F.pad``: "constant" (zeros), "reflect", "replicate" or "circular".
    """

    size: int | tuple[int, int] | None = None
    padding: int = 0
    padding_mode: str = "constant"

    def __post_init__(self) -> None:
        if self.padding < 0:
            raise ValueError(f"padding must be >= 0, got {self.padding}")
        if self.size is not None:
            as_size(self.size)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        count = len(images)
        height, width = images.shape[-2:] if self.size is None else as_size(self.size)
        pad = self.padding
        padded = F.pad(images, (pad, pad, pad, pad), mode=self.padding_mode) if pad else images
        free_rows, free_cols = padded.shape[-2] - height, padded.shape[-1] - width
        if free_rows < 0 or free_cols < 0:
            raise ValueError(f"crop {(height, width)} is larger than the padded images {tuple(padded.shape)}")
        top = _integers(count, free_rows, generator, images.device)
        left = _integers(count, free_cols, generator, images.device)
        rows = (top[:, None] + torch.arange(height, device=images.device))[:, :, None]  # (N, h, 1)
        cols = (left[:, None] + torch.arange(width, device=images.device))[:, None, :]  # (N, 1, w)
        batch = torch.arange(count, device=images.device)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (N, h, w, C) -> NCHW


@dataclass(frozen=True)
class RandomResizedCrop:
    """Cut a random window from each image and resize it to ``size`` (bilinear).

    The window covers a fraction ``U(scale)`` of the image's area with aspect ratio (width / height)
    ``exp(U(log ratio))``; a side longer than the image is cut to the image's side.
    """

    size: int | tuple[int, int]
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        as_size(self.size)
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {self.scale}")
        if not 0 < self.ratio[0] <= self.ratio[1]:
            raise ValueError(f"ratio must satisfy 0 < low <= high, got {self.ratio}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        count, channels, height, width = images.shape
        device = images.device
        area = _uniform(count, *self.scale, generator, device)
        ratio = _uniform(count, math.log(self.ratio[0]), math.log(self.ratio[1]), generator, device).exp()
        crop_w = (area * ratio * height / width).sqrt().clamp(max=1.0)  # window width / image width
        crop_h = (area / ratio * width / height).sqrt().clamp(max=1.0)
        centre_x = (1 - crop_w) * _uniform(count, -1.0, 1.0, generator, device)  # in [-1, 1] coordinates
        centre_y = (1 - crop_h) * _uniform(count, -1.0, 1.0, generator, device)
        zero = torch.zeros_like(area)
        theta = torch.stack(
            [torch.stack([crop_w, zero, centre_x], -1), torch.stack([zero, crop_h, centre_y], -1)], dim=1
        ).to(images.dtype)
        grid = F.affine_grid(theta, [count, channels, *as_size(self.size)], align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


@dataclass(frozen=True)
class RandomRotation:
    """Rotate each image by an angle drawn uniformly from ``[-degrees, degrees]`` (or ``(low, high)``)."""

    degrees: float | tuple[float, float]
    padding_mode: str = "zeros"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        low, high = (-self.degrees, self.degrees) if isinstance(self.degrees, (int, float)) else self.degrees
        angles = _uniform(len(images), low, high, generator, images.device)
        return rotate(images, angles, self.padding_mode)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, in that order, each clamped to [0, 1].

    With factors ``b, c, s`` drawn from ``[max(0, 1 - value), 1 + value]`` and a hue turn ``h`` from
    ``[-hue, hue]`` (``hue <= 0.5``), per image::

        brightness  x <- b x
        contrast    x <- m + c (x - m),   m the image's mean grey level
        saturation  x <- g + s (x - g),   g the pixel's grey level (BT.601 luma)
        hue         x <- rotation of the RGB vector by 2 pi h about the grey axis (1, 1, 1)

    Saturation and hue need RGB images; brightness and contrast work on any channel count.
    """

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        if min(self.brightness, self.contrast, self.saturation, self.hue) < 0 or self.hue > 0.5:
            raise ValueError(f"jitter strengths must be >= 0 and hue <= 0.5, got {self}")

    def _factors(self, value: float, count: int, generator, device) -> torch.Tensor:
        return _per_image(_uniform(count, max(0.0, 1.0 - value), 1.0 + value, generator, device))

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images, channels=3 if self.saturation or self.hue else None)
        count, device = len(images), images.device
        if self.brightness:
            brightness = self._factors(self.brightness, count, generator, device)
            images = (brightness * images).clamp(0, 1)
        if self.contrast:
            contrast = self._factors(self.contrast, count, generator, device)
            mean = (to_grayscale(images) if images.shape[1] == 3 else images).mean(
                dim=(1, 2, 3), keepdim=True
            )
            images = (mean + contrast * (images - mean)).clamp(0, 1)
        if self.saturation:
            saturation = self._factors(self.saturation, count, generator, device)
            grey = to_grayscale(images)
            images = (grey + saturation * (images - grey)).clamp(0, 1)
        if self.hue:
            angle = 2 * math.pi * _uniform(count, -self.hue, self.hue, generator, device)
            images = torch.einsum("nij,njhw->nihw", _grey_axis_rotation(angle).to(images.dtype), images)
            images = images.clamp(0, 1)
        return images


def _grey_axis_rotation(angle: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(N, 3, 3)`` by ``angle`` about the unit grey axis ``k = (1, 1, 1) / sqrt 3``
    (Rodrigues): ``R = cos a I + sin a [k]x + (1 - cos a) k k^T``, ``[k]x v = k x v``."""
    c = 1 / math.sqrt(3)
    cross = angle.new_tensor([[0.0, -c, c], [c, 0.0, -c], [-c, c, 0.0]])
    cos, sin = angle.cos().view(-1, 1, 1), angle.sin().view(-1, 1, 1)
    return cos * torch.eye(3, device=angle.device) + sin * cross + (1 - cos) * c * c


@dataclass(frozen=True)
class RandomGrayscale:
    """Replace each RGB image by its grey level (BT.601 luma, kept as 3 channels) with probability ``p``."""

    p: float = 0.1

    def __post_init__(self) -> None:
        _check_probability(self.p)

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images, channels=3)
        chosen = _rand(len(images), generator, images.device) < self.p
        return torch.where(_per_image(chosen), to_grayscale(images).expand_as(images), images)


@dataclass(frozen=True)
class GaussianBlur:
    """Blur each image with a Gaussian of standard deviation (pixels) drawn from ``U(sigma)``.

    The kernel is separable, ``kernel_size`` wide (default ``2 ceil(3 max sigma) + 1``), normalised to
    sum 1; edges are padded by replication.
    """

    sigma: tuple[float, float] = (0.1, 2.0)
    kernel_size: int | None = None

    def __post_init__(self) -> None:
        if not 0 < self.sigma[0] <= self.sigma[1]:
            raise ValueError(f"sigma must satisfy 0 < low <= high, got {self.sigma}")
        if self.kernel_size is not None and (self.kernel_size < 1 or self.kernel_size % 2 == 0):
            raise ValueError(f"kernel_size must be a positive odd int, got {self.kernel_size}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        count, channels, height, width = images.shape
        size = self.kernel_size or 2 * math.ceil(3 * self.sigma[1]) + 1
        sigma = _uniform(count, *self.sigma, generator, images.device).to(images.dtype)
        offsets = torch.arange(size, device=images.device, dtype=images.dtype) - size // 2
        kernel = torch.exp(-(offsets**2) / (2 * sigma[:, None] ** 2))
        kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)  # (N C, K)
        half = size // 2
        flat = F.pad(
            images.reshape(1, count * channels, height, width), (half, half, half, half), "replicate"
        )
        flat = F.conv2d(flat, kernel.view(-1, 1, 1, size), groups=count * channels)  # along the width
        flat = F.conv2d(flat, kernel.view(-1, 1, size, 1), groups=count * channels)  # along the height
        return flat.view(count, channels, height, width)


@dataclass(frozen=True)
class GaussianNoise:
    """Add independent ``N(0, std^2)`` noise to every pixel, then clamp to [0, 1] if ``clip``."""

    std: float = 0.05
    clip: bool = True

    def __post_init__(self) -> None:
        if self.std < 0:
            raise ValueError(f"std must be >= 0, got {self.std}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        source = generator.device if generator is not None else images.device
        noise = torch.randn(images.shape, generator=generator, device=source, dtype=images.dtype)
        noisy = images + self.std * noise.to(images.device)
        return noisy.clamp(0, 1) if self.clip else noisy


@dataclass(frozen=True)
class Cutout:
    """Set a ``size x size`` square at a uniformly random centre (clipped at the borders) to ``fill``,
    in each image with probability ``p`` (DeVries & Taylor 2017)."""

    size: int
    p: float = 1.0
    fill: float = 0.0

    def __post_init__(self) -> None:
        _check_probability(self.p)
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images)
        count, _, height, width = images.shape
        device = images.device
        top = _integers(count, height - 1, generator, device) - self.size // 2
        left = _integers(count, width - 1, generator, device) - self.size // 2
        chosen = _rand(count, generator, device) < self.p
        rows = torch.arange(height, device=device)[None, :] - top[:, None]  # (N, H), inside if in [0, size)
        cols = torch.arange(width, device=device)[None, :] - left[:, None]
        inside = ((rows >= 0) & (rows < self.size))[:, :, None] & ((cols >= 0) & (cols < self.size))[
            :, None, :
        ]
        mask = (inside & chosen[:, None, None]).unsqueeze(1)
        return images.masked_fill(mask, self.fill)


@dataclass(frozen=True)
class Normalize:
    """``(x - mean) / std`` per channel (no randomness); put it last, after the [0, 1] transforms."""

    mean: Sequence[float]
    std: Sequence[float]

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(
                f"mean and std need one entry per channel and std > 0, got {self.mean}, {self.std}"
            )

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_images(images, channels=len(self.mean))
        mean = images.new_tensor(self.mean).view(1, -1, 1, 1)
        return (images - mean) / images.new_tensor(self.std).view(1, -1, 1, 1)
