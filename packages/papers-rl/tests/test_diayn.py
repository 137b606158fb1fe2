"""DIAYN: the point-mass env, the pseudo-reward, SAC's pieces, measurements, determinism and a smoke run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from papers.core.errors import PapersError
from papers.rl.diayn import (
    DIAYN,
    EXPERIMENT,
    SAC,
    BatchPointMass,
    Discriminator,
    PointMassEnv,
    TanhGaussianActor,
    TwinQ,
    coverage,
    diayn_reward,
    point_mass_step,
    skill_input,
    tanh_gaussian_log_prob,
)
from papers.rl.diayn.experiment import PRESETS, Config, goal_episodes, train_diayn
from papers.rl.diayn.model import polyak_update

TINY = dict(total_steps=320, num_envs=8, learning_starts=160, batch_size=16, hidden=(8,), eval_interval=160,
            eval_episodes_per_skill=1, episode_steps=10, n_skills=4, buffer_size=400)  # fmt: skip


# ---- the environment --------------------------------------------------------------------------------------


@pytest.mark.parametrize("goal", [None, (0.5, -0.5)])
def test_point_mass_passes_gymnasium_check_env(goal):
    env = PointMassEnv(goal=goal)
    check_env(env, skip_render_check=False)
    assert env.render().shape == (64, 64, 3)


def test_point_mass_step_moves_clips_the_action_and_stops_at_the_walls():
    s = point_mass_step(np.array([0.0, 0.95]), np.array([0.5, 3.0]), max_step=0.1, bound=1.0)
    np.testing.assert_allclose(s, [0.05, 1.0], atol=1e-6)  # action clipped to 1, then the wall at y = 1
    batch = point_mass_step(np.zeros((3, 2)), np.array([[1, 0], [0, -1], [-1, -1]]), 0.2, 1.0)
    np.testing.assert_allclose(batch, [[0.2, 0.0], [0.0, -0.2], [-0.2, -0.2]], atol=1e-6)
    with pytest.raises(ValueError, match="must both be"):
        point_mass_step(np.zeros(2), np.zeros(3), 0.1, 1.0)


def test_env_truncates_at_the_time_limit_and_terminates_at_the_goal():
    env = PointMassEnv(max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        _, reward, terminated, truncated, _ = env.step(np.ones(2, dtype=np.float32))
    assert reward == 0.0 and truncated and not terminated
    env = PointMassEnv(goal=(0.3, 0.0), goal_radius=0.05, max_steps=10)
    env.reset(seed=0)
    rewards = [env.step(np.array([1.0, 0.0], dtype=np.float32))[1:3] for _ in range(3)]
    assert rewards == [(0.0, False), (0.0, False), (1.0, True)]
    with pytest.raises(ValueError, match="goal must be a point"):
        PointMassEnv(goal=(2.0, 0.0))
    with pytest.raises(ValueError, match="max_step"):
        PointMassEnv(max_step=0.0)


def test_batch_env_matches_the_gymnasium_env_and_autoresets():
    rng = np.random.default_rng(0)
    batch = BatchPointMass(3, max_steps=4)
    envs = [PointMassEnv(max_steps=4) for _ in range(3)]
    positions = batch.reset()
    singles = np.stack([env.reset(seed=i)[0] for i, env in enumerate(envs)])
    np.testing.assert_array_equal(positions, singles)
    for _ in range(4):
        actions = rng.uniform(-1, 1, size=(3, 2)).astype(np.float32)
        next_obs, _, terminated, truncated, final = batch.step(actions)
        outs = [env.step(a) for env, a in zip(envs, actions, strict=True)]
        np.testing.assert_allclose(final, np.stack([o[0] for o in outs]), atol=1e-6)
        assert list(truncated) == [o[3] for o in outs] and not terminated.any()
    assert truncated.all()
    np.testing.assert_array_equal(next_obs, 0.0)  # already the first observation of the next episode
    assert np.abs(final).max() > 0


# ---- the pseudo-reward and the discriminator ------------------------------------------------------------


def test_pseudo_reward_is_log_q_minus_log_p():
    skills = torch.tensor([0, 1, 2, 3])
    # a discriminator that cannot tell skills apart earns 0; a certain and right one earns log K
    torch.testing.assert_close(diayn_reward(torch.zeros(4, 4), skills), torch.zeros(4))
    certain = 50.0 * torch.eye(4)
    torch.testing.assert_close(diayn_reward(certain, skills), torch.full((4,), math.log(4)))
    logits = torch.randn(4, 4)
    expected = torch.log_softmax(logits, -1)[torch.arange(4), skills] - math.log(1 / 4)
    torch.testing.assert_close(diayn_reward(logits, skills), expected)
    # one skill: q(z|s) = p(z) = 1, so the reward vanishes whatever the logits
    torch.testing.assert_close(
        diayn_reward(torch.randn(5, 1), torch.zeros(5, dtype=torch.long)), torch.zeros(5)
    )
    with pytest.raises(ValueError, match="logits must be"):
        diayn_reward(torch.zeros(4, 3), torch.zeros(2, dtype=torch.long))


def test_skill_input_appends_a_one_hot_and_rejects_bad_skills():
    x = skill_input(torch.ones(2, 2), torch.tensor([2, 0]), 3)
    torch.testing.assert_close(x, torch.tensor([[1.0, 1, 0, 0, 1], [1, 1, 1, 0, 0]]))
    with pytest.raises(ValueError, match="skills must be in"):
        skill_input(torch.ones(2, 2), torch.tensor([3, 0]), 3)
    with pytest.raises(ValueError, match="states must be"):
        skill_input(torch.ones(2), torch.tensor([0, 0]), 3)


def test_discriminator_learns_to_tell_separated_skills_apart():
    torch.manual_seed(0)
    centres = torch.tensor([[0.8, 0.0], [0.0, 0.8], [-0.8, 0.0], [0.0, -0.8]])
    skills = torch.arange(4).repeat(64)
    states = centres[skills] + 0.1 * torch.randn(256, 2)
    disc = Discriminator(2, 4, hidden=(32,))
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    for _ in range(150):
        loss, accuracy = disc.loss(states, skills)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert accuracy > 0.95
    assert diayn_reward(disc(states), skills).mean() > 0.9 * math.log(4)


# ---- soft actor-critic ------------------------------------------------------------------------------------


def test_tanh_gaussian_log_prob_matches_the_change_of_variables():
    from torch.distributions import Normal, TransformedDistribution
    from torch.distributions.transforms import TanhTransform

    mu, log_std = torch.tensor([[0.3, -1.0]]), torch.tensor([[-0.5, 0.2]])
    u = torch.tensor([[0.7, -2.5]])
    reference = TransformedDistribution(Normal(mu, log_std.exp()), TanhTransform()).log_prob(torch.tanh(u))
    torch.testing.assert_close(
        tanh_gaussian_log_prob(u, mu, log_std), reference.sum(-1), atol=1e-4, rtol=1e-4
    )
    actor = TanhGaussianActor(4, 2, hidden=(8,))
    a, log_pi = actor(torch.randn(16, 4))
    assert a.shape == (16, 2) and log_pi.shape == (16,) and a.abs().max() < 1
    a1, _ = actor(torch.ones(1, 4), deterministic=True)
    a2, _ = actor(torch.ones(1, 4), deterministic=True)
    torch.testing.assert_close(a1, a2)


def test_twin_q_heads_are_two_independent_mlps():
    torch.manual_seed(0)
    q = TwinQ(3, 2, hidden=(5,))
    x, a = torch.randn(4, 3), torch.randn(4, 2)
    q1, q2 = q(x, a)
    xa = torch.cat([x, a], -1)
    for head, value in enumerate((q1, q2)):
        h = torch.relu(xa @ q.weights[0][head] + q.biases[0][head])
        torch.testing.assert_close(value, (h @ q.weights[1][head] + q.biases[1][head]).squeeze(-1))
    q1.sum().backward()
    assert q.weights[0].grad[1].abs().sum() == 0 and q.weights[0].grad[0].abs().sum() > 0
    assert not torch.allclose(q1, q2)


def test_td_target_stops_at_termination_and_polyak_averages():
    torch.manual_seed(0)
    sac = SAC(3, 2, hidden=(8,), gamma=0.9, alpha=0.1)
    y = sac.td_target(torch.tensor([1.0, 2.0]), torch.randn(2, 3), torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(y, torch.tensor([1.0, 2.0]))
    target, online = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = [p.clone() for p in target.parameters()]
    polyak_update(target, online, 0.25)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * o)
    with pytest.raises(ValueError, match="tau in"):
        SAC(3, 2, tau=0.0)


def test_diayn_update_changes_the_policy_critic_and_discriminator():
    torch.manual_seed(0)
    agent = DIAYN(2, 2, n_skills=4, hidden=(16,))
    skills = torch.randint(0, 4, (32,))
    x = skill_input(torch.rand(32, 2), skills, 4)
    next_x = skill_input(torch.rand(32, 2), skills, 4)
    before = {name: p.clone() for name, p in agent.named_parameters()}
    stats = agent.update(x, torch.rand(32, 2) * 2 - 1, next_x, torch.zeros(32))
    changed = {name.split(".")[0] + "." + name.split(".")[1] for name, p in agent.named_parameters()
               if not torch.equal(p, before[name])}  # fmt: skip
    assert {"sac.actor", "sac.critic", "discriminator.net"} <= changed
    assert not any(name.startswith("sac.critic_target") and not torch.allclose(p, before[name], atol=0.1)
                   for name, p in agent.named_parameters())  # fmt: skip
    assert {"pseudo_reward", "discriminator_accuracy", "critic_loss", "entropy"} <= set(stats)
    states, decoded = agent.split(next_x)
    torch.testing.assert_close(decoded, skills)
    with pytest.raises(ValueError, match="n_skills must be"):
        DIAYN(2, 2, n_skills=0)


# ---- measurements, the hierarchy, determinism ---------------------------------------------------------


def test_coverage_counts_distinct_cells():
    assert coverage(np.zeros((3, 5, 2)), cells=4, bound=1.0) == 1 / 16
    corners = np.array([[[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [1.0, -1.0]]])
    assert coverage(corners, cells=4, bound=1.0) == 4 / 16
    grid = np.stack(np.meshgrid(np.linspace(-0.9, 0.9, 10), np.linspace(-0.9, 0.9, 10)), -1)
    assert coverage(grid, cells=10, bound=1.0) == 1.0


def test_goal_episodes_stop_at_the_goal_and_reach_it_with_the_right_skill():
    config = Config(goal_x=0.5, goal_y=0.0, goal_radius=0.1, goal_episode_steps=20, skill_steps=5)
    east = lambda positions, skills: np.where(skills[:, None] == 0, [[1.0, 0.0]], [[-1.0, 0.0]])  # noqa: E731
    choose = lambda positions: np.array([0, 1])  # noqa: E731
    states, reached, ended, decisions = goal_episodes(choose, east, 2, config)
    assert list(reached) == [True, False]
    assert ended[0] == 4 and ended[1] == 20  # 0.4 is within 0.1 of 0.5
    np.testing.assert_allclose(states[0, -1], states[0, 3])  # it stays where it ended
    assert len(decisions) == 4  # one decision every 5 steps while an episode is still running


def test_same_seed_same_run_other_seed_differs():
    config = Config(**TINY)
    a, b, c = (train_diayn(config, seed)[0] for seed in (1, 1, 2))
    assert a["history"] == b["history"] and a["eval_states"] == b["eval_states"]
    assert a["history"]["critic_loss"] != c["history"]["critic_loss"]
    assert a["gradient_steps"] == (320 - 160) // 8 + 1


# ---- configuration and the experiment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"n_skills": 0}, "n_skills must be >= 1"),
        ({"learning_starts": 50_000}, "learning_starts .* must be < total_steps"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"tau": 0.0}, "tau must be in"),
        ({"alpha": -0.1}, "alpha must be >= 0"),
        ({"lr": 0.0}, "lr must be > 0"),
        ({"hidden": ()}, "hidden needs at least one layer"),
        ({"goal_x": 3.0}, "must lie inside the arena"),
        ({"max_step": 2.0}, "max_step"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        Config(**overrides).validate()


def test_bad_override_is_a_one_line_cli_error():
    with pytest.raises(PapersError, match="invalid config for diayn: n_skills must be >= 1"):
        EXPERIMENT.make_config("default", {"n_skills": "0"})
    assert set(PRESETS) == {"smoke", "default", "full"}


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert {"diayn_accuracy", "chance_accuracy", "diayn_coverage", "random_coverage", "single_skill_coverage",
            "meta_final_success", "scratch_final_success"} <= set(result.metrics)  # fmt: skip
    for name in ("skills", "discriminator", "hierarchy"):
        assert (run_dir / "figures" / f"{name}.png").is_file()
    assert len(result.checks) == 5
