"""MPNN: invariances of messages and set2set, edge-network shapes, hydrogens, data errors, smoke run."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.mpnn import MPNN, EdgeNetwork, Set2Set

SMILES = ("CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C#N", "C/C=C/Cl")


def _graphs(**options):
    from papers.chem.data import smiles_to_graph

    return [smiles_to_graph(s, **options) for s in SMILES]


def _model(readout="set2set", **kwargs):
    torch.manual_seed(0)
    return MPNN(
        42, 13, hidden=48, message_steps=3, readout=readout, set2set_steps=3, edge_hidden=16, **kwargs
    )


def _permuted(graph, seed=0):
    """The same molecule with its atoms relabelled by a random permutation (and the edges shuffled)."""
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(graph.num_nodes, generator=generator)  # new node i is old node perm[i]
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    edge_order = torch.randperm(graph.num_edges, generator=generator)
    return graph.x[perm], inverse[graph.edge_index][:, edge_order], graph.edge_attr[edge_order]


@pytest.mark.parametrize("readout", ["set2set", "sum", "mean"])
@pytest.mark.parametrize("use_edge_features", [True, False])
def test_graph_output_is_invariant_to_atom_relabelling(readout, use_edge_features):
    model = _model(readout, use_edge_features=use_edge_features).double()
    for graph in _graphs(explicit_hydrogens=True):
        x, edge_index, edge_attr = graph.x.double(), graph.edge_index, graph.edge_attr.double()
        out = model(x, edge_index, edge_attr)
        for seed in range(3):
            px, pe, pa = _permuted(graph, seed)
            assert torch.allclose(model(px.double(), pe, pa.double()), out, rtol=0, atol=1e-10)


def test_node_states_are_equivariant_and_batches_match_single_graphs():
    from torch_geometric.data import Batch

    model = _model().double()
    graphs = _graphs()
    graph = graphs[2]
    h = model.node_states(graph.x.double(), graph.edge_index, graph.edge_attr.double())
    perm = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(1))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(len(perm))
    h_perm = model.node_states(graph.x[perm].double(), inverse[graph.edge_index], graph.edge_attr.double())
    assert torch.allclose(h_perm, h[perm], atol=1e-12)
    batch = Batch.from_data_list(graphs)
    together = model(batch.x.double(), batch.edge_index, batch.edge_attr.double(), batch.batch)
    alone = torch.cat([model(g.x.double(), g.edge_index, g.edge_attr.double()) for g in graphs])
    assert together.shape == (len(graphs),) and torch.allclose(together, alone, atol=1e-12)


def test_edge_network_matrix_shape_and_exact_message_sum():
    network = EdgeNetwork(13, 8, edge_hidden=16).double()
    edge_attr = torch.eye(13, dtype=torch.float64)[[0, 3, 0, 3, 1]]
    assert network.matrices(edge_attr).shape == (5, 8, 8)
    h = torch.randn(4, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    edge_index = torch.tensor([[0, 1, 1, 2, 3], [1, 0, 2, 1, 1]])
    m = network(h, edge_index, edge_attr)
    matrices = network.matrices(edge_attr)
    expected = torch.zeros_like(h)
    for e, (w, v) in enumerate(edge_index.T.tolist()):
        expected[v] += matrices[e] @ h[w]  # m_v = Σ_w A(e_vw) h_w
    assert torch.allclose(m, expected, atol=1e-12)
    assert torch.allclose(network(h, edge_index, edge_attr, per_edge=True), expected, atol=1e-12)
    # non-binary (continuous) edge features take the general path and agree with the direct form too
    distances = torch.rand(5, 13, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(network(h, edge_index, distances), network(h, edge_index, distances, per_edge=True))
    with pytest.raises(ValueError, match=r"edge_attr must be \[num_edges, 13\]"):
        network.matrices(torch.zeros(5, 7))


def test_zero_edge_features_and_isolated_atoms():
    """A(0) = W2 ReLU(b1) + b2 is one fixed matrix; an atom without bonds gets the zero message."""
    network = EdgeNetwork(13, 6, edge_hidden=16).double()
    h = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(2, 13, dtype=torch.float64)
    layer1, layer2 = network.net[0], network.net[2]
    matrix = (layer2.weight @ torch.relu(layer1.bias) + layer2.bias).view(6, 6)
    m = network(h, torch.tensor([[0, 1], [1, 0]]), zero)
    assert torch.allclose(m[1], matrix @ h[0]) and torch.allclose(m[0], matrix @ h[1])
    assert torch.equal(m[2], torch.zeros(6, dtype=torch.float64))  # atom 2 is disconnected
    no_edges = network(h, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 13, dtype=torch.float64))
    assert torch.equal(no_edges, torch.zeros_like(h))
    # a disconnected atom's state evolves by the GRU alone: h <- GRU(h, 0), the same with or without bonds
    # elsewhere in the graph
    model = _model().double()
    x = torch.zeros(3, 42, dtype=torch.float64)
    x[:, 2] = 1.0  # three carbons
    bonded = model.node_states(x, torch.tensor([[0, 1], [1, 0]]), torch.eye(13, dtype=torch.float64)[[0, 0]])
    alone = model.node_states(x, torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 13, dtype=torch.float64))
    h0 = torch.nn.functional.pad(x[2:], (0, 48 - 42))
    for _ in range(3):
        h0 = model.gru(torch.zeros_like(h0), h0)
    assert torch.allclose(bonded[2], alone[2]) and torch.allclose(alone[2], h0[0])
    assert not torch.allclose(bonded[0], alone[0])
    # a molecule of one atom (methane, implicit H) has no edges and still gets a prediction
    from papers.chem.data import smiles_to_graph

    methane = smiles_to_graph("C")
    assert (
        methane.num_edges == 0
        and model(methane.x.double(), methane.edge_index, methane.edge_attr.double()).isfinite().all()
    )


def test_set2set_has_size_2d_and_is_permutation_invariant():
    readout = Set2Set(8, steps=4).double()
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(9, 8, dtype=torch.float64, generator=generator)
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    out = readout(h, batch)
    assert out.shape == (3, 16)
    perm = torch.randperm(9, generator=generator)
    assert torch.allclose(readout(h[perm], batch[perm]), out, atol=1e-12)
    # r_t is a convex combination of the graph's node states: with identical states it equals them
    same = torch.ones(4, 8, dtype=torch.float64) * 0.3
    pooled = readout(same, torch.zeros(4, dtype=torch.long))
    assert torch.allclose(pooled[0, 8:], same[0])
    # attention weights sum to one per graph, so duplicating every node changes nothing
    assert torch.allclose(readout(torch.cat([h, h]), torch.cat([batch, batch])), out, atol=1e-12)
    with pytest.raises(ValueError, match="steps"):
        Set2Set(8, steps=0)


def test_explicit_hydrogens_change_node_counts_as_rdkit_says():
    from rdkit import Chem

    for implicit, explicit, text in zip(_graphs(), _graphs(explicit_hydrogens=True), SMILES, strict=True):
        mol = Chem.MolFromSmiles(text)
        heavy = mol.GetNumAtoms()
        hydrogens = sum(atom.GetTotalNumHs() for atom in mol.GetAtoms())
        assert implicit.num_nodes == heavy and explicit.num_nodes == Chem.AddHs(mol).GetNumAtoms()
        assert explicit.num_nodes == heavy + hydrogens
        assert (
            explicit.num_edges == implicit.num_edges + 2 * hydrogens
        )  # one X-H bond per hydrogen, both ways
    assert _graphs(explicit_hydrogens=True)[0].num_nodes == 9  # ethanol: C2 H6 O


def test_invalid_smiles_are_reported_skipped_and_training_still_runs():
    from papers.chem.data import MoleculeDataset, SkippedMoleculesWarning, random_split
    from papers.chem.mpnn.experiment import Config, build_model, train_mpnn

    smiles = ["CCO", "not a smiles", "c1ccccc1O", "C1CC", "CCN", "CC(=O)O", "CCCl", "c1ccncc1", "CCOC",
              "OCCO", "CC(C)O", "C=CC"]  # fmt: skip
    targets = [[float(i % 5)] for i in range(len(smiles))]
    with pytest.warns(SkippedMoleculesWarning, match="skipped 2"):
        dataset = MoleculeDataset.from_smiles(smiles, targets, name="toy", task_names=["y"],
                                              task_type="regression", explicit_hydrogens=True)  # fmt: skip
    assert len(dataset) == 10 and [s.row for s in dataset.report.skipped] == [1, 3]
    config = Config(hidden=42, edge_hidden=8, message_steps=2, set2set_steps=2, epochs=2, batch_size=4)
    torch.manual_seed(0)
    model = build_model("mpnn", config, 42, 13)
    run = train_mpnn(model, dataset.graphs, random_split(len(dataset), (0.6, 0.2, 0.2), seed=0), config, 0)
    assert len(run["train_loss"]) == 2 and all(
        math.isfinite(v) for v in run["train_loss"] + run["valid_rmse"]
    )
    assert len(run["test_pred"]) == 2


def test_training_reduces_the_loss_on_a_small_set():
    from papers.chem.data import MoleculeDataset, random_split
    from papers.chem.mpnn.experiment import Config, build_model, train_mpnn

    smiles = ["C" * n for n in range(1, 9)] + ["C" * n + "O" for n in range(1, 9)]
    dataset = MoleculeDataset.from_smiles(smiles, [[float(len(s))] for s in smiles], name="chains",
                                          task_names=["atoms"], task_type="regression")  # fmt: skip
    config = Config(
        hidden=42, edge_hidden=8, message_steps=2, set2set_steps=2, epochs=40, batch_size=8, lr=3e-3
    )
    torch.manual_seed(0)
    model = build_model("sum", config, 42, 13)
    run = train_mpnn(model, dataset.graphs, random_split(16, (0.75, 0.125, 0.125), seed=0), config, 0)
    assert run["train_loss"][-1] < 0.1 * run["train_loss"][0]


def test_model_errors_on_bad_input():
    with pytest.raises(ValueError, match="unknown readout 'max'; choose from set2set, sum, mean"):
        MPNN(42, 13, readout="max")
    with pytest.raises(ValueError, match=r"hidden \(16\) must be >= node_features \(42\)"):
        MPNN(42, 13, hidden=16)
    with pytest.raises(ValueError, match="message_steps"):
        MPNN(42, 13, message_steps=0)
    model = _model()
    with pytest.raises(ValueError, match="x must have 42 features"):
        model(torch.zeros(3, 40), torch.zeros(2, 0, dtype=torch.long), torch.zeros(0, 13))
    with pytest.raises(ValueError, match=r"edge_index must be \[2, num_edges\]"):
        model(torch.zeros(3, 42), torch.zeros(3, 2, dtype=torch.long), torch.zeros(2, 13))
    with pytest.raises(ValueError, match=r"edge_attr must be \[num_edges=2"):
        model(torch.zeros(3, 42), torch.tensor([[0, 1], [1, 0]]), torch.zeros(3, 13))


@pytest.mark.parametrize(("key", "value"), [("n_seeds", 0), ("fractions", (0.8, 0.3, 0.1)), ("epochs", 0),
                                            ("hidden", 32), ("arms", ("mpnn", "max")), ("arms", ("sum",)),
                                            ("max_molecules", 10), ("lr", 0.0), ("message_steps", 0),
                                            ("set2set_steps", 0), ("threads", -1)])  # fmt: skip
def test_config_validation(key, value):
    from papers.chem.mpnn.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.mpnn import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    metrics = untimed(result.metrics)
    assert metrics == untimed(again.metrics)
    assert metrics["molecules"] == 60
    assert len(result.checks) == 5 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/curves.png", "figures/parity.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {
        "mpnn",
        "sum",
        "mean",
        "bond_blind",
        "implicit_h",
    }
