"""An in-memory labelled image dataset, a stratified split and a seeded batch iterator."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

from .images import check_images


def stratified_split(
    labels: torch.Tensor, test_fraction: float = 0.2, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted train and test indices; each class is shuffled and ``round(test_fraction * count)`` of it
    goes to test, so both parts keep the class ratios. The same seed gives the same split."""
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape (N,), got {tuple(labels.shape)}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    train, test = [], []
    for label in torch.unique(labels):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        num_test = round(test_fraction * len(members))
        test.append(members[:num_test])
        train.append(members[num_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def batches(
    *tensors: torch.Tensor,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Aligned mini-batches ``tuple(t[index] for t in tensors)``, shuffled by ``generator`` if asked."""
    if not tensors:
        raise ValueError("batches needs at least one tensor")
    count = len(tensors[0])
    if any(len(t) != count for t in tensors):
        raise ValueError(f"tensors must share their first dimension, got {[tuple(t.shape) for t in tensors]}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    order = torch.randperm(count, generator=generator) if shuffle else torch.arange(count)
    stop = count - count % batch_size if drop_last else count
    for start in range(0, stop, batch_size):
        index = order[start : start + batch_size]
        yield tuple(t[index.to(t.device)] for t in tensors)


@dataclass
class ImageDataset(Dataset):
    """Images ``(N, C, H, W)`` in [0, 1] with integer labels ``(N,)`` and the class names.

    ``dataset[i]`` is ``(image, label)``, so it works with ``torch.utils.data.DataLoader``;
    :meth:`batches` is a lighter seeded iterator over whole tensors.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        check_images(self.images)
        if self.labels.shape != (len(self.images),):
            raise ValueError(f"labels must have shape ({len(self.images)},), got {tuple(self.labels.shape)}")
        self.labels = self.labels.long()
        self.classes = tuple(self.classes)
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(self.classes):
            raise ValueError(f"labels must lie in [0, {len(self.classes)}), the class indices")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageDataset:
        index = torch.as_tensor(indices, dtype=torch.long)
        return ImageDataset(self.images[index], self.labels[index], self.classes)

    def split(self, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[ImageDataset, ImageDataset]:
        """A stratified ``(train, test)`` split (see :func:`stratified_split`)."""
        train, test = stratified_split(self.labels, test_fraction, seed=seed)
        return self.subset(train), self.subset(test)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches ``(images, labels)``, see :func:`batches`."""
        return batches(
            self.images,
            self.labels,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            generator=generator,
        )

    def to(self, device: torch.device | str) -> ImageDataset:
        return ImageDataset(self.images.to(device), self.labels.to(device), self.classes)
