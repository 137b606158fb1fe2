"""GA+D: SELFIES mutations stay valid and change one alphabet entry, the Fermi cut-off, ranking and
selection invariants, descriptors, discriminator shapes/gradients/training, the stagnation switch,
seeded determinism of a GA run, β = 0 ignoring D, bad input, config errors, smoke run."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from papers_testing import untimed

from papers.chem.ga_d import (
    N_DESCRIPTORS,
    Discriminator,
    MoleculeScorer,
    decode,
    descriptors,
    mutate,
    mutation_alphabet,
    rank,
    replace_probability,
    run_ga,
    select_and_mutate,
    split_symbols,
    stagnated,
    train_discriminator,
)

REFERENCE = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "CCN(CC)CC", "Clc1ccccc1", "OC(=O)c1ccccc1"]


def test_mutations_are_valid_and_change_exactly_one_alphabet_entry():
    rng = random.Random(0)
    alphabet = [list(e) for e in mutation_alphabet()]
    assert ["[nop]"] in alphabet and any(len(e) == 8 for e in alphabet)  # the benzene entry
    parent = "[C][C][O]"
    old = split_symbols(parent)
    for _ in range(200):
        child, smiles = mutate(parent, rng, max_smiles_len=20)
        new = split_symbols(child)
        assert decode(child, 20) == smiles and len(smiles) <= 20
        inserted = any(new[:i] + new[i + len(e) :] == old and new[i : i + len(e)] == e
                       for e in alphabet for i in range(len(new)))  # fmt: skip
        replaced = any(new[:i] + new[i + len(e) :] == old[:i] + old[i + 1 :] and new[i : i + len(e)] == e
                       for e in alphabet for i in range(len(old)))  # fmt: skip
        assert inserted or replaced, child
    a = [mutate(parent, random.Random(5), 20) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_decode_rejects_too_long_and_bad_strings():
    assert decode("[C][C][O]", 81) == "CCO"
    assert decode("[C]" * 30, 20) is None
    assert decode("[nop]", 81) is None  # empty molecule
    with pytest.raises(ValueError, match="not a SELFIES string"):
        split_symbols("CCO")
    with pytest.raises(RuntimeError, match="no valid mutation"):
        mutate("[C][C][C]", random.Random(0), max_smiles_len=1, max_tries=20)


def test_fermi_cutoff_matches_the_authors_formula_at_500():
    p = replace_probability(500)
    for r in (0, 100, 250, 499):
        assert p[r] == pytest.approx(1 / (1 + math.exp(-0.02 * (r - 100))))
    assert all(b > a for a, b in zip(p, p[1:], strict=False))
    assert p[100] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n must be >= 1"):
        replace_probability(0)


def test_rank_and_selection_keep_survivors_and_replace_the_rest_by_mutants():
    assert rank([1.0, 3.0, 3.0, -1.0]) == [1, 2, 0, 3]
    selfies = ["[C]", "[C][C]", "[C][C][C]", "[C][O]"] * 5
    smiles = [decode(s, 81) for s in selfies]
    fitness = [float(i) for i in range(20)]
    new_selfies, new_smiles, replaced = select_and_mutate(selfies, smiles, fitness, random.Random(1))
    assert len(new_selfies) == len(new_smiles) == 20 and 0 < replaced < 20
    order = rank(fitness)
    kept = [r for r in range(20) if new_selfies[r] == selfies[order[r]]]
    assert len(kept) >= 20 - replaced
    assert all(decode(s, 81) == m for s, m in zip(new_selfies, new_smiles, strict=True))
    with pytest.raises(ValueError, match="same length"):
        select_and_mutate(selfies, smiles[:3], fitness, random.Random(0))


def test_descriptors_and_scorer():
    values = descriptors("c1ccccc1CCl")
    assert len(values) == N_DESCRIPTORS
    assert values == pytest.approx(descriptors("ClCc1ccccc1"))  # same molecule, same features
    ring6 = 2 + 17 + 6 + 4 + (6 - 3)  # index of the 6-ring count
    assert values[ring6] == 1.0
    with pytest.raises(ValueError):
        descriptors("C1CC")
    scorer = MoleculeScorer()
    j, feats, scaffold = scorer("CCCCc1ccccc1")
    from papers.chem.data import penalized_logp

    assert j == pytest.approx(penalized_logp("CCCCc1ccccc1")) and scaffold == "c1ccccc1"
    assert scorer("CCO")[2] == "" and len(scorer) == 2


def test_discriminator_shapes_gradients_and_training():
    x = torch.tensor([descriptors(s) for s in REFERENCE + ["CCCCCCCC", "CCCCCC", "CCCC=CCC"]])
    torch.manual_seed(0)
    disc = Discriminator(x.mean(0), x.std(0))
    out = disc(x)
    assert out.shape == (9,) and ((out > 0) & (out < 1)).all()
    with pytest.raises(ValueError, match="shape"):
        disc(x[:, :5])
    y = torch.tensor([1.0] * 6 + [0.0] * 3)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-2)
    losses = train_discriminator(disc, opt, x, y, steps=200)
    assert losses[-1] < losses[0] * 0.5
    assert disc(x)[:6].min() > disc(x)[6:].max()  # separates the toy sets
    double = Discriminator(x.mean(0).double(), x.std(0).double(), hidden=(4,)).double()
    torch.autograd.gradcheck(lambda t: double(t), (x[:2].double().requires_grad_(),))


def test_stagnation_switch():
    assert stagnated([1.0, 2.0, 2.0, 2.0], 3)
    assert not stagnated([1.0, 2.0, 2.0, 2.5], 3)
    assert not stagnated([2.0, 2.0], 3)
    with pytest.raises(ValueError, match="window"):
        stagnated([1.0], 1)


def _ga(**kw):
    feats = torch.tensor([descriptors(s) for s in REFERENCE])
    args = dict(reference=REFERENCE, reference_features=feats, scorer=MoleculeScorer(), seed=3,
                population=10, generations=5, max_smiles_len=20)  # fmt: skip
    args.update(kw)
    return run_ga(**args)


def test_ga_is_seeded_and_beta_zero_ignores_the_discriminator():
    a, b = _ga(), _ga()
    assert json.dumps(a) == json.dumps(b)
    assert a["best_j"][0] == pytest.approx(-6.69, abs=0.05)  # methane start
    assert all(u <= 10 for u in a["unique_molecules"]) and a["beta"] == [0.0] * 5
    # adaptive with nothing stagnating before generation 10 is the plain GA exactly
    assert json.dumps(_ga(adaptive=True, adaptive_after=10)) == json.dumps(a)
    huge = _ga(beta=1e6)
    assert huge["best_j"][0] == a["best_j"][0]  # D ≡ 0 before the discriminator is trained
    assert huge["best_smiles"] != a["best_smiles"]
    # F = J + β·D with D ≥ 0, so the best fitness is never below the best J
    assert all(f >= j - 1e-9 for f, j in zip(a["best_fitness"], a["best_j"], strict=True))


def test_adaptive_switch_fires_on_stagnation():
    h = _ga(adaptive=True, adaptive_after=0, stagnation_window=2, generations=6, population=6,
            max_smiles_len=5)  # fmt: skip
    fired = [g for g, b in enumerate(h["beta"]) if b > 0]
    for g in fired:
        assert h["best_j"][g] == h["best_j"][g - 1]
    assert fired, h["best_j"]


def test_bad_ga_input():
    with pytest.raises(ValueError, match="reference_features"):
        _ga(reference_features=torch.zeros(3, N_DESCRIPTORS))
    with pytest.raises(ValueError, match="beta"):
        _ga(beta=-1.0)
    with pytest.raises(ValueError, match="population"):
        _ga(population=1)
    with pytest.raises(ValueError):
        _ga(start="C1CC")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"population": 1}, "population must be >= 2"),
        ({"betas": (0.0, 5.0)}, "betas"),
        ({"betas": (1.0, 5.0, 10.0)}, "betas"),
        ({"adaptive_after": 100}, "adaptive_after"),
        ({"adaptive_beta": 0.0}, "adaptive_beta"),
        ({"window": 100}, "window must be <="),
        ({"disc_lr": 0.0}, "disc_lr"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.ga_d.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.ga_d import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 3
    assert sorted(result.figures) == [
        "figures/beta_sweep.png",
        "figures/diversity.png",
        "figures/fitness.png",
    ]
    assert result.metrics["reference_molecules"] == 60
    assert 0 <= result.metrics["adaptive/final_reference_like"] <= 1
