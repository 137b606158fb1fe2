"""One-shot matching networks: attention readouts against hand computations, support-order and
query-batch invariances of every refinement, encoder shapes and gradients, episode sampling,
task selection (correlated tasks dropped), bad inputs and configs, seeded smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.one_shot import (
    REFINEMENTS,
    AttnLSTM,
    GraphEncoder,
    IterRefLSTM,
    MatchingNetwork,
    attention_readout,
    cosine,
    graph_pool,
    matching_loss,
    matching_probability,
)

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "C1CCCCC1N", "OC(=O)CCl", "c1ccncc1"]


@pytest.fixture(scope="module")
def graphs():
    from papers.chem.data import featurize_smiles

    return featurize_smiles(SMILES)[0]


def test_matching_probability_matches_a_hand_computation():
    query = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    support = torch.tensor([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 0])
    # cosines 1, 0, -1 -> softmax weights e / (e + 1 + 1/e) on the positive
    expected = math.e / (math.e + 1 + 1 / math.e)
    assert matching_probability(query, support, labels).item() == pytest.approx(expected)
    assert torch.allclose(cosine(query, support), torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64))
    # one positive and one negative identical to each other: P = 1/2 exactly
    same = torch.tensor([[0.3, 0.4], [0.3, 0.4]], dtype=torch.float64)
    assert matching_probability(query, same, torch.tensor([1, 0])).item() == pytest.approx(0.5)
    readout = attention_readout(query, support, support)
    weights = torch.softmax(torch.tensor([1.0, 0.0, -1.0], dtype=torch.float64), 0)
    assert torch.allclose(readout[0], weights @ support)


@pytest.mark.parametrize("refinement", REFINEMENTS)
def test_refinement_is_support_order_equivariant_and_query_independent(refinement):
    torch.manual_seed(0)
    model = MatchingNetwork(10, refinement, steps=3, channels=(8,), embedding=6).double()
    query = torch.randn(7, 6, dtype=torch.float64)
    support = torch.randn(4, 6, dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0])
    p = model.classify(query, support, labels)
    assert p.shape == (7,) and ((p > 0) & (p < 1)).all()
    perm = torch.tensor([2, 0, 3, 1])
    assert torch.allclose(model.classify(query, support[perm], labels[perm]), p)
    # a query's prediction does not depend on the other queries of the batch
    assert torch.allclose(model.classify(query[3:4], support, labels), p[3:4])
    f, g = model.refine(query, support)
    f_perm, g_perm = model.refine(query, support[perm])
    assert torch.allclose(g_perm, g[perm]) and torch.allclose(f_perm, f)


def test_siamese_and_attn_lstm_keep_the_support_iter_ref_changes_it():
    torch.manual_seed(0)
    query, support = torch.randn(3, 5), torch.randn(4, 5)
    f, g = AttnLSTM(5, 2)(query, support)
    assert torch.equal(g, support) and not torch.allclose(f, query)
    f, g = IterRefLSTM(5, 2)(query, support)
    assert not torch.allclose(g, support) and not torch.allclose(f, query)
    # the support refinement does not see the queries: Z is the same for any query batch
    module = IterRefLSTM(5, 2)
    assert torch.allclose(module(query, support)[1], module(torch.randn(9, 5), support)[1])


def test_iter_ref_equations_for_one_step():
    """One refinement step written out by hand: r, R, the two LSTM updates and the residual sums."""
    torch.manual_seed(1)
    module = IterRefLSTM(4, 1).double()
    query, support = torch.randn(2, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    zeros_q, zeros_s = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    r = torch.softmax(cosine(query, support), 1) @ support  # z = 0, Z = 0
    R = torch.softmax(cosine(support, support), 1) @ support
    dz, _ = module.query_cell(torch.cat([zeros_q, r], 1), (zeros_q, zeros_q))
    dZ, _ = module.support_cell(torch.cat([zeros_s, R], 1), (zeros_s, zeros_s))
    f, g = module(query, support)
    assert torch.allclose(f, query + dz) and torch.allclose(g, support + dZ)


def test_iter_ref_second_step_replaces_the_refinement():
    """Step 2 reads f' + δz₁, g' + δZ₁; its LSTM output δz₂ replaces δz₁: f = f' + δz₂, not + δz₁ + δz₂."""
    torch.manual_seed(2)
    module = IterRefLSTM(4, 2).double()
    query, support = torch.randn(2, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    zeros_q, zeros_s = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(3, 4, dtype=torch.float64)
    dz, dZ, state_q, state_s = zeros_q, zeros_s, (zeros_q, zeros_q), (zeros_s, zeros_s)
    for _ in range(2):
        r = torch.softmax(cosine(query + dz, support + dZ), 1) @ (support + dZ)
        R = torch.softmax(cosine(support + dZ, support), 1) @ support
        state_q = module.query_cell(torch.cat([dz, r], 1), state_q)
        state_s = module.support_cell(torch.cat([dZ, R], 1), state_s)
        dz, dZ = state_q[0], state_s[0]
    f, g = module(query, support)
    assert torch.allclose(f, query + dz) and torch.allclose(g, support + dZ)


def test_encoder_shapes_gradients_and_graph_pool(graphs):
    from papers.chem.neural_fingerprints.model import collate

    torch.manual_seed(0)
    batch = collate(graphs)
    encoder = GraphEncoder(batch["x"].shape[1], channels=(8, 12), embedding=5)
    out = encoder(**batch)
    assert out.shape == (len(SMILES), 5) and (out.abs() <= 1).all()  # tanh of the atom sum
    out.sum().backward()
    assert all(p.grad is not None for p in encoder.parameters())
    # eval mode: a molecule's embedding does not depend on the rest of the batch
    encoder.eval()
    with torch.no_grad():
        alone = encoder(**collate(graphs[2:3]))
        assert torch.allclose(encoder(**batch)[2], alone[0], atol=1e-6)
    # graph pool: max over self and neighbours on a path a - b - c
    h = torch.tensor([[1.0], [5.0], [2.0]])
    edges = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    assert graph_pool(h, edges).flatten().tolist() == [5.0, 5.0, 5.0]
    assert graph_pool(torch.tensor([[1.0], [0.0], [2.0]]), edges).flatten().tolist() == [1.0, 2.0, 2.0]


def test_matching_network_end_to_end_gradient(graphs):
    from papers.chem.neural_fingerprints.model import collate

    torch.manual_seed(0)
    batch = collate(graphs)
    model = MatchingNetwork(batch["x"].shape[1], "iter_ref", steps=2, channels=(8,), embedding=6)
    p = model(batch, 2, torch.tensor([1, 0]))
    assert p.shape == (len(SMILES) - 2,)
    loss = matching_loss(p, torch.tensor([1, 0, 1, 0]))
    loss.backward()
    assert all(param.grad is not None for param in model.parameters())
    assert loss.item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy(p.detach(), torch.tensor([1.0, 0, 1, 0])).item(), rel=1e-5
    )


def test_bad_inputs_raise_clear_errors(graphs):
    from papers.chem.neural_fingerprints.model import collate

    with pytest.raises(ValueError, match="refinement must be one of"):
        MatchingNetwork(10, "bilstm")
    model = MatchingNetwork(10, "siamese", channels=(4,), embedding=3)
    with pytest.raises(ValueError, match="query and support"):
        model.classify(torch.randn(2, 3), torch.randn(2, 4), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        model.classify(torch.randn(2, 3), torch.randn(2, 3), torch.tensor([1, 0, 1]))
    with pytest.raises(ValueError, match=r"x must be \[num_atoms, 10\]"):
        model.encoder(**collate(graphs))
    with pytest.raises(ValueError, match="probability"):
        matching_loss(torch.rand(3), torch.ones(4))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        IterRefLSTM(4, 0)
    star = {
        "x": torch.zeros(9, 10),
        "edge_index": torch.tensor([[0] * 8 + list(range(1, 9)), list(range(1, 9)) + [0] * 8]),
    }
    with pytest.raises(ValueError, match="more than max_degree=6"):
        model.encoder(**star, batch=torch.zeros(9, dtype=torch.long), num_graphs=1)
    from papers.chem.data import InvalidMoleculeError, SkippedMoleculesWarning, featurize_smiles

    with pytest.warns(SkippedMoleculesWarning, match="unclosed ring"):
        graphs_ok, report = featurize_smiles(["CCO", "C1CC"])  # invalid SMILES are reported, not featurised
    assert len(graphs_ok) == 1 and len(report.skipped) == 1
    from papers.chem.data import parse_smiles

    with pytest.raises(InvalidMoleculeError):
        parse_smiles("C1CC")


def test_episode_sampling_is_seeded_disjoint_and_balanced():
    from papers.chem.one_shot.experiment import sample_episode

    positives, negatives = torch.arange(0, 20), torch.arange(100, 160)
    a = sample_episode(positives, negatives, 3, 10, torch.Generator().manual_seed(4))
    b = sample_episode(positives, negatives, 3, 10, torch.Generator().manual_seed(4))
    assert a == b
    support, y_support, query, y_query = a
    assert y_support == [1, 1, 1, 0, 0, 0] and y_query == [1] * 5 + [0] * 5
    assert not set(support) & set(query)
    assert all((i < 100) == bool(y) for i, y in zip(support + query, y_support + y_query, strict=True))
    with pytest.raises(ValueError, match="needs > 5 positives"):
        sample_episode(positives[:5], negatives, 5, 10, torch.Generator())


def test_task_selection_drops_correlated_and_rare_tasks():
    from papers.chem.one_shot.experiment import Config, jaccard, phi, select_tasks

    a = torch.tensor([1, 1, 0, 0, 1, 0, 0, 0, 1, 0])
    labels = torch.stack(
        [a, a, 1 - a, torch.tensor([1, 0, 1, 0, 0, 1, 0, 1, 0, 0]), torch.zeros(10, dtype=torch.long)], 1
    )
    kept, dropped = select_tasks(
        labels, ["a", "copy", "complement", "other", "never"], Config(min_prevalence=0.1)
    )
    assert kept == [0, 3]
    assert dropped["prevalence"] == 1 and [d[0] for d in dropped["correlated"]] == ["copy", "complement"]
    assert phi(a, a) == pytest.approx(1.0) and phi(a, 1 - a) == pytest.approx(-1.0)
    assert phi(a, torch.zeros(10)) == 0.0
    assert jaccard(a, a) == 1.0 and jaccard(a, 1 - a) == 0.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"train_steps": 0}, "train_steps must be >= 1"),
        ({"shots": (0,)}, "shots must be positive"),
        ({"train_queries": 7}, "train_queries must be an even number"),
        ({"min_prevalence": 0.7}, "min_prevalence < max_prevalence"),
        ({"disjoint_fraction": 1.0}, "disjoint_fraction must be in"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"molecules": 10}, "molecules must be >= 50"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.one_shot.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.one_shot import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 6
    assert sorted(result.figures) == ["figures/roc_auc.png", "figures/training.png"]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"data"} | {f"{m}_{k}shot" for m in REFINEMENTS for k in (1, 5)}
    assert not set(result.metrics["training_tasks"]) & set(result.metrics["held_out_tasks"])
    assert result.metrics["held_out_max_abs_phi"] <= 0.5
    for m in REFINEMENTS:
        assert 0 <= result.metrics[f"{m}_1shot_same_auc"] <= 1


def test_mean_gather_and_paired_gap(graphs):
    from papers.chem.neural_fingerprints.model import collate
    from papers.chem.one_shot.experiment import paired_gap

    torch.manual_seed(0)
    batch = collate(graphs)
    encoder = GraphEncoder(batch["x"].shape[1], channels=(8,), embedding=5, gather="mean").eval()
    with torch.no_grad():
        out = encoder(**batch)
    assert out.shape == (len(SMILES), 5) and (out.abs() < 1).all()
    with pytest.raises(ValueError, match="gather must be"):
        GraphEncoder(10, gather="max")
    a = {"auc": {"same": {"t1": 0.8, "t2": 0.6, "t3": 0.7}}}
    b = {"auc": {"same": {"t1": 0.7, "t2": 0.6, "t3": 0.5}}}
    mean, se = paired_gap(a, b)
    assert mean == pytest.approx(0.1) and se == pytest.approx((0.01 / 3) ** 0.5)
