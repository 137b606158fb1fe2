"""Switch Transformer (Fedus, Zoph, Shazeer 2022, arXiv:2101.03961): top-1 routing, capacity, balancing.

SwitchRouter           h(x) = W_r x computed in float32 whatever the input dtype ("selective
                       precision", Sec. 2.4); p(x) = softmax(h(x)) over the N experts
route_top1             each token to i = argmax_i p_i(x); its position in expert i's buffer is its
                       rank among the tokens sent to i, in token order; a token whose position is
                       >= the expert capacity overflows (is dropped)
expert_capacity        ceil(tokens per batch / N × capacity factor)            (Sec. 2.2, eq. 3)
load_balancing_loss    N · Σ_i f_i · P_i,  f_i = (1/T) Σ_x 1{argmax p(x) = i},  P_i = (1/T) Σ_x p_i(x)
                       (eq. 4-6; the model multiplies it by α = 1e-2); equals 1 at uniform routing
SwitchFFN              y = p_i(x) · E_i(x) for kept tokens, 0 for overflowed ones, so that the
                       residual connection around the layer passes them through unchanged; each
                       expert E_i is the dense FFN max(0, x W1 + b1) W2 + b2 with the dense d_ff, so
                       the FLOPs per token equal the dense layer's (plus the d_model × N router);
                       ``expert_dropout`` is a dropout inside the experts only (the paper's
                       fine-tuning regularisation, Sec. 2.4 / Table 4)
scaled_init_           truncated normal, mean 0, std sqrt(s / fan_in), cut at 2 std, s = 0.1 (the
                       paper's 10x smaller initialisation scale, Sec. 2.4)
SwitchTransformerLM    the decoder-only Transformer of ``papers.language.transformer`` with its FFN
                       sublayers replaced by Switch layers (every ``expert_every``-th layer);
                       ``aux_loss()`` is Σ over Switch layers of the last forward's balancing loss
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.language.transformer import TransformerConfig, TransformerLM

INIT_SCALE = 0.1  # the paper's reduced initialisation scale s (default Transformer init has s = 1)


def expert_capacity(tokens: int, n_experts: int, capacity_factor: float) -> int:
    """Tokens an expert may take in one batch: ceil(tokens / n_experts × capacity_factor), at least 1."""
    if tokens < 0 or n_experts < 1 or not capacity_factor > 0:
        raise ValueError(
            f"need tokens >= 0, n_experts >= 1, capacity_factor > 0; got {tokens}, {n_experts}, "
            f"{capacity_factor}"
        )
    return max(1, math.ceil(tokens / n_experts * capacity_factor - 1e-9))


def route_top1(probs: Tensor, capacity: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(expert_index, gate, kept)`` for router probabilities ``(T, N)``.

    ``expert_index[t] = argmax_i probs[t, i]``, ``gate[t] = probs[t, expert_index[t]]`` (differentiable),
    ``kept[t]`` is False for the tokens past the first ``capacity`` sent to their expert (token order).
    """
    if probs.dim() != 2:
        raise ValueError(f"probs must be (tokens, experts), got shape {tuple(probs.shape)}")
    if capacity < 0:
        raise ValueError(f"capacity must be >= 0, got {capacity}")
    expert_index = probs.argmax(-1)
    gate = probs.gather(-1, expert_index[:, None]).squeeze(-1)
    one_hot = F.one_hot(expert_index, probs.shape[-1])
    position = (one_hot.cumsum(0) * one_hot).sum(-1) - 1  # rank among the tokens of the same expert
    return expert_index, gate, position < capacity


def load_balancing_loss(probs: Tensor, expert_index: Tensor) -> Tensor:
    """N · Σ_i f_i · P_i (without α): f_i the fraction of tokens whose argmax is i (no gradient), P_i the
    mean router probability of expert i (the gradient path). Minimum 1 at uniform routing."""
    n_experts = probs.shape[-1]
    f = torch.bincount(expert_index, minlength=n_experts).to(probs.dtype) / max(1, len(expert_index))
    return n_experts * (f * probs.mean(0)).sum()


def scaled_init_(weight: Tensor, fan_in: int, scale: float = INIT_SCALE) -> Tensor:
    """Truncated normal (±2 std) with std sqrt(scale / fan_in), in place."""
    std = math.sqrt(scale / fan_in)
    return nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


class SwitchRouter(nn.Module):
    """``forward(x (T, d_model)) -> probs (T, N)`` in float32 (float64 for a float64 input): the input and
    W_r are cast up and the softmax is taken there, so a bfloat16 model keeps a stable router; the gate
    p_i(x) is cast back to the model's dtype only where it scales the expert output."""

    def __init__(self, d_model: int, n_experts: int, *, init_scale: float = INIT_SCALE):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_experts, d_model))
        scaled_init_(self.weight, d_model, init_scale)

    def forward(self, x: Tensor) -> Tensor:
        dtype = torch.promote_types(x.dtype, torch.float32)  # float32, or float64 for a float64 model
        logits = x.to(dtype) @ self.weight.to(dtype).T
        return logits.softmax(-1)


class SwitchFFN(nn.Module):
    """A Switch layer in place of a position-wise FFN: ``forward(x (..., d_model)) -> (..., d_model)``.

    After each forward, ``last_aux_loss`` (N Σ f_i P_i, a tensor with gradient) and ``last_stats`` (f, P,
    dropped fraction, mean gate, capacity) describe the routing of that batch.
    """

    def __init__(
        self,
        d_model: int,
        d_ff: int,
        n_experts: int,
        *,
        capacity_factor: float = 1.25,
        eval_capacity_factor: float | None = None,
        expert_dropout: float = 0.0,
        init_scale: float = INIT_SCALE,
    ):
        super().__init__()
        if min(d_model, d_ff, n_experts) < 1:
            raise ValueError(f"d_model, d_ff, n_experts must be >= 1, got {d_model}, {d_ff}, {n_experts}")
        if not capacity_factor > 0 or (eval_capacity_factor is not None and not eval_capacity_factor > 0):
            raise ValueError(f"capacity factors must be > 0, got {capacity_factor}, {eval_capacity_factor}")
        if not 0 <= expert_dropout < 1:
            raise ValueError(f"expert_dropout must be in [0, 1), got {expert_dropout}")
        self.d_model, self.d_ff, self.n_experts = d_model, d_ff, n_experts
        self.capacity_factor = capacity_factor
        self.eval_capacity_factor = eval_capacity_factor
        self.router = SwitchRouter(d_model, n_experts, init_scale=init_scale)
        self.w_1 = nn.Parameter(torch.empty(n_experts, d_model, d_ff))
        self.b_1 = nn.Parameter(torch.zeros(n_experts, d_ff))
        self.w_2 = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        self.b_2 = nn.Parameter(torch.zeros(n_experts, d_model))
        scaled_init_(self.w_1, d_model, init_scale)
        scaled_init_(self.w_2, d_ff, init_scale)
        self.expert_dropout = nn.Dropout(expert_dropout)
        self.last_aux_loss: Tensor | None = None
        self.last_stats: dict | None = None

    def expert(self, i: int, x: Tensor) -> Tensor:
        """E_i(x) = max(0, x W1_i + b1_i) W2_i + b2_i, with the expert dropout on the hidden units."""
        hidden = F.relu(x @ self.w_1[i].to(x.dtype) + self.b_1[i].to(x.dtype))
        return self.expert_dropout(hidden) @ self.w_2[i].to(x.dtype) + self.b_2[i].to(x.dtype)

    def current_capacity_factor(self) -> float:
        if not self.training and self.eval_capacity_factor is not None:
            return self.eval_capacity_factor
        return self.capacity_factor

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.d_model:
            raise ValueError(f"expected last dimension {self.d_model}, got shape {tuple(x.shape)}")
        tokens = x.reshape(-1, self.d_model)
        probs = self.router(tokens)  # float32
        capacity = expert_capacity(len(tokens), self.n_experts, self.current_capacity_factor())
        expert_index, gate, kept = route_top1(probs, capacity)
        out = torch.zeros_like(tokens)
        for i in range(self.n_experts):
            rows = ((expert_index == i) & kept).nonzero().squeeze(1)
            if len(rows):
                out = out.index_add(0, rows, gate[rows, None].to(x.dtype) * self.expert(i, tokens[rows]))
        self.last_aux_loss = load_balancing_loss(probs, expert_index)
        with torch.no_grad():
            self.last_stats = {
                "f": torch.bincount(expert_index, minlength=self.n_experts).float() / max(1, len(tokens)),
                "P": probs.mean(0).detach(),
                "dropped": 1.0 - kept.float().mean().item() if len(tokens) else 0.0,
                "gate": gate.mean().item() if len(tokens) else 0.0,  # mean max_i p_i(x): router confidence
                "capacity": capacity,
            }
        return out.reshape(x.shape)


def scale_init_linear_layers(model: nn.Module, scale: float = INIT_SCALE) -> None:
    """Re-initialise every ``nn.Linear`` weight with :func:`scaled_init_` (biases to zero)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            scaled_init_(module.weight, module.in_features, scale)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


class SwitchTransformerLM(TransformerLM):
    """Decoder-only LM; ``n_experts = 0`` keeps the dense FFNs (the baseline), otherwise every
    ``expert_every``-th FFN (layers expert_every - 1, 2·expert_every - 1, ...) becomes a Switch layer with
    experts of width ``config.d_ff``. Linear weights get the scaled initialisation ``init_scale``.

    ``forward(ids) -> logits``; ``aux_loss()`` after a forward; ``routing_stats()`` the Switch layers'
    ``last_stats``.
    """

    model_type = "switch-transformer-lm"

    def __init__(
        self,
        config: TransformerConfig,
        *,
        n_experts: int = 8,
        expert_every: int = 1,
        capacity_factor: float = 1.25,
        eval_capacity_factor: float | None = None,
        expert_dropout: float = 0.0,
        init_scale: float = INIT_SCALE,
    ):
        super().__init__(config)
        if n_experts < 0 or expert_every < 1:
            raise ValueError(f"need n_experts >= 0 and expert_every >= 1, got {n_experts}, {expert_every}")
        if n_experts == 1:
            raise ValueError("n_experts must be 0 (dense) or >= 2")
        scale_init_linear_layers(self, init_scale)
        self.n_experts = n_experts
        if n_experts:
            for index, layer in enumerate(self.decoder):
                if index % expert_every == expert_every - 1:
                    layer.ffn = SwitchFFN(
                        config.d_model,
                        config.d_ff,
                        n_experts,
                        capacity_factor=capacity_factor,
                        eval_capacity_factor=eval_capacity_factor,
                        expert_dropout=expert_dropout,
                        init_scale=init_scale,
                    )

    def switch_layers(self) -> list[SwitchFFN]:
        return [m for m in self.modules() if isinstance(m, SwitchFFN)]

    def set_capacity_factor(self, capacity_factor: float, eval_capacity_factor: float | None = None) -> None:
        for layer in self.switch_layers():
            layer.capacity_factor, layer.eval_capacity_factor = capacity_factor, eval_capacity_factor

    def aux_loss(self) -> Tensor:
        """Σ over Switch layers of N Σ_i f_i P_i from the last forward (0 for a dense model)."""
        losses = [layer.last_aux_loss for layer in self.switch_layers() if layer.last_aux_loss is not None]
        return torch.stack(losses).sum() if losses else torch.zeros(())

    def routing_stats(self) -> list[dict]:
        return [layer.last_stats for layer in self.switch_layers()]
