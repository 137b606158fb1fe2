"""Weave: pair features, order invariance, pair symmetry, histogram memberships, errors, smoke run."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.weave import (
    GAUSSIANS,
    PAIR_FEATURE_LAYOUT,
    WeaveModule,
    WeaveRegressor,
    collate,
    featurize_molecules,
    gaussian_memberships,
    pair_features_from_smiles,
)

SMILES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C#N", "C1CC1CCC1CCCCC1", "CC.O")


@pytest.fixture(scope="module")
def molecules():
    atoms, pairs, report = featurize_molecules(SMILES)
    assert report.num_skipped == 0
    return [a.double() for a in atoms], [p.double() for p in pairs]


def _model(pooling="histogram", use_pairs=True):
    torch.manual_seed(0)
    model = WeaveRegressor(42, modules=2, width=12, readout_features=6, head_hidden=8, pooling=pooling,
                           use_pairs=use_pairs)  # fmt: skip
    model = model.double()
    # batch norm with non-trivial running statistics, in eval mode (per-molecule, no batch dependence)
    model.norm.norm.running_mean.uniform_(-0.5, 0.5)
    model.norm.norm.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_pair_features_of_known_molecules():
    ethanol = torch.from_numpy(pair_features_from_smiles("CCO"))  # C0-C1-O2
    bond, distance = PAIR_FEATURE_LAYOUT["bond_type"], PAIR_FEATURE_LAYOUT["graph_distance"]
    assert ethanol.shape == (3, 3, 12)
    assert ethanol[0, 1, bond].tolist() == [1, 0, 0, 0] and ethanol[0, 2, bond].sum() == 0
    assert ethanol[0, 1, distance].tolist() == [1] * 7  # path 1 <= d for every d
    assert ethanol[0, 2, distance].tolist() == [0] + [1] * 6  # path 2: <= d from d = 2
    assert ethanol[0, 0].sum() == 0  # the diagonal is empty
    assert ethanol[..., PAIR_FEATURE_LAYOUT["same_ring"]].sum() == 0
    phenol = torch.from_numpy(pair_features_from_smiles("c1ccccc1O"))  # ring atoms 0..5, O is 6
    assert phenol[0, 1, bond].tolist() == [0, 0, 0, 1]  # aromatic
    assert phenol[0, 3, distance].tolist() == [0, 0, 1, 1, 1, 1, 1]  # para: 3 bonds
    ring = phenol[..., PAIR_FEATURE_LAYOUT["same_ring"]].squeeze(-1)
    assert ring[0, 3] == 1 and ring[0, 6] == 0 and ring[5, 6] == 0
    # two fragments: no path, so no distance feature
    assert torch.from_numpy(pair_features_from_smiles("CC.O"))[0, 2].sum() == 0


def test_pair_features_and_pair_layers_are_symmetric(molecules):
    atoms, pairs = molecules
    torch.manual_seed(0)
    layer = WeaveModule(42, 12, atom_hidden=10, pair_hidden=9, atom_out=7, pair_out=5).double()
    for a, p in zip(atoms, pairs, strict=True):
        assert torch.equal(p, p.transpose(0, 1))
        batch = collate([a], [p])
        _, new_pairs = layer(batch["atoms"], batch["pairs"], batch["atom_mask"], batch["pair_mask"])
        assert torch.allclose(new_pairs, new_pairs.transpose(1, 2), rtol=0, atol=1e-12)
        assert new_pairs[0].diagonal(dim1=0, dim2=1).abs().sum() == 0  # masked


def _permute(a, p, perm):
    return a[perm], p[perm][:, perm]


@pytest.mark.parametrize("pooling", ["histogram", "sum"])
@pytest.mark.parametrize("use_pairs", [True, False])
def test_molecule_output_is_invariant_to_atom_reordering(molecules, pooling, use_pairs):
    model = _model(pooling, use_pairs)
    atoms, pairs = molecules
    out = model(**collate(atoms, pairs))
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        permuted = [
            _permute(a, p, torch.randperm(a.shape[0], generator=generator))
            for a, p in zip(atoms, pairs, strict=True)
        ]
        again = model(**collate([a for a, _ in permuted], [p for _, p in permuted]))
        assert torch.allclose(again, out, rtol=0, atol=1e-10)


def test_batched_output_equals_single_molecules_despite_padding(molecules):
    model = _model()
    atoms, pairs = molecules
    batched = model(**collate(atoms, pairs))
    single = torch.cat([model(**collate([a], [p])) for a, p in zip(atoms, pairs, strict=True)])
    assert torch.allclose(batched, single, rtol=0, atol=1e-10)


def test_pair_features_change_the_output_only_with_pairs(molecules):
    atoms, pairs = molecules
    zeroed = [torch.zeros_like(p) for p in pairs]
    with_pairs, without = _model(use_pairs=True), _model(use_pairs=False)
    assert not torch.allclose(with_pairs(**collate(atoms, pairs)), with_pairs(**collate(atoms, zeroed)))
    assert torch.equal(without(**collate(atoms, pairs)), without(**collate(atoms, zeroed)))


def test_histogram_memberships_sum_to_one_and_peak_at_the_nearest_gaussian():
    values = torch.linspace(-4, 4, 101, dtype=torch.float64).reshape(101, 1)
    m = gaussian_memberships(values)
    assert m.shape == (101, 1, 11)
    assert torch.allclose(m.sum(-1), torch.ones(101, 1, dtype=torch.float64), atol=1e-12)
    assert (m >= 0).all()
    means = [mu for mu, _ in GAUSSIANS]
    for k, mu in enumerate(means):
        assert gaussian_memberships(torch.tensor([mu], dtype=torch.float64)).argmax().item() == k
    # far tails belong to the outer Gaussians; 0 is symmetric
    assert m[0, 0, 0] > 0.99 and m[-1, 0, -1] > 0.99
    zero = gaussian_memberships(torch.zeros(1, dtype=torch.float64))[0]
    assert torch.allclose(zero, zero.flip(0), atol=1e-12)


def test_gradients_match_finite_differences(molecules):
    model = _model()
    atoms, pairs = molecules
    batch = collate([atoms[0], atoms[3]], [pairs[0], pairs[3]])  # small: CCO and C#N
    x = batch["atoms"].clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: model(x, batch["pairs"], batch["atom_mask"], batch["pair_mask"]), (x,), atol=1e-6
    )


def test_invalid_smiles_are_reported_not_raised():
    from papers.chem.data import SkippedMoleculesWarning

    with pytest.warns(SkippedMoleculesWarning):
        atoms, pairs, report = featurize_molecules(["CCO", "not a smiles", "C1CC", "c1ccccc1"])
    assert len(atoms) == len(pairs) == 2 and report.kept_rows == [0, 3]
    assert [s.row for s in report.skipped] == [1, 2] and all(s.reason for s in report.skipped)
    assert pairs[1].shape == (6, 6, 12) and atoms[1].shape == (6, 42)


def test_bad_inputs_raise_clear_errors(molecules):
    atoms, pairs = molecules
    with pytest.raises(ValueError, match="pooling"):
        WeaveRegressor(42, pooling="max")
    with pytest.raises(ValueError, match=r"pairs \[n, n, P\]"):
        collate([atoms[0]], [pairs[1]])
    with pytest.raises(ValueError, match="as many"):
        collate(atoms[:2], pairs[:1])
    batch = collate(atoms, pairs)
    with pytest.raises(ValueError, match="atoms must be"):
        _model()(batch["atoms"][..., :40], batch["pairs"], batch["atom_mask"], batch["pair_mask"])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("arms", ("sum", "ecfp"), "must include 'weave'"),
        ("arms", ("weave", "max"), "arms must be"),
        ("epochs", 0, "epochs must be"),
        ("width", 0, "width must be"),
        ("max_molecules", 10, "max_molecules"),
        ("fractions", (0.5, 0.5, 0.5), "fractions"),
        ("lr", 0.0, "lr must be"),
        ("ecfp_radius", -1, "ecfp_radius"),
    ],
)
def test_bad_config_values_are_rejected(field, value, match):
    from papers.chem.weave.experiment import Config

    config = Config(**{field: value})
    with pytest.raises(ValueError, match=match):
        config.validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.weave import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    metrics = untimed(result.metrics)
    assert metrics == untimed(again.metrics)
    assert metrics["molecules"] == 60
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/parity.png", "figures/rmse.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"weave", "sum", "no_pairs", "ecfp"}
