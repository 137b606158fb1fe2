"""GROVER: atom/bond context strings and motif labels, dyMPN hop sampling and analytic one-hop cases
(node view; edge view on the line graph, which excludes the reverse bond), attention confined to each
molecule in both views, permutation equivariance/invariance, the pretraining and fine-tuning losses,
gradients, seeded determinism, bad input, config errors, smoke run."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from papers_testing import untimed

from papers.chem.grover import (
    ContextVocabulary,
    DyMPN,
    EdgeDyMPN,
    GroverEncoder,
    GroverPretrainer,
    GroverRegressor,
    atom_contexts,
    bond_contexts,
    fragment_names,
    motif_labels,
    sample_hops,
)
from papers.chem.grover.model import line_graph_sum, reverse_edges

SMILES = ["CC(=O)O", "c1ccccc1O", "N=CO", "CCN(CC)CC", "O=C(O)c1ccccc1"]
KEYS = ("atom_from_atom", "bond_from_atom", "atom_from_bond", "bond_from_bond")


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


def test_bond_context_strings():
    assert bond_contexts(_mol("CC(=O)O")) == [
        "C-C-SINGLE_O-DOUBLE1_O-SINGLE1",
        "C-O-DOUBLE_C-SINGLE1_O-SINGLE1",
        "C-O-SINGLE_C-SINGLE1_O-DOUBLE1",
    ]
    assert set(bond_contexts(_mol("c1ccccc1"))) == {"C-C-AROMATIC_C-AROMATIC2"}
    assert bond_contexts(_mol("N#N")) == ["N-N-TRIPLE"]
    assert bond_contexts(_mol("[Na+].[Cl-]")) == []


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
    contexts, motifs, bonds = label_molecule("CCO")
    assert len(contexts) == 3 and len(motifs) == 85 and len(bonds) == 2


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


def test_reverse_edges_pairs_each_bond_with_its_reverse():
    data = _batch(["CC(=O)O", "c1ccccc1O"])
    rev = reverse_edges(data.edge_index, data.num_nodes)
    assert torch.equal(rev, torch.arange(data.edge_index.shape[1]) ^ 1)  # bond i is edges 2i, 2i+1
    assert torch.equal(data.edge_index[:, rev], data.edge_index.flip(0))
    with pytest.raises(ValueError, match="both directions"):
        reverse_edges(torch.tensor([[0, 1], [1, 2]]), 3)


def test_line_graph_message_excludes_the_reverse_bond():
    # path 0-1-2 plus 1-3: directed bonds e0 0->1, e1 1->0, e2 1->2, e3 2->1, e4 1->3, e5 3->1
    edge_index = torch.tensor([[0, 1, 1, 2, 1, 3], [1, 0, 2, 1, 3, 1]])
    rev = reverse_edges(edge_index, 4)
    assert rev.tolist() == [1, 0, 3, 2, 5, 4]
    b = torch.eye(6, dtype=torch.float64)  # one-hot rows: the message says which bonds were summed
    m = line_graph_sum(b, edge_index, rev, 4)
    # 0->1 hears the bonds into 0 except 1->0: none; 1->2 hears 0->1 and 3->1 but not 2->1; ...
    expected = {0: [], 1: [3, 5], 2: [0, 5], 3: [], 4: [0, 3], 5: []}
    for e, sources in expected.items():
        assert m[e].nonzero().flatten().tolist() == sources
    torch.manual_seed(0)
    mpn = EdgeDyMPN(6).double()
    out = mpn(b, edge_index, rev, 4, hops=1)
    for e, sources in expected.items():
        message = sum((b[s] for s in sources), torch.zeros(6, dtype=torch.float64))
        assert torch.allclose(out[e], F.relu(mpn.self_loop(b[e]) + mpn.message(message)))
    assert not torch.allclose(mpn(b, edge_index, rev, 4, hops=2), out)
    with pytest.raises(ValueError, match="hops must be >= 1"):
        mpn(b, edge_index, rev, 4, hops=0)
    h = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: mpn(t, edge_index, rev, 4, hops=2), (h,))


def test_edge_view_shapes_and_views_switch():
    data = _batch(SMILES)
    args = (data.x, data.edge_index, data.edge_attr, data.batch)
    bonds = data.edge_index.shape[1]
    out = _encoder().eval()(*args)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "atom_from_atom": (data.num_nodes, 16),
        "bond_from_atom": (bonds, 16),
        "atom_from_bond": (data.num_nodes, 16),
        "bond_from_bond": (bonds, 16),
    }
    assert set(_encoder(views="edge")(*args)) == {"atom_from_bond", "bond_from_bond"}
    node_only = _encoder(views="node").eval()
    assert set(node_only(*args)) == {"atom_from_atom", "bond_from_atom"}
    assert not any(name.startswith(("edge_layers", "embed_edge")) for name, _ in node_only.named_parameters())
    # the node view is built first, so views="node" is the same node view as in views="both"
    assert torch.equal(node_only(*args)["atom_from_atom"], out["atom_from_atom"])


def test_attention_stays_inside_each_molecule_in_both_views():
    encoder = _encoder().eval()
    a = _batch(["CC(=O)O", "c1ccccc1O"])
    b = _batch(["CC(=O)O", "CCN(CC)CC"])
    alone = _batch(["CC(=O)O"])
    out_a = encoder(a.x, a.edge_index, a.edge_attr, a.batch)
    out_b = encoder(b.x, b.edge_index, b.edge_attr, b.batch)
    out_alone = encoder(alone.x, alone.edge_index, alone.edge_attr, alone.batch)
    rows = {"atom": 4, "bond": 6}  # the 4 atoms and 6 directed bonds of CC(=O)O come first
    for key in KEYS:
        n = rows[key.split("_")[0]]
        assert torch.allclose(out_a[key][:n], out_b[key][:n], atol=1e-6), key
        assert torch.allclose(out_alone[key], out_a[key][:n], atol=1e-6), key


def test_atom_and_bond_permutations_leave_graph_outputs_unchanged():
    torch.manual_seed(0)
    model = GroverRegressor(_encoder(), head_hidden=8).eval()
    data = _batch(["O=C(O)c1ccccc1"])
    n, m = data.num_nodes, data.edge_index.shape[1]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    inverse = torch.empty_like(perm)
    inverse[perm] = torch.arange(n)
    bond_perm = torch.randperm(m, generator=torch.Generator().manual_seed(4))
    permuted = data.clone()
    permuted.x = data.x[perm]
    permuted.edge_index = inverse[data.edge_index][:, bond_perm]
    permuted.edge_attr = data.edge_attr[bond_perm]
    out = model.encoder(data.x, data.edge_index, data.edge_attr, data.batch)
    out_p = model.encoder(permuted.x, permuted.edge_index, permuted.edge_attr, permuted.batch)
    for key in ("atom_from_atom", "atom_from_bond"):
        assert torch.allclose(out_p[key], out[key][perm], atol=1e-5)
    for key in ("bond_from_atom", "bond_from_bond"):
        assert torch.allclose(out_p[key], out[key][bond_perm], atol=1e-5)
    assert torch.allclose(model(permuted), model(data), atol=1e-5)


def test_random_hops_are_seeded_and_eval_uses_the_mean():
    encoder = _encoder(hops_mean=2.0, hops_std=1.5, hops_range=(1, 4))
    data = _batch(SMILES)
    args = (data.x, data.edge_index, data.edge_attr, data.batch)
    encoder.train()
    one = encoder(*args, generator=torch.Generator().manual_seed(5))
    two = encoder(*args, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(one[k], two[k]) for k in KEYS)
    outs = {
        encoder(*args, generator=g)["bond_from_bond"].sum().item()
        for g in [torch.Generator().manual_seed(1)]
        for _ in range(8)
    }
    assert len(outs) > 1  # different hop counts give different outputs
    encoder.eval()
    assert encoder.eval_hops() == 2
    plain, drawn = encoder(*args), encoder(*args, generator=torch.Generator().manual_seed(9))
    assert all(torch.equal(plain[k], drawn[k]) for k in KEYS)


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
    with pytest.raises(ValueError, match="views must be one of"):
        GroverEncoder(10, 5, hidden=16, heads=2, views="atoms")
    one_way = data.edge_index[:, ::2]
    with pytest.raises(ValueError, match="both directions"):
        encoder(data.x, one_way, data.edge_attr[::2], data.batch)


def _labelled(smiles):
    data = _batch(smiles)
    mols = [_mol(s) for s in smiles]
    atoms = [c for mol in mols for c in atom_contexts(mol)]
    bonds = [c for mol in mols for c in bond_contexts(mol)]
    vocab, bond_vocab = ContextVocabulary(atoms, 5), ContextVocabulary(bonds, 4)
    data.context = torch.tensor(vocab.encode(atoms))
    data.bond_context = torch.tensor(bond_vocab.encode(bonds)).repeat_interleave(2)
    data.motif = torch.tensor([motif_labels(mol) for mol in mols])
    return data, len(vocab), len(bond_vocab)


def test_pretraining_loss_covers_all_four_embedding_sets_and_reaches_every_parameter():
    data, contexts, bond_vocab = _labelled([*SMILES, "[Na+].[Cl-]"])  # one molecule without bonds
    model = GroverPretrainer(_encoder(), contexts, 85, bond_vocab)
    parts = model.loss(data)
    assert model.levels == dict(zip(KEYS, ["atom", "bond", "atom", "bond"], strict=True))
    assert parts["context_atom_from_bond"].shape == (data.num_nodes, 6)
    assert parts["context_bond_from_bond"].shape == (data.edge_index.shape[1], 5)
    assert parts["motif_bond_from_bond"].shape == (len(SMILES) + 1, 85)
    expected_context = (
        F.cross_entropy(parts["context_atom_from_atom"], data.context)
        + F.cross_entropy(parts["context_atom_from_bond"], data.context)
        + F.cross_entropy(parts["context_bond_from_atom"], data.bond_context)
        + F.cross_entropy(parts["context_bond_from_bond"], data.bond_context)
    )
    assert torch.allclose(parts["context"], expected_context)
    assert torch.allclose(parts["loss"], parts["context"] + parts["motif"])
    parts["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.encoder.edge_layers[0].qkv[0].message.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="bond_contexts"):
        GroverPretrainer(_encoder(), contexts, 85)


def test_node_view_keeps_the_earlier_two_atom_level_heads():
    data, contexts, _ = _labelled(SMILES)
    model = GroverPretrainer(_encoder(views="node"), contexts, 85)
    parts = model.loss(data)
    assert model.levels == {"node": "atom", "edge": "atom"}
    assert parts["context_edge"].shape == (data.num_nodes, 6)
    expected = F.cross_entropy(parts["context_node"], data.context) + F.cross_entropy(
        parts["context_edge"], data.context
    )
    assert torch.allclose(parts["context"], expected)
    regressor = GroverRegressor(model.encoder, head_hidden=8)
    assert len(regressor.heads) == 1 and regressor(data).shape == (len(SMILES), 1)


def test_regressor_averages_the_two_views_and_adds_the_disagreement_term():
    data = _batch(SMILES)
    torch.manual_seed(1)
    model = GroverRegressor(_encoder(), head_hidden=8).eval()
    node, edge = (p[:, 0] for p in model.predictions(data))
    assert torch.allclose(model(data)[:, 0], (node + edge) / 2)
    y = torch.randn(len(SMILES))
    expected = F.mse_loss(node, y) + F.mse_loss(edge, y) + 0.5 * F.mse_loss(node, edge)
    loss = model.loss(data, y, disagreement=0.5)
    assert torch.allclose(loss, expected)
    loss.backward()
    # only the aggregate2edge FFNs (bond-level outputs) are unused downstream, as in the paper
    unused = {name for name, p in model.named_parameters() if p.grad is None}
    assert unused and all(".edge_ffn." in name for name in unused)
    assert model.encoder.edge_layers[0].qkv[2].message.weight.grad.abs().sum() > 0


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
        ({"views": "line"}, "views must be"),
        ({"disagreement": -1.0}, "disagreement must be >= 0"),
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
    assert len(result.checks) == 6  # loss, atom context, bond context, motif, 2 budgets
    assert sorted(result.figures) == ["figures/pretraining.png", "figures/rmse_vs_labels.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"pretrain", "finetune"}
    assert result.metrics["molecules_pretrain"] + result.metrics["molecules_holdout"] == 120
    for key in KEYS:
        assert 0 <= result.metrics[f"holdout_motif_bce_{key}"]
    assert 0 <= result.metrics["holdout_bond_context_accuracy_bond_from_bond"] <= 1
