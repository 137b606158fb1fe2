"""MixMatch (Berthelot et al. 2019, Sec. 3, Algorithm 1): guessed labels, sharpening, MixUp, losses.

For a labelled batch X = ((x_b, p_b)) (p_b one-hot), an unlabelled batch U = (u_b), b = 1..B:

    x̂_b = Augment(x_b)                                  one augmentation per labelled image
    û_{b,k} = Augment(u_b),  k = 1..K                   K augmentations per unlabelled image
    q̄_b = (1/K) Σ_k p_model(y | û_{b,k}; θ)             label guess (no gradient)
    q_b = Sharpen(q̄_b, T),  Sharpen(p, T)_i = p_i^{1/T} / Σ_j p_j^{1/T}
    X̂ = ((x̂_b, p_b)),  Û = ((û_{b,k}, q_b))            |Û| = K B
    W = Shuffle(Concat(X̂, Û))
    X' = MixUp(X̂_i, W_i),  U' = MixUp(Û_i, W_{i+|X̂|})
    MixUp((x1, p1), (x2, p2)):  λ ~ Beta(α, α),  λ' = max(λ, 1 − λ),
                                x' = λ' x1 + (1 − λ') x2,  p' = λ' p1 + (1 − λ') p2
    L_X = (1/|X'|) Σ_{(x, p) ∈ X'} H(p, p_model(y | x; θ))          (soft-target cross-entropy)
    L_U = (1/(L |U'|)) Σ_{(u, q) ∈ U'} ||q − p_model(y | u; θ)||²    (L classes)
    L = L_X + λ_U L_U,  λ_U ramped up linearly from 0

Defaults are the paper's: T = 0.5, K = 2, α = 0.75, λ_U = 100. λ' ≥ 0.5 keeps every mixed example
closer to its first input, so X' stays "mostly labelled" and U' "mostly unlabelled". The unlabelled
images enter only through the model's own predictions: nothing here takes their labels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.vision.data import check_images

MIXUP_MODES = ("all", "labelled", "none")


def sharpen(p: Tensor, temperature: float) -> Tensor:
    """Rows ``p_i^{1/T} / Σ_j p_j^{1/T}`` of a ``(N, L)`` probability matrix (computed in log space).

    ``T = 1`` is the identity on distributions; ``T → 0`` tends to the one-hot of the arg max."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if p.dim() != 2:
        raise ValueError(f"p must have shape (N, L), got {tuple(p.shape)}")
    if (p < 0).any():
        raise ValueError("p must be non-negative")
    return torch.softmax(p.log() / temperature, dim=1)


def sample_mixup_lambda(count: int, alpha: float, rng: np.random.Generator) -> Tensor:
    """``count`` values λ' = max(λ, 1 − λ), λ ~ Beta(α, α): each in [0.5, 1]."""
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=count), dtype=torch.float32)
    return torch.maximum(lam, 1.0 - lam)


def mixup(x1: Tensor, p1: Tensor, x2: Tensor, p2: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """``(λ x1 + (1 − λ) x2, λ p1 + (1 − λ) p2)`` with one λ per example (``lam`` of shape ``(N,)``)."""
    if x1.shape != x2.shape or p1.shape != p2.shape or len(x1) != len(p1):
        raise ValueError(
            f"mixup needs matching pairs, got x {tuple(x1.shape)}, {tuple(x2.shape)} and p "
            f"{tuple(p1.shape)}, {tuple(p2.shape)}"
        )
    if lam.shape != (len(x1),):
        raise ValueError(f"lam must have shape ({len(x1)},), got {tuple(lam.shape)}")
    lam = lam.to(x1.dtype)
    lx = lam.view(-1, *([1] * (x1.dim() - 1)))
    lp = lam.view(-1, *([1] * (p1.dim() - 1)))
    return lx * x1 + (1 - lx) * x2, lp * p1 + (1 - lp) * p2


@torch.no_grad()
def guess_labels(model: nn.Module, unlabelled_views: Sequence[Tensor], temperature: float | None) -> Tensor:
    """q = Sharpen((1/K) Σ_k softmax(model(û_k)), T) for K views ``(B, ...)``; ``temperature=None``
    skips sharpening (the same as T = 1). No gradient flows through the guess."""
    if not unlabelled_views:
        raise ValueError("guess_labels needs at least one view (K >= 1)")
    mean = torch.stack([torch.softmax(model(u), dim=1) for u in unlabelled_views]).mean(0)
    return mean if temperature is None else sharpen(mean, temperature)


def linear_rampup(step: int, ramp_steps: int) -> float:
    """min(1, step / ramp_steps): 0 at the first step, 1 from ``ramp_steps`` on (1 if ``ramp_steps`` = 0)."""
    if ramp_steps < 0:
        raise ValueError(f"ramp_steps must be >= 0, got {ramp_steps}")
    if ramp_steps == 0:
        return 1.0
    return min(1.0, max(0.0, step / ramp_steps))


def soft_cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    """mean_b H(p_b, softmax(logits_b)) = −mean_b Σ_i p_bi log softmax(logits_b)_i."""
    return -(targets * F.log_softmax(logits, dim=1)).sum(1).mean()


def squared_l2_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """(1/(L N)) Σ_b ||q_b − softmax(logits_b)||², the paper's L_U (mean over batch and classes)."""
    return (torch.softmax(logits, dim=1) - targets).pow(2).mean()


@dataclass(frozen=True)
class MixMatch:
    """MixMatch's loss. ``MixMatch()(model, x, y, u, augment, ...)`` returns L_X, L_U and the guesses.

    ``temperature=None`` turns sharpening off (T = 1); ``mixup`` is "all" (the paper), "labelled"
    (only X̂ is mixed, with partners drawn from W as before; Û is used unmixed) or "none" (X' = X̂,
    U' = Û). ``k`` is the number of augmentations per unlabelled image.
    """

    classes: int = 10
    k: int = 2
    temperature: float | None = 0.5
    alpha: float = 0.75
    mixup: str = "all"

    def __post_init__(self) -> None:
        if self.classes < 2:
            raise ValueError(f"classes must be >= 2, got {self.classes}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (or None for no sharpening), got {self.temperature}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be > 0, got {self.alpha}")
        if self.mixup not in MIXUP_MODES:
            raise ValueError(f"mixup must be one of {', '.join(MIXUP_MODES)}, got {self.mixup!r}")

    def mix(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        u: Tensor,
        augment: Callable[[Tensor, torch.Generator | None], Tensor],
        generator: torch.Generator,
        rng: np.random.Generator,
    ) -> dict[str, Tensor]:
        """Lines 1-12 of Algorithm 1: the mixed batches X' (``x_mixed``, ``p_mixed``) and U'
        (``u_mixed``, ``q_mixed``), plus the guess ``q`` (one row per unlabelled image)."""
        check_images(x, name="x")
        check_images(u, name="u")
        if y.shape != (len(x),):
            found = tuple(y.shape)
            raise ValueError(f"y must hold one label per labelled image, shape ({len(x)},), got {found}")
        x_hat = augment(x, generator)
        u_hats = [augment(u, generator) for _ in range(self.k)]
        q = guess_labels(model, u_hats, self.temperature)
        p = F.one_hot(y, self.classes).to(x_hat.dtype)
        u_hat, q_rep = torch.cat(u_hats), q.repeat(self.k, 1)
        if self.mixup == "none":
            return {"x_mixed": x_hat, "p_mixed": p, "u_mixed": u_hat, "q_mixed": q_rep, "q": q}
        w_x, w_p = torch.cat([x_hat, u_hat]), torch.cat([p, q_rep])
        order = torch.randperm(len(w_x), generator=generator)
        w_x, w_p = w_x[order], w_p[order]
        lam = sample_mixup_lambda(len(w_x), self.alpha, rng)
        n = len(x_hat)
        x_mixed, p_mixed = mixup(x_hat, p, w_x[:n], w_p[:n], lam[:n])
        if self.mixup == "labelled":
            return {"x_mixed": x_mixed, "p_mixed": p_mixed, "u_mixed": u_hat, "q_mixed": q_rep, "q": q}
        u_mixed, q_mixed = mixup(u_hat, q_rep, w_x[n:], w_p[n:], lam[n:])
        return {"x_mixed": x_mixed, "p_mixed": p_mixed, "u_mixed": u_mixed, "q_mixed": q_mixed, "q": q}

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor, u: Tensor, augment, generator, rng):
        """``(L_X, L_U, q)``; X' and U' go through the model in one batch."""
        batch = self.mix(model, x, y, u, augment, generator, rng)
        n = len(batch["x_mixed"])
        logits = model(torch.cat([batch["x_mixed"], batch["u_mixed"]]))
        loss_x = soft_cross_entropy(logits[:n], batch["p_mixed"])
        loss_u = squared_l2_loss(logits[n:], batch["q_mixed"])
        return loss_x, loss_u, batch["q"]


class ConvNet(nn.Module):
    """A small conv net for ``(N, 1, 8, 8)`` digits: two 3×3 convs (``width``) → 2×2 max pool → 3×3
    conv (2 ``width``) → 2×2 max pool → global max → linear to ``classes``
    logits. (The paper uses a Wide ResNet-28.)"""

    def __init__(self, width: int = 32, classes: int = 10, in_channels: int = 1):
        super().__init__()
        if width < 1 or classes < 2:
            raise ValueError(f"width must be >= 1 and classes >= 2, got {width} and {classes}")
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.out = nn.Linear(2 * width, classes)

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=self.in_channels, name="images")
        return self.out(self.features(images).amax(dim=(2, 3)))


class EMA:
    """Exponential moving average of a model's parameters, for evaluation (Sec. 4.1, decay 0.999).

    θ_ema ← d_t θ_ema + (1 − d_t) θ with d_t = min(decay, (1 + t) / (10 + t)) at update t, so that in a
    short run the random initial weights do not dominate the average."""

    def __init__(self, model: nn.Module, decay: float = 0.999):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        import copy

        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for ema_p, p in zip(self.model.parameters(), model.parameters(), strict=True):
            ema_p.mul_(d).add_(p.detach(), alpha=1 - d)
        for ema_b, b in zip(self.model.buffers(), model.buffers(), strict=True):
            ema_b.copy_(b)
        self.updates += 1
