"""Real images that ship with scikit-learn, so they work offline.

load_digits         the 1,797 handwritten digits of the UCI optical-digits set (8 x 8, 16 grey levels),
                    as ``(N, 1, 8, 8)`` floats in [0, 1] (pixel / 16), optionally upsampled bilinearly
load_sample_photo   ``china.jpg`` (427 x 640) or ``flower.jpg`` (427 x 640) as a ``(3, H, W)`` float
                    image, optionally resized, centre-cropped and turned grey
"""

from __future__ import annotations

import torch

from .datasets import ImageDataset
from .images import as_size, center_crop, resize, resize_shorter_side, to_grayscale, uint8_to_float

SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")
DIGIT_CLASSES = tuple(str(digit) for digit in range(10))


def load_digits(size: int | tuple[int, int] | None = None) -> ImageDataset:
    """scikit-learn's 8 x 8 digits: 1,797 images ``(N, 1, 8, 8)`` (or ``size``), labels 0-9."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    images = torch.as_tensor(digits.images, dtype=torch.float32).div(16.0).unsqueeze(1)
    if size is not None:
        images = resize(images, size)
    return ImageDataset(images, torch.as_tensor(digits.target, dtype=torch.long), DIGIT_CLASSES)


def load_sample_photo(
    name: str,
    *,
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
    grayscale: bool = False,
) -> torch.Tensor:
    """A scikit-learn sample photograph as ``(3, H, W)`` in [0, 1] (``(1, H, W)`` if ``grayscale``).

    ``size``: an int resizes the shorter side to it (aspect kept), ``(height, width)`` resizes exactly;
    then ``crop`` takes the central window of that size.
    """
    if name not in SAMPLE_PHOTOS:
        raise ValueError(f"unknown sample photo {name!r}; choose one of {', '.join(SAMPLE_PHOTOS)}")
    from sklearn.datasets import load_sample_image

    image = uint8_to_float(torch.tensor(load_sample_image(name))).unsqueeze(0)
    if isinstance(size, int):
        image = resize_shorter_side(image, as_size(size)[0])
    elif size is not None:
        image = resize(image, size)
    if crop is not None:
        image = center_crop(image, crop)
    if grayscale:
        image = to_grayscale(image)
    return image[0].contiguous()
