"""GROVER: context strings and motif labels, dyMPN hop sampling and analytic one-hop case, attention
confined to each molecule, permutation equivariance, the pretraining loss parts, gradients, seeded
determinism, bad input, config errors, smoke run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from papers_testing import untimed

from papers.chem.grover import (
    ContextVocabulary,
    DyMPN,
    GroverEncoder,
    GroverPretrainer,
    GroverRegressor,
    atom_contexts,
    fragment_names,
    motif_labels,
    sample_hops,
)

SMILES = ["CC(=O)O", "c1ccccc1O", "N=CO", "CCN(CC)CC", "O=C(O)c1ccccc1"]


def _batch(smiles):
    from torch_geometric.data import Batch

    from papers.chem.data import smiles_to_graph

    return Batch.from_data_list([smiles_to_graph(s) for s in smiles])


def _encoder(**options):
    from papers.chem.data import ATOM_FEATURE_SIZE, BOND_FEATURE_SIZE

    torch.manual_seed(0)
    return GroverEncoder(ATOM_FEATURE_SIZE, BOND_FEATURE_SIZE, hidden=16, heads=2, **options)


def _mol(smiles):
    from papers.chem.data import parse_smiles

    return parse_smiles(smiles)


def test_context_strings_follow_the_paper_format():
    assert atom_contexts(_mol("N=CO")) == ["N_C-DOUBLE1", "C_N-DOUBLE1_O-SINGLE1", "O_C-SINGLE1"]
    assert atom_contexts(_mol("CC(=O)O")) == [
        "C_C-SINGLE1",
        "C_C-SINGLE1_O-DOUBLE1_O-SINGLE1",
        "O_C-DOUBLE1",
        "O_C-SINGLE1",
    ]
    assert set(atom_contexts(_mol("c1ccccc1"))) == {"C_C-AROMATIC2"}
    assert atom_contexts(_mol("CN(C)C"))[1] == "N_C-SINGLE3"
    assert atom_contexts(_mol("[Na+].[Cl-]")) == ["Na", "Cl"]


def test_context_vocabulary_keeps_the_most_frequent_and_maps_the_rest_to_other():
    vocab = ContextVocabulary(["a", "b", "b", "c", "c", "c", "d"], size=2)
    assert vocab.classes == ["<other>", "c", "b"]
    assert vocab.encode(["c", "b", "a", "unseen"]) == [1, 2, 0, 0]
    assert len(vocab) == 3
    with pytest.raises(ValueError, match="size must be >= 1"):
        ContextVocabulary(["a"], size=0)


def test_motif_labels_are_the_85_rdkit_functional_groups():
    names = fragment_names()
    assert len(names) == 85 and all(n.startswith("fr_") for n in names)
    labels = dict(zip(names, motif_labels(_mol("O=C(O)c1ccccc1")), strict=True))
    assert labels["fr_benzene"] == 1.0 and labels["fr_COO"] == 1.0 and labels["fr_Ar_COO"] == 1.0
    assert labels["fr_NH2"] == 0.0 and labels["fr_ester"] == 0.0
    assert set(motif_labels(_mol("C"))) == {0.0}


def test_invalid_smiles_raise_a_clear_error():
    from papers.chem.data import InvalidMoleculeError
    from papers.chem.grover.experiment import label_molecule

    with pytest.raises(InvalidMoleculeError):
        label_molecule("C1CC(")
    contexts, motifs = label_molecule("CCO")
    assert len(contexts) == 3 and len(motifs) == 85


def test_hop_sampling_is_truncated_seeded_and_validated():
    draws = [sample_hops(2.0, 1.0, 1, 3, g) for g in [torch.Generator().manual_seed(0)] for _ in range(300)]
    assert set(draws) == {1, 2, 3}
    again = [sample_hops(2.0, 1.0, 1, 3, g) for g in [torch.Generator().manual_seed(0)] for _ in range(300)]
    assert draws == again
    assert {sample_hops(2.0, 0.0, 1, 3, torch.Generator()) for _ in range(5)} == {2}
    with pytest.raises(ValueError, match="hop range"):
        sample_hops(2.0, 1.0, 3, 1, torch.Generator())
    with pytest.raises(ValueError, match="hop range"):
        sample_hops(2.0, 1.0, 0, 2, torch.Generator())


def test_dympn_one_hop_matches_the_formula_and_hops_matter():
    torch.manual_seed(0)
    mpn = DyMPN(4, 3).double()
    h = torch.randn(3, 4, dtype=torch.float64)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    edge_attr = torch.randn(4, 3, dtype=torch.float64)
    out = mpn(h, edge_index, edge_attr, hops=1)
    expected = torch.empty_like(h)
    for v in range(3):
        m = sum(
            mpn.message(torch.cat([h[u], edge_attr[e]]))
            for e, (u, t) in enumerate(edge_index.T.tolist())
            if t == v
        )
        expected[v] = F.relu(mpn.self_loop(h[v]) + m)
    assert torch.allclose(out, expected)
    assert not torch.allclose(mpn(h, edge_index, edge_attr, hops=2), out)
    with pytest.raises(ValueError, match="hops must be >= 1"):
        mpn(h, edge_index, edge_attr, hops=0)
    h.requires_grad_(True)
    torch.autograd.gradcheck(lambda t: mpn(t, edge_index, edge_attr, hops=2), (h,))


def test_attention_stays_inside_each_molecule():
    encoder = _encoder().eval()
    a = _batch(["CC(=O)O", "c1ccccc1O"])
    b = _batch(["CC(=O)O", "CCN(CC)CC"])
    node_a, edge_a = encoder(a.x, a.edge_index, a.edge_attr, a.batch)
    node_b, edge_b = encoder(b.x, b.edge_index, b.edge_attr, b.batch)
    assert node_a.shape == (a.num_nodes, 16) and edge_a.shape == (a.num_nodes, 16)
    first = 4  # the atoms of CC(=O)O
    assert torch.allclose(node_a[:first], node_b[:first], atol=1e-6)
    assert torch.allclose(edge_a[:first], edge_b[:first], atol=1e-6)
    alone = _batch(["CC(=O)O"])
    node_alone, _ = encoder(alone.x, alone.edge_index, alone.edge_attr, alone.batch)
    assert torch.allclose(node_alone, node_a[:first], atol=1e-6)


def test_encoder_is_permutation_equivariant():
    encoder = _encoder().eval()
    data = _batch(["O=C(O)c1ccccc1"])
    n = data.num_nodes
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    x = data.x[perm]
    edge_index = inverse[data.edge_index]
    node, from_edges = encoder(data.x, data.edge_index, data.edge_attr, data.batch)
    node_p, from_edges_p = encoder(x, edge_index, data.edge_attr, data.batch)
    assert torch.allclose(node_p, node[perm], atol=1e-5)
    assert torch.allclose(from_edges_p, from_edges[perm], atol=1e-5)


def test_random_hops_are_seeded_and_eval_uses_the_mean():
    encoder = _encoder(hops_mean=2.0, hops_std=1.5, hops_range=(1, 4))
    data = _batch(SMILES)
    args = (data.x, data.edge_index, data.edge_attr, data.batch)
    encoder.train()
    one = encoder(*args, generator=torch.Generator().manual_seed(5))[0]
    two = encoder(*args, generator=torch.Generator().manual_seed(5))[0]
    assert torch.equal(one, two)
    outs = {
        encoder(*args, generator=g)[0].sum().item()
        for g in [torch.Generator().manual_seed(1)]
        for _ in range(8)
    }
    assert len(outs) > 1  # different hop counts give different outputs
    encoder.eval()
    assert encoder.eval_hops() == 2
    assert torch.equal(encoder(*args)[0], encoder(*args, generator=torch.Generator().manual_seed(9))[0])


def test_bad_graph_input_raises():
    encoder = _encoder()
    data = _batch(["CCO"])
    with pytest.raises(ValueError, match="atom / .* bond features"):
        encoder(data.x[:, :10], data.edge_index, data.edge_attr, data.batch)
    with pytest.raises(ValueError, match="edge_index must have shape"):
        encoder(data.x, data.edge_index[0], data.edge_attr, data.batch)
    with pytest.raises(ValueError, match="batch must have shape"):
        encoder(data.x, data.edge_index, data.edge_attr, data.batch[:1])
    with pytest.raises(ValueError, match="divisible by heads"):
        GroverEncoder(10, 5, hidden=15, heads=2)


def test_pretraining_loss_is_the_sum_of_its_parts_and_reaches_every_parameter():
    data = _batch(SMILES)
    contexts = [c for s in SMILES for c in atom_contexts(_mol(s))]
    vocab = ContextVocabulary(contexts, 5)
    data.context = torch.tensor(vocab.encode(contexts))
    data.motif = torch.tensor([motif_labels(_mol(s)) for s in SMILES])
    model = GroverPretrainer(_encoder(), len(vocab), 85)
    parts = model.loss(data)
    expected_context = F.cross_entropy(parts["context_node"], data.context) + F.cross_entropy(
        parts["context_edge"], data.context
    )
    assert parts["context_node"].shape == (data.num_nodes, 6)
    assert parts["motif_node"].shape == (len(SMILES), 85)
    assert torch.allclose(parts["context"], expected_context)
    assert torch.allclose(parts["loss"], parts["context"] + parts["motif"])
    parts["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    regressor = GroverRegressor(model.encoder, head_hidden=8)
    assert regressor(data).shape == (len(SMILES), 1)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"pretrain_steps": 0}, "pretrain_steps must be >= 1"),
        ({"hidden": 30, "heads": 4}, "divisible by heads"),
        ({"hops_low": 3, "hops_high": 2}, "hops_high"),
        ({"budgets": (100, 50)}, "budgets"),
        ({"budgets": (900,)}, "largest budget"),
        ({"holdout_fraction": 0.0}, "holdout_fraction"),
        ({"finetune_lr": 0.0}, "finetune_lr must be > 0"),
        ({"pretrain_molecules": 5}, "pretrain_molecules"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.grover.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.grover import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 5
    assert sorted(result.figures) == ["figures/pretraining.png", "figures/rmse_vs_labels.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"pretrain", "finetune"}
    assert result.metrics["molecules_pretrain"] + result.metrics["molecules_holdout"] == 120
    assert 0 <= result.metrics["holdout_context_accuracy_node"] <= 1
