"""Train/validation/test splits of a molecule list, as lists of indices. All are seeded and deterministic.

random_split        a seeded permutation cut at the fractions.
scaffold_split      molecules grouped by Bemis-Murcko scaffold (Bemis & Murcko 1996), each group kept whole
                    in one part, so the test molecules have scaffolds never seen in training.
                    ``balanced=False`` is MoleculeNet's deterministic scheme: groups largest first (ties:
                    the group whose first molecule comes first), each to train if it still fits, else to
                    validation if it fits, else to test, so test holds the rarest scaffolds.
                    ``balanced=True`` (as in chemprop): groups bigger than half the validation or test
                    share go first, in seeded random order, then the others in seeded random order;
                    each to the first part it fits in, else test.
stratified_split    each class (or, with ``num_bins``, each equal-count bin of a regression target) is
                    shuffled and cut at the fractions, so every part keeps the class ratios.

A part's size is ``round(fraction * count)``, the test part takes what is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch

from .featurize import parse_smiles


class Split(NamedTuple):
    train: list[int]
    valid: list[int]
    test: list[int]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {tuple(fractions)}")
    return tuple(float(f) for f in fractions)


def _cut(indices: list[int], fractions: tuple[float, float, float]) -> Split:
    num_train = round(fractions[0] * len(indices))
    num_train_valid = round((fractions[0] + fractions[1]) * len(indices))
    return Split(indices[:num_train], indices[num_train:num_train_valid], indices[num_train_valid:])


def _permutation(count: int, seed: int) -> list[int]:
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()


def random_split(num_items: int, fractions: Sequence[float] = (0.8, 0.1, 0.1), *, seed: int = 0) -> Split:
    """A seeded random split of ``range(num_items)``."""
    return _cut(_permutation(num_items, seed), _check_fractions(fractions))


def murcko_scaffold(smiles: str, include_chirality: bool = False) -> str:
    """The Bemis-Murcko scaffold (ring systems and the chains linking them) as SMILES; "" if acyclic."""
    from rdkit.Chem.Scaffolds import MurckoScaffold

    return MurckoScaffold.MurckoScaffoldSmiles(mol=parse_smiles(smiles), includeChirality=include_chirality)


def scaffold_groups(smiles: Sequence[str]) -> list[list[int]]:
    """Indices of the molecules sharing each scaffold, groups in order of their first molecule."""
    groups: dict[str, list[int]] = {}
    for index, text in enumerate(smiles):
        groups.setdefault(murcko_scaffold(text), []).append(index)
    return list(groups.values())


def scaffold_split(
    smiles: Sequence[str],
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    balanced: bool = False,
    seed: int = 0,
) -> Split:
    """A scaffold split of ``smiles`` (see the module docstring); ``seed`` is used only if ``balanced``."""
    fractions = _check_fractions(fractions)
    groups = scaffold_groups(smiles)
    capacity = [fraction * len(smiles) for fraction in fractions]
    if balanced:
        is_big = [len(g) > capacity[1] / 2 or len(g) > capacity[2] / 2 for g in groups]
        order = _permutation(len(groups), seed)
        groups = [groups[i] for i in order if is_big[i]] + [groups[i] for i in order if not is_big[i]]
    else:
        groups = sorted(groups, key=len, reverse=True)  # a stable sort: ties keep first-molecule order
    parts: Split = Split([], [], [])
    for group in groups:
        fits = [len(part) + len(group) <= limit for part, limit in zip(parts[:2], capacity[:2], strict=True)]
        parts[fits.index(True) if any(fits) else 2].extend(group)
    return parts


def stratified_split(
    labels,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    num_bins: int | None = None,
    seed: int = 0,
) -> Split:
    """Split indices so that each part keeps the proportions of ``labels`` (one label per molecule).

    Classification: the strata are the distinct labels. Regression: pass ``num_bins`` to stratify on
    equal-count bins of the sorted values. Missing (NaN) labels are an error: pick a task without them.
    """
    fractions = _check_fractions(fractions)
    labels = torch.as_tensor(labels, dtype=torch.float64)
    if labels.dim() != 1:
        raise ValueError(f"labels must be one value per molecule, got shape {tuple(labels.shape)}")
    if labels.isnan().any():
        raise ValueError("labels contain NaN (missing); stratify on a task with every label present")
    if num_bins is None:
        strata = torch.unique(labels, return_inverse=True)[1]
    else:
        if num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {num_bins}")
        ranks = torch.empty(len(labels), dtype=torch.long)
        ranks[torch.argsort(labels, stable=True)] = torch.arange(len(labels))
        strata = ranks * num_bins // max(len(labels), 1)
    shuffled = torch.tensor(_permutation(len(labels), seed), dtype=torch.long)
    parts: Split = Split([], [], [])
    for stratum in torch.unique(strata).tolist():
        members = shuffled[strata[shuffled] == stratum].tolist()
        for part, piece in zip(parts, _cut(members, fractions), strict=True):
            part.extend(piece)
    return parts
