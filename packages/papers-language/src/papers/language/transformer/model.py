"""The Transformer (Vaswani et al. 2017, arXiv:1706.03762): attention, blocks, models, loss and schedule.

    scaled_dot_product_attention   softmax(Q Kᵀ / √d_k) V with a boolean mask (True = may attend)
    MultiHeadAttention             h heads of d_k = d_v = d_model / h, concatenated and projected (Sec. 3.2.2)
    PositionwiseFeedForward        max(0, x W1 + b1) W2 + b2 (Sec. 3.3)
    sinusoidal_positional_encoding PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...) (Sec. 3.5)
    EncoderLayer / DecoderLayer    post-LN residual blocks LayerNorm(x + Dropout(Sublayer(x))) (Sec. 3.1);
                                   ``pre_ln=True`` gives x + Dropout(Sublayer(LayerNorm(x))) instead
    Transformer                    encoder–decoder with shared (src, tgt, pre-softmax) embeddings × √d_model
    TransformerLM                  the decoder stack alone (causal self-attention, no cross-attention)
    label_smoothed_loss            cross-entropy against (1 − ε) one-hot + ε / V uniform (Sec. 5.4)
    noam_lr / make_optimizer       lrate = d_model^−0.5 · min(step^−0.5, step · warmup^−1.5);
                                   Adam(0.9, 0.98, 1e-9)

Both models follow the config / ``save_pretrained(dir)`` / ``from_pretrained(dir)`` convention: the folder
holds ``config.json`` and ``model.safetensors``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.language.pretrained import ConfigDict, read_pretrained, write_pretrained


@dataclass
class TransformerConfig(ConfigDict):
    """Hyperparameters; the defaults are the paper's base model (Table 3) except the vocabulary."""

    vocab_size: int = 32000
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_encoder_layers: int = 6
    n_decoder_layers: int = 6
    dropout: float = 0.1
    max_len: int = 512
    pad_id: int = 0
    share_embeddings: bool = True
    pre_ln: bool = False
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("vocab_size", "d_model", "n_heads", "d_ff", "n_decoder_layers", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_encoder_layers < 0:
            raise ValueError(f"n_encoder_layers must be >= 0, got {self.n_encoder_layers}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must be in [0, vocab_size), got {self.pad_id}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")


# --------------------------------------------------------------------------------------------- attention


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """``(softmax(q kᵀ / √d_k) v, weights)`` for q, k, v of shapes ``(..., T_q, d_k)``, ``(..., T_k, d_k)``,
    ``(..., T_k, d_v)``.

    ``mask`` is boolean, broadcastable to ``(..., T_q, T_k)``, True where a query may attend to a key;
    masked keys get weight exactly 0 (a query with no key allowed gets all-zero weights).
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    weights = scores.softmax(dim=-1)
    if mask is not None:
        weights = weights.masked_fill(~mask, 0.0)
    return weights @ v, weights


def causal_mask(length: int, device: torch.device | None = None) -> Tensor:
    """``(1, 1, T, T)`` boolean, True on and below the diagonal: position t sees positions ≤ t."""
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None]


def padding_mask(ids: Tensor, pad_id: int) -> Tensor:
    """``(B, 1, 1, T)`` boolean, True at the keys that are not padding."""
    return (ids != pad_id)[:, None, None, :]


class MultiHeadAttention(nn.Module):
    """MultiHead(Q, K, V) = Concat(head_1, …, head_h) W^O, head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V).

    The h projections are one ``d_model × d_model`` matrix each for Q, K, V (split into heads). With
    ``keep_weights = True`` the last attention weights ``(B, h, T_q, T_k)`` stay in ``last_weights``.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        self.n_heads, self.d_k = n_heads, d_model // n_heads
        self.w_q, self.w_k, self.w_v, self.w_o = (nn.Linear(d_model, d_model) for _ in range(4))
        self.keep_weights = False
        self.last_weights: Tensor | None = None

    def _split(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_heads, self.d_k).transpose(1, 2)

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self._split(self.w_q(query)), self._split(self.w_k(memory)), self._split(self.w_v(memory))
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        if self.keep_weights:
            self.last_weights = weights.detach()
        b, _, t, _ = out.shape
        return self.w_o(out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_k))


class PositionwiseFeedForward(nn.Module):
    """FFN(x) = max(0, x W1 + b1) W2 + b2, applied to each position alike."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w_1, self.w_2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.relu(self.w_1(x)))


def sinusoidal_positional_encoding(length: int, d_model: int) -> Tensor:
    """``(length, d_model)``: PE(pos, 2i) = sin(pos / 10000^(2i/d_model)), PE(pos, 2i+1) = cos(same)."""
    position = torch.arange(length, dtype=torch.float64)[:, None]
    inv_freq = torch.pow(10000.0, -torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)
    pe = torch.zeros(length, d_model, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(position * inv_freq)
    pe[:, 1::2] = torch.cos(position * inv_freq)[:, : d_model // 2]
    return pe.float()


# ------------------------------------------------------------------------------------------------ blocks


class _Residual(nn.Module):
    """Post-LN: LayerNorm(x + Dropout(f(x))); pre-LN: x + Dropout(f(LayerNorm(x)))."""

    def __init__(self, d_model: int, dropout: float, pre_ln: bool, eps: float):
        super().__init__()
        self.norm, self.dropout, self.pre_ln = nn.LayerNorm(d_model, eps=eps), nn.Dropout(dropout), pre_ln

    def forward(self, x: Tensor, sublayer) -> Tensor:
        if self.pre_ln:
            return x + self.dropout(sublayer(self.norm(x)))
        return self.norm(x + self.dropout(sublayer(x)))


class EncoderLayer(nn.Module):
    """Self-attention then FFN, each in a residual block."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = config
        self.self_attn = MultiHeadAttention(c.d_model, c.n_heads)
        self.ffn = PositionwiseFeedForward(c.d_model, c.d_ff)
        self.res_attn, self.res_ffn = (
            _Residual(c.d_model, c.dropout, c.pre_ln, c.layer_norm_eps) for _ in "ab"
        )

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        x = self.res_attn(x, lambda h: self.self_attn(h, h, mask))
        return self.res_ffn(x, self.ffn)


class DecoderLayer(nn.Module):
    """Masked self-attention, attention over the encoder output (when ``cross_attention``), then FFN."""

    def __init__(self, config: TransformerConfig, cross_attention: bool = True):
        super().__init__()
        c = config

        def residual():
            return _Residual(c.d_model, c.dropout, c.pre_ln, c.layer_norm_eps)

        self.self_attn, self.res_self = MultiHeadAttention(c.d_model, c.n_heads), residual()
        if cross_attention:
            self.cross_attn, self.res_cross = MultiHeadAttention(c.d_model, c.n_heads), residual()
        else:
            self.cross_attn = self.res_cross = None
        self.ffn, self.res_ffn = PositionwiseFeedForward(c.d_model, c.d_ff), residual()

    def forward(
        self, x: Tensor, self_mask: Tensor, memory: Tensor | None = None, memory_mask: Tensor | None = None
    ) -> Tensor:
        x = self.res_self(x, lambda h: self.self_attn(h, h, self_mask))
        if self.cross_attn is not None:
            if memory is None:
                raise ValueError("a decoder layer with cross-attention needs the encoder output")
            x = self.res_cross(x, lambda h: self.cross_attn(h, memory, memory_mask))
        return self.res_ffn(x, self.ffn)


# ------------------------------------------------------------------------------------------------ models


class _Pretrained(nn.Module):
    """Config, weight initialisation, embeddings with positions, and the save/load round trip."""

    model_type = ""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        if not isinstance(config, TransformerConfig):
            raise TypeError(f"config must be a TransformerConfig, got {type(config).__name__}")
        config.validate()
        self.config = config
        self.register_buffer(
            "pe", sinusoidal_positional_encoding(config.max_len, config.d_model), persistent=False
        )
        self.embed_dropout = nn.Dropout(config.dropout)

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if "embed" in name or name.startswith("output"):
                nn.init.normal_(p, std=self.config.d_model**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def _check_ids(self, ids: Tensor, what: str) -> None:
        if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"{what} must be an integer (batch, length) tensor, got {ids.dtype} {tuple(ids.shape)}"
            )
        if ids.shape[1] > self.config.max_len:
            raise ValueError(f"{what} length {ids.shape[1]} exceeds max_len {self.config.max_len}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"{what} ids must be in [0, {self.config.vocab_size})")

    def _embed(self, embedding: nn.Embedding, ids: Tensor) -> Tensor:
        x = embedding(ids) * math.sqrt(self.config.d_model) + self.pe[: ids.shape[1]]
        return self.embed_dropout(x)

    def set_keep_attention(self, keep: bool) -> None:
        for module in self.modules():
            if isinstance(module, MultiHeadAttention):
                module.keep_weights = keep
                module.last_weights = None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``directory/config.json`` (with ``model_type``) and ``directory/model.safetensors``."""
        return write_pretrained(directory, self.model_type, self.config, self.state_dict())

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike):
        """The model written by :meth:`save_pretrained`, in eval mode."""
        data, state = read_pretrained(directory)
        if data.get("model_type", cls.model_type) != cls.model_type:
            raise ValueError(f"{directory} holds a {data['model_type']!r} model, not {cls.model_type!r}")
        model = cls(TransformerConfig.from_dict(data))
        model.load_state_dict(state)
        return model.eval()


class Transformer(_Pretrained):
    """Encoder–decoder Transformer. ``forward(src, tgt_in) -> logits (B, T_tgt, vocab)``.

    With ``share_embeddings`` one matrix E serves the source and target embeddings and the pre-softmax
    projection (logits = h Eᵀ); embeddings are multiplied by √d_model (Sec. 3.4).
    """

    model_type = "transformer"

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        if c.n_encoder_layers < 1:
            raise ValueError("an encoder–decoder Transformer needs n_encoder_layers >= 1")
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        if not c.share_embeddings:
            self.tgt_embed = nn.Embedding(c.vocab_size, c.d_model)
            self.output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_encoder_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_decoder_layers))
        if c.pre_ln:  # the pre-LN stacks end with a LayerNorm
            self.encoder_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
            self.decoder_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self._init_weights()

    def encode(self, src: Tensor) -> tuple[Tensor, Tensor]:
        """``(memory (B, T_src, d_model), src_mask (B, 1, 1, T_src))``."""
        self._check_ids(src, "src")
        mask = padding_mask(src, self.config.pad_id)
        x = self._embed(self.embed, src)
        for layer in self.encoder:
            x = layer(x, mask)
        if self.config.pre_ln:
            x = self.encoder_norm(x)
        return x, mask

    def decode(self, tgt_in: Tensor, memory: Tensor, src_mask: Tensor) -> Tensor:
        """Logits ``(B, T_tgt, vocab)``: causal and padding masks on the targets, padding on the source."""
        self._check_ids(tgt_in, "tgt_in")
        mask = causal_mask(tgt_in.shape[1], tgt_in.device) & padding_mask(tgt_in, self.config.pad_id)
        x = self._embed(self.embed if self.config.share_embeddings else self.tgt_embed, tgt_in)
        for layer in self.decoder:
            x = layer(x, mask, memory, src_mask)
        if self.config.pre_ln:
            x = self.decoder_norm(x)
        return x @ self.embed.weight.T if self.config.share_embeddings else self.output(x)

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        memory, src_mask = self.encode(src)
        return self.decode(tgt_in, memory, src_mask)

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, *, bos_id: int, eos_id: int, max_new_tokens: int) -> Tensor:
        """``(B, ≤ max_new_tokens)`` argmax tokens after BOS, ``pad_id`` after each row's EOS."""
        memory, src_mask = self.encode(src)
        ys = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        for _ in range(max_new_tokens):
            token = self.decode(ys, memory, src_mask)[:, -1].argmax(-1)
            token = token.masked_fill(done, self.config.pad_id)
            ys = torch.cat([ys, token[:, None]], dim=1)
            done |= token == eos_id
            if done.all():
                break
        return ys[:, 1:]


class TransformerLM(_Pretrained):
    """Decoder-only Transformer: the decoder blocks with causal self-attention and no cross-attention.

    ``forward(ids) -> logits (B, T, vocab)``; output projection tied to the embedding when
    ``share_embeddings``. ``n_encoder_layers`` is ignored.
    """

    model_type = "transformer-lm"

    def __init__(self, config: TransformerConfig):
        super().__init__(config)
        c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        if not c.share_embeddings:
            self.output = nn.Linear(c.d_model, c.vocab_size, bias=False)
        self.decoder = nn.ModuleList(
            DecoderLayer(c, cross_attention=False) for _ in range(c.n_decoder_layers)
        )
        if c.pre_ln:
            self.decoder_norm = nn.LayerNorm(c.d_model, eps=c.layer_norm_eps)
        self._init_weights()

    def forward(self, ids: Tensor) -> Tensor:
        self._check_ids(ids, "ids")
        mask = causal_mask(ids.shape[1], ids.device)
        x = self._embed(self.embed, ids)
        for layer in self.decoder:
            x = layer(x, mask)
        if self.config.pre_ln:
            x = self.decoder_norm(x)
        return x @ self.embed.weight.T if self.config.share_embeddings else self.output(x)


# ------------------------------------------------------------------------------------ loss and schedule


def label_smoothed_loss(
    logits: Tensor, targets: Tensor, epsilon: float = 0.1, ignore_index: int = -100
) -> Tensor:
    """Mean over non-ignored positions of −Σ_k q_k log p_k, q = (1 − ε) one-hot(target) + ε / V.

    Equals ``(1 − ε) · NLL + ε · mean_k(−log p_k)``; ε = 0 is the cross-entropy.
    """
    if not 0 <= epsilon < 1:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} do not match")
    log_p = logits.log_softmax(-1).flatten(0, -2)
    targets = targets.flatten()
    keep = targets != ignore_index
    log_p, targets = log_p[keep], targets[keep]
    nll = -log_p.gather(1, targets[:, None]).squeeze(1)
    return ((1 - epsilon) * nll - epsilon * log_p.mean(-1)).mean()


def noam_lr(step: int, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """lrate = factor · d_model^−0.5 · min(step^−0.5, step · warmup^−1.5), step counted from 1."""
    if step < 1 or warmup < 1:
        raise ValueError(f"step and warmup must be >= 1, got {step} and {warmup}")
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def make_optimizer(
    model: nn.Module, *, d_model: int, warmup: int, factor: float = 1.0
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.LambdaLR]:
    """Adam(β1 = 0.9, β2 = 0.98, ε = 1e-9) and the warmup / inverse-square-root schedule (Sec. 5.3);
    call ``scheduler.step()`` after each ``optimizer.step()``."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda index: noam_lr(index + 1, d_model, warmup, factor)
    )
    return optimizer, scheduler
