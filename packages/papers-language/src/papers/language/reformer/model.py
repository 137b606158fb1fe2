"""Reformer (Kitaev, Kaiser, Levskaya 2020, arXiv:2001.04451): shared-QK attention, LSH attention,
reversible residual layers and chunked feed-forward.

    hash_vectors            h(x) = argmax([x R; −x R]) per hash round, R random (d_k × n_buckets/2)
    full_shared_qk_attention softmax over all keys, keys k_j = q_j / ‖q_j‖, self masked to −1e5
    lsh_attention           sort by (bucket, position), chunk, attend within the chunk and the previous one
                            to keys of the same bucket, n_hashes rounds combined by their log-sum-exp
    SharedQKAttention       the multi-head layer (one projection W_qk for queries and keys, W_v, W_o)
    ChunkedFeedForward      the position-wise FFN of ``papers.language.transformer`` applied in chunks
    RevBlock                Y1 = X1 + Attn(X2), Y2 = X2 + FFN(Y1); ``inverse`` recovers X1, X2
    reversible_stack        a stack of RevBlocks as one autograd Function that keeps only the last outputs
                            and recomputes each layer's activations from them in the backward pass
    ReformerLM              embeddings → two streams → RevBlocks → concat → LayerNorm → logits
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.language.transformer.model import PositionwiseFeedForward

SELF_LOGIT = -1e5  # a token attends to itself only when nothing else is available (paper Sec. 3)
MASKED_LOGIT = -1e9  # keys outside the bucket, in the future, or before the first chunk


# ------------------------------------------------------------------------------------------- hashing


def random_rotations(
    n_heads: int,
    d_k: int,
    n_hashes: int,
    n_buckets: int,
    *,
    generator: torch.Generator | None = None,
    device=None,
    dtype=torch.float32,
) -> Tensor:
    """``(n_heads, d_k, n_hashes, n_buckets // 2)`` Gaussian matrices R, one per head and hash round."""
    if n_buckets < 1 or (n_buckets > 1 and n_buckets % 2):
        raise ValueError(f"n_buckets must be 1 or an even number >= 2, got {n_buckets}")
    if n_hashes < 1:
        raise ValueError(f"n_hashes must be >= 1, got {n_hashes}")
    half = max(1, n_buckets // 2)
    return torch.randn(n_heads, d_k, n_hashes, half, generator=generator, device=device, dtype=dtype)


def hash_vectors(x: Tensor, rotations: Tensor, n_buckets: int) -> Tensor:
    """Angular LSH: ``h(x) = argmax([xR; −xR])`` for each round. x ``(B, H, L, d)``, rotations
    ``(H, d, n_hashes, n_buckets/2)`` → buckets ``(B, H, n_hashes, L)`` in ``[0, n_buckets)``.

    ``n_buckets = 1`` puts every vector in bucket 0 (the degenerate case equal to full attention).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (batch, heads, length, d_k), got {tuple(x.shape)}")
    h, d, n_hashes, half = rotations.shape
    if x.shape[1] != h or x.shape[3] != d:
        raise ValueError(f"rotations {tuple(rotations.shape)} do not fit x {tuple(x.shape)}")
    if n_buckets == 1:
        return torch.zeros(x.shape[0], h, n_hashes, x.shape[2], dtype=torch.long, device=x.device)
    if 2 * half != n_buckets:
        raise ValueError(f"rotations give {2 * half} buckets, expected n_buckets={n_buckets}")
    rotated = torch.einsum("bhld,hdrk->bhrlk", x, rotations.to(x.dtype))
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)


# ----------------------------------------------------------------------------------------- attention


def _normalise(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)


def full_shared_qk_attention(qk: Tensor, v: Tensor, *, causal: bool = True) -> Tensor:
    """Full attention with shared queries and keys: softmax(q_i · k̂_j / √d) with k̂_j = q_j / ‖q_j‖,
    the self logit replaced by −1e5, future keys masked when ``causal``. qk ``(B, H, L, d)``, v
    ``(B, H, L, d_v)`` → ``(B, H, L, d_v)``."""
    length = qk.shape[-2]
    logits = qk @ _normalise(qk).transpose(-1, -2) / math.sqrt(qk.shape[-1])
    pos = torch.arange(length, device=qk.device)
    if causal:
        logits = logits.masked_fill(pos[None, :] > pos[:, None], MASKED_LOGIT)
    logits = logits.masked_fill(torch.eye(length, dtype=torch.bool, device=qk.device), SELF_LOGIT)
    return logits.softmax(dim=-1) @ v


def _gather_positions(x: Tensor, index: Tensor) -> Tensor:
    """x ``(B, H, L, ...)`` gathered along L by index ``(B, H, R, N)`` → ``(B, H, R, N, ...)``."""
    b, h, r, n = index.shape
    flat = index.reshape(b, h, r * n)
    extra = x.shape[3:]
    out = x.gather(2, flat.view(b, h, r * n, *([1] * len(extra))).expand(b, h, r * n, *extra))
    return out.view(b, h, r, n, *extra)


def _look_one_back(x: Tensor) -> Tensor:
    """``(..., n_chunks, m, ...)`` → ``(..., n_chunks, 2m, ...)``: each chunk preceded by the previous one
    (chunk 0 by itself; those keys are masked as invalid)."""
    return torch.cat([torch.cat([x[:, :, :, :1], x[:, :, :, :-1]], dim=3), x], dim=4)


def _duplicate_counts(buckets: Tensor, q_pos: Tensor, k_pos: Tensor) -> Tensor:
    """N_ij = |{r : h_r(i) = h_r(j)}| for the (query, key) pairs of every chunk window, clamped to >= 1.
    buckets ``(B, H, R, L)``, q_pos ``(B, H, R, C, m)``, k_pos ``(B, H, R, C, 2m)`` → ``(B, H, R, C, m, 2m)``.
    """
    b, h, r, c, m = q_pos.shape
    by_pos = buckets.permute(0, 1, 3, 2)  # (B, H, L, R)
    q_all = _gather_positions(by_pos, q_pos.flatten(3)).view(b, h, r, c, m, 1, r)
    k_all = _gather_positions(by_pos, k_pos.flatten(3)).view(b, h, r, c, 1, 2 * m, r)
    return (q_all == k_all).sum(-1).clamp_min(1)


def lsh_attention(
    qk: Tensor,
    v: Tensor,
    rotations: Tensor,
    *,
    n_buckets: int,
    chunk_size: int,
    causal: bool = True,
    return_buckets: bool = False,
):
    """LSH attention (paper Sec. 3, Eq. 3–6). qk ``(B, H, L, d)``, v ``(B, H, L, d_v)``, rotations
    ``(H, d, n_hashes, n_buckets/2)``; L must be a multiple of ``chunk_size``.

    For each hash round r: sort positions by (bucket, position), split into chunks of m = chunk_size,
    let every query attend to the keys of its chunk and of the previous one that share its bucket
    (j ∈ P_i^(r)), are not in the future (causal) and are not itself (self logit −1e5). Logits are
    q_i · k̂_j / √d − log N_ij with N_ij = |{r' : h_r'(i) = h_r'(j)}| (pairs found in several rounds are
    not counted several times). The rounds are combined with weights exp(z_r(i) − logsumexp_r z_r(i)),
    z_r(i) the log-sum-exp of round r's logits.
    """
    b, h, length, d = qk.shape
    if v.shape[:3] != qk.shape[:3]:
        raise ValueError(f"v {tuple(v.shape)} does not match qk {tuple(qk.shape)}")
    if chunk_size < 1 or length % chunk_size:
        raise ValueError(f"length {length} must be a positive multiple of chunk_size {chunk_size}")
    m, n_chunks = chunk_size, length // chunk_size
    buckets = hash_vectors(qk, rotations, n_buckets)  # (B, H, R, L)
    n_hashes = buckets.shape[2]
    pos = torch.arange(length, device=qk.device)
    order = (buckets * length + pos).argsort(dim=-1)  # sort by bucket, then position
    s_pos = order  # position of each sorted slot
    s_bucket = buckets.gather(-1, order)
    s_qk = _gather_positions(qk, order)  # (B, H, R, L, d)
    s_v = _gather_positions(v, order)

    def chunks(x: Tensor) -> Tensor:
        return x.reshape(b, h, n_hashes, n_chunks, m, *x.shape[4:])

    q = chunks(s_qk)
    k = _look_one_back(chunks(_normalise(s_qk)))
    vv = _look_one_back(chunks(s_v))
    q_pos, k_pos = chunks(s_pos), _look_one_back(chunks(s_pos))
    q_bucket, k_bucket = chunks(s_bucket), _look_one_back(chunks(s_bucket))

    logits = q @ k.transpose(-1, -2) / math.sqrt(d)  # (B, H, R, C, m, 2m)
    # N_ij: in how many rounds i and j share a bucket (>= 1 for every pair kept below)
    if n_hashes > 1:
        logits = logits - _duplicate_counts(buckets, q_pos, k_pos).to(logits.dtype).log()

    keep = q_bucket[..., :, None] == k_bucket[..., None, :]
    first = torch.zeros(n_chunks, 1, 2 * m, dtype=torch.bool, device=qk.device)
    first[0, :, :m] = True  # chunk 0 has no previous chunk
    keep = keep & ~first
    if causal:
        keep = keep & (k_pos[..., None, :] <= q_pos[..., :, None])
    logits = logits.masked_fill(~keep, MASKED_LOGIT)
    logits = logits.masked_fill(k_pos[..., None, :] == q_pos[..., :, None], SELF_LOGIT)

    # softmax and its log-normaliser z from one exponential
    top = logits.detach().amax(dim=-1, keepdim=True)
    e = (logits - top).exp()
    total = e.sum(dim=-1, keepdim=True)
    lse = top + total.log()
    out = (e / total) @ vv  # (B, H, R, C, m, d_v)
    out = out.reshape(b, h, n_hashes, length, -1)
    lse = lse.reshape(b, h, n_hashes, length)
    undo = order.argsort(dim=-1)  # back to positional order
    out = out.gather(3, undo[..., None].expand_as(out))
    lse = lse.gather(3, undo)
    weights = lse.softmax(dim=2)  # exp(z_r − logsumexp_r z_r)
    combined = (weights[..., None] * out).sum(dim=2)
    return (combined, buckets) if return_buckets else combined


class SharedQKAttention(nn.Module):
    """Multi-head shared-QK self-attention, full or LSH. ``forward(x, rotations=None)``.

    ``mode = "full"`` attends to every (earlier) key; ``mode = "lsh"`` uses :func:`lsh_attention` with
    rotations sampled afresh at each call unless given (the reversible backward pass gives the same ones
    back). ``n_hashes`` may be changed between calls (e.g. evaluate with more hashes than trained).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        *,
        mode: str = "lsh",
        n_hashes: int = 1,
        n_buckets: int = 8,
        chunk_size: int = 16,
        causal: bool = True,
    ):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if mode not in ("full", "lsh"):
            raise ValueError(f"mode must be 'full' or 'lsh', got {mode!r}")
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.mode, self.n_hashes, self.n_buckets = mode, n_hashes, n_buckets
        self.chunk_size, self.causal = chunk_size, causal
        self.w_qk = nn.Linear(d_model, d_model, bias=False)
        self.w_v = nn.Linear(d_model, d_model, bias=False)
        self.w_o = nn.Linear(d_model, d_model)

    def sample_rotations(self, device=None, dtype=torch.float32) -> Tensor | None:
        if self.mode == "full":
            return None
        return random_rotations(
            self.n_heads, self.d_k, self.n_hashes, self.n_buckets, device=device, dtype=dtype
        )

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_k).transpose(1, 2)

    def forward(self, x: Tensor, rotations: Tensor | None = None) -> Tensor:
        qk, v = self._split(self.w_qk(x)), self._split(self.w_v(x))
        if self.mode == "full":
            out = full_shared_qk_attention(qk, v, causal=self.causal)
        else:
            if rotations is None:
                rotations = self.sample_rotations(x.device, x.dtype)
            out = lsh_attention(
                qk, v, rotations, n_buckets=self.n_buckets, chunk_size=self.chunk_size, causal=self.causal
            )
        b, _, t, _ = out.shape
        return self.w_o(out.transpose(1, 2).reshape(b, t, -1))


class ChunkedFeedForward(nn.Module):
    """The Transformer's FFN(x) = max(0, x W1 + b1) W2 + b2 computed ``n_chunks`` slices of positions at a
    time (paper Sec. 4, "Chunking"): the d_ff-wide intermediate exists for one slice only."""

    def __init__(self, d_model: int, d_ff: int, n_chunks: int = 1):
        super().__init__()
        if n_chunks < 1:
            raise ValueError(f"n_chunks must be >= 1, got {n_chunks}")
        self.ffn, self.n_chunks = PositionwiseFeedForward(d_model, d_ff), n_chunks

    def forward(self, x: Tensor) -> Tensor:
        if self.n_chunks == 1:
            return self.ffn(x)
        return torch.cat([self.ffn(part) for part in x.chunk(self.n_chunks, dim=1)], dim=1)


# ---------------------------------------------------------------------------------------- reversible


class RevBlock(nn.Module):
    """Reversible residual layer (paper Sec. 4): Y1 = X1 + F(X2), Y2 = X2 + G(Y1) with F = attention and
    G = feed-forward, each with a pre-LayerNorm. ``inverse`` gives X2 = Y2 − G(Y1), X1 = Y1 − F(X2)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, *, ff_chunks: int = 1, **attention):
        super().__init__()
        self.attn_norm, self.ff_norm = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attention = SharedQKAttention(d_model, n_heads, **attention)
        self.feed_forward = ChunkedFeedForward(d_model, d_ff, ff_chunks)

    def f(self, x2: Tensor, rotations: Tensor | None) -> Tensor:
        return self.attention(self.attn_norm(x2), rotations)

    def g(self, y1: Tensor) -> Tensor:
        return self.feed_forward(self.ff_norm(y1))

    def forward(self, x1: Tensor, x2: Tensor, rotations: Tensor | None = None) -> tuple[Tensor, Tensor]:
        y1 = x1 + self.f(x2, rotations)
        return y1, x2 + self.g(y1)

    def inverse(self, y1: Tensor, y2: Tensor, rotations: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x2 = y2 - self.g(y1)
        return y1 - self.f(x2, rotations), x2


class _ReversibleStack(torch.autograd.Function):
    """Runs the blocks without building a graph and saves only the final (Y1, Y2). The backward pass
    walks the blocks in reverse: it recomputes G(Y1) (chunk by chunk) and F(X2) under autograd for one
    block at a time, back-propagates through them, and reconstructs the block's inputs, so activation
    memory does not grow with depth."""

    @staticmethod
    def forward(ctx, x1, x2, blocks, rotations, ff_chunks, *params):
        with torch.no_grad():
            for block, rot in zip(blocks, rotations, strict=True):
                x1, x2 = block(x1, x2, rot)
        ctx.blocks, ctx.rotations, ctx.ff_chunks = blocks, rotations, ff_chunks
        ctx.save_for_backward(x1, x2)
        return x1, x2

    @staticmethod
    def backward(ctx, dy1, dy2):
        y1, y2 = ctx.saved_tensors
        grads: list[Tensor] = []
        for block, rot in zip(reversed(ctx.blocks), reversed(ctx.rotations), strict=True):
            g_params = [p for p in [*block.ff_norm.parameters(), *block.feed_forward.parameters()]]
            f_params = [p for p in [*block.attn_norm.parameters(), *block.attention.parameters()]]
            # G part, chunked along positions: dY1 += (∂G/∂Y1)ᵀ dY2, X2 = Y2 − G(Y1)
            g_grads = [torch.zeros_like(p) for p in g_params]
            d_y1_parts, x2_parts = [], []
            for y1c, y2c, dy2c in zip(
                y1.chunk(ctx.ff_chunks, 1),
                y2.chunk(ctx.ff_chunks, 1),
                dy2.chunk(ctx.ff_chunks, 1),
                strict=True,
            ):
                with torch.enable_grad():
                    z1 = y1c.detach().requires_grad_(True)
                    gz = block.g(z1)
                    got = torch.autograd.grad(gz, [z1, *g_params], dy2c, allow_unused=True)
                d_y1_parts.append(got[0])
                g_grads = [a if b is None else a + b for a, b in zip(g_grads, got[1:], strict=True)]
                x2_parts.append(y2c - gz.detach())
            dy1 = dy1 + torch.cat(d_y1_parts, dim=1)
            x2 = torch.cat(x2_parts, dim=1)
            del d_y1_parts, x2_parts
            # F part: dX2 = dY2 + (∂F/∂X2)ᵀ dY1, X1 = Y1 − F(X2)
            with torch.enable_grad():
                z2 = x2.detach().requires_grad_(True)
                fz = block.f(z2, rot)
                got = torch.autograd.grad(fz, [z2, *f_params], dy1, allow_unused=True)
            dy2 = dy2 + got[0]
            f_grads = [
                torch.zeros_like(p) if gr is None else gr for p, gr in zip(f_params, got[1:], strict=True)
            ]
            y1, y2 = y1 - fz.detach(), x2
            block_grads = dict(zip(map(id, f_params + g_params), f_grads + g_grads, strict=True))
            grads = [block_grads[id(p)] for p in block.parameters()] + grads
        return (dy1, dy2, None, None, None, *grads)


def reversible_stack(blocks, x1: Tensor, x2: Tensor, rotations, ff_chunks: int = 1):
    """(Y1, Y2) of ``blocks`` applied in turn, with memory-saving reversible backpropagation."""
    blocks = list(blocks)
    params = [p for block in blocks for p in block.parameters()]
    return _ReversibleStack.apply(x1, x2, blocks, list(rotations), ff_chunks, *params)


# -------------------------------------------------------------------------------------------- model


class ReformerLM(nn.Module):
    """Decoder-only Reformer: token + learned position embeddings, copied into two streams, ``n_layers``
    RevBlocks, then LayerNorm([Y1; Y2]) → vocabulary logits. ``reversible = False`` runs the same
    blocks with ordinary autograd (every activation stored) — the memory baseline."""

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        *,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int = 128,
        n_layers: int = 1,
        mode: str = "lsh",
        n_hashes: int = 1,
        n_buckets: int = 8,
        chunk_size: int = 16,
        ff_chunks: int = 1,
        reversible: bool = True,
        causal: bool = True,
    ):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("max_len", max_len), ("n_layers", n_layers)):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.max_len, self.reversible, self.ff_chunks = max_len, reversible, ff_chunks
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Parameter(torch.randn(max_len, d_model) * d_model**-0.5)
        self.blocks = nn.ModuleList(
            RevBlock(
                d_model,
                n_heads,
                d_ff,
                ff_chunks=ff_chunks,
                mode=mode,
                n_hashes=n_hashes,
                n_buckets=n_buckets,
                chunk_size=chunk_size,
                causal=causal,
            )
            for _ in range(n_layers)
        )
        self.out_norm = nn.LayerNorm(2 * d_model)
        self.output = nn.Linear(2 * d_model, vocab_size)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)

    def set_n_hashes(self, n_hashes: int) -> None:
        for block in self.blocks:
            block.attention.n_hashes = n_hashes

    def forward(self, ids: Tensor, rotations: list | None = None) -> Tensor:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"ids must be an integer (batch, length) tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        if ids.shape[1] > self.max_len:
            raise ValueError(f"length {ids.shape[1]} exceeds max_len {self.max_len}")
        x = self.embed(ids) + self.pos_embed[: ids.shape[1]]
        if rotations is None:
            rotations = [b.attention.sample_rotations(x.device, x.dtype) for b in self.blocks]
        if self.reversible and torch.is_grad_enabled():
            y1, y2 = reversible_stack(self.blocks, x, x, rotations, self.ff_chunks)
        else:
            y1, y2 = x, x
            for block, rot in zip(self.blocks, rotations, strict=True):
                y1, y2 = block(y1, y2, rot)
        return self.output(self.out_norm(torch.cat([y1, y2], dim=-1)))


def cross_entropy(logits: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten())
