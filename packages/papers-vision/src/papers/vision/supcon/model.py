"""The supervised contrastive loss and a small encoder for 8 x 8 digits (Khosla et al. 2020, Sec. 3).

A multiviewed batch holds 2N views ``z_1 .. z_2N`` (two augmentations of each of N images) on the unit
sphere, with labels ``y``. For an anchor i, A(i) = every view but i, P(i) = {p ∈ A(i) : y_p = y_i}
(its positives: the other view of its image and every view of the same class) and

    softmax_i(p) = exp(z_i·z_p / τ) / Σ_{a∈A(i)} exp(z_i·z_a / τ)

    L_out = Σ_i −1/|P(i)| Σ_{p∈P(i)} log softmax_i(p)           (eq. 2, the average outside the log)
    L_in  = Σ_i −log( 1/|P(i)| Σ_{p∈P(i)} softmax_i(p) )        (eq. 3, the average inside the log)

By Jensen's inequality (−log is convex) L_in ≤ L_out, with equality when |P(i)| = 1; with labels that
only pair the two views of one image both are SimCLR's NT-Xent loss (eq. 1). The gradient of the anchor
term of L_out with respect to z_i (supplementary, Sec. 6) is

    ∂L_i/∂z_i = 1/τ [ Σ_{p∈P(i)} z_p (softmax_i(p) − 1/|P(i)|) + Σ_{n∈N(i)} z_n softmax_i(n) ],

N(i) the negatives (the views of other classes). ``reduction="mean"`` divides the sum by the number of
anchors (as the authors' code does); the reference code's extra factor τ / base_τ is not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.vision.data import check_images

VARIANTS = ("out", "in")
REDUCTIONS = ("mean", "sum", "none")


def flatten_views(features: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(N, V, D)`` views of N images → ``(V·N, D)`` anchors (view-major) and their ``(V·N,)`` labels.

    Without ``labels`` every image is its own class (the self-supervised case)."""
    if features.dim() != 3 or features.shape[1] < 2:
        raise ValueError(f"features must have shape (N, V, D) with V >= 2 views, got {tuple(features.shape)}")
    count, views, _ = features.shape
    if labels is None:
        labels = torch.arange(count, device=features.device)
    _check_labels(labels, count)
    return features.transpose(0, 1).reshape(views * count, -1), labels.repeat(views)


def _check_labels(labels: Tensor, count: int) -> None:
    if not isinstance(labels, Tensor) or labels.shape != (count,):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(f"labels must have shape ({count},), got {shape}")
    if labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"labels must be integers, got {labels.dtype}")


def supcon_anchor_losses(
    z: Tensor, labels: Tensor, *, temperature: float = 0.1, variant: str = "out"
) -> Tensor:
    """The per-anchor terms ``(M,)`` of L_out or L_in for anchors ``z`` ``(M, D)`` with labels ``(M,)``.

    ``z`` should lie on the unit sphere (the loss does not normalise it). Every anchor needs a positive.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if z.dim() != 2 or len(z) < 2:
        raise ValueError(f"z must have shape (M, D) with M >= 2 anchors, got {tuple(z.shape)}")
    _check_labels(labels, len(z))
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positive = (labels[:, None] == labels[None, :]) & ~self_mask  # P(i)
    num_positive = positive.sum(1)
    if (num_positive == 0).any():
        lonely = torch.nonzero(num_positive == 0).flatten()[:5].tolist()
        raise ValueError(
            f"every anchor needs a positive (another view with its label); anchors {lonely} have none"
        )
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))  # the sums run over A(i)
    log_softmax = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    if variant == "out":
        return -log_softmax.masked_fill(~positive, 0.0).sum(1) / num_positive
    inside = torch.logsumexp(log_softmax.masked_fill(~positive, float("-inf")), dim=1)
    return -(inside - num_positive.to(z.dtype).log())


def supcon_loss(
    features: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 0.1,
    variant: str = "out",
    reduction: str = "mean",
) -> Tensor:
    """SupCon loss L_out (``variant="out"``, the paper's choice) or L_in of a multiviewed batch.

    ``features`` ``(N, V, D)``: V unit-norm views of each of N images, with ``labels`` ``(N,)`` (None:
    SimCLR, each image its own class); or already flat anchors ``(M, D)`` with ``labels`` ``(M,)``.
    ``reduction``: "mean" over anchors, "sum" (the paper's Σ_i) or "none" (``(M,)``).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if features.dim() == 3:
        z, anchor_labels = flatten_views(features, labels)
    elif features.dim() == 2:
        if labels is None:
            raise ValueError("labels are needed for flat (M, D) features; pass (N, V, D) views for SimCLR")
        z, anchor_labels = features, labels
    else:
        raise ValueError(f"features must have shape (N, V, D) or (M, D), got {tuple(features.shape)}")
    losses = supcon_anchor_losses(z, anchor_labels, temperature=temperature, variant=variant)
    if reduction == "none":
        return losses
    return losses.mean() if reduction == "mean" else losses.sum()


class DigitEncoder(nn.Module):
    """Enc: images ``(N, 1, H, W)`` → representations r ``(N, dim)``; a small CNN in place of ResNet-50.

    conv3×3(c₁)–BN–ReLU → conv3×3(c₂)–BN–ReLU → max-pool 2 → conv3×3(c₂)–BN–ReLU → flatten →
    linear(dim)–ReLU.
    """

    def __init__(self, *, channels: tuple[int, int] = (32, 64), dim: int = 128, image_size: int = 8):
        super().__init__()
        if len(channels) != 2 or min(channels) < 1 or dim < 1:
            raise ValueError(f"channels must be two positive ints and dim >= 1, got {channels}, {dim}")
        if image_size < 2 or image_size % 2:
            raise ValueError(f"image_size must be an even int >= 2, got {image_size}")
        c1, c2 = channels
        self.image_size = image_size

        def block(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.features = nn.Sequential(*block(1, c1), *block(c1, c2), nn.MaxPool2d(2), *block(c2, c2))
        self.out = nn.Sequential(nn.Linear(c2 * (image_size // 2) ** 2, dim), nn.ReLU())
        self.dim = dim

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=1, name="images")
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"images must be {self.image_size} x {self.image_size}, got {tuple(images.shape)}"
            )
        return self.out(self.features(images).flatten(1))


class ProjectionHead(nn.Module):
    """Proj: r ``(N, dim_in)`` → z = normalise(W₂ ReLU(W₁ r)) on the unit sphere ``(N, dim_out)``.

    The paper's head is 2048 → 2048 → 128; it is discarded after pre-training."""

    def __init__(self, dim_in: int = 128, hidden: int = 128, dim_out: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim_in, hidden), nn.ReLU(), nn.Linear(hidden, dim_out))

    def forward(self, r: Tensor) -> Tensor:
        return F.normalize(self.net(r), dim=-1)


class SupConNet(nn.Module):
    """Encoder + projection head: ``net(images)`` is z on the unit sphere, ``net.encoder(images)`` is r."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.encoder(images))
