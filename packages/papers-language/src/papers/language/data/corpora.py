"""Text corpora as ``{name: text}`` dicts and their deterministic train/validation/test splits.

    documentation_texts   CPython's ``pydoc_data.topics``: 79 help topics, ~465,000 characters of prose
    stdlib_source_texts   ``.py`` files of the standard library (tests and site-packages left out), a
                          seeded subset of the sorted paths, capped in files and characters
    read_text_files       UTF-8 files a user supplies (a folder stands for its sorted ``*.txt`` files)

Two ways to split, both deterministic:

    split_documents   whole documents, shuffled by ``random.Random(seed)`` and cut at the fractions
    split_text        contiguous character ranges of one text, in order: train, then valid, then test

A part's size is ``round(fraction * count)``; the test part takes what is left.
"""

from __future__ import annotations

import os
import random
import sysconfig
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TextSplit:
    """Train, validation and test texts, each a ``{name: text}`` dict."""

    train: dict[str, str]
    valid: dict[str, str]
    test: dict[str, str]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    return tuple(float(f) for f in fractions)


def _cut_points(count: int, fractions: Sequence[float]) -> tuple[int, int]:
    train, valid, _ = _check_fractions(fractions)
    return round(train * count), round((train + valid) * count)


def split_documents(
    documents: Mapping[str, str], fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0
) -> TextSplit:
    """Whole documents to train/valid/test: names sorted, shuffled with ``seed``, cut at ``fractions``."""
    names = sorted(documents)
    random.Random(seed).shuffle(names)
    end_train, end_valid = _cut_points(len(names), fractions)
    parts = (names[:end_train], names[end_train:end_valid], names[end_valid:])
    return TextSplit(*({name: documents[name] for name in part} for part in parts))


def split_text(text: str, fractions: Sequence[float] = (0.9, 0.05, 0.05), *, name: str = "text") -> TextSplit:
    """Contiguous character ranges of ``text``, named ``name[start:end]``."""
    end_train, end_valid = _cut_points(len(text), fractions)
    bounds = ((0, end_train), (end_train, end_valid), (end_valid, len(text)))
    return TextSplit(*({f"{name}[{start}:{end}]": text[start:end]} for start, end in bounds))


def documentation_texts() -> dict[str, str]:
    """CPython's help topics (``pydoc_data.topics``), topic name to text, sorted by name."""
    from pydoc_data.topics import topics

    return {name: topics[name] for name in sorted(topics)}


def stdlib_source_texts(*, max_files: int = 300, max_chars: int = 3_000_000, seed: int = 0) -> dict[str, str]:
    """Standard-library sources, relative path to text, sorted by path: the sorted ``.py`` paths shuffled
    with ``random.Random(seed)``, each file taken while at most ``max_files`` files and ``max_chars``
    characters are reached. Test suites, ``site-packages``, the generated codec tables (``encodings``), the
    documentation corpus (``pydoc_data``) and files that are not UTF-8 are left out. The texts are those of
    the running Python version."""
    if max_files < 1 or max_chars < 1:
        raise ValueError(f"max_files and max_chars must be >= 1, got {max_files} and {max_chars}")
    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"site-packages", "dist-packages", "test", "tests", "idle_test", "encodings", "pydoc_data"}
    paths = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if skipped.isdisjoint(path.relative_to(root).parts)
    )
    random.Random(seed).shuffle(paths)
    texts: dict[str, str] = {}
    total = 0
    for relative in paths:
        try:
            text = (root / relative).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if total + len(text) <= max_chars:
            texts[relative] = text
            total += len(text)
        if len(texts) == max_files:
            break
    return dict(sorted(texts.items()))


def read_text_files(paths: Sequence[str | os.PathLike], *, pattern: str = "*.txt") -> dict[str, str]:
    """UTF-8 text files, path to text; a folder in ``paths`` stands for its sorted files matching
    ``pattern``."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(path.glob(pattern)))
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"no text file or folder at {path}")
    texts = {}
    for file in files:
        try:
            texts[str(file)] = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{file} is not UTF-8 text ({error.reason} at byte {error.start})") from None
    return texts
