"""Recurrent baselines: an LSTM encoder–decoder with dot-product attention, and an LSTM language model.

LSTMSeq2Seq   a stacked LSTM encoder over the source; a stacked LSTM decoder started from the encoder's
              final state; at every target step the top decoder state h_t attends to the encoder
              outputs (Luong-style "general" score h_tᵀ W_a e_s, softmax over the non-pad source
              positions), and tanh(W_c [c_t; h_t]) feeds the output layer (no input feeding)
LSTMLM        embedding, stacked LSTM, linear output layer
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class LSTMSeq2Seq(nn.Module):
    """``forward(src, tgt_in) -> logits (B, T_tgt, vocab)``, the same interface as ``Transformer``."""

    def __init__(self, vocab_size: int, hidden: int, *, n_layers: int = 1, pad_id: int = 0):
        super().__init__()
        if min(vocab_size, hidden, n_layers) < 1:
            raise ValueError(
                f"vocab_size, hidden and n_layers must be >= 1, got {vocab_size}, {hidden}, {n_layers}"
            )
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, hidden)
        self.encoder = nn.LSTM(hidden, hidden, n_layers, batch_first=True)
        self.decoder = nn.LSTM(hidden, hidden, n_layers, batch_first=True)
        self.score = nn.Linear(hidden, hidden, bias=False)
        self.combine = nn.Linear(2 * hidden, hidden)
        self.output = nn.Linear(hidden, vocab_size)

    def encode(self, src: Tensor):
        outputs, state = self.encoder(self.embed(src))
        return outputs, state, src != self.pad_id

    def _step(self, tgt_in: Tensor, outputs: Tensor, state, src_keep: Tensor):
        h, state = self.decoder(self.embed(tgt_in), state)
        scores = h @ self.score(outputs).transpose(1, 2)  # (B, T_tgt, T_src)
        scores = scores.masked_fill(~src_keep[:, None, :], torch.finfo(scores.dtype).min)
        context = scores.softmax(-1) @ outputs
        return self.output(torch.tanh(self.combine(torch.cat([context, h], -1)))), state

    def forward(self, src: Tensor, tgt_in: Tensor) -> Tensor:
        outputs, state, keep = self.encode(src)
        return self._step(tgt_in, outputs, state, keep)[0]

    @torch.no_grad()
    def greedy_decode(self, src: Tensor, *, bos_id: int, eos_id: int, max_new_tokens: int) -> Tensor:
        outputs, state, keep = self.encode(src)
        token = torch.full((src.shape[0], 1), bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
        out = []
        for _ in range(max_new_tokens):
            logits, state = self._step(token, outputs, state, keep)
            token = logits[:, -1].argmax(-1).masked_fill(done, self.pad_id)[:, None]
            out.append(token)
            done |= token[:, 0] == eos_id
            if done.all():
                break
        return torch.cat(out, 1)


class LSTMLM(nn.Module):
    """``forward(ids) -> logits (B, T, vocab)``."""

    def __init__(self, vocab_size: int, hidden: int, *, n_layers: int = 1, embed_dim: int | None = None):
        super().__init__()
        if min(vocab_size, hidden, n_layers) < 1:
            raise ValueError(
                f"vocab_size, hidden and n_layers must be >= 1, got {vocab_size}, {hidden}, {n_layers}"
            )
        embed_dim = embed_dim or hidden
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTM(embed_dim, hidden, n_layers, batch_first=True)
        self.output = nn.Linear(hidden, vocab_size)

    def forward(self, ids: Tensor) -> Tensor:
        return self.output(self.lstm(self.embed(ids))[0])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def matched_hidden(build, target: int, low: int = 4, high: int = 512) -> int:
    """The hidden size h in [low, high] whose ``n_params(build(h))`` is closest to ``target``."""
    best, best_gap = low, None
    while low <= high:  # parameter count grows with h: bisect, then keep the closest seen
        mid = (low + high) // 2
        count = n_params(build(mid))
        gap = abs(count - target)
        if best_gap is None or gap < best_gap:
            best, best_gap = mid, gap
        if count < target:
            low = mid + 1
        else:
            high = mid - 1
    return best
