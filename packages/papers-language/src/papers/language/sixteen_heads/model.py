"""Head masks, gradient head importance and pruning orders (Michel, Levy, Neubig 2019, arXiv:1905.10650).

    HeadMaskedAttention   ``MultiHeadAttention`` whose head outputs are multiplied by gates ξ_h before the
                          output projection: MHAtt(x) = Σ_h ξ_h Att_h(x) (+ the W^O bias, not per head)
    HeadMasks             swaps every attention of an encoder–decoder ``Transformer`` for the masked one
                          (weights shared, state-dict keys unchanged) and sets the (n_layers, n_heads)
                          mask of the whole model; layers are grouped by attention type
    head_importance       I_h = E_x |∂L(x)/∂ξ_h| at ξ = 1 (or the current mask), exact per example, then
                          normalised per layer by the ℓ2 norm of that layer's scores
    pruning_order         the heads, least important first, as (layer, head) pairs

The transformer package's attention has no per-head mask hook, so this module subclasses it rather than
editing it. The gradient with respect to ξ_h is Att_h(x)ᵀ ∂L/∂Att_h(x) (chain rule through the product):
one backward pass gives every head's importance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from papers.language.transformer.model import MultiHeadAttention, Transformer, scaled_dot_product_attention

ATTENTION_TYPES = ("enc_self", "dec_self", "enc_dec")


class HeadMaskedAttention(MultiHeadAttention):
    """Multi-head attention with a gate per head on its output (before W^O).

    ``head_mask`` is None (no gating: the parent's computation), a ``(n_heads,)`` tensor shared by the
    batch, or a ``(batch, n_heads)`` tensor, one gate vector per example (used for per-example
    gradients). ``last_head_output`` keeps the gated head outputs ``(B, h, T_q, d_k)`` when
    ``keep_head_output`` is True (for inspection and tests).
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__(d_model, n_heads)
        self.head_mask: Tensor | None = None
        self.keep_head_output = False
        self.last_head_output: Tensor | None = None

    @classmethod
    def from_attention(cls, attention: MultiHeadAttention) -> HeadMaskedAttention:
        d_model = attention.w_q.in_features
        new = cls(d_model, attention.n_heads).to(attention.w_q.weight.device, attention.w_q.weight.dtype)
        new.load_state_dict(attention.state_dict())
        new.train(attention.training)
        return new

    def _gate(self, batch: int) -> Tensor | None:
        mask = self.head_mask
        if mask is None:
            return None
        if mask.dim() == 1 and mask.shape[0] == self.n_heads:
            return mask.view(1, self.n_heads, 1, 1)
        if mask.dim() == 2 and mask.shape == (batch, self.n_heads):
            return mask.view(batch, self.n_heads, 1, 1)
        raise ValueError(
            f"head_mask must have shape ({self.n_heads},) or ({batch}, {self.n_heads}), "
            f"got {tuple(mask.shape)}"
        )

    def forward(self, query: Tensor, memory: Tensor, mask: Tensor | None = None) -> Tensor:
        q, k, v = self._split(self.w_q(query)), self._split(self.w_k(memory)), self._split(self.w_v(memory))
        out, weights = scaled_dot_product_attention(q, k, v, mask)
        gate = self._gate(out.shape[0])
        if gate is not None:
            out = out * gate.to(out.dtype)
        if self.keep_weights:
            self.last_weights = weights.detach()
        if self.keep_head_output:
            self.last_head_output = out
        b, _, t, _ = out.shape
        return self.w_o(out.transpose(1, 2).reshape(b, t, self.n_heads * self.d_k))


@dataclass(frozen=True)
class AttentionLayer:
    """One attention sublayer: its type (``enc_self``, ``dec_self``, ``enc_dec``) and depth."""

    kind: str
    depth: int

    @property
    def name(self) -> str:
        return f"{self.kind}.{self.depth}"


class HeadMasks:
    """The head masks of an encoder–decoder ``Transformer`` (modified in place).

    ``masks.layers`` lists the attention sublayers, encoder self-attention first, then decoder
    self-attention, then encoder–decoder attention, each by depth; ``masks.set(m)`` takes an
    ``(n_layers, n_heads)`` tensor of gates (1 keeps a head, 0 removes it); ``masks.clear()`` removes
    all gating (exactly the original model).
    """

    def __init__(self, model: Transformer):
        if not isinstance(model, Transformer):
            raise TypeError(f"HeadMasks needs an encoder-decoder Transformer, got {type(model).__name__}")
        self.model = model
        self.n_heads = model.config.n_heads
        self.layers: list[AttentionLayer] = []
        self.modules: list[HeadMaskedAttention] = []
        slots = [("enc_self", layer, "self_attn") for layer in model.encoder]
        slots += [("dec_self", layer, "self_attn") for layer in model.decoder]
        slots += [("enc_dec", layer, "cross_attn") for layer in model.decoder]
        depth = dict.fromkeys(ATTENTION_TYPES, 0)
        for kind, parent, attribute in slots:
            attention = getattr(parent, attribute)
            if not isinstance(attention, HeadMaskedAttention):
                attention = HeadMaskedAttention.from_attention(attention)
                setattr(parent, attribute, attention)
            self.layers.append(AttentionLayer(kind, depth[kind]))
            self.modules.append(attention)
            depth[kind] += 1

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.layers), self.n_heads

    def ones(self) -> Tensor:
        return torch.ones(self.shape)

    def layer_indices(self, kind: str) -> list[int]:
        if kind not in ATTENTION_TYPES:
            raise ValueError(f"kind must be one of {ATTENTION_TYPES}, got {kind!r}")
        return [i for i, layer in enumerate(self.layers) if layer.kind == kind]

    def set(self, mask: Tensor) -> None:
        """Gates ``(n_layers, n_heads)`` for the whole batch, or ``(n_layers, batch, n_heads)``."""
        if mask.dim() not in (2, 3) or mask.shape[0] != len(self.layers) or mask.shape[-1] != self.n_heads:
            raise ValueError(
                f"mask must have shape {self.shape} or ({len(self.layers)}, batch, {self.n_heads}), "
                f"got {tuple(mask.shape)}"
            )
        for module, gates in zip(self.modules, mask, strict=True):
            module.head_mask = gates

    def clear(self) -> None:
        for module in self.modules:
            module.head_mask = None


def sequence_losses(
    model: Transformer, src: Tensor, tgt_in: Tensor, tgt_out: Tensor, ignore_index: int
) -> Tensor:
    """Per-example loss L(x): the summed token cross-entropy of the target sequence, ``(B,)``."""
    logits = model(src, tgt_in)
    token = nn.functional.cross_entropy(
        logits.flatten(0, 1), tgt_out.flatten(), ignore_index=ignore_index, reduction="none"
    )
    return token.view(tgt_out.shape).sum(1)


def head_importance(
    masks: HeadMasks,
    batches: Iterable[tuple[Tensor, ...]],
    loss_fn: Callable[..., Tensor],
    *,
    base_mask: Tensor | None = None,
    normalize: bool = True,
) -> Tensor:
    """I_h = E_x |∂L(x)/∂ξ_h|, ``(n_layers, n_heads)``.

    ``loss_fn(model, *batch) -> (B,)`` per-example losses. Each example gets its own gate vector (all
    equal to ``base_mask``, ones by default), so the gradient of Σ_x L(x) with respect to example x's
    gates is exactly ∂L(x)/∂ξ — the absolute value is taken per example before averaging, as in the
    paper's definition. Heads removed by ``base_mask`` (gate 0) keep their gradient as a score but are
    normally excluded by the caller. With ``normalize`` each layer's scores are divided by their ℓ2 norm
    (Sec. 4.2: normalising by layer matters for the global ranking).
    """
    model = masks.model
    base = masks.ones() if base_mask is None else base_mask.float()
    if base.shape != masks.shape:
        raise ValueError(f"base_mask must have shape {masks.shape}, got {tuple(base.shape)}")
    total, count = torch.zeros(masks.shape, dtype=torch.float64), 0
    try:
        for batch in batches:
            size = batch[0].shape[0]
            gates = base[:, None, :].expand(-1, size, -1).clone().requires_grad_(True)
            masks.set(gates)
            losses = loss_fn(model, *batch)
            if losses.shape != (size,):
                raise ValueError(
                    f"loss_fn must return per-example losses ({size},), got {tuple(losses.shape)}"
                )
            (grad,) = torch.autograd.grad(losses.sum(), gates)
            total += grad.abs().sum(1).double()
            count += size
    finally:
        masks.set(base)
    if count == 0:
        raise ValueError("head_importance needs at least one example")
    importance = (total / count).float()
    if normalize:
        importance = normalize_by_layer(importance)
    return importance


def normalize_by_layer(importance: Tensor, eps: float = 1e-20) -> Tensor:
    """Each row divided by its ℓ2 norm (a row of zeros stays zero)."""
    if importance.dim() != 2:
        raise ValueError(f"importance must be (n_layers, n_heads), got {tuple(importance.shape)}")
    return importance / importance.norm(dim=1, keepdim=True).clamp_min(eps)


def pruning_order(
    scores: Tensor, alive: Tensor | None = None, layers: Sequence[int] | None = None
) -> list[tuple[int, int]]:
    """(layer, head) pairs of the live heads (in ``layers``, all by default), lowest score first; ties
    broken by position, so the order is deterministic."""
    if scores.dim() != 2:
        raise ValueError(f"scores must be (n_layers, n_heads), got {tuple(scores.shape)}")
    alive = torch.ones_like(scores, dtype=torch.bool) if alive is None else alive.bool()
    rows = range(scores.shape[0]) if layers is None else layers
    heads = [(i, h) for i in rows for h in range(scores.shape[1]) if alive[i, h]]
    return sorted(heads, key=lambda ih: (float(scores[ih]), ih))


def mask_without(shape: tuple[int, int], removed: Iterable[tuple[int, int]]) -> Tensor:
    """A mask of ones with the ``removed`` (layer, head) pairs set to 0."""
    mask = torch.ones(shape)
    for i, h in removed:
        mask[i, h] = 0.0
    return mask
