"""Synthetic languages generated in code, for controlled experiments.

    sequence_task   copy / reverse / sort: random token sequences and their targets, seeded through a
                    ``torch.Generator``; symbols are ``offset .. offset + num_symbols - 1`` so the ids
                    below ``offset`` stay free for special tokens
    Grammar         a probabilistic context-free grammar sampled with ``random.Random(seed)``;
                    ``TOY_GRAMMAR`` is a small English-like one (recursive noun and verb phrases)

Both give the same data for the same seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass

import torch

SEQUENCE_TASKS = {
    "copy": lambda sources: sources.clone(),
    "reverse": lambda sources: sources.flip(1),
    "sort": lambda sources: sources.sort(dim=1).values,
}


def sequence_task(
    task: str,
    *,
    num_examples: int,
    length: int,
    num_symbols: int,
    offset: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sources, targets)``, both ``(num_examples, length)`` int64: uniform random symbols and their
    copy, reversal or ascending sort."""
    if task not in SEQUENCE_TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(SEQUENCE_TASKS)}")
    if min(num_examples, length, num_symbols) < 1 or offset < 0:
        raise ValueError(
            f"num_examples, length and num_symbols must be >= 1 and offset >= 0, got "
            f"{num_examples}, {length}, {num_symbols}, {offset}"
        )
    sources = torch.randint(offset, offset + num_symbols, (num_examples, length), generator=generator)
    return sources, SEQUENCE_TASKS[task](sources)


@dataclass(frozen=True)
class Grammar:
    """A PCFG: ``rules[nonterminal]`` lists ``(probability, "right-hand side")`` pairs whose probabilities
    sum to 1; every symbol without rules is a terminal (a word)."""

    rules: Mapping[str, tuple[tuple[float, str], ...]]
    start: str = "S"

    def __post_init__(self) -> None:
        if self.start not in self.rules:
            raise ValueError(f"start symbol {self.start!r} has no rules")
        for nonterminal, options in self.rules.items():
            total = sum(probability for probability, _ in options)
            if not options or min(p for p, _ in options) < 0 or not math.isclose(total, 1, abs_tol=1e-6):
                raise ValueError(
                    f"probabilities of {nonterminal!r} must be non-negative and sum to 1, got {total}"
                )

    def sample(self, rng: random.Random, *, max_words: int = 40) -> list[str]:
        """One sentence, expanding the leftmost nonterminal first; a derivation that grows beyond
        ``max_words`` symbols is dropped and sampling starts again."""
        while True:
            pending, words = [self.start], []
            while pending and len(pending) + len(words) <= max_words:
                symbol = pending.pop()
                if symbol not in self.rules:
                    words.append(symbol)
                    continue
                probabilities, expansions = zip(*self.rules[symbol], strict=True)
                pending.extend(reversed(rng.choices(expansions, weights=probabilities)[0].split()))
            if not pending:
                return words

    def sentences(self, count: int, *, seed: int = 0, max_words: int = 40) -> list[str]:
        """``count`` sentences as space-separated words, the same for the same ``seed``."""
        rng = random.Random(seed)
        return [" ".join(self.sample(rng, max_words=max_words)) for _ in range(count)]


def _uniform(*words: str) -> tuple[tuple[float, str], ...]:
    return tuple((1 / len(words), word) for word in words)


TOY_GRAMMAR = Grammar(
    {
        "S": ((1.0, "NP VP"),),
        "NP": ((0.6, "Det N"), (0.25, "Det Adj N"), (0.15, "NP PP")),
        "VP": ((0.5, "V NP"), (0.3, "V"), (0.2, "VP PP")),
        "PP": ((1.0, "P NP"),),
        "Det": ((0.6, "the"), (0.4, "a")),
        "N": _uniform("cat", "dog", "bird", "child", "teacher", "garden", "house", "river"),
        "Adj": _uniform("small", "old", "green", "quiet", "happy"),
        "V": _uniform("sees", "likes", "follows", "finds", "sleeps", "sings"),
        "P": _uniform("near", "with", "under", "behind"),
    }
)
