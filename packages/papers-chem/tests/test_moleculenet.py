"""MoleculeNet protocol: scaffold split disjointness, ECFP bits, ridge in closed form, GCN, smoke run."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.data import SkippedMoleculesWarning, load_chembl_pic50, murcko_scaffold
from papers.chem.moleculenet import GCNRegressor, RidgeRegression, ecfp_fingerprints, make_split


def test_scaffold_split_shares_no_scaffold_on_the_chembl_series():
    smiles = load_chembl_pic50().smiles
    split = make_split("scaffold", smiles, (0.8, 0.1, 0.1), seed=0)
    assert sorted(split.train + split.valid + split.test) == list(range(len(smiles)))
    scaffolds = [{murcko_scaffold(smiles[i]) for i in part} for part in split]
    train, valid, test = scaffolds
    assert not train & test and not train & valid and not valid & test
    assert split == make_split("scaffold", smiles, (0.8, 0.1, 0.1), seed=5)  # deterministic, seed unused
    random = make_split("random", smiles, (0.8, 0.1, 0.1), seed=0)
    random_scaffolds = [{murcko_scaffold(smiles[i]) for i in part} for part in random]
    assert random_scaffolds[0] & random_scaffolds[2]  # a random split does share scaffolds
    assert random != make_split("random", smiles, (0.8, 0.1, 0.1), seed=1)


def test_unknown_split_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown split 'time'; choose from random, scaffold"):
        make_split("time", ["CCO"] * 10, (0.8, 0.1, 0.1), seed=0)


def test_ecfp_shape_bits_and_determinism():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    bits, report = ecfp_fingerprints(smiles)
    assert bits.shape == (3, 2048) and bits.dtype == torch.float32
    assert set(bits.unique().tolist()) <= {0.0, 1.0} and (bits.sum(1) > 0).all()
    assert torch.equal(bits, ecfp_fingerprints(smiles)[0]) and report.num_skipped == 0
    assert ecfp_fingerprints(smiles, n_bits=512)[0].shape == (3, 512)
    # radius 0 sees single atoms only: ethanol has three distinct atom environments (CH3, CH2, OH)
    assert ecfp_fingerprints(["CCO"], radius=0)[0].sum() == 3
    assert (ecfp_fingerprints(["CCO"], radius=2)[0] >= ecfp_fingerprints(["CCO"], radius=0)[0]).all()


def test_invalid_smiles_in_a_user_list_are_reported_and_skipped():
    with pytest.warns(SkippedMoleculesWarning, match="skipped 2"):
        bits, report = ecfp_fingerprints(["CCO", "not a smiles", "C1CC", "c1ccccc1"])
    assert bits.shape == (2, 2048) and report.kept_rows == [0, 3]
    assert [s.row for s in report.skipped] == [1, 2] and all(s.reason for s in report.skipped)
    with pytest.raises(ValueError, match="n_bits"):
        ecfp_fingerprints(["CCO"], n_bits=0)


@pytest.mark.parametrize("n", [40, 4])  # primal (n >= d) and dual (n < d) solves
def test_ridge_fits_a_linear_target(n):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=generator, dtype=torch.float64)
    w, b = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=torch.float64), 0.7
    y = x @ w + b
    model = RidgeRegression(alpha=1e-10).fit(x, y)
    assert torch.allclose(model.predict(x), y, atol=1e-6)
    if n >= 6:
        assert torch.allclose(model.weight, w, atol=1e-6) and abs(model.bias.item() - b) < 1e-6
    # a large penalty shrinks the weights towards 0 and the prediction towards the mean
    heavy = RidgeRegression(alpha=1e8).fit(x, y)
    assert heavy.weight.abs().max() < 1e-5 and torch.allclose(heavy.predict(x), y.mean().expand(n), atol=1e-3)


def test_ridge_primal_and_dual_agree_and_bad_input():
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(10, 30, generator=generator), torch.randn(10, generator=generator)
    dual = RidgeRegression(alpha=2.0).fit(x, y)
    xc, yc = (x - x.mean(0)).double(), (y - y.mean()).double()
    primal = torch.linalg.solve(xc.T @ xc + 2.0 * torch.eye(30, dtype=torch.float64), xc.T @ yc)
    assert torch.allclose(dual.weight, primal, atol=1e-8)
    with pytest.raises(ValueError, match=r"x must be \[n, d\] and y \[n\]"):
        RidgeRegression().fit(x, y[:5])
    with pytest.raises(ValueError, match="alpha"):
        RidgeRegression(alpha=-1.0)
    with pytest.raises(RuntimeError, match="fit before predict"):
        RidgeRegression().predict(x)


def test_gcn_shapes_permutation_invariance_and_determinism():
    from torch_geometric.data import Batch

    from papers.chem.data import smiles_to_graph

    graphs = [smiles_to_graph(s) for s in ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1")]
    batch = Batch.from_data_list(graphs)

    def make():
        torch.manual_seed(0)
        return GCNRegressor(graphs[0].x.shape[1], hidden=16, layers=2)

    model = make()
    out = model(batch.x, batch.edge_index, batch.batch)
    assert out.shape == (3,) and torch.equal(out, make()(batch.x, batch.edge_index, batch.batch))
    # relabelling the atoms of a molecule does not change its prediction
    g = graphs[2]
    perm = torch.randperm(g.num_nodes, generator=torch.Generator().manual_seed(0))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    x_perm, edges_perm = g.x[perm], inverse[g.edge_index]
    single = model(x_perm, edges_perm, torch.zeros(g.num_nodes, dtype=torch.long))
    assert torch.allclose(single, out[2:], atol=1e-5)


@pytest.mark.parametrize(("key", "value"), [("n_seeds", 1), ("fractions", (0.8, 0.3, 0.1)), ("epochs", 0),
                                            ("ridge_alphas", (0.0,)), ("max_molecules", 10), ("lr", 0.0),
                                            ("threads", -1)])
def test_config_validation(key, value):
    from papers.chem.moleculenet.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.moleculenet import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    metrics = result.metrics
    assert untimed(metrics) == untimed(again.metrics)
    assert metrics["molecules"] == 200
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert metrics["ridge_scaffold_rmse_sd"] == 0.0  # a fixed split and a closed-form model
    assert metrics["gcn_random_rmse_sd"] > 0.0
    assert sorted(result.figures) == ["figures/parity.png", "figures/rmse.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"ridge", "gcn"}
