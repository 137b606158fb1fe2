"""ELECTRA (Clark et al. 2020, arXiv:2003.10555): generator, discriminator, replaced-token detection.

    mask_positions           choose each non-special real token with probability p (15 %) and replace it
                             by [MASK] (ELECTRA masks every chosen token; no 80 / 10 / 10 rule)
    ElectraGenerator         a small masked LM that reads the discriminator's embeddings (shared),
                             projects them to its own width, runs post-LN BERT blocks, and predicts tokens
                             through LN(GELU(W h)) E_tokenᵀ + b (output tied to the shared embeddings)
    ElectraDiscriminator     a BERT encoder (``papers.language.bert.BertModel``) and the head
                             σ(w · GELU(W h_t + b) + c): the probability that token t was replaced
    ElectraForPreTraining    both networks and the combined loss L_MLM(gen) + λ L_Disc (λ = 50); the
                             generator's samples are detached (trained by maximum likelihood only)
    discriminator_loss       binary cross-entropy on every real token, or only on the masked positions
                             (the paper's "ELECTRA 15 %" ablation)
    training_flops           forward + backward FLOPs of one step, counted by ``torch.utils.flop_counter``

The discriminator's encoder is saved as a plain ``BertModel`` folder, so that
``BertForSequenceClassification.from_pretrained`` fine-tunes it exactly as it fine-tunes BERT.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from papers.language.bert.model import IGNORE_INDEX, BertConfig, BertEmbeddings, BertLayer, BertModel

LOSS_POSITIONS = ("all", "masked")


def _bert_init(module: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) weights, zero biases, LayerNorm 1 and 0."""
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def mask_positions(
    input_ids: Tensor,
    *,
    mask_id: int,
    special_ids,
    attention_mask: Tensor | None = None,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """``(masked_ids, chosen)``: each real non-special token is chosen with ``probability`` and becomes
    ``mask_id``; ``chosen`` (bool, like ``input_ids``) marks the positions the generator must fill."""
    if not 0 < probability < 1:
        raise ValueError(f"probability must be in (0, 1), got {probability}")
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, length), got {tuple(input_ids.shape)}")
    choosable = ~torch.isin(input_ids, torch.as_tensor(list(special_ids), device=input_ids.device))
    if attention_mask is not None:
        choosable &= attention_mask.bool()
    draw = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    chosen = (draw < probability) & choosable
    return input_ids.masked_fill(chosen, mask_id), chosen


class ElectraGenerator(nn.Module):
    """Masked LM of width ``config.hidden_size`` on top of shared embeddings of width ``embedding_size``.

    ``forward(input_ids, token_type_ids, attention_mask) -> logits (B, T, vocab)``.
    """

    def __init__(self, config: BertConfig, embeddings: BertEmbeddings):
        super().__init__()
        if not isinstance(embeddings, BertEmbeddings):
            raise TypeError(f"embeddings must be a BertEmbeddings, got {type(embeddings).__name__}")
        self.config = config
        self.embeddings = embeddings  # shared with the discriminator (not owned)
        width = embeddings.word_embeddings.embedding_dim
        self.project = nn.Linear(width, config.hidden_size) if width != config.hidden_size else nn.Identity()
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.transform = nn.Linear(config.hidden_size, width)
        self.transform_norm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(embeddings.word_embeddings.num_embeddings))
        for name, module in self.named_modules():
            if not name.startswith("embeddings"):
                _bert_init(module, config.initializer_range)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        mask = attention_mask.bool()[:, None, None, :]
        h = self.project(self.embeddings(input_ids, token_type_ids))
        for layer in self.layers:
            h = layer(h, mask)
        h = self.transform_norm(F.gelu(self.transform(h)))
        return h @ self.embeddings.word_embeddings.weight.T + self.bias


class ElectraDiscriminator(nn.Module):
    """``BertModel`` + head: ``forward(...) -> logits (B, T)`` of "token t was replaced"."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, 1)
        for module in (self.dense, self.out):
            _bert_init(module, config.initializer_range)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor, attention_mask: Tensor) -> Tensor:
        h, _ = self.bert(input_ids, token_type_ids, attention_mask)
        return self.out(F.gelu(self.dense(h))).squeeze(-1)


def generator_config(discriminator: BertConfig, fraction: float) -> BertConfig:
    """The generator: the discriminator's depth, ``fraction`` of its width, heads and FFN (heads of the
    same size where they divide; at least one head)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"generator fraction must be in (0, 1], got {fraction}")
    width = max(1, round(discriminator.hidden_size * fraction))
    head = discriminator.hidden_size // discriminator.num_attention_heads
    heads = max(1, width // head) if width % head == 0 else 1
    return dataclasses.replace(
        discriminator,
        hidden_size=width,
        num_attention_heads=heads,
        intermediate_size=max(1, round(discriminator.intermediate_size * fraction)),
    )


def discriminator_loss(
    logits: Tensor, is_replaced: Tensor, positions: Tensor, reduction: str = "mean"
) -> Tensor:
    """Σ_{t ∈ positions} −1(replaced) log D(x̃, t) − 1(original) log(1 − D(x̃, t)), averaged."""
    if not logits.shape == is_replaced.shape == positions.shape:
        raise ValueError(
            f"logits {tuple(logits.shape)}, is_replaced {tuple(is_replaced.shape)} and positions "
            f"{tuple(positions.shape)} must match"
        )
    keep = positions.bool()
    return F.binary_cross_entropy_with_logits(logits[keep], is_replaced[keep].float(), reduction=reduction)


class ElectraForPreTraining(nn.Module):
    """Generator + discriminator with shared token / position / segment embeddings (and their LayerNorm).

    ``forward(input_ids, token_type_ids, attention_mask, mask_id=..., special_ids=..., generator=...)``
    returns a dict: ``loss`` = L_MLM + λ L_Disc, ``mlm_loss``, ``disc_loss``, ``corrupted`` (x̃),
    ``is_replaced``, ``chosen``, ``disc_logits`` and ``disc_accuracy`` (over the loss positions).
    """

    def __init__(
        self,
        config: BertConfig,
        generator_fraction: float = 0.25,
        disc_weight: float = 50.0,
        mask_probability: float = 0.15,
        loss_positions: str = "all",
    ):
        super().__init__()
        if loss_positions not in LOSS_POSITIONS:
            raise ValueError(f"loss_positions must be one of {LOSS_POSITIONS}, got {loss_positions!r}")
        if not disc_weight >= 0:
            raise ValueError(f"disc_weight must be >= 0, got {disc_weight}")
        if not 0 < mask_probability < 1:
            raise ValueError(f"mask_probability must be in (0, 1), got {mask_probability}")
        self.config = config
        self.disc_weight, self.mask_probability, self.loss_positions = (
            disc_weight,
            mask_probability,
            loss_positions,
        )
        self.discriminator = ElectraDiscriminator(config)
        self.generator = ElectraGenerator(
            generator_config(config, generator_fraction), self.discriminator.bert.embeddings
        )

    def forward(
        self,
        input_ids: Tensor,
        token_type_ids: Tensor,
        attention_mask: Tensor,
        *,
        mask_id: int,
        special_ids,
        generator: torch.Generator | None = None,
    ) -> dict[str, Tensor]:
        real = attention_mask.bool()
        masked, chosen = mask_positions(
            input_ids, mask_id=mask_id, special_ids=special_ids, attention_mask=real,
            probability=self.mask_probability, generator=generator,
        )  # fmt: skip
        gen_logits = self.generator(masked, token_type_ids, real)
        labels = input_ids.masked_fill(~chosen, IGNORE_INDEX)
        if chosen.any():
            mlm = F.cross_entropy(gen_logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)
        else:
            mlm = gen_logits.sum() * 0.0
        with torch.no_grad():  # sampling: no gradient flows from the discriminator into the generator
            probs = torch.softmax(gen_logits[chosen].float(), dim=-1)
            sampled = torch.multinomial(probs, 1, generator=generator).squeeze(-1) if len(probs) else None
        corrupted = input_ids.clone()
        if sampled is not None:
            corrupted[chosen] = sampled
        is_replaced = corrupted != input_ids  # a sample equal to the original counts as original
        disc_logits = self.discriminator(corrupted, token_type_ids, real)
        positions = real if self.loss_positions == "all" else chosen
        if positions.any():
            disc = discriminator_loss(disc_logits, is_replaced, positions)
            correct = ((disc_logits > 0) == is_replaced)[positions].float().mean()
        else:
            disc, correct = disc_logits.sum() * 0.0, disc_logits.new_tensor(float("nan"))
        return {
            "loss": mlm + self.disc_weight * disc,
            "mlm_loss": mlm,
            "disc_loss": disc,
            "disc_accuracy": correct.detach(),
            "disc_logits": disc_logits,
            "corrupted": corrupted,
            "is_replaced": is_replaced,
            "chosen": chosen,
        }


def training_flops(step) -> int:
    """FLOPs of ``step()`` (which should run one forward and backward pass), counted per operator by
    ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and attention; elementwise ops are not
    counted, for every method alike)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return int(counter.get_total_flops())
