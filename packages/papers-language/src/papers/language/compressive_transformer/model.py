"""Compressive Transformer (Rae et al. 2020, arXiv:1911.05507): memories, compression, losses, the LM.

    update_memory              FIFO eviction: [m; h] keeps its newest n_m states, the oldest n_s are evicted,
                               compressed by f_c into n_s / c slots and appended to cm (newest n_cm kept)
    Compressor                 f_c: 1-D conv with kernel = stride = c ("conv") or mean pooling ("mean"),
                               and for the autoencoding ablation a transposed-conv decoder g
    MemoryAttention            multi-head attention of the segment over [cm; m; h] with a learned per-head
                               bias for every (query offset, slot) pair of the sliding window
    attention_reconstruction   ||attn(h, m_old) − attn(h, f_c(m_old))||², content attention of the layer
                               with stop-gradients on h, m_old and the layer's parameters
    CompressiveTransformerLM   pre-LN decoder stack, processed one segment at a time; compressed = 0 gives
                               the Transformer-XL-style baseline (memory only)

Memories are stop-gradient (as in Transformer-XL): the task loss reaches neither the memories nor f_c,
and the compression loss reaches only f_c (and g).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.language.transformer import MultiHeadAttention, PositionwiseFeedForward

COMPRESSIONS = ("conv", "mean")
LOSSES = ("attention", "autoencoder", "none")


# ---------------------------------------------------------------------------------------------- memory


def update_memory(
    mem: Tensor, cmem: Tensor, h: Tensor, compress, *, mem_valid: Tensor, cmem_valid: Tensor, rate: int
) -> dict:
    """One memory step for states ``h (B, n_s, d)`` of a new segment.

    ``[mem; h]`` keeps its newest ``n_m`` rows as the new memory; the oldest ``n_s`` are evicted and
    ``compress`` maps them ``(B, n_s, d) -> (B, n_s / rate, d)``; ``[cmem; f_c(evicted)]`` keeps its
    newest ``n_cm`` rows. Validity vectors (one bool per slot, shared by the batch) follow the same moves;
    a compressed slot is valid when all ``rate`` states it came from were. Everything stored is detached.
    Returns ``mem, cmem, mem_valid, cmem_valid, evicted, evicted_valid``.
    """
    n_s, n_m, n_cm = h.shape[1], mem.shape[1], cmem.shape[1]
    if n_s % rate:
        raise ValueError(f"segment length {n_s} must be divisible by the compression rate {rate}")
    full = torch.cat([mem, h.detach()], dim=1)
    full_valid = torch.cat([mem_valid, torch.ones(n_s, dtype=torch.bool, device=h.device)])
    cut = full.shape[1] - n_m
    evicted, evicted_valid = full[:, :cut], full_valid[:cut]
    out = {
        "mem": full[:, cut:],
        "mem_valid": full_valid[cut:],
        "evicted": evicted,
        "evicted_valid": evicted_valid,
    }
    if n_cm:
        with torch.no_grad():
            squeezed = compress(evicted)
        squeezed_valid = evicted_valid.view(-1, rate).all(-1)
        cfull = torch.cat([cmem, squeezed], dim=1)
        cfull_valid = torch.cat([cmem_valid, squeezed_valid])
        out["cmem"], out["cmem_valid"] = (
            cfull[:, cfull.shape[1] - n_cm :],
            cfull_valid[cfull.shape[1] - n_cm :],
        )
    else:
        out["cmem"], out["cmem_valid"] = cmem, cmem_valid
    return out


class Compressor(nn.Module):
    """f_c: ``(B, n, d) -> (B, n / c, d)``; ``conv`` is Conv1d(d, d, kernel = stride = c), ``mean`` averages
    each run of c states (no parameters). With ``decoder=True`` (autoencoding loss) g is
    ConvTranspose1d(d, d, kernel = stride = c) mapping the slots back to ``(B, n, d)``."""

    def __init__(self, d_model: int, rate: int, kind: str = "conv", decoder: bool = False):
        super().__init__()
        if kind not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {kind!r}")
        if rate < 1:
            raise ValueError(f"compression rate must be >= 1, got {rate}")
        if decoder and kind != "conv":
            raise ValueError("the autoencoding loss needs a trainable (conv) compression")
        self.rate, self.kind = rate, kind
        self.conv = nn.Conv1d(d_model, d_model, rate, stride=rate) if kind == "conv" else None
        self.decoder = nn.ConvTranspose1d(d_model, d_model, rate, stride=rate) if decoder else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] % self.rate:
            raise ValueError(f"expected (B, n, d) with n divisible by {self.rate}, got {tuple(x.shape)}")
        if self.conv is None:
            return F.avg_pool1d(x.transpose(1, 2), self.rate, self.rate).transpose(1, 2)
        return self.conv(x.transpose(1, 2)).transpose(1, 2)

    def decode(self, z: Tensor) -> Tensor:
        if self.decoder is None:
            raise ValueError("this compressor has no decoder (autoencoding loss not selected)")
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)


# ------------------------------------------------------------------------------------------- attention


class MemoryAttention(MultiHeadAttention):
    """Multi-head attention of ``n_s`` queries over ``n_slots`` = n_cm + n_m + n_s keys [cm; m; h].

    Positions: a learned bias b[head, i, j] added to the logits of query offset i and slot j. The window
    slides by whole segments, so slot j of memory is always at the same distance from query i: the bias
    is a learned relative-position bias (one per distance class), not a position embedding of tokens.
    """

    def __init__(self, d_model: int, n_heads: int, n_queries: int, n_slots: int):
        super().__init__(d_model, n_heads)
        self.pos_bias = nn.Parameter(torch.zeros(n_heads, n_queries, n_slots))

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self._split(self.w_q(query)), self._split(self.w_k(memory)), self._split(self.w_v(memory))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)
        scores = scores + self.pos_bias[:, -q.shape[2] :, -k.shape[2] :]
        if mask is not None:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = scores.softmax(-1)
        if mask is not None:
            weights = weights.masked_fill(~mask, 0.0)
        if self.keep_weights:
            self.last_weights = weights.detach()
        b, _, t, _ = q.shape
        return self.w_o((weights @ v).transpose(1, 2).reshape(b, t, self.n_heads * self.d_k))


def content_attention(attn: MultiHeadAttention, query: Tensor, memory: Tensor, valid: Tensor) -> Tensor:
    """The layer's multi-head attention without positions and with its parameters detached (stop-gradient):
    softmax(q kᵀ / √d_k) v W_o over the valid ``memory`` rows; gradients flow only through ``memory``."""

    def lin(layer: nn.Linear, x: Tensor) -> Tensor:
        return F.linear(x, layer.weight.detach(), layer.bias.detach())

    b, t, _ = query.shape
    q = lin(attn.w_q, query).view(b, t, attn.n_heads, attn.d_k).transpose(1, 2)
    n = memory.shape[1]
    k = lin(attn.w_k, memory).view(b, n, attn.n_heads, attn.d_k).transpose(1, 2)
    v = lin(attn.w_v, memory).view(b, n, attn.n_heads, attn.d_k).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1) / math.sqrt(attn.d_k)).masked_fill(~valid, torch.finfo(q.dtype).min)
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, attn.n_heads * attn.d_k)
    return lin(attn.w_o, out)


def attention_reconstruction(
    attn: MultiHeadAttention,
    norm: nn.LayerNorm,
    h: Tensor,
    old: Tensor,
    old_valid: Tensor,
    compressed: Tensor,
    compressed_valid: Tensor,
) -> Tensor:
    """||attn(h, m_old) − attn(h, f_c(m_old))||² (mean over batch, positions and features).

    ``h``, ``old`` and every parameter of ``attn`` and ``norm`` are stop-gradient; only ``compressed``
    (the output of f_c) carries gradient. The layer norm of the pre-LN block is applied to queries and keys.
    """

    def ln(x: Tensor) -> Tensor:
        return F.layer_norm(x, norm.normalized_shape, norm.weight.detach(), norm.bias.detach(), norm.eps)

    query = ln(h.detach())
    target = content_attention(attn, query, ln(old.detach()), old_valid).detach()
    recon = content_attention(attn, query, ln(compressed), compressed_valid)
    return (target - recon).pow(2).mean()


# ------------------------------------------------------------------------------------------------ model


@dataclass
class LayerState:
    mem: Tensor
    cmem: Tensor
    mem_valid: Tensor
    cmem_valid: Tensor


class CompressiveLayer(nn.Module):
    """Pre-LN block: x + Attn(LN([cm; m; x])), then x + FFN(LN(x)); owns f_c for its own memories."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        d_ff: int,
        segment: int,
        memory: int,
        compressed: int,
        rate: int,
        compression: str,
        loss: str,
    ):
        super().__init__()
        self.segment, self.memory, self.compressed, self.rate, self.loss = (
            segment,
            memory,
            compressed,
            rate,
            loss,
        )
        self.norm_attn, self.norm_ffn = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = MemoryAttention(d_model, n_heads, segment, compressed + memory + segment)
        self.ffn = PositionwiseFeedForward(d_model, d_ff)
        self.compressor = (
            Compressor(d_model, rate, compression, decoder=loss == "autoencoder") if compressed else None
        )

    def forward(
        self, x: Tensor, state: LayerState, main_grad: bool = True
    ) -> tuple[Tensor, LayerState, Tensor]:
        """``(output, next state, compression loss)``; ``main_grad=False`` runs the main path without autograd
        (its output carries no loss), the compression loss keeps its gradient."""
        with torch.set_grad_enabled(main_grad and torch.is_grad_enabled()):
            y = self._main(x, state)
        step = update_memory(
            state.mem,
            state.cmem,
            x,
            self.compressor,
            mem_valid=state.mem_valid,
            cmem_valid=state.cmem_valid,
            rate=self.rate,
        )
        aux = self._compression_loss(x, step)
        new = LayerState(step["mem"], step["cmem"], step["mem_valid"], step["cmem_valid"])
        return y, new, aux

    def _main(self, x: Tensor, state: LayerState) -> Tensor:
        n_s = x.shape[1]
        kv = torch.cat([state.cmem, state.mem, x], dim=1)
        n_past = kv.shape[1] - n_s
        causal = torch.ones(n_s, n_s, dtype=torch.bool, device=x.device).tril()
        past = torch.cat([state.cmem_valid, state.mem_valid])[None].expand(n_s, n_past)
        mask = torch.cat([past, causal], dim=1)[None, None]
        y = x + self.attn(self.norm_attn(x), self.norm_attn(kv), mask)
        return y + self.ffn(self.norm_ffn(y))

    def _compression_loss(self, x: Tensor, step: dict) -> Tensor:
        aux = x.new_zeros(())
        if self.compressor is not None and self.loss != "none" and bool(step["evicted_valid"].any()):
            old, old_valid = step["evicted"], step["evicted_valid"]
            squeezed = self.compressor(old)
            if self.loss == "attention":
                sq_valid = old_valid.view(-1, self.rate).all(-1)
                if bool(sq_valid.any()):
                    aux = attention_reconstruction(
                        self.attn, self.norm_attn, x, old, old_valid, squeezed, sq_valid
                    )
            else:  # autoencoding: ||m_old − g(f_c(m_old))||², over the valid evicted states
                err = (old.detach() - self.compressor.decode(squeezed)).pow(2)
                aux = err[:, old_valid].mean()
        return aux


class CompressiveTransformerLM(nn.Module):
    """Decoder-only Compressive Transformer over segments of ``segment`` tokens.

    Every layer keeps a memory of ``memory`` past layer inputs and a compressed memory of ``compressed``
    slots, each the compression of ``rate`` evicted memories; ``compressed = 0`` is the Transformer-XL-style
    model. Attended slots per query: compressed + memory + segment. ``forward(ids)`` runs the whole
    sequence (length a multiple of ``segment``) from empty memories and returns
    ``(logits (B, T, vocab), compression loss summed over layers and segments)``.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        d_model: int = 64,
        n_heads: int = 4,
        d_ff: int = 128,
        n_layers: int = 1,
        segment: int = 8,
        memory: int = 8,
        compressed: int = 8,
        rate: int = 4,
        compression: str = "conv",
        loss: str = "attention",
    ):
        super().__init__()
        for name, value in (
            ("vocab_size", vocab_size),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("d_ff", d_ff),
            ("n_layers", n_layers),
            ("segment", segment),
            ("memory", memory),
            ("rate", rate),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if compressed < 0:
            raise ValueError(f"compressed must be >= 0, got {compressed}")
        if segment % rate:
            raise ValueError(f"segment ({segment}) must be divisible by the compression rate ({rate})")
        if compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {compression!r}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if compression == "mean" and loss != "none":
            raise ValueError("mean pooling has no parameters: use loss='none'")
        self.vocab_size, self.d_model, self.segment = vocab_size, d_model, segment
        self.memory, self.compressed, self.rate = memory, compressed, rate
        self.embed = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.embed.weight, std=d_model**-0.5)
        self.layers = nn.ModuleList(
            CompressiveLayer(
                d_model=d_model,
                n_heads=n_heads,
                d_ff=d_ff,
                segment=segment,
                memory=memory,
                compressed=compressed,
                rate=rate,
                compression=compression,
                loss=loss,
            )
            for _ in range(n_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    @property
    def attended_slots(self) -> int:
        """Keys each query attends to once memories are full: n_cm + n_m + n_s (the attention cost)."""
        return self.compressed + self.memory + self.segment

    @property
    def context_span(self) -> int:
        """Furthest past token a segment's first query can reach: n_m + c · n_cm (one layer)."""
        return self.memory + self.rate * self.compressed

    def compression_parameters(self) -> list[nn.Parameter]:
        return [
            p for layer in self.layers if layer.compressor is not None for p in layer.compressor.parameters()
        ]

    def main_parameters(self) -> list[nn.Parameter]:
        skip = {id(p) for p in self.compression_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def init_state(self, batch: int, device=None) -> list[LayerState]:
        def zeros(n):
            return torch.zeros(batch, n, self.d_model, device=device)

        def invalid(n):
            return torch.zeros(n, dtype=torch.bool, device=device)

        return [
            LayerState(
                zeros(self.memory), zeros(self.compressed), invalid(self.memory), invalid(self.compressed)
            )
            for _ in self.layers
        ]

    def forward_segment(
        self, ids: Tensor, state: list[LayerState], main_grad: bool = True
    ) -> tuple[Tensor, list[LayerState], Tensor]:
        with torch.set_grad_enabled(main_grad and torch.is_grad_enabled()):
            x = self.embed(ids) * math.sqrt(self.d_model)
        new_state, aux = [], x.new_zeros(())
        for layer, layer_state in zip(self.layers, state, strict=True):
            x, s, a = layer(x, layer_state, main_grad)
            new_state.append(s)
            aux = aux + a
        with torch.set_grad_enabled(main_grad and torch.is_grad_enabled()):
            logits = self.norm(x) @ self.embed.weight.T
        return logits, new_state, aux

    def forward(self, ids: Tensor, loss_segments: int | None = None) -> tuple[Tensor, Tensor]:
        """``loss_segments = k`` keeps autograd on the main path of the last k segments only (the others'
        logits carry no gradient: use it when the task loss sits in the last k segments)."""
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"ids must be an integer (batch, length) tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        if ids.shape[1] == 0 or ids.shape[1] % self.segment:
            raise ValueError(
                f"sequence length {ids.shape[1]} must be a positive multiple of segment {self.segment}"
            )
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise ValueError(f"ids must be in [0, {self.vocab_size})")
        n = ids.shape[1] // self.segment
        if loss_segments is not None and not 1 <= loss_segments <= n:
            raise ValueError(f"loss_segments must be in [1, {n}], got {loss_segments}")
        first_grad = 0 if loss_segments is None else n - loss_segments
        state = self.init_state(ids.shape[0], ids.device)
        logits, aux = [], ids.new_zeros((), dtype=torch.float32)
        for i, start in enumerate(range(0, ids.shape[1], self.segment)):
            seg = ids[:, start : start + self.segment]
            out, state, a = self.forward_segment(seg, state, main_grad=i >= first_grad)
            logits.append(out)
            aux = aux + a
        return torch.cat(logits, dim=1), aux
