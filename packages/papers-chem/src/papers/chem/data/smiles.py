"""SMILES as a language, and the scores molecule generators optimise.

    tokenize          SMILES -> tokens (bracket atoms, Cl, Br, %nn ring bonds, single characters)
    Vocabulary        token <-> index with ``<pad>`` = 0, ``<s>`` = 1, ``</s>`` = 2
    canonical_smiles  RDKit's canonical SMILES (no stereochemistry by default)
    nci_corpus        the NCI set as canonical SMILES of at most ``max_tokens`` tokens (a generator's
                      training set), with the count of rows skipped and why
    sa_score          synthetic accessibility (Ertl & Schuffenhauer 2009), 1 (easy) to 10 (hard), from
                      the ``SA_Score`` contribution inside the rdkit wheel
    penalized_logp    J(m) = logP(m) − SA(m) − ring(m), ring(m) = max(0, largest ring size − 6): the
                      objective of Kusner et al. 2017, Jin et al. 2018 and Nigam et al. 2020 (unnormalised)
"""

from __future__ import annotations

import functools
import importlib.util
import re
import warnings
from collections.abc import Sequence

from .featurize import InvalidMoleculeError, parse_smiles

PAD, START, END = "<pad>", "<s>", "</s>"
# Bracket atoms ([nH], [N+], [C@@H] ...), two-letter halogens, two-digit ring bonds (%10), then any char.
TOKEN_PATTERN = re.compile(r"(\[[^\[\]]+\]|Cl|Br|%\d{2}|.)")


def tokenize(smiles: str) -> list[str]:
    """The SMILES tokens of ``smiles``; joining them gives ``smiles`` back exactly."""
    if not isinstance(smiles, str) or not smiles:
        raise ValueError(f"cannot tokenize empty or non-string SMILES {smiles!r}")
    tokens = TOKEN_PATTERN.findall(smiles)
    if "".join(tokens) != smiles:  # an unmatched '[' or ']'
        raise ValueError(f"SMILES {smiles!r} has an unbalanced bracket")
    if any(t in "[]" for t in tokens):
        raise ValueError(f"SMILES {smiles!r} has an unbalanced bracket")
    return tokens


class Vocabulary:
    """Token ↔ index, with ``<pad>`` = 0, ``<s>`` = 1 and ``</s>`` = 2."""

    def __init__(self, tokens: Sequence[str]):
        specials = [PAD, START, END]
        self.tokens = specials + sorted(set(tokens) - set(specials))
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def from_smiles(cls, smiles: Sequence[str]) -> Vocabulary:
        return cls([t for s in smiles for t in tokenize(s)])

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def pad(self) -> int:
        return self.index[PAD]

    @property
    def start(self) -> int:
        return self.index[START]

    @property
    def end(self) -> int:
        return self.index[END]

    def encode(self, smiles: str, max_len: int) -> list[int]:
        """Token ids of ``smiles`` then ``</s>``, padded to ``max_len``; ValueError if too long or unknown."""
        tokens = tokenize(smiles)
        if len(tokens) + 1 > max_len:
            raise ValueError(
                f"SMILES {smiles!r} has {len(tokens)} tokens; max_len {max_len} allows {max_len - 1}"
            )
        unknown = [t for t in tokens if t not in self.index]
        if unknown:
            raise ValueError(f"SMILES {smiles!r} has tokens outside the vocabulary: {unknown}")
        ids = [self.index[t] for t in tokens] + [self.index[END]]
        return ids + [self.index[PAD]] * (max_len - len(ids))

    def decode(self, ids: Sequence[int]) -> str:
        """The SMILES of ``ids`` up to the first ``</s>`` (pads and ``<s>`` skipped)."""
        out = []
        for i in ids:
            token = self.tokens[int(i)]
            if token == END:
                break
            if token not in (PAD, START):
                out.append(token)
        return "".join(out)


def canonical_smiles(smiles: str, isomeric: bool = False) -> str:
    """RDKit's canonical SMILES of ``smiles``; :class:`InvalidMoleculeError` if it does not parse."""
    from rdkit import Chem

    return Chem.MolToSmiles(parse_smiles(smiles), isomericSmiles=isomeric)


def nci_corpus(max_tokens: int = 60) -> tuple[list[str], dict[str, int]]:
    """Distinct canonical SMILES (no stereo) of the bundled NCI set with at most ``max_tokens`` tokens,
    in file order, and ``{"unparsable": n, "too_long": n, "duplicate": n}``."""
    from .bundled import bundled_file, read_smiles_file

    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    corpus, seen = [], set()
    skipped = {"unparsable": 0, "too_long": 0, "duplicate": 0}
    for raw, _ in read_smiles_file(bundled_file("NCI", "first_5K.smi")):
        try:
            text = canonical_smiles(raw)
        except InvalidMoleculeError:
            skipped["unparsable"] += 1
            continue
        if len(tokenize(text)) > max_tokens:
            skipped["too_long"] += 1
        elif text in seen:
            skipped["duplicate"] += 1
        else:
            seen.add(text)
            corpus.append(text)
    return corpus, skipped


@functools.cache
def _sascorer():
    from .bundled import bundled_file

    path = bundled_file("SA_Score", "sascorer.py", contrib=True)
    spec = importlib.util.spec_from_file_location("papers_chem_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)
    module.readFragmentScores()
    return module


def _mol(molecule):
    return parse_smiles(molecule) if isinstance(molecule, str) else molecule


def sa_score(molecule) -> float:
    """Synthetic accessibility of a SMILES or RDKit molecule: 1 (easy to make) … 10 (hard)."""
    return float(_sascorer().calculateScore(_mol(molecule)))


def ring_penalty(molecule) -> int:
    """max(0, largest ring size − 6): the penalty penalised logP puts on large rings."""
    mol = _mol(molecule)  # held here: RingInfo does not keep a temporary molecule alive
    return max([0] + [len(ring) - 6 for ring in mol.GetRingInfo().AtomRings()])


def penalized_logp(molecule) -> float:
    """J(m) = Crippen logP − SA score − ring penalty, unnormalised (higher is better)."""
    from rdkit.Chem import Crippen

    mol = _mol(molecule)
    return float(Crippen.MolLogP(mol)) - sa_score(mol) - ring_penalty(mol)
