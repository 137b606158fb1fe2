"""Funnel-Transformer (Dai, Lai, Yang, Le 2020, arXiv:2006.03236): query pooling, upsampling, FLOPs.

    mean_pool            stride-2, window-2 mean pooling along time, [CLS] kept apart ("separate [cls]");
                         an odd-length remainder keeps its last state as a window of one
    upsample             the inverse map: every compressed state repeated 2^(M-1) times, cut to the
                         full length, [CLS] put back in front
    PoolQueryLayer       h' = LayerNorm(pool(h) + MHA(Q = pool(h), KV = h)), then the FFN sublayer
                         (the first layer of every block after the first)
    FunnelTransformer    embeddings, blocks of layers (block m > 1 starts with a PoolQueryLayer, the
                         rest are standard post-LN encoder layers of ``papers.language.transformer``),
                         and for token-level outputs the decoder: upsample(h_M) + h_1, then
                         ``n_decoder_layers`` full-length layers. ``block_sizes=(L,)`` with no decoder is
                         a standard L-layer post-LN Transformer encoder (nothing is pooled).
    FunnelClassifier     [CLS] state -> tanh pooler -> class logits (sequence-level)
    FunnelTagger         decoder output (or the encoder's, without pooling) -> per-token logits
    matmul_flops         multiply-adds of every matrix product of a forward pass, counted analytically

Reduced from the paper: absolute sinusoidal positions added to the embeddings instead of relative
positional attention; no padding masks (the tasks here use fixed-length sequences).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from papers.language.transformer import (
    EncoderLayer,
    MultiHeadAttention,
    PositionwiseFeedForward,
    TransformerConfig,
    sinusoidal_positional_encoding,
)

# ---------------------------------------------------------------------------------- pooling, upsampling


def pooled_length(length: int, separate_cls: bool = True) -> int:
    """Length after one stride-2 pooling: 1 + ceil((T - 1) / 2) with a separate [CLS], else ceil(T / 2)."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if separate_cls:
        return 1 + math.ceil((length - 1) / 2)
    return math.ceil(length / 2)


def _pool_pairs(x: Tensor) -> Tensor:
    b, t, d = x.shape
    even = x[:, : t - t % 2].reshape(b, t // 2, 2, d).mean(2)
    return torch.cat([even, x[:, t - 1 :]], 1) if t % 2 else even


def mean_pool(h: Tensor, separate_cls: bool = True) -> Tensor:
    """``(B, T, D) -> (B, pooled_length(T), D)``: the mean of each non-overlapping window of 2 states.

    With ``separate_cls`` the first state ([CLS]) is kept as it is and only ``h[:, 1:]`` is pooled.
    """
    if h.dim() != 3:
        raise ValueError(f"h must be (batch, length, d_model), got shape {tuple(h.shape)}")
    if h.shape[1] < 1:
        raise ValueError("cannot pool an empty sequence")
    if not separate_cls:
        return _pool_pairs(h)
    if h.shape[1] == 1:
        return h
    return torch.cat([h[:, :1], _pool_pairs(h[:, 1:])], 1)


def upsample(h: Tensor, length: int, stride: int, separate_cls: bool = True) -> Tensor:
    """``(B, T', D) -> (B, length, D)``: full position j (after [CLS]) takes compressed state j // stride."""
    if h.dim() != 3:
        raise ValueError(f"h must be (batch, length, d_model), got shape {tuple(h.shape)}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if separate_cls:
        rest = h[:, 1:].repeat_interleave(stride, dim=1)[:, : length - 1]
        out = torch.cat([h[:, :1], rest], 1)
    else:
        out = h.repeat_interleave(stride, dim=1)[:, :length]
    if out.shape[1] != length:
        raise ValueError(f"{h.shape[1]} states at stride {stride} cannot cover length {length}")
    return out


# ------------------------------------------------------------------------------------------------ layers


class PoolQueryLayer(nn.Module):
    """The first layer of a compressed block: only the queries are pooled, keys and values are not.

    q = pool(h);   x = LayerNorm(q + MHA(q, h, h));   out = LayerNorm(x + FFN(x))
    """

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, *, separate_cls: bool = True, eps: float = 1e-5
    ):
        super().__init__()
        self.separate_cls = separate_cls
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.norm_attn, self.norm_ffn = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)

    def forward(self, h: Tensor) -> Tensor:
        q = mean_pool(h, self.separate_cls)
        x = self.norm_attn(q + self.attn(q, h))
        return self.norm_ffn(x + self.ffn(x))


# ------------------------------------------------------------------------------------------------- model


class FunnelTransformer(nn.Module):
    """``forward(ids) -> (B, T_out, d_model)``: the last block's compressed states, or with
    ``n_decoder_layers > 0`` the decoder's full-length states. ``encode(ids)`` gives both the last
    block's output and the first block's (the decoder's residual)."""

    def __init__(
        self,
        vocab_size: int,
        *,
        d_model: int = 768,
        n_heads: int = 12,
        d_ff: int = 3072,
        block_sizes: tuple[int, ...] = (6, 6, 6),
        n_decoder_layers: int = 0,
        separate_cls: bool = True,
        max_len: int = 512,
    ):
        super().__init__()
        block_sizes = tuple(block_sizes)
        if not block_sizes or min(block_sizes) < 1:
            raise ValueError(f"block_sizes must be a non-empty tuple of positive ints, got {block_sizes}")
        for name, value in (("vocab_size", vocab_size), ("d_model", d_model), ("n_heads", n_heads),
                            ("d_ff", d_ff), ("max_len", max_len)):  # fmt: skip
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if n_decoder_layers < 0:
            raise ValueError(f"n_decoder_layers must be >= 0, got {n_decoder_layers}")
        self.vocab_size, self.d_model, self.n_heads, self.d_ff = vocab_size, d_model, n_heads, d_ff
        self.block_sizes, self.n_decoder_layers = block_sizes, n_decoder_layers
        self.separate_cls, self.max_len = separate_cls, max_len
        layer_config = TransformerConfig(
            vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, d_ff=d_ff, dropout=0.0, max_len=max_len
        )
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.register_buffer("pe", sinusoidal_positional_encoding(max_len, d_model), persistent=False)
        self.blocks = nn.ModuleList()
        for index, size in enumerate(block_sizes):
            layers = [EncoderLayer(layer_config) for _ in range(size)]
            if index > 0:
                layers[0] = PoolQueryLayer(d_model, n_heads, d_ff, separate_cls=separate_cls)
            self.blocks.append(nn.ModuleList(layers))
        self.decoder = nn.ModuleList(EncoderLayer(layer_config) for _ in range(n_decoder_layers))

    @property
    def stride(self) -> int:
        """Compression of the last block: 2^(M-1) for M blocks."""
        return 2 ** (len(self.block_sizes) - 1)

    def _check_ids(self, ids: Tensor) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"ids must be an integer (batch, length) tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        if not 1 <= ids.shape[1] <= self.max_len:
            raise ValueError(f"sequence length must be in [1, {self.max_len}], got {ids.shape[1]}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"ids must be in [0, {self.vocab_size})")

    def embed_ids(self, ids: Tensor) -> Tensor:
        self._check_ids(ids)
        return self.embed(ids) * math.sqrt(self.d_model) + self.pe[: ids.shape[1]]

    def encode(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """``(last block's output (B, T_M, D), first block's output (B, T, D))``."""
        h = self.embed_ids(ids)
        first = h
        for index, block in enumerate(self.blocks):
            for layer in block:
                h = layer(h) if isinstance(layer, PoolQueryLayer) else layer(h, None)
            if index == 0:
                first = h
        return h, first

    def decode(self, last: Tensor, first: Tensor) -> Tensor:
        """Full-length states: upsample(last) + first, then the decoder layers."""
        h = upsample(last, first.shape[1], self.stride, self.separate_cls) + first
        for layer in self.decoder:
            h = layer(h, None)
        return h

    def forward(self, ids: Tensor) -> Tensor:
        last, first = self.encode(ids)
        return self.decode(last, first) if self.n_decoder_layers else last

    def layer_lengths(self, length: int) -> list[tuple[int, int]]:
        """``(query length, key length)`` of each attention layer, encoder then decoder, at length T."""
        out, current = [], length
        for index, size in enumerate(self.block_sizes):
            for j in range(size):
                if index > 0 and j == 0:
                    pooled = pooled_length(current, self.separate_cls)
                    out.append((pooled, current))
                    current = pooled
                else:
                    out.append((current, current))
        out += [(length, length)] * self.n_decoder_layers
        return out


class FunnelClassifier(nn.Module):
    """Sequence-level head on the [CLS] state (position 0): logits = W_c tanh(W_p h_cls + b_p) + b_c."""

    def __init__(self, body: FunnelTransformer, n_classes: int):
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        self.body, self.n_classes = body, n_classes
        self.pooler = nn.Linear(body.d_model, body.d_model)
        self.classifier = nn.Linear(body.d_model, n_classes)

    def forward(self, ids: Tensor) -> Tensor:
        cls = self.body.encode(ids)[0][:, 0]  # the decoder is not needed for sequence-level outputs
        return self.classifier(torch.tanh(self.pooler(cls)))


class FunnelTagger(nn.Module):
    """Token-level head: per-position logits for the positions after [CLS], ``(B, T - 1, n_tags)``.

    A body with more than one block needs the decoder (``n_decoder_layers >= 1``) to get back to full length.
    """

    def __init__(self, body: FunnelTransformer, n_tags: int):
        super().__init__()
        if n_tags < 2:
            raise ValueError(f"n_tags must be >= 2, got {n_tags}")
        if len(body.block_sizes) > 1 and body.n_decoder_layers < 1:
            raise ValueError("a funnel with pooling needs n_decoder_layers >= 1 for token-level outputs")
        self.body, self.n_tags = body, n_tags
        self.tagger = nn.Linear(body.d_model, n_tags)

    def forward(self, ids: Tensor) -> Tensor:
        return self.tagger(self.body(ids)[:, 1:])


# ------------------------------------------------------------------------------------------------- FLOPs


def attention_layer_flops(t_q: int, t_k: int, d_model: int, d_ff: int) -> int:
    """Multiply-adds of one layer: Q and output projections on t_q states, K and V on t_k, scores and
    weighted sum t_q · t_k · d each, FFN 2 · t_q · d · d_ff (biases, softmax and LayerNorm not counted)."""
    return 2 * t_q * d_model**2 + 2 * t_k * d_model**2 + 2 * t_q * t_k * d_model + 2 * t_q * d_model * d_ff


def matmul_flops(model: nn.Module, length: int) -> int:
    """Multiply-adds of all matrix products in one forward pass of a sequence of ``length`` tokens
    (a ``FunnelTransformer`` or one of its heads); embeddings are look-ups and cost none."""
    body = model.body if isinstance(model, FunnelClassifier | FunnelTagger) else model
    if not isinstance(body, FunnelTransformer):
        raise TypeError(f"expected a FunnelTransformer or a head on one, got {type(model).__name__}")
    layers = body.layer_lengths(length)
    if isinstance(model, FunnelClassifier):  # the decoder is skipped; pooler and classifier on [CLS]
        layers = layers[: len(layers) - body.n_decoder_layers]
        head = body.d_model**2 + body.d_model * model.n_classes
    elif isinstance(model, FunnelTagger):
        head = (length - 1) * body.d_model * model.n_tags
    else:
        head = 0
    return head + sum(attention_layer_flops(q, k, body.d_model, body.d_ff) for q, k in layers)


def measured_matmul_flops(model: nn.Module, ids: Tensor) -> float:
    """Multiply-adds per sequence counted by ``torch.utils.flop_counter`` on a real forward pass (it counts
    2 FLOPs per multiply-add of mm / addmm / bmm)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(ids)
    return counter.get_total_flops() / 2 / ids.shape[0]
