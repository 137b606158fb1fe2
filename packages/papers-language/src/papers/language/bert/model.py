"""BERT (Devlin et al. 2019, arXiv:1810.04805): encoder, pre-training heads, fine-tuning head, save/load.

    BertConfig                    Hugging Face's field names (``hidden_size``, ``num_hidden_layers``, ...);
                                  the defaults are BERT-base's (Sec. 3: L = 12, H = 768, A = 12, 4H FFN)
    BertEmbeddings                LayerNorm(E_token[x] + E_position[t] + E_segment[s]), then dropout
    BertLayer                     post-LN Transformer block: h ← LN(h + Drop(MultiHead(h))),
                                  h ← LN(h + Drop(W2 GELU(W1 h + b1) + b2))
    BertModel                     the stack, then the pooler tanh(W_p h_[CLS] + b_p); ``causal=True`` gives
                                  the left-to-right ablation (each position sees positions ≤ t) with the
                                  last non-padding token pooled instead of [CLS], which sees nothing
    BertForPreTraining            masked-LM head (dense + GELU + LN, output tied to E_token, plus a bias)
                                  and the optional next-sentence head (linear on the pooled vector)
    BertForSequenceClassification pooled → dropout → linear over the labels; every weight is trained
    mlm_loss / next_token_loss    cross-entropy on the chosen positions / on every next token

Weights follow BERT's initialisation (normal, std ``initializer_range`` = 0.02; zero biases; LayerNorm
1 and 0). ``save_pretrained(dir)`` writes ``config.json`` and ``model.safetensors``; ``from_pretrained(dir)``
reads them back, and a ``BertForSequenceClassification`` can start from a ``BertForPreTraining`` folder
(the encoder is shared, the heads are dropped or freshly initialised). ``to_transformers_state_dict``
renames the encoder's weights to ``transformers.BertModel``'s, which then computes the same outputs.
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
from papers.language.transformer.model import MultiHeadAttention, causal_mask

IGNORE_INDEX = -100


@dataclass
class BertConfig(ConfigDict):
    """Hyperparameters with Hugging Face's names; defaults are BERT-base except where noted.

    ``causal`` is ours (not a BERT setting): the same network with a left-to-right attention mask, for
    the paper's "LTR & No NSP" ablation (Sec. 5.1, Table 5).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    num_labels: int = 2
    causal: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
            "num_labels",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        if not 0 <= self.hidden_dropout_prob < 1:
            raise ValueError(f"hidden_dropout_prob must be in [0, 1), got {self.hidden_dropout_prob}")
        if not self.initializer_range > 0 or not self.layer_norm_eps > 0:
            raise ValueError("initializer_range and layer_norm_eps must be > 0")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"pad_token_id must be in [0, vocab_size), got {self.pad_token_id}")

    def to_transformers(self):
        """The equivalent ``transformers.BertConfig`` (bidirectional only; no attention dropout here)."""
        if self.causal:
            raise ValueError("transformers.BertModel has no left-to-right encoder; causal must be False")
        from transformers import BertConfig as HFBertConfig

        return HFBertConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=self.hidden_dropout_prob,
            attention_probs_dropout_prob=0.0,
            max_position_embeddings=self.max_position_embeddings,
            type_vocab_size=self.type_vocab_size,
            initializer_range=self.initializer_range,
            layer_norm_eps=self.layer_norm_eps,
            pad_token_id=self.pad_token_id,
            num_labels=self.num_labels,
        )


# ------------------------------------------------------------------------------------------- encoder


class BertEmbeddings(nn.Module):
    """LayerNorm(E_token[x_t] + E_position[t] + E_segment[s_t]) with learned positions, then dropout."""

    def __init__(self, config: BertConfig):
        super().__init__()
        c = config
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.dropout(self.norm(x + self.token_type_embeddings(token_type_ids)))


class BertLayer(nn.Module):
    """Post-LN block: LN(h + Drop(MultiHead(h, h, h))), then LN(h + Drop(W2 GELU(W1 h + b1) + b2))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        c = config
        self.attention = MultiHeadAttention(c.hidden_size, c.num_attention_heads)
        self.attention_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.intermediate = nn.Linear(c.hidden_size, c.intermediate_size)
        self.output = nn.Linear(c.intermediate_size, c.hidden_size)
        self.output_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        h = self.attention_norm(h + self.dropout(self.attention(h, h, mask)))
        return self.output_norm(h + self.dropout(self.output(F.gelu(self.intermediate(h)))))


class _Pretrained(nn.Module):
    """Config check, BERT's initialisation, and the ``save_pretrained`` / ``from_pretrained`` round trip."""

    model_type = ""

    def __init__(self, config: BertConfig):
        super().__init__()
        if not isinstance(config, BertConfig):
            raise TypeError(f"config must be a BertConfig, got {type(config).__name__}")
        config.validate()
        self.config = config

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """``directory/config.json`` (with ``model_type``) and ``directory/model.safetensors``."""
        # tied weights appear once (safetensors refuses shared storage); they are re-tied on load
        state = {k: v for k, v in self.state_dict().items() if k not in self._tied_keys()}
        return write_pretrained(directory, self.model_type, self.config, state)

    def _tied_keys(self) -> set[str]:
        return set()

    @classmethod
    def _build(cls, config: BertConfig, state: dict[str, Tensor]):
        return cls(config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **config_overrides):
        """The model in ``directory`` in eval mode. ``config_overrides`` change config fields (for
        fine-tuning: ``num_labels``, ``hidden_dropout_prob``). Weights of another BERT head type are
        accepted: the shared ``bert.*`` encoder is loaded, this class's own head keeps its initialisation."""
        data, state = read_pretrained(directory)
        saved_type = data.get("model_type", cls.model_type)
        if not saved_type.startswith("bert"):
            raise ValueError(f"{directory} holds a {saved_type!r} model, not a BERT")
        model = cls._build(BertConfig.from_dict({**data, **config_overrides}), state)
        if saved_type == cls.model_type:
            missing, unexpected = model.load_state_dict(state, strict=False)
            missing = [k for k in missing if k not in model._tied_keys()]
            if missing or unexpected:
                raise ValueError(f"weights do not match: missing {missing}, unexpected {unexpected}")
        else:
            prefix = "" if saved_type == "bert" else "bert."
            encoder = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            model.bert.load_state_dict(encoder)
        return model.eval()


class BertModel(_Pretrained):
    """The encoder: ``forward(input_ids, token_type_ids=None, attention_mask=None) -> (sequence, pooled)``,
    of shapes ``(B, T, H)`` and ``(B, H)``.

    ``attention_mask`` (B, T) is 1 at real tokens; by default every non-``pad_token_id`` token. The pooled
    vector is tanh(W_p h + b_p) at [CLS] (position 0), or, when ``config.causal``, at the last real token
    (the only one that has seen the whole input).
    """

    model_type = "bert"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(BertLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
        self.apply(self._init_weights)

    @property
    def bert(self) -> BertModel:  # so that from_pretrained treats every class alike
        return self

    def _check(self, input_ids: Tensor, token_type_ids: Tensor | None, attention_mask: Tensor | None):
        c = self.config
        if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(
                f"input_ids must be an integer (batch, length) tensor, got {input_ids.dtype} "
                f"{tuple(input_ids.shape)}"
            )
        if input_ids.shape[1] > c.max_position_embeddings:
            raise ValueError(
                f"length {input_ids.shape[1]} exceeds max_position_embeddings {c.max_position_embeddings}"
            )
        if input_ids.numel() and (input_ids.min() < 0 or input_ids.max() >= c.vocab_size):
            raise ValueError(f"input_ids must be in [0, {c.vocab_size})")
        for name, other in (("token_type_ids", token_type_ids), ("attention_mask", attention_mask)):
            if other is not None and other.shape != input_ids.shape:
                raise ValueError(f"{name} {tuple(other.shape)} must match input_ids {tuple(input_ids.shape)}")
        if token_type_ids is not None and token_type_ids.numel():
            if token_type_ids.min() < 0 or token_type_ids.max() >= c.type_vocab_size:
                raise ValueError(f"token_type_ids must be in [0, {c.type_vocab_size})")

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        self._check(input_ids, token_type_ids, attention_mask)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        if attention_mask is None:
            attention_mask = input_ids != self.config.pad_token_id
        real = attention_mask.bool()
        mask = real[:, None, None, :]  # (B, 1, 1, T): keys that are real tokens
        if self.config.causal:
            mask = mask & causal_mask(input_ids.shape[1], input_ids.device)
        h = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            h = layer(h, mask)
        if self.config.causal:
            last = (real.long().cumsum(1).argmax(1)).clamp_min(0)  # index of the last real token
            first = h[torch.arange(len(h), device=h.device), last]
        else:
            first = h[:, 0]
        return h, torch.tanh(self.pooler(first))


# --------------------------------------------------------------------------------------------- heads


class BertForPreTraining(_Pretrained):
    """BERT with the masked-LM head and, when ``next_sentence``, the next-sentence-prediction head.

    ``forward(...) -> (token_logits (B, T, vocab), nsp_logits (B, 2) or None)``; token logits are
    LN(GELU(W_t h + b_t)) E_tokenᵀ + b, the output matrix being the input embedding (tied).
    """

    model_type = "bert-pretraining"

    def __init__(self, config: BertConfig, next_sentence: bool = False):
        super().__init__(config)
        c = config
        self.bert = BertModel(config)
        self.transform = nn.Linear(c.hidden_size, c.hidden_size)
        self.transform_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)
        self.decoder = nn.Linear(c.hidden_size, c.vocab_size)
        self.decoder.weight = self.bert.embeddings.word_embeddings.weight  # tied
        self.next_sentence = nn.Linear(c.hidden_size, 2) if next_sentence else None
        for module in (self.transform, self.transform_norm, self.next_sentence):
            if module is not None:
                self._init_weights(module)
        nn.init.zeros_(self.decoder.bias)

    def _tied_keys(self) -> set[str]:
        return {"decoder.weight"}

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        h, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        logits = self.decoder(self.transform_norm(F.gelu(self.transform(h))))
        nsp = self.next_sentence(pooled) if self.next_sentence is not None else None
        return logits, nsp

    @classmethod
    def _build(cls, config: BertConfig, state: dict[str, Tensor]) -> BertForPreTraining:
        return cls(config, next_sentence="next_sentence.weight" in state)


class BertForSequenceClassification(_Pretrained):
    """Fine-tuning (Sec. 3.2, Fig. 4): pooled [CLS] vector → dropout → linear over ``num_labels``."""

    model_type = "bert-classification"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        self.bert = BertModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self._init_weights(self.classifier)

    def forward(
        self, input_ids: Tensor, token_type_ids: Tensor | None = None, attention_mask: Tensor | None = None
    ) -> Tensor:
        _, pooled = self.bert(input_ids, token_type_ids, attention_mask)
        return self.classifier(self.dropout(pooled))


# ---------------------------------------------------------------------------------------------- losses


def mlm_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over the chosen positions (``labels`` ≠ -100), as ``mask_tokens`` labels them."""
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match")
    return F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX)


def next_token_loss(logits: Tensor, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """Left-to-right LM: mean cross-entropy of token t + 1 given positions ≤ t, over real next tokens."""
    if logits.shape[:-1] != input_ids.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and input_ids {tuple(input_ids.shape)} do not match")
    targets = input_ids[:, 1:].clone()
    if attention_mask is not None:
        targets[~attention_mask[:, 1:].bool()] = IGNORE_INDEX
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def to_transformers_state_dict(model: BertModel) -> dict[str, Tensor]:
    """Our encoder's weights under ``transformers.BertModel``'s names (load with ``strict=False``: its
    ``position_ids`` / ``token_type_ids`` buffers are not weights)."""
    if not isinstance(model, BertModel):
        model = model.bert
    names = {
        "embeddings.word_embeddings": "embeddings.word_embeddings",
        "embeddings.position_embeddings": "embeddings.position_embeddings",
        "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
        "embeddings.norm": "embeddings.LayerNorm",
        "pooler": "pooler.dense",
    }
    for i in range(model.config.num_hidden_layers):
        ours, theirs = f"layers.{i}.", f"encoder.layer.{i}."
        names.update({
            ours + "attention.w_q": theirs + "attention.self.query",
            ours + "attention.w_k": theirs + "attention.self.key",
            ours + "attention.w_v": theirs + "attention.self.value",
            ours + "attention.w_o": theirs + "attention.output.dense",
            ours + "attention_norm": theirs + "attention.output.LayerNorm",
            ours + "intermediate": theirs + "intermediate.dense",
            ours + "output": theirs + "output.dense",
            ours + "output_norm": theirs + "output.LayerNorm",
        })  # fmt: skip
    out = {}
    for key, value in model.state_dict().items():
        module, _, leaf = key.rpartition(".")
        out[f"{names[module]}.{leaf}"] = value.detach().clone()
    return out


def gelu_reference(x: Tensor) -> Tensor:
    """GELU(x) = x Φ(x) = x · ½ (1 + erf(x / √2)) (Hendrycks & Gimpel), BERT's activation."""
    return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))
