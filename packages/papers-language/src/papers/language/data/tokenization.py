"""Tokenizers trained offline, all with one small interface.

    CharTokenizer   one id per character seen in training (ours, no dependencies)
    HFTokenizer     a Hugging Face ``tokenizers.Tokenizer``: ``train_byte_level_bpe`` (GPT-2's byte-level
                    BPE: every string round-trips, any Unicode) or ``train_wordpiece`` (BERT's WordPiece
                    with lower-casing and punctuation splitting, so it does not round-trip exactly)

Every tokenizer has ``encode(text) -> list[int]``, ``decode(ids, skip_special_tokens=False) -> str``,
``vocab_size``, ``token_to_id(token)``, ``save(path)`` and ``load_tokenizer(path)`` to read either kind
back. The special tokens ``SPECIAL_TOKENS`` (pad, unk, bos, eos, mask) take ids 0-4, in that order, then
``num_sentinels`` T5 sentinels ``<extra_id_0>``, ``<extra_id_1>``, ...; ``pad_id``, ``unk_id``,
``bos_id``, ``eos_id``, ``mask_id``, ``special_ids`` and ``sentinel_ids`` name them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from papers.core.io import atomic_write_json, atomic_write_text

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<mask>")


def sentinel_tokens(count: int) -> list[str]:
    """T5's span-corruption sentinels ``<extra_id_0>`` .. ``<extra_id_{count-1}>``."""
    return [f"<extra_id_{index}>" for index in range(count)]


class _SpecialIds:
    """Ids of the special tokens, from ``token_to_id`` of the class this is mixed into."""

    special_tokens: tuple[str, ...]

    pad_id = property(lambda self: self.token_to_id("<pad>"))
    unk_id = property(lambda self: self.token_to_id("<unk>"))
    bos_id = property(lambda self: self.token_to_id("<s>"))
    eos_id = property(lambda self: self.token_to_id("</s>"))
    mask_id = property(lambda self: self.token_to_id("<mask>"))

    @property
    def special_ids(self) -> list[int]:
        """Ids of all special tokens, sentinels included."""
        return [self.token_to_id(token) for token in self.special_tokens]

    @property
    def sentinel_ids(self) -> list[int]:
        return [self.token_to_id(token) for token in self.special_tokens if token.startswith("<extra_id_")]


def _check_training(vocab_size: int | None, num_sentinels: int) -> tuple[str, ...]:
    if num_sentinels < 0:
        raise ValueError(f"num_sentinels must be >= 0, got {num_sentinels}")
    specials = (*SPECIAL_TOKENS, *sentinel_tokens(num_sentinels))
    if vocab_size is not None and vocab_size <= len(specials):
        raise ValueError(f"vocab_size must exceed the {len(specials)} special tokens, got {vocab_size}")
    return specials


class CharTokenizer(_SpecialIds):
    """Characters to ids; a character not seen in training becomes ``<unk>``."""

    def __init__(self, characters: Sequence[str], special_tokens: Sequence[str] = SPECIAL_TOKENS):
        self.special_tokens = tuple(special_tokens)
        self.vocabulary = [*self.special_tokens, *characters]
        self._ids = {token: index for index, token in enumerate(self.vocabulary)}
        if len(self._ids) != len(self.vocabulary):
            raise ValueError("characters must be distinct and differ from the special tokens")

    @classmethod
    def train(cls, texts: Iterable[str], *, num_sentinels: int = 0) -> CharTokenizer:
        """A tokenizer for every character in ``texts``, sorted by code point."""
        return cls(sorted(set().union(*map(set, texts))), _check_training(None, num_sentinels))

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def encode(self, text: str) -> list[int]:
        unknown = self._ids["<unk>"]
        return [self._ids.get(character, unknown) for character in text]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        start = len(self.special_tokens) if skip_special_tokens else 0
        return "".join(self.vocabulary[index] for index in ids if index >= start)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as JSON (atomically)."""
        characters = self.vocabulary[len(self.special_tokens) :]
        return atomic_write_json(
            path, {"type": "char", "special_tokens": self.special_tokens, "characters": characters}
        )


class HFTokenizer(_SpecialIds):
    """A trained Hugging Face ``tokenizers.Tokenizer`` behind the common interface."""

    def __init__(self, tokenizer, special_tokens: Sequence[str]):
        self.tokenizer = tokenizer
        self.special_tokens = tuple(special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tokenizer as Hugging Face's ``tokenizer.json`` (atomically)."""
        return atomic_write_text(path, self.tokenizer.to_str())


def train_byte_level_bpe(
    texts: Iterable[str], *, vocab_size: int = 8000, min_frequency: int = 2, num_sentinels: int = 0
) -> HFTokenizer:
    """GPT-2's byte-level BPE trained on ``texts``: bytes are the base alphabet, so nothing is unknown."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = _check_training(vocab_size, num_sentinels)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return HFTokenizer(tokenizer, specials)


def train_wordpiece(
    texts: Iterable[str], *, vocab_size: int = 8000, min_frequency: int = 2, num_sentinels: int = 0
) -> HFTokenizer:
    """BERT's uncased WordPiece trained on ``texts`` (continuation pieces start with ``##``)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    specials = _check_training(vocab_size, num_sentinels)
    tokenizer = Tokenizer(models.WordPiece(unk_token="<unk>"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(specials), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return HFTokenizer(tokenizer, specials)


def load_tokenizer(path: str | os.PathLike) -> CharTokenizer | HFTokenizer:
    """A tokenizer written by ``save``, of either kind."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        state = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not a saved tokenizer: {error}") from None
    if state.get("type") == "char":
        return CharTokenizer(state["characters"], state["special_tokens"])
    from tokenizers import Tokenizer

    specials = [token["content"] for token in state.get("added_tokens", []) if token.get("special")]
    return HFTokenizer(Tokenizer.from_str(text), specials)
