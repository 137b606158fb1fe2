"""Neural graph fingerprints: invariances, locality, degree weights, softmax mass, hard-argmax counting,
Tanimoto distances, invalid SMILES, config errors, smoke run and determinism."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.data import SkippedMoleculesWarning, smiles_to_graph
from papers.chem.neural_fingerprints import (
    NeuralFingerprint,
    atom_degrees,
    collate,
    fingerprints_from_smiles,
    tanimoto_distances,
)

F64 = torch.float64


def _model(graph, **options) -> NeuralFingerprint:
    torch.manual_seed(0)
    options = {"hidden": 16, "fp_length": 32, "radius": 3, **options}
    return NeuralFingerprint(graph.x.shape[1], graph.edge_attr.shape[1], **options).double()


def _inputs(graph, dtype=F64):
    return graph.x.to(dtype), graph.edge_index, graph.edge_attr.to(dtype)


def test_shapes_and_softmax_rows_sum_to_atoms_times_radius():
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]"]
    graphs = [smiles_to_graph(s) for s in smiles]
    model = _model(graphs[0], radius=4)
    fp = model(**collate(graphs, F64))
    assert fp.shape == (4, 32) and (fp > 0).all()
    atoms = torch.tensor([g.x.shape[0] for g in graphs], dtype=F64)
    assert torch.allclose(fp.sum(1), atoms * 4, atol=1e-10)
    contributions = model.atom_contributions(*_inputs(graphs[2]))
    assert contributions.shape == (4, graphs[2].x.shape[0], 32)
    assert torch.allclose(contributions.sum(-1), torch.ones(4, graphs[2].x.shape[0], dtype=F64))


def test_batching_equals_one_molecule_at_a_time():
    graphs = [smiles_to_graph(s) for s in ("CCN", "c1ccncc1", "OC(=O)CCl")]
    model = _model(graphs[0])
    together = model(**collate(graphs, F64))
    alone = torch.cat([model(**collate([g], F64)) for g in graphs])
    assert torch.allclose(together, alone, atol=1e-12)


def test_invariant_to_atom_order():
    graph = smiles_to_graph("CC(=O)Nc1ccc(O)cc1")
    model = _model(graph)
    x, edge_index, edge_attr = _inputs(graph)
    n = x.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))  # new atom i = old atom perm[i]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    edge_order = torch.randperm(edge_index.shape[1], generator=torch.Generator().manual_seed(4))
    permuted = (x[perm], inverse[edge_index][:, edge_order], edge_attr[edge_order])
    batch = torch.zeros(n, dtype=torch.long)
    assert torch.allclose(model(x, edge_index, edge_attr, batch), model(*permuted, batch), atol=1e-12)
    # per-atom contributions move with the atoms
    assert torch.allclose(
        model.atom_contributions(*permuted), model.atom_contributions(x, edge_index, edge_attr)[:, perm]
    )


def test_contributions_depend_only_on_the_radius_L_neighbourhood():
    """Change the last atom of a 12-atom chain: at radius L only atoms within L bonds of it change."""
    chain, changed = smiles_to_graph("C" * 12), smiles_to_graph("C" * 11 + "N")
    assert torch.equal(chain.edge_index, changed.edge_index)  # atoms numbered along the chain
    assert chain.edge_index[:, ::2].tolist() == [list(range(11)), list(range(1, 12))]
    model = _model(chain, radius=4)
    a = model.atom_contributions(*_inputs(chain))
    b = model.atom_contributions(*_inputs(changed))
    distance = 11 - torch.arange(12)  # bonds from each atom to the changed one
    for layer in range(4):
        radius = layer + 1
        far = distance > radius
        assert torch.equal(a[layer, far], b[layer, far]), radius
        assert (a[layer, ~far] - b[layer, ~far]).abs().amax(-1).min() > 1e-6, radius


def test_degree_specific_weights_are_selected_by_degree():
    graph = smiles_to_graph("CC(C)(C)C(C)O")  # degrees 1 and 4 and 3 and 1 ...
    model = _model(graph, radius=1, nonlinearity="tanh")
    degree = atom_degrees(graph.edge_index, graph.x.shape[0])
    assert set(degree.tolist()) == {1, 3, 4}
    with torch.no_grad():
        model.hidden_weight[0].zero_()
        for d in range(model.max_degree + 1):
            model.hidden_bias[0][d].fill_(0.1 * d)
        model.output[0].weight.copy_(torch.eye(32, 16, dtype=F64))  # index i reads hidden unit i
        model.output[0].bias.zero_()
        logits = []
        model.output[0].register_forward_hook(lambda module, inputs, output: logits.append(inputs[0]))
        model.atom_contributions(*_inputs(graph))
    hidden = logits[0]
    assert torch.allclose(hidden, torch.tanh(0.1 * degree.to(F64))[:, None].expand(-1, 16))
    # with real weights, atoms of one degree share H^d: swap H^3 and H^4 and only those atoms change
    fresh = _model(graph, radius=1)
    before = fresh.atom_contributions(*_inputs(graph))
    with torch.no_grad():
        fresh.hidden_weight[0][[3, 4]] = fresh.hidden_weight[0][[4, 3]].clone()
    after = fresh.atom_contributions(*_inputs(graph))
    same = (degree != 3) & (degree != 4)
    assert torch.equal(before[:, same], after[:, same]) and not torch.allclose(
        before[:, ~same], after[:, ~same]
    )


def test_hard_argmax_counts_like_ecfp_symmetric_atoms_share_an_index():
    """hard=True: each atom writes a 1 at one index per radius (ECFP's hash-and-set, counted); atoms
    that RDKit ranks as symmetry-equivalent land on the same index at every radius."""
    from rdkit import Chem

    smiles = "CC(C)c1ccc(C(C)C)cc1"
    graph = smiles_to_graph(smiles)
    model = _model(graph, hard=True, radius=3, fp_length=2048, hidden=32)
    model.reset_parameters(scale=30.0, generator=torch.Generator().manual_seed(0))
    contributions = model.atom_contributions(*_inputs(graph))
    assert set(contributions.unique().tolist()) == {0.0, 1.0} and (contributions.sum(-1) == 1).all()
    fp = model(*_inputs(graph), torch.zeros(graph.x.shape[0], dtype=torch.long))
    assert torch.equal(fp, fp.round()) and fp.sum() == 3 * graph.x.shape[0]
    index = contributions.argmax(-1)  # [R, N]
    ranks = list(Chem.CanonicalRankAtoms(Chem.MolFromSmiles(smiles), breakTies=False))
    classes = {}
    for atom, rank in enumerate(ranks):
        classes.setdefault(rank, []).append(atom)
    for atoms in classes.values():
        assert (index[:, atoms] == index[:, atoms[:1]]).all()
    # different environments (4 symmetry classes at radius >= 2) get different indices, as hashing does
    assert len(set(index[2].tolist())) == len(classes)
    # and the large-weight softmax is close to that argmax
    model.hard = False
    soft = model.atom_contributions(*_inputs(graph))
    assert (soft.argmax(-1) == index).all() and soft.amax(-1).mean() > 0.9


def test_tanimoto_distances():
    bits = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
    d = tanimoto_distances(bits)
    assert torch.allclose(d[0, 1], torch.tensor(1 - 1 / 3)) and d[0, 0] == 0 and d[2, 2] == 0
    assert torch.allclose(d, d.T)
    counts = torch.tensor([[2.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(tanimoto_distances(counts)[0, 1], torch.tensor(1 - 2 / 5))
    with pytest.raises(ValueError, match="non-negative"):
        tanimoto_distances(-bits)
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        tanimoto_distances(bits, bits[:, :2])


def test_invalid_smiles_are_reported_and_skipped():
    graph = smiles_to_graph("CCO")
    model = _model(graph)
    with pytest.warns(SkippedMoleculesWarning, match="skipped 2"):
        fps, report = fingerprints_from_smiles(model, ["CCO", "not a smiles", "C1CC", "c1ccccc1"])
    assert fps.shape == (2, 32) and report.kept_rows == [0, 3]
    assert [s.row for s in report.skipped] == [1, 2] and all(s.reason for s in report.skipped)
    assert torch.allclose(fps[0], model(**collate([graph], F64))[0])


def test_bad_model_input_and_options():
    graph = smiles_to_graph("CCO")
    model = _model(graph)
    x, edge_index, edge_attr = _inputs(graph)
    with pytest.raises(ValueError, match="x must be"):
        model.atom_contributions(x[:, :5], edge_index, edge_attr)
    with pytest.raises(ValueError, match="edge_attr must be"):
        model.atom_contributions(x, edge_index, edge_attr[:1])
    with pytest.raises(ValueError, match="more than max_degree=0"):
        _model(graph, max_degree=0).atom_contributions(x, edge_index, edge_attr)
    for key, value in (("radius", 0), ("fp_length", 0), ("nonlinearity", "gelu")):
        with pytest.raises(ValueError, match=key):
            NeuralFingerprint(x.shape[1], edge_attr.shape[1], **{key: value})
    with pytest.raises(ValueError, match="scale"):
        model.reset_parameters(scale=0.0)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("radius", 0),
        ("weight_scales", (1.0,)),
        ("tasks", ("esol",)),
        ("fractions", (0.5, 0.5, 0.0)),
        ("lr", 0.0),
        ("threads", -1),
        ("max_molecules", 5),
        ("distance_molecules", 2),
    ],
)
def test_config_validation(key, value):
    from papers.chem.neural_fingerprints.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.neural_fingerprints import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/distances.png", "figures/rmse.png"]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"random_distances", "train_chembl_pic50", "train_nci_logp"}
    assert 0 <= result.metrics["r_scale_0.1"] <= 1 and result.metrics["chembl_pic50_molecules"] == 60
