"""Two unpaired digit domains from scikit-learn's 8 × 8 digits.

The 1,797 digits are split (stratified by label, seeded) into two DISJOINT halves of source images:
one half becomes domain X as it is, the other half becomes domain Y through a fixed style change, so no
image of X has its counterpart in Y and the translation must be learned unpaired. Each half is split
again into train and test. Both domains are upsampled to ``size`` × ``size`` and scaled to [-1, 1].

    X:  the digit as stored: bright ink (1) on a dark background (0)
    Y:  style(x) = 1 − blur(dilate(x)): strokes thickened by a 3 × 3 max filter, softened by a 3 × 3
        binomial blur, and the intensity inverted (dark ink on white)

The style change is not exactly invertible (dilation merges nearby strokes), but keeps the digit's
identity: a classifier trained on Y reads Y's labels about as well as one trained on X reads X's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from papers.vision.data import check_images, load_digits, resize, stratified_split


def style_y(images: Tensor) -> Tensor:
    """Domain Y's style for images in [0, 1]: ``1 − blur(dilate(x))`` (thicker, softer, inverted)."""
    check_images(images)
    thick = F.max_pool2d(images, 3, stride=1, padding=1)
    kernel = torch.tensor([1.0, 2.0, 1.0], dtype=images.dtype, device=images.device) / 4
    kernel = (kernel[:, None] * kernel[None, :]).expand(images.shape[1], 1, 3, 3)
    blurred = F.conv2d(F.pad(thick, (1, 1, 1, 1), mode="replicate"), kernel, groups=images.shape[1])
    return (1.0 - blurred).clamp(0.0, 1.0)


def to_signed(images: Tensor) -> Tensor:
    """[0, 1] → [-1, 1]."""
    return images * 2.0 - 1.0


def to_unit(images: Tensor) -> Tensor:
    """[-1, 1] → [0, 1]."""
    return ((images + 1.0) / 2.0).clamp(0.0, 1.0)


def make_domains(*, size: int = 16, test_fraction: float = 0.25, seed: int = 0) -> dict[str, Tensor]:
    """Domains X and Y in [-1, 1] at ``size`` × ``size`` with labels and the source indices (into the
    1,797 digits) of every image: keys ``{x,y}_{train,test}``, ``{x,y}_{train,test}_labels``,
    ``{x,y}_{train,test}_source``. The X and Y sources are disjoint."""
    if size < 8 or size % 4:
        raise ValueError(f"size must be a multiple of 4 and >= 8, got {size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digits = load_digits()
    images = resize(digits.images, size) if size != 8 else digits.images
    labels = digits.labels
    x_pool, y_pool = stratified_split(labels, 0.5, seed=seed)  # disjoint halves of the source images
    out: dict[str, Tensor] = {}
    for name, pool, styled in (("x", x_pool, images), ("y", y_pool, style_y(images))):
        train, test = stratified_split(labels[pool], test_fraction, seed=seed + 1)
        for part, index in (("train", pool[train]), ("test", pool[test])):
            out[f"{name}_{part}"] = to_signed(styled[index])
            out[f"{name}_{part}_labels"] = labels[index]
            out[f"{name}_{part}_source"] = index
    return out
