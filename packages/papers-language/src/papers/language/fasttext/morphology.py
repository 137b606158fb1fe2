"""A generated morphological language (a toy): words are prefix + stem + suffix.

Stems belong to semantic classes; a sentence about a stem is built from context words of its class,
one collocate of the stem itself (sometimes), and an agreement particle of its suffix, so that words
sharing a stem share contexts, stems of a class share most contexts, and suffixes carry syntax.

    sentence = [class word] × n_left, (prefix + stem + suffix), particle(suffix), [class word] × n_right
    stem ~ Zipf(s) over ranks (a random order of the stems), affixes ~ p(i) ∝ 1/(i + 1)
    class words are replaced by a uniform filler word with probability ``noise``

Some inflected forms (never the bare stem) are held out: the training corpus never contains them, so
they are out-of-vocabulary words with a known stem and class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONSONANTS = "ptkbdgmnlrsvz"
VOWELS = "aeiou"


@dataclass
class Morphology:
    stems: list[str]
    stem_class: list[int]
    prefixes: list[str]
    suffixes: list[str]
    class_words: list[list[str]]
    collocates: list[list[str]]
    particles: list[str]
    fillers: list[str]
    stem_p: np.ndarray
    heldout: set[tuple[int, int, int]] = field(default_factory=set)  # (stem, prefix, suffix)

    def form(self, stem: int, prefix: int, suffix: int) -> str:
        return self.prefixes[prefix] + self.stems[stem] + self.suffixes[suffix]

    def analysis(self) -> dict[str, tuple[int, int, int]]:
        """Every inflected form → (stem, prefix, suffix)."""
        return {
            self.form(s, p, x): (s, p, x)
            for s in range(len(self.stems))
            for p in range(len(self.prefixes))
            for x in range(len(self.suffixes))
        }

    def heldout_words(self) -> list[str]:
        return sorted(self.form(*f) for f in self.heldout)


def _syllables(rng, n: int) -> str:
    return "".join(rng.choice(list(CONSONANTS)) + rng.choice(list(VOWELS)) for _ in range(n))


def make_morphology(
    *,
    n_stems: int,
    n_classes: int,
    prefixes: tuple[str, ...],
    suffixes: tuple[str, ...],
    class_words: int,
    collocates: int,
    fillers: int,
    zipf: float,
    heldout_fraction: float,
    seed: int,
) -> Morphology:
    """Random stems (2–3 CV syllables, + an optional final consonant) with classes, affixes and context words.

    Each stem has one held-out inflected form with probability ``heldout_fraction``. Stems whose forms
    would coincide with another word are redrawn.
    """
    if "" not in prefixes or "" not in suffixes:
        raise ValueError("prefixes and suffixes must include the empty affix (the bare stem)")
    if n_stems < n_classes or n_classes < 2:
        raise ValueError(f"need n_stems >= n_classes >= 2, got {n_stems}, {n_classes}")
    rng = np.random.default_rng(seed)
    forms: set[str] = set()
    stems: list[str] = []
    while len(stems) < n_stems:
        stem = _syllables(rng, int(rng.integers(2, 4)))
        if rng.random() < 0.3:
            stem += rng.choice(list(CONSONANTS))
        new = {p + stem + s for p in prefixes for s in suffixes}
        if len(new) == len(prefixes) * len(suffixes) and not new & forms:
            stems.append(stem)
            forms |= new
    taken = set(forms)

    def atoms(k: int, length: int) -> list[str]:  # atomic (uninflected) words: "q" + syllables, distinct
        out = []
        while len(out) < k:
            word = "q" + _syllables(rng, length)
            if word not in taken:
                taken.add(word)
                out.append(word)
        return out

    stem_class = [i % n_classes for i in range(n_stems)]
    rng.shuffle(stem_class)
    ranks = rng.permutation(n_stems)
    stem_p = 1.0 / (ranks + 1.0) ** zipf
    heldout = set()
    for s in range(n_stems):
        if rng.random() < heldout_fraction:
            combos = [
                (p, x)
                for p in range(len(prefixes))
                for x in range(len(suffixes))
                if prefixes[p] or suffixes[x]
            ]
            p, x = combos[rng.integers(len(combos))]
            heldout.add((s, p, x))
    return Morphology(
        stems=stems,
        stem_class=[int(c) for c in stem_class],
        prefixes=list(prefixes),
        suffixes=list(suffixes),
        class_words=[atoms(class_words, 2) for _ in range(n_classes)],
        collocates=[atoms(collocates, 3) for _ in range(n_stems)],
        particles=atoms(len(suffixes), 1),
        fillers=atoms(fillers, 2),
        stem_p=stem_p / stem_p.sum(),
        heldout=heldout,
    )


def generate_corpus(
    morph: Morphology,
    n_sentences: int,
    *,
    context: int = 2,
    noise: float = 0.2,
    collocate_p: float = 0.5,
    seed: int = 0,
) -> list[list[str]]:
    """``n_sentences`` sentences; held-out forms are never produced (their affixes are redrawn)."""
    rng = np.random.default_rng(seed)
    n_pre, n_suf = len(morph.prefixes), len(morph.suffixes)
    affix_p = [1.0 / np.arange(1, n + 1) for n in (n_pre, n_suf)]
    affix_p = [p / p.sum() for p in affix_p]
    stems = rng.choice(len(morph.stems), size=n_sentences, p=morph.stem_p)
    sentences = []
    for s in stems:
        while True:
            p, x = int(rng.choice(n_pre, p=affix_p[0])), int(rng.choice(n_suf, p=affix_p[1]))
            if (int(s), p, x) not in morph.heldout:
                break
        words = morph.class_words[morph.stem_class[s]]

        def ctx_word(words=words):
            if rng.random() < noise:
                return morph.fillers[rng.integers(len(morph.fillers))]
            return words[rng.integers(len(words))]

        left = [ctx_word() for _ in range(context)]
        right = [ctx_word() for _ in range(context)]
        sentence = [*left, morph.form(int(s), p, x), morph.particles[x], *right]
        if rng.random() < collocate_p:
            col = morph.collocates[s]
            sentence.insert(int(rng.integers(len(sentence) + 1)), col[rng.integers(len(col))])
        sentences.append(sentence)
    return sentences
