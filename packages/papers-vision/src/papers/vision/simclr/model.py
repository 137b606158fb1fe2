"""SimCLR's contrastive objective (Chen et al. 2020) and its debiased form (Chuang et al. 2020).

Two augmented views of a batch of N images give 2N embeddings z = g(f(x)); similarities are cosines,
s_ij = z_i·z_j / (|z_i| |z_j|), scaled by the temperature t. For anchor i its positive is the other
view of the same image, p(i), and the other 2N − 2 views are its negatives.

    NT-Xent (SimCLR eq. 1)     l_i = −log( e^{s_ip/t} / Σ_{k≠i} e^{s_ik/t} ),   L = mean over all 2N anchors

    debiased (Chuang eq. 7)    g_i = max( (1/(1−τ+)) (mean_neg e^{s_in/t} − τ+ · mean_pos e^{s_iv/t}),
                                          e^{−1/t} )
                               l_i = −log( e^{s_ip/t} / (e^{s_ip/t} + N_neg · g_i) )

with τ+ the class prior (the chance that a "negative" shares the anchor's class), N_neg = 2N − 2 the
number of negatives and v the M positives used to estimate the false-negative mass (here the anchor's
positive itself, M = 1, unless more are given). e^{−1/t} is the smallest value e^{s/t} can take (s ≥ −1),
so the clamp keeps the estimated negative mass positive. With τ+ = 0 the estimate is the plain mean of
the negatives and the loss equals NT-Xent's written with the same negatives.

Networks (reduced for 8 × 8 digits): the encoder f is a small conv net whose 128-d output h is the
representation that is probed; the projection head g is SimCLR's two-layer MLP, h → ReLU(W1 h) → W2 ·.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.vision.data import check_images


def _check_pair(z1: Tensor, z2: Tensor) -> None:
    if z1.dim() != 2 or z2.dim() != 2:
        raise ValueError(f"views must have shape (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if z1.shape != z2.shape:
        raise ValueError(
            f"the two views must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if len(z1) < 2:
        raise ValueError(f"need a batch of at least 2 images (so there are negatives), got {len(z1)}")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")


def _check_tau_plus(tau_plus: float) -> None:
    if not 0.0 <= tau_plus < 1.0:
        raise ValueError(f"tau_plus must be in [0, 1), got {tau_plus}")


def pair_similarities(z1: Tensor, z2: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarities of the 2N views ``[z1; z2]``: the positives ``(2N,)`` (view i with its other
    view) and the negatives ``(2N, 2N − 2)`` (view i with every other view but itself and its positive),
    the negatives of anchor i in increasing view order."""
    _check_pair(z1, z2)
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T
    index = torch.arange(2 * n, device=z.device)
    partner = (index + n) % (2 * n)
    positives = sim[index, partner]
    keep = (index[None, :] != index[:, None]) & (index[None, :] != partner[:, None])
    negatives = sim[keep].view(2 * n, 2 * n - 2)
    return positives, negatives


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.5) -> Tensor:
    """SimCLR's NT-Xent loss of two views ``(N, D)``, averaged over the 2N anchors (see module docstring)."""
    _check_pair(z1, z2)
    _check_temperature(temperature)
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = (z @ z.T) / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    targets = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return F.cross_entropy(logits, targets)


def biased_nce(positives: Tensor, negatives: Tensor, temperature: float = 0.5) -> Tensor:
    """−log( e^{s+/t} / (e^{s+/t} + Σ_n e^{s_n/t}) ) per anchor, from similarities ``(B,)`` and ``(B, N)``."""
    _check_temperature(temperature)
    _check_scores(positives, negatives)
    logits = torch.cat([positives[:, None], negatives], dim=1) / temperature
    return torch.logsumexp(logits, dim=1) - positives / temperature


def _check_scores(positives: Tensor, negatives: Tensor, extra: Tensor | None = None) -> None:
    if positives.dim() != 1 or negatives.dim() != 2 or len(negatives) != len(positives):
        raise ValueError(
            f"positives must have shape (B,) and negatives (B, N), got {tuple(positives.shape)} and "
            f"{tuple(negatives.shape)}"
        )
    if negatives.shape[1] < 1:
        raise ValueError("need at least one negative per anchor")
    if extra is not None and (extra.dim() != 2 or len(extra) != len(positives) or extra.shape[1] < 1):
        raise ValueError(f"extra positives must have shape (B, M) with M >= 1, got {tuple(extra.shape)}")


def debiased_negative_mass(
    positives: Tensor,
    negatives: Tensor,
    *,
    tau_plus: float,
    temperature: float,
    extra_positives: Tensor | None = None,
) -> Tensor:
    """The clamped estimate g of the true negatives' mean e^{s/t} per anchor (Chuang et al. eq. 7).

    ``extra_positives`` ``(B, M)`` are the similarities v of the M positives used in the estimate; by default
    the anchor's positive itself (M = 1).
    """
    _check_temperature(temperature)
    _check_tau_plus(tau_plus)
    _check_scores(positives, negatives, extra_positives)
    v = positives[:, None] if extra_positives is None else extra_positives
    mean_neg = (negatives / temperature).exp().mean(dim=1)
    mean_pos = (v / temperature).exp().mean(dim=1)
    estimate = (mean_neg - tau_plus * mean_pos) / (1.0 - tau_plus)
    return estimate.clamp(min=math.exp(-1.0 / temperature))


def debiased_nce(
    positives: Tensor,
    negatives: Tensor,
    *,
    tau_plus: float,
    temperature: float = 0.5,
    extra_positives: Tensor | None = None,
) -> Tensor:
    """−log( e^{s+/t} / (e^{s+/t} + N g) ) per anchor, g from :func:`debiased_negative_mass`."""
    g = debiased_negative_mass(
        positives, negatives, tau_plus=tau_plus, temperature=temperature, extra_positives=extra_positives
    )
    n_neg = negatives.shape[1]
    # log(e^{a} + N g) − a with a = s+/t, computed stably as softplus(log(N g) − a)
    return F.softplus(torch.log(n_neg * g) - positives / temperature)


def debiased_nt_xent(z1: Tensor, z2: Tensor, *, tau_plus: float, temperature: float = 0.5) -> Tensor:
    """The debiased contrastive loss of two views ``(N, D)`` over the same 2N anchors and 2N − 2
    negatives as :func:`nt_xent`, averaged over the anchors."""
    positives, negatives = pair_similarities(z1, z2)
    return debiased_nce(positives, negatives, tau_plus=tau_plus, temperature=temperature).mean()


def contrastive_loss(
    z1: Tensor, z2: Tensor, *, objective: str, temperature: float, tau_plus: float
) -> Tensor:
    """``objective`` "biased" (NT-Xent) or "debiased" (with class prior ``tau_plus``)."""
    if objective == "biased":
        return nt_xent(z1, z2, temperature)
    if objective == "debiased":
        return debiased_nt_xent(z1, z2, tau_plus=tau_plus, temperature=temperature)
    raise ValueError(f"objective must be 'biased' or 'debiased', got {objective!r}")


class Encoder(nn.Module):
    """f: images ``(N, 1, 8, 8)`` → representation h ``(N, features)``.

    3×3 conv (``width``) → ReLU → 3×3 stride-2 conv (2 ``width``) → ReLU → flatten → linear → ReLU.
    """

    def __init__(self, *, width: int = 32, features: int = 128, image_size: int = 8):
        super().__init__()
        if width < 1 or features < 1 or image_size < 2:
            raise ValueError(
                f"width, features must be >= 1 and image_size >= 2, got {width}, {features}, {image_size}"
            )
        self.image_size = image_size
        side = (image_size - 1) // 2 + 1
        self.net = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1, stride=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * width * side * side, features), nn.ReLU(),
        )  # fmt: skip
        self.features = features

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=1, name="images")
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"images must be {self.image_size}x{self.image_size}, got {tuple(images.shape[-2:])}"
            )
        return self.net(images)


class ProjectionHead(nn.Module):
    """g: h → W2 ReLU(W1 h), SimCLR's nonlinear projection head (hidden = ``features``)."""

    def __init__(self, features: int = 128, out: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(features, features), nn.ReLU(), nn.Linear(features, out))

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


class SimCLR(nn.Module):
    """Encoder f and projection head g; ``forward`` returns (h, z)."""

    def __init__(self, *, width: int = 32, features: int = 128, projection: int = 64, image_size: int = 8):
        super().__init__()
        self.encoder = Encoder(width=width, features=features, image_size=image_size)
        self.head = ProjectionHead(features, projection)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(images)
        return h, self.head(h)
