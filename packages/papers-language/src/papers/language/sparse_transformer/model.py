"""Sparse Transformer (Child et al. 2019, arXiv:1904.10509): factorised attention patterns and the model.

    strided_pattern / fixed_pattern   the two factorisations (A(1), A(2)) of causal attention, stride l
    pattern_masks                     per-layer masks of a model: dense, or a pattern combined
                                      "interleaved" (A(1), A(2), A(1), ... one per residual block),
                                      "merged" (every position attends to A(1) ∪ A(2)) or
                                      "heads" (half the heads use A(1), half A(2))
    reach_within                      which (i, j) a stack of masks connects, residual stream included
    attended_pairs                    Σ_i |S_i|, the number of (query, key) products a pattern needs
    mask_to_index / gathered_attention  attention that computes only the allowed pairs: keys and values
                                      gathered to (n, K) with K = max_i |S_i| ≈ 2√n; exactly the
                                      masked dense result, at O(n K d) instead of O(n² d) work
    SparseTransformerLM               pre-activation residual blocks (Sec. 5.2), the paper's init
                                      scaling (Sec. 5.3) and optional recomputation (Sec. 5.4)

Multi-head attention and the masked softmax are the ones of ``papers.language.transformer``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as recompute

from papers.language.transformer.model import MultiHeadAttention, causal_mask

PATTERNS = ("dense", "strided", "fixed")
COMBINES = ("interleaved", "merged", "heads")


def default_stride(n: int) -> int:
    """l = ⌈√n⌉, the paper's choice l ≈ √n."""
    if n < 1:
        raise ValueError(f"sequence length must be >= 1, got {n}")
    return math.isqrt(n - 1) + 1 if n > 1 else 1


def _grid(n: int, device=None) -> tuple[Tensor, Tensor]:
    if n < 1:
        raise ValueError(f"sequence length must be >= 1, got {n}")
    i = torch.arange(n, device=device)[:, None]
    j = torch.arange(n, device=device)[None, :]
    return i, j


def strided_pattern(n: int, stride: int, device=None) -> tuple[Tensor, Tensor]:
    """``(A1, A2)``, each ``(n, n)`` boolean, row i = query, column j = key (causal, j ≤ i):

    A(1)_i = {j : i − l < j ≤ i}   (the previous l positions)
    A(2)_i = {j : (i − j) mod l = 0, j ≤ i}   (every l-th position back)
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    i, j = _grid(n, device)
    causal = j <= i
    return causal & (i - j < stride), causal & ((i - j) % stride == 0)


def fixed_pattern(n: int, stride: int, summary: int = 1, device=None) -> tuple[Tensor, Tensor]:
    """``(A1, A2)``, each ``(n, n)`` boolean (causal, j ≤ i):

    A(1)_i = {j : ⌊j / l⌋ = ⌊i / l⌋}   (the positions of i's block)
    A(2)_i = {j : j mod l ∈ {l − c, …, l − 1}}   (the last c "summary" positions of every block)
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not 1 <= summary <= stride:
        raise ValueError(f"summary (c) must be in [1, stride={stride}], got {summary}")
    i, j = _grid(n, device)
    causal = j <= i
    return causal & (j // stride == i // stride), causal & (j % stride >= stride - summary)


def pattern_masks(
    pattern: str,
    n: int,
    n_layers: int,
    *,
    stride: int | None = None,
    summary: int = 1,
    combine: str = "merged",
    n_heads: int = 1,
    device=None,
) -> Tensor:
    """``(n_layers, n_heads or 1, n, n)`` boolean masks, True where query i may attend to key j."""
    if pattern not in PATTERNS:
        raise ValueError(f"pattern must be one of {PATTERNS}, got {pattern!r}")
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {COMBINES}, got {combine!r}")
    if n_layers < 1:
        raise ValueError(f"n_layers must be >= 1, got {n_layers}")
    if pattern == "dense":
        return causal_mask(n, device)[0].expand(n_layers, 1, n, n).clone()
    stride = stride or default_stride(n)
    if pattern == "strided":
        a1, a2 = strided_pattern(n, stride, device)
    else:
        a1, a2 = fixed_pattern(n, stride, summary, device)
    if combine == "merged":
        return (a1 | a2).expand(n_layers, 1, n, n).clone()
    if combine == "interleaved":
        return torch.stack([a1 if k % 2 == 0 else a2 for k in range(n_layers)])[:, None]
    if n_heads < 2 or n_heads % 2:
        raise ValueError(f"combine='heads' needs an even number of heads >= 2, got {n_heads}")
    half = n_heads // 2
    per_head = torch.stack([a1] * half + [a2] * half)
    return per_head.expand(n_layers, n_heads, n, n).clone()


def reach_within(masks: Tensor) -> Tensor:
    """``(n, n)`` boolean: key j's information can reach query i through the stack of attention masks
    ``(L, n, n)`` (a per-head mask ``(L, h, n, n)`` is merged over heads), counting the residual stream,
    i.e. the boolean product (I ∨ M_L) ⋯ (I ∨ M_1)."""
    if masks.dim() == 4:
        masks = masks.any(1)
    if masks.dim() != 3 or masks.shape[-1] != masks.shape[-2]:
        raise ValueError(f"masks must be (layers, n, n) or (layers, heads, n, n), got {tuple(masks.shape)}")
    n = masks.shape[-1]
    eye = torch.eye(n, dtype=torch.bool, device=masks.device)
    reach = eye.float()
    for mask in masks:
        reach = ((mask | eye).float() @ reach) > 0
        reach = reach.float()
    return reach > 0


def attended_pairs(mask: Tensor) -> int:
    """Σ_i |S_i|: the (query, key) dot products a mask needs (one layer, one head)."""
    return int(mask.sum().item())


def mask_to_index(mask: Tensor, chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """``(index (n, K) long, valid (n, K) bool)``: row i lists the keys of S_i (ascending), padded to
    K = max_i |S_i| with index 0 and valid False."""
    if mask.dim() != 2 or mask.shape[0] != mask.shape[1]:
        raise ValueError(f"mask must be (n, n), got {tuple(mask.shape)}")
    counts = mask.sum(1)
    width = max(int(counts.max().item()), 1)
    rows = []
    for start in range(0, mask.shape[0], chunk):
        block = mask[start : start + chunk].to(torch.int8)
        rows.append(torch.sort(block, dim=1, descending=True, stable=True).indices[:, :width])
    index = torch.cat(rows)
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
    return index.masked_fill(~valid, 0), valid


def gathered_attention(q: Tensor, k: Tensor, v: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """softmax over S_i only: q, k, v ``(..., n, d)``; ``index``/``valid`` from :func:`mask_to_index`.

    Computes n·K dot products instead of n²; equals masked dense attention (rows with no allowed key
    give zeros)."""
    if q.shape[-2] != index.shape[0] or index.shape != valid.shape:
        raise ValueError(
            f"index {tuple(index.shape)} / valid {tuple(valid.shape)} do not match length {q.shape[-2]}"
        )
    keys, values = k[..., index, :], v[..., index, :]  # (..., n, K, d)
    scores = torch.einsum("...nd,...nkd->...nk", q, keys) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
    weights = scores.softmax(-1).masked_fill(~valid, 0.0)
    return torch.einsum("...nk,...nkd->...nd", weights, values)


# ------------------------------------------------------------------------------------------------ model


class FeedForward(nn.Module):
    """ff(x) = W2 f(W1 x + b1) + b2 with f = GELU and W1 of width 4 d (Sec. 5.2)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.gelu(self.w_1(x)))


class SparseBlock(nn.Module):
    """The pre-activation residual block (Sec. 5.2):

    a(H) = dropout(attention(norm(H)))
    b(H) = dropout(ff(norm(H + a(H))))
    H_k  = H_{k−1} + a(H_{k−1}) + b(H_{k−1})
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.norm_attn, self.norm_ff = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm_attn(x)
        a = self.dropout(self.attn(h, h, mask))
        b = self.dropout(self.ff(self.norm_ff(x + a)))
        return x + a + b


class SparseTransformerLM(nn.Module):
    """Autoregressive model over ``n_positions`` tokens with dense or factorised causal attention.

    ``forward(ids (B, T ≤ n_positions)) -> logits (B, T, vocab_size)``. Position embeddings are learned:
    one per position, or with ``image_shape=(H, W)`` one per row plus one per column of the position
    (the paper's factorised image positions). Initialisation (Sec. 5.3): token embeddings
    N(0, 0.125/√d), position embeddings N(0, 0.125/√(d n_emb)), the other matrices Xavier-uniform, and
    the output projections of attention (W_p) and of the feed-forward (W2) scaled by 1/√(2N).
    ``recompute=True`` recomputes each block in the backward pass instead of storing its activations
    (gradient checkpointing, Sec. 5.4).
    """

    def __init__(
        self,
        vocab_size: int,
        n_positions: int,
        *,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int | None = None,
        dropout: float = 0.0,
        pattern: str = "strided",
        stride: int | None = None,
        summary: int = 1,
        combine: str = "merged",
        image_shape: tuple[int, int] | None = None,
        out_vocab: int | None = None,
        recompute: bool = False,
    ):
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("n_positions", n_positions),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_layers", n_layers),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if image_shape is not None and image_shape[0] * image_shape[1] < n_positions:
            raise ValueError(f"image_shape {image_shape} has fewer than n_positions={n_positions} cells")
        self.n_positions, self.vocab_size, self.recompute = n_positions, vocab_size, recompute
        self.pattern, self.image_shape = pattern, image_shape
        self.stride = stride or default_stride(n_positions)
        masks = pattern_masks(
            pattern,
            n_positions,
            n_layers,
            stride=self.stride,
            summary=summary,
            combine=combine,
            n_heads=n_heads,
        )
        self.register_buffer("masks", masks, persistent=False)
        self.embed = nn.Embedding(vocab_size, d_model)
        if image_shape is None:
            self.pos = nn.ModuleList([nn.Embedding(n_positions, d_model)])
        else:
            self.pos = nn.ModuleList(
                [nn.Embedding(image_shape[0], d_model), nn.Embedding(image_shape[1], d_model)]
            )
        self.blocks = nn.ModuleList(
            SparseBlock(d_model, n_heads, d_ff or 4 * d_model, dropout) for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)
        self.output = nn.Linear(d_model, out_vocab or vocab_size)
        self._init_weights(d_model, n_layers)

    def _init_weights(self, d: int, n_layers: int) -> None:
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith(("embed", "pos")):
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        nn.init.normal_(self.embed.weight, std=0.125 / math.sqrt(d))
        for table in self.pos:
            nn.init.normal_(table.weight, std=0.125 / math.sqrt(d * len(self.pos)))
        scale = 1 / math.sqrt(2 * n_layers)
        with torch.no_grad():
            for block in self.blocks:
                block.attn.w_o.weight.mul_(scale)
                block.ff.w_2.weight.mul_(scale)

    def position_embedding(self, length: int) -> Tensor:
        t = torch.arange(length, device=self.embed.weight.device)
        if self.image_shape is None:
            return self.pos[0](t)
        width = self.image_shape[1]
        return self.pos[0](t // width) + self.pos[1](t % width)

    def forward(self, ids: Tensor) -> Tensor:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"ids must be an integer (batch, length) tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        length = ids.shape[1]
        if length > self.n_positions:
            raise ValueError(f"ids length {length} exceeds n_positions {self.n_positions}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must be in [0, {self.vocab_size})")
        x = self.embed(ids) + self.position_embedding(length)
        for block, mask in zip(self.blocks, self.masks, strict=True):
            mask = mask[:, :length, :length]
            if self.recompute and self.training and torch.is_grad_enabled():
                x = recompute(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return self.output(self.norm(x))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
