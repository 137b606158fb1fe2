"""ORGAN: discriminator shapes and errors, highway and loss algebra, the objective-weighted reward with
the uniqueness penalty, Monte-Carlo Q estimates, the policy gradient, the lagged rollout copy, sample
metrics, config errors and a deterministic smoke run."""

from __future__ import annotations

import json
import math

import pytest
import torch
from papers_testing import untimed

from papers.chem.organ import (
    Discriminator,
    Highway,
    QedObjective,
    discriminator_loss,
    fingerprints,
    lagged_update,
    mean_pairwise_distance,
    organ_reward,
    policy_gradient_loss,
    q_values,
    repeat_counts,
    rollout_points,
    sample_metrics,
    to_smiles,
)
from papers.chem.reinvent.model import END_ID, PAD_ID, SmilesRNN


def test_discriminator_shapes_probabilities_and_errors():
    torch.manual_seed(0)
    d = Discriminator(12, 20, embedding=8, widths=(1, 3, 20), filters=(4, 5, 6), dropout=0.5)
    tokens = torch.randint(0, 12, (7, 20))
    assert d(tokens).shape == (7,)
    p = d.prob_real(tokens)
    assert p.shape == (7,) and ((p > 0) & (p < 1)).all()
    assert torch.equal(p, d.prob_real(tokens))  # eval mode: no dropout noise
    assert d.training  # prob_real restores the mode
    with pytest.raises(ValueError, match=r"\[batch, 20\]"):
        d(tokens[:, :10])
    with pytest.raises(ValueError, match="LongTensor"):
        d(tokens.float())
    with pytest.raises(ValueError, match="exceeds max_len"):
        Discriminator(12, 10, widths=(3, 15), filters=(2, 2))
    with pytest.raises(ValueError, match="equal length"):
        Discriminator(12, 20, widths=(1, 2), filters=(3,))
    d.zero_grad()
    discriminator_loss(d, tokens[:3], tokens[3:], l2=0.2).backward()
    assert all(p.grad is not None for p in d.parameters())


def test_highway_is_the_identity_when_the_gate_is_shut():
    torch.manual_seed(0)
    layer = Highway(5, gate_bias=-1e4)
    x = torch.randn(3, 5)
    assert torch.allclose(layer(x), x)
    layer = Highway(5)
    with torch.no_grad():
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(1e4)  # gate fully open: relu(W_H x + b_H)
    assert torch.allclose(layer(x), torch.relu(layer.transform(x)))


def test_discriminator_loss_matches_bce_plus_half_l2():
    torch.manual_seed(0)
    d = Discriminator(10, 12, embedding=4, widths=(2,), filters=(3,), dropout=0.0)
    real, fake = torch.randint(0, 10, (4, 12)), torch.randint(0, 10, (5, 12))
    logits = d(torch.cat([real, fake]))
    p = torch.sigmoid(logits)
    bce = -(torch.log(p[:4]).sum() + torch.log(1 - p[4:]).sum()) / 9
    l2 = 0.5 * (d.out.weight.pow(2).sum() + d.out.bias.pow(2).sum())
    assert torch.allclose(discriminator_loss(d, real, fake, l2=0.3), bce + 0.3 * l2, atol=1e-6)


def test_reward_mixes_d_and_objective_and_divides_by_repeats():
    tokens = torch.tensor([[3, 4, END_ID], [3, 4, END_ID], [5, END_ID, PAD_ID], [3, 4, END_ID]])
    assert repeat_counts(tokens).tolist() == [3, 3, 1, 3]
    objective = torch.tensor([0.9, 0.9, 0.2, 0.9])
    realness = torch.tensor([0.1, 0.1, 0.8, 0.1])
    reward = organ_reward(tokens, objective, realness, 0.5)
    expected = torch.tensor([0.5 / 3, 0.5 / 3, 0.5, 0.5 / 3])
    assert torch.allclose(reward, expected)
    assert torch.allclose(organ_reward(tokens, objective, None, 0.0, unique_penalty=False), objective)
    assert torch.allclose(organ_reward(tokens, objective, realness, 1.0, unique_penalty=False), realness)
    with pytest.raises(ValueError, match="lambda must be in"):
        organ_reward(tokens, objective, realness, 1.5)
    with pytest.raises(ValueError, match="needs D"):
        organ_reward(tokens, objective, None, 0.5)
    with pytest.raises(ValueError, match="objective must have shape"):
        organ_reward(tokens, objective[:2], None, 0.0)


def test_rollout_points():
    assert rollout_points(40, 8) == [8, 16, 24, 32]
    assert rollout_points(5, 1) == [1, 2, 3, 4]
    assert rollout_points(5, 10) == []
    with pytest.raises(ValueError, match="every must be >= 1"):
        rollout_points(5, 0)


def _toy_generator(seed=0, vocab=6):
    torch.manual_seed(seed)
    return SmilesRNN(vocab, embedding=4, hidden=8, layers=1)


def test_q_values_keep_prefixes_and_reduce_to_the_reward_after_the_end():
    g = _toy_generator()
    tokens = g.sample(6, 12, generator=torch.Generator().manual_seed(1))
    seen = []

    def reward_fn(batch):  # a per-sequence reward with no batch interaction: count of token 3
        seen.append(batch.clone())
        return (batch == 3).float().sum(1)

    q, final = q_values(g, tokens, reward_fn, rollouts=3, every=4, generator=torch.Generator().manual_seed(2))
    assert q.shape == tokens.shape and final.shape == (6,)
    assert torch.equal(final, (tokens == 3).float().sum(1))
    # the rollouts at t = 4 and t = 8 keep the prefix (3 rollout batches each, after the final batch)
    for i, t in enumerate((4, 8)):
        for batch in seen[1 + 3 * i : 4 + 3 * i]:
            masked = tokens[:, :t] * (
                torch.cumsum((tokens[:, :t] == END_ID).long(), 1) - (tokens[:, :t] == END_ID).long() == 0
            )
            assert torch.equal(batch[:, :t], masked)
    # positions past the last rollout point take R(x); positions 1..4 share Q at t = 4
    assert torch.equal(q[:, 8:], final[:, None].expand(-1, 4))
    assert torch.equal(q[:, 0], q[:, 3])
    # a sequence already ended inside the prefix: every rollout is the sequence itself, Q = R(x)
    lengths = (tokens != PAD_ID).sum(1)
    for b in range(6):
        if (tokens[b] == END_ID).any() and lengths[b] <= 4:
            assert torch.allclose(q[b], final[b].expand(12))
    again, _ = q_values(g, tokens, reward_fn, rollouts=3, every=4, generator=torch.Generator().manual_seed(2))
    assert torch.equal(q, again)
    with pytest.raises(ValueError, match="rollouts must be >= 1"):
        q_values(g, tokens, reward_fn, rollouts=0, every=4)


def test_q_is_unbiased_for_a_reward_of_the_prefix_only():
    """R depends only on the first token: a rollout from any prefix of length >= 1 returns R exactly."""
    g = _toy_generator(3)
    tokens = g.sample(5, 10, generator=torch.Generator().manual_seed(0))
    q, final = q_values(g, tokens, lambda b: (b[:, 0] == 4).float(), rollouts=2, every=1)
    assert torch.equal(q, final[:, None].expand_as(q))


def test_policy_gradient_loss_is_q_weighted_likelihood():
    g = _toy_generator()
    tokens = g.sample(4, 9, generator=torch.Generator().manual_seed(0))
    ones = torch.ones(tokens.shape)
    assert torch.allclose(policy_gradient_loss(g, tokens, ones), -g.log_likelihood(tokens).mean())
    q = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(1))
    loss = policy_gradient_loss(g, tokens, q)
    g.zero_grad()
    loss.backward()
    grad = g.head.bias.grad.clone()
    g.zero_grad()
    (-(g.token_log_probs(tokens) * q).sum(1).mean()).backward()
    assert torch.allclose(grad, g.head.bias.grad)
    with pytest.raises(ValueError, match="shape of tokens"):
        policy_gradient_loss(g, tokens, q[:, :3])


def test_policy_gradient_raises_the_expected_reward():
    """Reward 1 when the first token is 3: a few REINFORCE steps raise its probability."""
    g = _toy_generator(1)
    optimizer = torch.optim.Adam(g.parameters(), lr=0.05)
    gen = torch.Generator().manual_seed(0)

    def p_first():
        with torch.no_grad():
            logits, _ = g(torch.ones(1, 1, dtype=torch.long))
        return torch.softmax(logits[0, 0], -1)[3].item()

    before = p_first()
    for _ in range(20):
        x = g.sample(32, 6, generator=gen)
        q, _ = q_values(g, x, lambda b: (b[:, 0] == 3).float(), rollouts=1, every=6, generator=gen)
        optimizer.zero_grad()
        policy_gradient_loss(g, x, q).backward()
        optimizer.step()
    assert p_first() > before + 0.2


def test_lagged_update():
    a, b = _toy_generator(0), _toy_generator(1)
    old = [p.clone() for p in a.parameters()]
    lagged_update(a, b, 0.8)
    for p_new, p_old, p_src in zip(a.parameters(), old, b.parameters(), strict=True):
        assert torch.allclose(p_new, 0.8 * p_old + 0.2 * p_src)
    lagged_update(a, b, 0.0)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    with pytest.raises(ValueError, match="rate must be in"):
        lagged_update(a, b, 1.0)


def test_qed_objective_scores_valid_and_zeroes_invalid():
    from rdkit import Chem
    from rdkit.Chem import QED

    objective = QedObjective()
    values = objective(["c1ccccc1", "C1CC", "", "CC(=O)Oc1ccccc1C(=O)O"])
    assert values[0].item() == pytest.approx(QED.qed(Chem.MolFromSmiles("c1ccccc1")))
    assert values[1].item() == 0.0 and values[2].item() == 0.0
    assert 0 < values[3].item() < 1
    assert objective.qed("C1CC") is None and objective.qed("") is None
    assert set(objective.cache) == {"c1ccccc1", "C1CC", "", "CC(=O)Oc1ccccc1C(=O)O"}


def test_to_smiles_marks_unterminated_rows_invalid():
    from papers.chem.data import Vocabulary

    vocab = Vocabulary.from_smiles(["CCO"])
    c, o = vocab.index["C"], vocab.index["O"]
    tokens = torch.tensor([[c, c, o, END_ID, PAD_ID], [c, c, c, c, c]])
    assert to_smiles(vocab, tokens) == ["CCO", ""]


def test_diversity_and_sample_metrics():
    from rdkit import DataStructs

    fps = fingerprints(["CCO", "CCO", "c1ccccc1"])
    assert mean_pairwise_distance(fps[:2]) == 0.0
    d = 1 - DataStructs.TanimotoSimilarity(fps[0], fps[2])
    assert mean_pairwise_distance(fps) == pytest.approx((0 + d + d) / 3)
    assert math.isnan(mean_pairwise_distance(fps[:1]))
    objective = QedObjective()
    m = sample_metrics(["CCO", "OCC", "c1ccccc1", "C1CC", ""], objective, corpus={"CCO"})
    assert m["validity"] == pytest.approx(3 / 5)
    assert m["uniqueness"] == pytest.approx(2 / 3)  # OCC is CCO
    assert m["novelty"] == pytest.approx(1 / 3)
    assert m["qed_mean"] == pytest.approx((2 * objective.qed("CCO") + objective.qed("c1ccccc1")) / 3)
    assert m["diversity"] == pytest.approx((0 + d + d) / 3)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"rl_steps": 0}, "rl_steps must be >= 1"),
        ({"rollouts": 0}, "rollouts must be >= 1"),
        ({"lambdas": (0.5,)}, "lambdas must hold 0.0"),
        ({"lambdas": (0.0, 1.5)}, "every lambda must lie in"),
        ({"rollout_update": 1.0}, "rollout_update"),
        ({"d_widths": (1, 50), "d_filters": (2, 2)}, "exceeds max_len"),
        ({"d_widths": (1, 2)}, "same non-zero length"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"molecules": 1}, "molecules"),
    ],
)
def test_bad_config_values(override, message):
    from papers.chem.organ.experiment import Config

    with pytest.raises(ValueError, match=message):
        Config(**override).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.chem.organ import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert json.dumps(untimed(result.metrics)) == json.dumps(untimed(again.metrics))
    assert len(result.checks) == 3
    assert result.figures == ["figures/rl_curves.png"]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"data", "pretrain", "evaluate_mle", "rl", "organ_0.5"}
    for name in ("mle", "rl", "organ_0.5"):
        assert 0 <= result.metrics[f"{name}_validity"] <= 1
