"""The Perceiver (Jaegle et al. 2021, Sec. 2, Fig. 1): a latent array that cross-attends to the inputs.

Inputs are a byte array ``x`` of shape (B, M, C): M elements (here pixels), each its value(s)
concatenated with Fourier features of its position (Sec. 2.2, Eq. 1 of the appendix):

    p ∈ [−1, 1]^d,   f_k = linspace(1, μ/2, K)_k   (μ the sampling rate: frequencies up to Nyquist)
    FF(p) = [p, sin(f_k π p_j), cos(f_k π p_j)]    for k = 1..K, j = 1..d     (d (2K + 1) features)

The latent array z ∈ R^{N×D} (N ≪ M, learned, truncated-normal init σ = 0.02) is refined by R repeats
of a cross-attention block followed by a latent Transformer of L self-attention blocks (pre-LayerNorm):

    cross     z ← z + W_o softmax(Q Kᵀ / √D) V,   Q = LN(z) W_q,  K = LN(x) W_k,  V = LN(x) W_v  (1 head)
              z ← z + MLP(LN(z))                                         cost O(M N): no M² term
    latent    z ← z + MHSA(LN(z)),  z ← z + MLP(LN(z))      (L times)    cost O(N²) per block
    logits  = W_c LN(mean_n z_n)                                         average-pooled latents

With ``share_weights`` (the paper's ImageNet setting) the first cross-attention has its own weights,
every later one shares a second set, and all R latent Transformers share one set; otherwise every
block has its own. Nothing in the architecture depends on the order of the M input elements: a
permutation of the rows of x (pixels moved together with their position features) leaves the output
unchanged, up to floating-point summation order. A key mask (B, M) lets padded inputs be ignored.

``FullSelfAttention`` is the baseline cost model: the same attention applied with queries, keys and
values all from the M inputs, O(M²). ``ConvNet`` and ``MLP`` are the small baselines of the experiment.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from papers.vision.data import check_images


def grid_positions(height: int, width: int, *, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """Pixel positions ``(H·W, 2)`` in row-major order, (row, column) each ``linspace(−1, 1)``."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be >= 1, got {height} and {width}")

    def axis(n: int) -> Tensor:
        if n == 1:
            return torch.zeros(1, dtype=dtype, device=device)
        return torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device)

    rows, cols = torch.meshgrid(axis(height), axis(width), indexing="ij")
    return torch.stack([rows.flatten(), cols.flatten()], dim=-1)


def fourier_frequencies(num_bands: int, max_resolution: float, *, dtype=torch.float32, device=None) -> Tensor:
    """``f_k = linspace(1, max_resolution / 2, num_bands)``: K bands up to the Nyquist frequency."""
    if num_bands < 1:
        raise ValueError(f"num_bands must be >= 1, got {num_bands}")
    if not max_resolution >= 2:
        raise ValueError(f"max_resolution must be >= 2 (Nyquist frequency >= 1), got {max_resolution}")
    return torch.linspace(1.0, max_resolution / 2, num_bands, dtype=dtype, device=device)


def fourier_features(positions: Tensor, num_bands: int, max_resolution: float) -> Tensor:
    """``[p, sin(f_k π p_j), cos(f_k π p_j)]`` of positions ``(..., d)``: ``(..., d (2 num_bands + 1))``.

    The sines come ordered by dimension then band (``j·K + k``), then the cosines in the same order.
    """
    if not isinstance(positions, Tensor) or positions.dim() < 1 or not positions.is_floating_point():
        raise ValueError("positions must be a floating tensor of shape (..., d)")
    freqs = fourier_frequencies(num_bands, max_resolution, dtype=positions.dtype, device=positions.device)
    scaled = (positions[..., None] * freqs * math.pi).flatten(-2)  # (..., d·K)
    return torch.cat([positions, torch.sin(scaled), torch.cos(scaled)], dim=-1)


def image_inputs(images: Tensor, *, num_bands: int, max_resolution: float | None = None) -> Tensor:
    """Images ``(B, C, H, W)`` as a byte array ``(B, H·W, C + 2 (2K + 1))``: pixels with position features.

    ``max_resolution`` defaults to the larger side (frequencies up to that grid's Nyquist rate).
    """
    check_images(images)
    batch, channels, height, width = images.shape
    features = fourier_features(
        grid_positions(height, width, dtype=images.dtype, device=images.device),
        num_bands,
        max_resolution or max(height, width),
    )
    pixels = images.flatten(2).transpose(1, 2)  # (B, H·W, C), row-major like grid_positions
    return torch.cat([pixels, features.expand(batch, -1, -1)], dim=-1)


def check_inputs(inputs: Tensor, dim: int, name: str = "inputs") -> None:
    if not isinstance(inputs, Tensor) or inputs.dim() != 3 or inputs.shape[-1] != dim:
        shape = tuple(inputs.shape) if isinstance(inputs, Tensor) else type(inputs).__name__
        raise ValueError(f"{name} must have shape (B, M, {dim}), got {shape}")
    if inputs.shape[1] < 1:
        raise ValueError(f"{name} must have at least one element (M >= 1), got shape {tuple(inputs.shape)}")


class Attention(nn.Module):
    """Multi-head QKV attention: queries from ``q_in`` (B, N, Dq), keys and values from ``kv_in`` (B, M, Dkv).

    ``out = W_o concat_h softmax(Q_h K_hᵀ / √d_h + mask) V_h``; ``mask`` (B, M) is True where a key is
    real. Returns the output ``(B, N, out_dim)`` and the attention weights ``(B, heads, N, M)``.
    """

    def __init__(
        self,
        query_dim: int,
        kv_dim: int,
        *,
        heads: int = 1,
        head_dim: int | None = None,
        out_dim: int | None = None,
    ):
        super().__init__()
        if heads < 1 or query_dim < 1 or kv_dim < 1:
            raise ValueError(f"heads, query_dim and kv_dim must be >= 1, got {heads}, {query_dim}, {kv_dim}")
        head_dim = head_dim or query_dim // heads
        if head_dim < 1:
            raise ValueError(f"query_dim={query_dim} is too small for {heads} heads")
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(query_dim, inner)
        self.to_k = nn.Linear(kv_dim, inner)
        self.to_v = nn.Linear(kv_dim, inner)
        self.to_out = nn.Linear(inner, out_dim or query_dim)

    def forward(self, q_in: Tensor, kv_in: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        batch, n, _ = q_in.shape
        m = kv_in.shape[1]

        def split(t: Tensor, length: int) -> Tensor:
            return t.view(batch, length, self.heads, self.head_dim).transpose(1, 2)  # (B, h, len, d_h)

        q, k, v = split(self.to_q(q_in), n), split(self.to_k(kv_in), m), split(self.to_v(kv_in), m)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, h, N, M)
        if mask is not None:
            if mask.shape != (batch, m) or mask.dtype != torch.bool:
                raise ValueError(
                    f"mask must be a bool tensor of shape ({batch}, {m}), got "
                    f"{mask.dtype} {tuple(mask.shape)}"
                )
            if not mask.any(dim=1).all():
                raise ValueError("mask must keep at least one input element per example")
            logits = logits.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(logits, dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(batch, n, self.heads * self.head_dim)
        return self.to_out(out), weights


class MLP(nn.Sequential):
    def __init__(self, dim: int, widening: int = 1):
        super().__init__(nn.Linear(dim, widening * dim), nn.GELU(), nn.Linear(widening * dim, dim))


class CrossAttentionBlock(nn.Module):
    """``z ← z + Attn(LN z, LN x)``, ``z ← z + MLP(LN z)``: latents (B, N, D) read inputs (B, M, C)."""

    def __init__(self, latent_dim: int, input_dim: int, *, heads: int = 1, widening: int = 1):
        super().__init__()
        self.norm_latents, self.norm_inputs = nn.LayerNorm(latent_dim), nn.LayerNorm(input_dim)
        self.attention = Attention(latent_dim, input_dim, heads=heads)
        self.norm_mlp, self.mlp = nn.LayerNorm(latent_dim), MLP(latent_dim, widening)

    def forward(self, latents: Tensor, inputs: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        update, weights = self.attention(self.norm_latents(latents), self.norm_inputs(inputs), mask)
        latents = latents + update
        return latents + self.mlp(self.norm_mlp(latents)), weights


class SelfAttentionBlock(nn.Module):
    """``z ← z + MHSA(LN z)``, ``z ← z + MLP(LN z)`` on (B, N, D)."""

    def __init__(self, dim: int, *, heads: int = 8, widening: int = 1):
        super().__init__()
        self.norm, self.attention = nn.LayerNorm(dim), Attention(dim, dim, heads=heads)
        self.norm_mlp, self.mlp = nn.LayerNorm(dim), MLP(dim, widening)

    def forward(self, z: Tensor) -> Tensor:
        h = self.norm(z)
        z = z + self.attention(h, h)[0]
        return z + self.mlp(self.norm_mlp(z))


class Perceiver(nn.Module):
    """Byte array ``(B, M, input_dim)`` (any M) → class logits ``(B, num_classes)``.

    Paper (ImageNet): N = 512 latents of D = 1024, R = 8 repeats of (1-head cross-attention, L = 6
    8-head self-attention blocks), weights shared after the first cross-attention. Defaults here are a
    reduced-scale version for 8 × 8 digits.
    """

    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        *,
        num_latents: int = 16,
        latent_dim: int = 64,
        repeats: int = 2,
        self_per_cross: int = 2,
        cross_heads: int = 1,
        self_heads: int = 4,
        widening: int = 2,
        share_weights: bool = True,
    ):
        super().__init__()
        for name, value in (
            ("input_dim", input_dim),
            ("num_classes", num_classes),
            ("num_latents", num_latents),
            ("latent_dim", latent_dim),
            ("repeats", repeats),
            ("cross_heads", cross_heads),
            ("self_heads", self_heads),
            ("widening", widening),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self_per_cross < 0:
            raise ValueError(f"self_per_cross must be >= 0, got {self_per_cross}")
        if latent_dim % self_heads or latent_dim % cross_heads:
            raise ValueError(
                f"latent_dim={latent_dim} must be divisible by self_heads={self_heads} "
                f"and cross_heads={cross_heads}"
            )
        self.input_dim, self.repeats, self.share_weights = input_dim, repeats, share_weights
        self.latents = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_latents, latent_dim), std=0.02, a=-0.04, b=0.04)
        )
        num_cross = min(repeats, 2) if share_weights else repeats
        self.cross = nn.ModuleList(
            CrossAttentionBlock(latent_dim, input_dim, heads=cross_heads, widening=widening)
            for _ in range(num_cross)
        )
        self.latent_transformers = nn.ModuleList(
            nn.Sequential(
                *(
                    SelfAttentionBlock(latent_dim, heads=self_heads, widening=widening)
                    for _ in range(self_per_cross)
                )
            )
            for _ in range(1 if share_weights else repeats)
        )
        self.norm = nn.LayerNorm(latent_dim)
        self.head = nn.Linear(latent_dim, num_classes)

    def forward(
        self, inputs: Tensor, mask: Tensor | None = None, *, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits; with ``return_attention`` also each cross-attention's weights ``(B, heads, N, M)``."""
        check_inputs(inputs, self.input_dim)
        z = self.latents.expand(inputs.shape[0], -1, -1)
        maps = []
        for r in range(self.repeats):
            z, weights = self.cross[min(r, len(self.cross) - 1)](z, inputs, mask)
            maps.append(weights)
            z = self.latent_transformers[0 if self.share_weights else r](z)
        logits = self.head(self.norm(z.mean(dim=1)))
        return (logits, maps) if return_attention else logits


class FullSelfAttention(nn.Module):
    """The O(M²) alternative: embed each input to D, then one attention layer with Q, K, V all from the M
    inputs (a Transformer layer over pixels). Returns ``(B, M, D)``."""

    def __init__(self, input_dim: int, dim: int = 64, *, heads: int = 1):
        super().__init__()
        self.input_dim = input_dim
        self.embed = nn.Linear(input_dim, dim)
        self.attention = Attention(dim, dim, heads=heads)

    def forward(self, inputs: Tensor) -> Tensor:
        check_inputs(inputs, self.input_dim)
        h = self.embed(inputs)
        return self.attention(h, h)[0]


class LatentCrossAttention(nn.Module):
    """One cross-attention of N learned latents onto the M inputs (the Perceiver's only M-sized step)."""

    def __init__(self, input_dim: int, dim: int = 64, *, num_latents: int = 16, heads: int = 1):
        super().__init__()
        self.input_dim = input_dim
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.attention = Attention(dim, input_dim, heads=heads)

    def forward(self, inputs: Tensor) -> Tensor:
        check_inputs(inputs, self.input_dim)
        return self.attention(self.latents.expand(inputs.shape[0], -1, -1), inputs)[0]


def attention_flops(queries: int, keys: int, query_dim: int, kv_dim: int, inner: int, out: int) -> int:
    """Matmul FLOPs (2 per multiply-add) of one ``Attention`` call for one example, biases excluded."""
    projections = queries * query_dim * inner + 2 * keys * kv_dim * inner + queries * inner * out
    return 2 * (projections + 2 * queries * keys * inner)


class ConvNet(nn.Module):
    """A small ConvNet on ``(B, C, H, W)``: three 3×3 conv + ReLU layers (one 2×2 max-pool), global
    average pooling, linear classifier. Fed pixels plus Fourier-feature channels, like the paper's
    "ResNet-50 (FF)" baseline of Table 2."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int = 32):
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise ValueError(
                f"in_channels, num_classes and width must be >= 1, got {in_channels}, {num_classes}, {width}"
            )
        self.in_channels = in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.head = nn.Linear(2 * width, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        check_images(images, channels=self.in_channels)
        return self.head(self.features(images).mean(dim=(2, 3)))


class MLPClassifier(nn.Module):
    """Flattened pixels ``(B, M)`` → two ReLU hidden layers → logits (a prior-free baseline)."""

    def __init__(self, in_features: int, num_classes: int, *, hidden: int = 128):
        super().__init__()
        self.in_features = in_features
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"x must have shape (B, {self.in_features}), got {tuple(x.shape)}")
        return self.net(x)


def inputs_to_grid(inputs: Tensor, height: int, width: int) -> Tensor:
    """A byte array ``(B, H·W, C)`` laid on the grid in its (possibly permuted) order: ``(B, C, H, W)``."""
    if inputs.dim() != 3 or inputs.shape[1] != height * width:
        raise ValueError(f"inputs must have shape (B, {height * width}, C), got {tuple(inputs.shape)}")
    return inputs.transpose(1, 2).reshape(inputs.shape[0], inputs.shape[2], height, width)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
