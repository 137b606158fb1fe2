"""The frozen judges: small digit classifiers, one trained on each domain, that measure how much of a
digit's identity survives translation (accuracy of classify_Y(G(x)) against x's label)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.vision.data import batches

from .model import freeze


class DigitClassifier(nn.Module):
    """conv3-16, ReLU, max-pool, conv3-32, ReLU, max-pool, linear to 10 classes; images in [-1, 1]."""

    def __init__(self, size: int = 16, classes: int = 10, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * (size // 4) ** 2, classes)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images).flatten(1))


def train_classifier(
    images: Tensor,
    labels: Tensor,
    *,
    epochs: int,
    seed: int,
    size: int,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> DigitClassifier:
    """Adam on cross-entropy with small random shifts (±1 pixel); returns the classifier frozen."""
    torch.manual_seed(seed)
    model = DigitClassifier(size).to(images.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for batch, target in batches(images, labels, batch_size=batch_size, generator=generator):
            shift = torch.randint(-1, 2, (2,), generator=generator).tolist()
            batch = torch.roll(batch, shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(batch), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return freeze(model)


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    return torch.cat([model(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)])


def accuracy(model: nn.Module, images: Tensor, labels: Tensor) -> float:
    return (predict(model, images) == labels).float().mean().item()
