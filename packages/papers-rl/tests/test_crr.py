"""CRR: the advantage estimators, the filters f, the weighted BC loss, the policy TD target, learners."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.rl.crr import (
    EXPERIMENT,
    CategoricalPolicy,
    crr_advantage,
    crr_weights,
    policy_td_target,
    weighted_bc_loss,
)
from papers.rl.crr.experiment import PRESETS, Config, as_tensors, collect, evaluate_batched, train_offline

# ---- the advantage --------------------------------------------------------------------------------------


def test_exact_advantage_subtracts_the_policy_mean():
    q = torch.tensor([[1.0, 3.0], [2.0, 0.0]])
    probs = torch.tensor([[0.5, 0.5], [0.25, 0.75]])
    a = torch.tensor([1, 0])
    adv = crr_advantage(q, probs, a, "exact")
    torch.testing.assert_close(adv, torch.tensor([3.0 - 2.0, 2.0 - 0.5]))


def test_sampled_advantage_is_exact_for_a_deterministic_policy_and_unbiased_otherwise():
    q = torch.tensor([[1.0, 3.0, -2.0]])
    one_hot = torch.tensor([[0.0, 0.0, 1.0]])
    a = torch.tensor([0])
    torch.testing.assert_close(crr_advantage(q, one_hot, a, "mean", m=4), torch.tensor([3.0]))
    probs = torch.tensor([[0.2, 0.5, 0.3]]).repeat(20_000, 1)
    gen = torch.Generator().manual_seed(0)
    sampled = crr_advantage(q.repeat(20_000, 1), probs, a.repeat(20_000), "mean", m=4, generator=gen)
    exact = crr_advantage(q, probs[:1], a, "exact")
    assert abs(sampled.mean().item() - exact.item()) < 0.03
    assert sampled.std() > 0  # m = 4 samples: a noisy estimate of the same mean


def test_advantage_is_seeded_and_carries_no_gradient():
    q = torch.randn(8, 2, requires_grad=True)
    probs = torch.full((8, 2), 0.5)
    a = torch.zeros(8, dtype=torch.long)
    one = crr_advantage(q, probs, a, generator=torch.Generator().manual_seed(3))
    two = crr_advantage(q, probs, a, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(one, two)
    assert not one.requires_grad


def test_advantage_rejects_bad_shapes_and_options():
    with pytest.raises(ValueError, match="must both be"):
        crr_advantage(torch.zeros(4, 2), torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="estimator must be one of"):
        crr_advantage(torch.zeros(4, 2), torch.full((4, 2), 0.5), torch.zeros(4), "median")
    with pytest.raises(ValueError, match="m must be"):
        crr_advantage(torch.zeros(4, 2), torch.full((4, 2), 0.5), torch.zeros(4), m=0)


# ---- the filters and the loss ---------------------------------------------------------------------------


def test_binary_exp_and_bc_weights():
    adv = torch.tensor([-1.0, 0.0, 0.5, 10.0])
    torch.testing.assert_close(crr_weights(adv, "binary"), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    expected = torch.tensor([np.exp(-1.0), 1.0, np.exp(0.5), 20.0], dtype=torch.float32)
    torch.testing.assert_close(crr_weights(adv, "exp", beta=1.0), expected)  # exp(10) clipped at 20
    torch.testing.assert_close(crr_weights(adv, "exp", beta=2.0)[2], torch.tensor(float(np.exp(0.25))))
    torch.testing.assert_close(crr_weights(adv, "bc"), torch.ones(4))
    with pytest.raises(ValueError, match="weighting must be one of"):
        crr_weights(adv, "softmax")
    with pytest.raises(ValueError, match="beta and max_weight must be > 0"):
        crr_weights(adv, "exp", beta=0.0)


def test_weighted_bc_loss_value_and_gradient():
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0]], requires_grad=True)
    a = torch.tensor([0, 1])
    w = torch.tensor([1.0, 0.0])  # the second sample is filtered out
    loss = weighted_bc_loss(logits, a, w)
    torch.testing.assert_close(loss, torch.tensor(np.log(2.0) / 2, dtype=torch.float32))
    loss.backward()
    assert torch.all(logits.grad[1] == 0)  # a zero weight gives no gradient
    # d(-log softmax_0)/d logits = softmax - onehot, over the batch of 2
    torch.testing.assert_close(logits.grad[0], torch.tensor([-0.25, 0.25]))
    with pytest.raises(ValueError, match="need logits"):
        weighted_bc_loss(torch.zeros(3, 2), torch.zeros(2), torch.zeros(2))


def test_filtered_bc_recovers_the_good_action_that_plain_bc_averages_away():
    torch.manual_seed(0)
    pi = CategoricalPolicy(1, 2, hidden=(8,))
    s = torch.zeros(200, 1)
    a = torch.tensor([0, 1] * 100)  # half good (1), half bad (0)
    q = torch.tensor([[0.0, 1.0]]).repeat(200, 1)
    opt = torch.optim.Adam(pi.parameters(), lr=0.05)
    for _ in range(100):
        probs = torch.softmax(pi(s), -1).detach()
        w = crr_weights(crr_advantage(q, probs, a, "exact"), "binary")
        opt.zero_grad()
        weighted_bc_loss(pi(s), a, w).backward()
        opt.step()
    assert torch.softmax(pi(s[:1]), -1)[0, 1] > 0.95


def test_policy_td_target_uses_the_expectation_under_pi_and_stops_at_termination():
    next_q = torch.tensor([[2.0, 4.0], [2.0, 4.0]])
    next_probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    y = policy_td_target(torch.ones(2), torch.tensor([0.0, 1.0]), next_q, next_probs, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 3.0, 1.0]))
    with pytest.raises(ValueError, match="rewards and terminated"):
        policy_td_target(torch.ones(3), torch.zeros(3), next_q, next_probs, 0.5)


# ---- data, evaluation and learning ------------------------------------------------------------------------


def test_collect_gives_exactly_n_transitions_with_time_limit_cuts_not_terminal():
    rng = np.random.default_rng(0)
    data = collect("CartPole-v1", 300, lambda obs: rng.integers(0, 2, size=len(obs)), seed=0, num_envs=4)
    assert data["obs"].shape == (300, 4) and data["next_obs"].shape == (300, 4)
    assert data["rewards"].shape == (300,) and np.all(data["rewards"] == 1.0)
    # a random CartPole policy falls over in ~22 steps: terminal flags appear, and every terminal
    # transition has a next state outside the allowed pole angle or cart position
    term = data["terminated"]
    assert 0 < term.sum() < 300
    bad = (np.abs(data["next_obs"][term, 2]) > 0.2094) | (np.abs(data["next_obs"][term, 0]) > 2.4)
    assert bad.all()
    # the last vector step may be cut at n: up to num_envs finished episodes lie past the cut
    assert term.sum() <= len(data["episode_returns"]) <= term.sum() + 4


def test_batched_evaluation_matches_episode_seeds():
    def left(obs):
        return torch.zeros(len(obs), dtype=torch.long)

    one = evaluate_batched("CartPole-v1", left, episodes=3, seed=5)
    two = evaluate_batched("CartPole-v1", left, episodes=3, seed=5)
    assert one == two and all(5 <= r <= 15 for r in one)


def _toy_data(n: int = 512) -> dict:
    rng = np.random.default_rng(0)
    data = collect("CartPole-v1", n, lambda obs: rng.integers(0, 2, size=len(obs)), seed=0, num_envs=4)
    return as_tensors({k: v for k, v in data.items() if k != "episode_returns"}, 2)


@pytest.mark.parametrize("method", ["bc", "crr_binary", "crr_exp", "dqn"])
def test_train_offline_is_deterministic_under_a_seed(method):
    config = Config(updates=20, batch_size=16, hidden=(8,), target_update_interval=5, eval_interval=10,
                    eval_episodes=1, final_episodes=1)  # fmt: skip
    data = _toy_data()
    one, two = (train_offline(method, data, config, seed=1) for _ in range(2))
    assert one["history"] == two["history"] and one["final_returns"] == two["final_returns"]
    assert one["history"]["eval_update"] == [0, 10, 20]


def test_train_offline_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="method must be one of"):
        train_offline("cql", _toy_data(64), Config(), seed=0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"updates": 0}, "updates must be >= 1"), ({"random_fraction": 1.5}, "random_fraction must be in"),
     ({"advantage": "median"}, "advantage must be one of"), ({"gamma": 1.0}, "gamma must be in"),
     ({"beta": 0.0}, "beta must be > 0"), ({"hidden": ()}, "hidden needs")],
)  # fmt: skip
def test_config_rejects_bad_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        Config(**overrides).validate()


def test_presets_are_valid():
    for preset in PRESETS.values():
        Config(**preset).validate()


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert {"bc_final_return", "crr_binary_final_return", "crr_exp_final_return", "dqn_final_return",
            "dataset_mean_return"} <= set(result.metrics)  # fmt: skip
    assert (run_dir / "figures" / "curves.png").is_file()
    assert len(result.checks) == 6
