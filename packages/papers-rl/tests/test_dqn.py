"""DQN: the TD target at termination vs truncation, epsilon schedule, target updates, learning, Atari."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.core.errors import PapersError
from papers.rl.agents import IDENTITY_ID, AtariLives, as_policy, evaluate, make_env, make_vector_env
from papers.rl.dqn import EXPERIMENT, NatureCNN, OneHotQNetwork, td_loss, td_target, update_target
from papers.rl.dqn.experiment import (
    PRESETS,
    Config,
    env_wrappers,
    epsilon_schedule,
    replay_transition,
    train_dqn,
)

# A tiny agent that learns papers/Identity-v0 (optimal return 8, random 2) in about a second.
IDENTITY = dict(env_id=IDENTITY_ID, total_steps=1_500, buffer_size=1_500, learning_starts=200,
                train_frequency=4, gradient_steps=1, batch_size=32, learning_rate=5e-3, hidden=(32,),
                target_update_interval=50, exploration_fraction=0.4, end_epsilon=0.02, gamma=0.5,
                eval_interval=500, eval_interval_episodes=3, eval_episodes=10, eval_max_steps=50)  # fmt: skip


# ---- the TD target ----------------------------------------------------------------------------------------


def test_td_target_does_not_bootstrap_at_termination_and_does_at_truncation():
    rewards = torch.tensor([1.0, 1.0, 0.5])
    terminated = torch.tensor([1.0, 0.0, 0.0])  # row 1 is a time-limit cut: terminated = 0
    next_q = torch.tensor([[3.0, 7.0], [2.0, 4.0], [-1.0, -2.0]])
    y = td_target(rewards, terminated, next_q, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0 + 0.9 * 4.0, 0.5 - 0.9]))


def test_double_q_target_takes_the_online_argmax_and_the_target_value():
    next_target = torch.tensor([[1.0, 5.0], [2.0, 0.0]])
    next_online = torch.tensor([[9.0, 0.0], [0.0, 9.0]])  # picks action 0, then 1
    y = td_target(torch.zeros(2), torch.zeros(2), next_target, 0.5, next_q_online=next_online)
    torch.testing.assert_close(y, torch.tensor([0.5, 0.0]))


def test_td_target_gives_no_gradient_and_checks_shapes():
    next_q = torch.ones(4, 2, requires_grad=True)
    assert not td_target(torch.zeros(4), torch.zeros(4), next_q, 0.9).requires_grad
    with pytest.raises(ValueError, match="next_q_target must be"):
        td_target(torch.zeros(4), torch.zeros(4), torch.ones(3, 2), 0.9)


def test_huber_is_quadratic_inside_one_and_linear_outside():
    q, y = torch.tensor([0.0, 0.0]), torch.tensor([0.5, 3.0])
    torch.testing.assert_close(td_loss(q, y, "huber"), torch.tensor((0.5 * 0.25 + (3.0 - 0.5)) / 2))
    torch.testing.assert_close(td_loss(q, y, "mse"), torch.tensor((0.25 + 9.0) / 2))
    with pytest.raises(ValueError, match="loss must be one of"):
        td_loss(q, y, "l1")


def test_truncation_is_stored_with_its_true_last_observation_and_not_as_terminal():
    config = Config()
    envs = make_vector_env("CartPole-v1", 1, seed=0, max_episode_steps=3)
    envs.reset(seed=0)
    for _ in range(3):
        next_obs, rewards, terminated, truncated, infos = envs.step(np.array([0]))
    assert truncated[0] and not terminated[0]
    stored_rewards, stored_next, done = replay_transition(next_obs, rewards, terminated, infos, config)
    assert not done[0]
    np.testing.assert_array_equal(stored_next[0], infos["final_obs"][0])
    assert not np.array_equal(stored_next[0], next_obs[0])  # next_obs is already the reset observation
    envs.close()


def test_termination_is_stored_as_terminal_and_atari_life_loss_too():
    envs = make_vector_env(IDENTITY_ID, 1, seed=0)
    envs.reset(seed=0)
    for _ in range(8):  # Identity terminates after 8 steps
        next_obs, rewards, terminated, truncated, infos = envs.step(np.array([0]))
    _, _, done = replay_transition(next_obs, rewards, terminated, infos, Config(env_id=IDENTITY_ID))
    assert terminated[0] and done[0]
    envs.close()
    infos = {"life_lost": np.array([True, False]), "_life_lost": np.array([True, True])}
    atari = Config(env_id="ALE/Breakout-v5", clip_rewards=True)
    rewards, _, done = replay_transition(np.zeros((2, 1)), np.array([4.0, -2.0]), np.zeros(2), infos, atari)
    np.testing.assert_array_equal(done, [True, False])
    np.testing.assert_array_equal(rewards, [1.0, -1.0])  # clipped to the sign
    _, _, done = replay_transition(np.zeros((2, 1)), np.zeros(2), np.zeros(2), infos,
                                   Config(env_id="ALE/Breakout-v5", episodic_life=False))  # fmt: skip
    assert not done.any()


# ---- epsilon schedule and target network ------------------------------------------------------------------


def test_epsilon_schedule_is_linear_then_flat():
    config = Config(total_steps=10_000, start_epsilon=1.0, end_epsilon=0.05, exploration_fraction=0.5)
    eps = epsilon_schedule(config)
    assert eps(0) == 1.0
    assert eps(2_500) == pytest.approx(0.525)
    assert eps(5_000) == pytest.approx(0.05)
    assert eps(9_999) == pytest.approx(0.05)


def test_hard_and_polyak_target_updates():
    torch.manual_seed(0)
    online, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    update_target(target, online, tau=0.25)
    for t, b, o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(t, 0.25 * o + 0.75 * b)
    update_target(target, online)
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        assert torch.equal(t, o)
    with pytest.raises(ValueError, match="tau must be in"):
        update_target(target, online, tau=0.0)


def test_agent_updates_the_target_every_interval_and_not_without_one():
    config = Config(**IDENTITY | {"total_steps": 400, "learning_starts": 100, "target_update_interval": 40,
                                  "eval_interval": 400, "eval_episodes": 1})  # fmt: skip
    part = train_dqn(config, seed=0, keep_net=True)
    assert part["target_updates"] == 400 // 40
    assert part["gradient_steps"] == (400 - 100) // 4
    assert train_dqn(config, seed=0, use_target=False)["target_updates"] == 0


# ---- learning and determinism -----------------------------------------------------------------------------


def test_dqn_learns_identity_in_seconds():
    part = train_dqn(Config(**IDENTITY), seed=0, keep_net=True)
    assert part["last_mean_return"] >= 7.5  # optimal 8, random policy 2
    random = evaluate(make_env(IDENTITY_ID), lambda obs: 0, episodes=10, seed=1).mean_return
    assert random < 4
    greedy = evaluate(make_env(IDENTITY_ID), as_policy(part["net"]), episodes=5, seed=7)
    assert greedy.mean_return >= 7.5


def test_same_seed_same_returns_other_seed_differs():
    config = Config(**IDENTITY | {"total_steps": 600, "eval_interval": 300})
    a, b, c = (train_dqn(config, seed=s) for s in (3, 3, 4))
    for key in ("episode_return", "eval_return", "loss", "q_mean"):
        assert a["history"][key] == b["history"][key], key
    assert a["last_returns"] == b["last_returns"]
    assert a["history"]["loss"] != c["history"]["loss"]


def test_one_hot_q_network_and_nature_cnn_shapes():
    net = OneHotQNetwork(4, 3, hidden=(8,))
    assert net(torch.tensor([0, 3])).shape == (2, 3)
    cnn = NatureCNN(4, 6)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert cnn(frames).shape == (2, 6) and cnn.greedy_action(frames).shape == (2,)
    with pytest.raises(ValueError, match="84, 84"):
        cnn(torch.zeros(1, 4, 64, 64))


# ---- Atari ------------------------------------------------------------------------------------------------


def test_atari_wrappers_fire_stack_and_flag_life_loss():
    config = Config(**PRESETS["full"])
    env = make_env(config.env_id, wrappers=env_wrappers(config), frameskip=1, repeat_action_probability=0.0)
    assert isinstance(env.env, AtariLives)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    lives, lost = env.unwrapped.ale.lives(), 0
    for _ in range(400):
        obs, _, terminated, truncated, info = env.step(0)  # NOOP: the ball is missed, lives are lost
        lost += info["life_lost"]
        if terminated or truncated:
            break
    assert lost >= 1 and env.unwrapped.ale.lives() < lives
    env.close()


def test_atari_smoke_run_through_the_full_pipeline():
    """The `full` preset (Breakout, NatureCNN, clipped rewards, episodic life) for 1,500 steps."""
    overrides = dict(total_steps=1_500, buffer_size=1_500, learning_starts=1_200, batch_size=8,
                     target_update_interval=100, eval_interval=10_000, eval_interval_episodes=1,
                     eval_episodes=1, eval_max_steps=200)  # fmt: skip
    config = Config(**PRESETS["full"] | overrides)
    config.validate()
    part = train_dqn(config, seed=0)
    assert part["gradient_steps"] == (1_500 - 1_200) // 4
    assert part["target_updates"] == 1_500 // 100
    assert all(np.isfinite(part["history"]["loss"]))
    assert part["params"] > 1_000_000  # the NatureCNN
    assert len(part["last_returns"]) == 1


# ---- configuration and the experiment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"total_steps": 0}, "total_steps must be >= 1"),
        ({"learning_starts": 60_000}, "learning_starts .* must be < total_steps"),
        ({"gamma": 1.5}, "gamma must be in"),
        ({"tau": 0.0}, "tau must be in"),
        ({"end_epsilon": -0.1}, "end_epsilon must be in"),
        ({"exploration_fraction": 0.0}, "exploration_fraction must be in"),
        ({"loss": "l1"}, "loss must be one of"),
        ({"ablation": "dueling"}, "ablation must be one of"),
        ({"hidden": ()}, "hidden needs at least one layer"),
        ({"max_grad_norm": -1.0}, "max_grad_norm must be >= 0"),
    ],
)
def test_bad_config_is_a_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        Config(**overrides).validate()


def test_bad_override_is_a_one_line_cli_error():
    with pytest.raises(PapersError, match="invalid config for dqn: batch_size must be >= 1"):
        EXPERIMENT.make_config("default", {"batch_size": "0"})
    with pytest.raises(PapersError, match="unknown config key"):
        EXPERIMENT.make_config("default", {"epsilon": "0.1"})


def test_full_preset_is_valid_atari():
    config = EXPERIMENT.make_config("full")
    assert config.atari and config.total_steps * 4 == 10_000_000 and config.buffer_size == 1_000_000


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert {"dqn_last_mean_return", "no_target_last_mean_return", "reward_threshold"} <= set(result.metrics)
    assert (run_dir / "figures" / "curves.png").is_file()
    assert result.metrics["no_target_target_updates"] == 0
