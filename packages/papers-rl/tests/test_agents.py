"""The agents core: environments, wrappers, evaluation, replay, GAE, networks, schedules, a tiny learner."""

from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from papers.core.errors import PapersError
from papers.rl.agents import (
    CORRIDOR_ID,
    IDENTITY_ID,
    CategoricalActorCritic,
    CorridorEnv,
    FrameStackReplayBuffer,
    IdentityEnv,
    MiniGridOneHot,
    QNetwork,
    ReplayBuffer,
    as_policy,
    compute_gae,
    evaluate,
    exponential_schedule,
    final_observations,
    finished_episodes,
    layer_init,
    linear_schedule,
    make_atari_vector_env,
    make_env,
    make_vector_env,
    minigrid_wrappers,
    record_frames,
    save_frames,
)

# ---- package and environments ---------------------------------------------------------------------------


def test_importing_agents_imports_neither_gymnasium_nor_torch():
    code = "import sys, papers.rl.agents; print('gymnasium' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("env_id", [IDENTITY_ID, CORRIDOR_ID])
def test_testing_envs_pass_check_env_and_pickle(env_id):
    env = make_env(env_id)
    check_env(env.unwrapped)
    env.reset(seed=3)
    copy = pickle.loads(pickle.dumps(env))
    actions = [0, 1, 1, 0, 1, 1, 1, 1]
    for action in actions:
        assert env.step(action) == copy.step(action)


def test_testing_envs_are_deterministic_given_the_seed():
    def trajectory(seed):
        env = IdentityEnv()
        obs, _ = env.reset(seed=seed)
        return [obs] + [env.step(0)[0] for _ in range(7)]

    assert trajectory(5) == trajectory(5)
    assert trajectory(5) != trajectory(6)


def test_unknown_env_id_is_a_one_line_error():
    with pytest.raises(PapersError, match="unknown environment 'papers/Nope-v0'"):
        make_vector_env("papers/Nope-v0", 2, seed=0)
    with pytest.raises(PapersError, match="unknown environment"):
        make_env("NotAnEnv-v9")


def _rollout(envs, seed, steps):
    """Observations and finished episode returns of random actions from the env's own action space."""
    obs, _ = envs.reset(seed=seed)
    seen, returns = [obs], []
    for _ in range(steps):
        obs, _, _, _, infos = envs.step(envs.action_space.sample())
        seen.append(obs)
        returns += [ret for ret, _ in finished_episodes(infos)]
    return np.stack(seen), returns


def test_same_seed_gives_the_same_vector_env_run():
    first = _rollout(make_vector_env("CartPole-v1", 3, seed=7), seed=7, steps=120)
    second = _rollout(make_vector_env("CartPole-v1", 3, seed=7), seed=7, steps=120)
    other = _rollout(make_vector_env("CartPole-v1", 3, seed=8), seed=8, steps=120)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1] and len(first[1]) > 3
    assert not np.array_equal(first[0], other[0])


def test_async_vector_env_matches_sync():
    sync = _rollout(make_vector_env(IDENTITY_ID, 2, seed=1), seed=1, steps=20)
    envs = make_vector_env(IDENTITY_ID, 2, seed=1, async_=True)
    try:
        parallel = _rollout(envs, seed=1, steps=20)
    finally:
        envs.close()
    np.testing.assert_array_equal(sync[0], parallel[0])
    assert sync[1] == parallel[1]


def test_final_observations_restore_the_last_observation_of_a_truncated_episode():
    envs = make_vector_env(CORRIDOR_ID, 2, seed=0)  # registered with a 24-step time limit
    envs.reset(seed=0)
    left_right = np.array([0, 1])
    for _ in range(5):  # sub-env 1 reaches the goal (cell 5) at step 5 and is reset to cell 0
        obs, _, terminated, truncated, infos = envs.step(left_right)
    assert terminated.tolist() == [False, True] and obs[1] == 0
    assert final_observations(obs, infos).tolist() == [0, 5]
    for _ in range(19):  # sub-env 0 never moves and is cut by the time limit at step 24
        obs, _, terminated, truncated, infos = envs.step(left_right)
    assert truncated[0] and not terminated[0]
    assert finished_episodes(infos)[0] == (0.0, 24)


def test_atari_preprocessing_and_frame_stack():
    if importlib.util.find_spec("ale_py") is None or importlib.util.find_spec("cv2") is None:
        pytest.skip("ale-py and opencv-python-headless are not installed (pip install 'papers-rl[atari]')")
    envs = make_atari_vector_env("ALE/Pong-v5", 1, seed=0)
    obs, _ = envs.reset(seed=0)
    for _ in range(300):
        obs, *_ = envs.step(envs.action_space.sample())
    assert envs.single_observation_space.shape == (4, 84, 84)
    assert obs.shape == (1, 4, 84, 84) and obs.dtype == np.uint8
    envs.close()


@pytest.mark.parametrize("flatten", [False, True])
def test_minigrid_one_hot_observations(flatten):
    env = make_env("MiniGrid-DoorKey-5x5-v0", wrappers=minigrid_wrappers(one_hot=True, flatten=flatten))
    obs, _ = env.reset(seed=0)
    expected = (7 * 7 * 20,) if flatten else (20, 7, 7)
    assert obs.shape == env.observation_space.shape == expected and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    cells = obs.reshape(7, 7, 20) if flatten else obs.transpose(1, 2, 0)
    image = env.unwrapped.gen_obs()["image"]
    assert (cells.sum(-1) == 3).all()  # one object, one colour and one state per cell
    np.testing.assert_array_equal(cells[..., :11].argmax(-1), image[..., 0])
    np.testing.assert_array_equal(cells[..., 11:17].argmax(-1), image[..., 1])
    np.testing.assert_array_equal(cells[..., 17:].argmax(-1), image[..., 2])


@pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")
def test_minigrid_one_hot_wrapper_passes_check_env():
    from minigrid.envs import DoorKeyEnv
    from minigrid.wrappers import ImgObsWrapper

    check_env(MiniGridOneHot(ImgObsWrapper(DoorKeyEnv(size=5))), skip_render_check=True)


def test_minigrid_image_wrapper_and_a_bad_input():
    env = make_env("MiniGrid-Empty-5x5-v0", wrappers=minigrid_wrappers())
    assert env.reset(seed=0)[0].shape == (7, 7, 3)
    with pytest.raises(PapersError, match="MiniGrid image"):
        MiniGridOneHot(gym.make("CartPole-v1"))


# ---- evaluation and frames ------------------------------------------------------------------------------


def test_evaluate_known_returns():
    perfect = evaluate(make_env(IDENTITY_ID), policy=lambda obs: obs, episodes=5, seed=0)
    assert perfect.returns == [8.0] * 5 and perfect.lengths == [8] * 5
    assert perfect.mean_return == 8.0 and perfect.std_return == 0.0
    walk_right = evaluate(make_env(CORRIDOR_ID), policy=lambda obs: 1, episodes=3)
    assert walk_right.returns == [1.0] * 3 and walk_right.lengths == [5] * 3
    stand_still = evaluate(make_env(CORRIDOR_ID), policy=lambda obs: 0, episodes=2)
    assert stand_still.returns == [0.0, 0.0] and stand_still.lengths == [24, 24]


def test_record_and_save_frames(tmp_path):
    env = make_env(CORRIDOR_ID, render_mode="rgb_array")
    frames = record_frames(env, lambda obs: 1, seed=0)
    assert len(frames) == 6 and frames[0].shape == (16, 96, 3)
    pngs = save_frames(frames, tmp_path / "corridor", gif=False)
    assert len(pngs) == 6 and all(path.stat().st_size > 0 for path in pngs)
    if importlib.util.find_spec("PIL") is not None:
        (gif,) = save_frames(frames, tmp_path / "corridor")
        assert gif.suffix == ".gif" and gif.stat().st_size > 0
    with pytest.raises(ValueError, match="rgb_array"):
        record_frames(make_env(CORRIDOR_ID), lambda obs: 1)


# ---- replay buffer --------------------------------------------------------------------------------------


def _filled_buffer(seed=0):
    buffer = ReplayBuffer(capacity=5, obs_shape=(2,), seed=seed)
    for step in range(4):  # 8 transitions from 2 envs into 5 slots
        obs = np.full((2, 2), [2 * step, 2 * step + 1], dtype=np.float32).T
        buffer.add(obs, [0, 1], [float(2 * step), float(2 * step + 1)], obs + 100, [False, step == 3])
    return buffer


def test_replay_buffer_wraps_around_keeping_the_newest():
    buffer = _filled_buffer()
    assert len(buffer) == 5 and buffer.position == 3
    assert sorted(buffer.rewards.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert buffer.rewards[:3].tolist() == [5.0, 6.0, 7.0]  # overwrote the three oldest slots
    np.testing.assert_array_equal(buffer.next_obs[:, 0], buffer.obs[:, 0] + 100)


def test_replay_buffer_sampling_is_seeded_and_keeps_terminated_apart():
    first, second, other = (_filled_buffer(seed).sample(64) for seed in (1, 1, 2))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.rewards, other.rewards)
    assert set(first.rewards.tolist()) <= {3.0, 4.0, 5.0, 6.0, 7.0}
    assert (first.terminated == (first.rewards == 7.0)).all()  # only the last transition of env 1 ended
    batch = first.to_torch()
    assert batch.terminated.dtype == torch.float32 and batch.obs.shape == (64, 2)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, (1,)).sample(1)


def _frame_stack_stream(steps, num_envs=2, stack=3, seed=0):
    """Vector steps of frame-stacked observations with episodes of random length; the true transitions."""
    rng = np.random.default_rng(seed)
    frame = lambda: rng.integers(0, 255, size=(2, 2), dtype=np.uint8)  # noqa: E731
    current = [np.stack([frame()] * stack) for _ in range(num_envs)]
    for _ in range(steps):
        obs = np.stack(current)
        next_obs = np.stack([np.concatenate([c[1:], frame()[None]]) for c in current])
        terminated = rng.random(num_envs) < 0.2
        yield obs, rng.integers(0, 4, num_envs), rng.random(num_envs).astype(np.float32), next_obs, terminated
        current = [np.stack([frame()] * stack) if t else n for t, n in zip(terminated, next_obs, strict=True)]


def test_frame_stack_buffer_rebuilds_every_kept_transition_exactly():
    buffer = FrameStackReplayBuffer(capacity=40, obs_shape=(3, 2, 2), num_envs=2, frame_margin=0.0, seed=0)
    history = []
    for transition in _frame_stack_stream(steps=75):
        buffer.add(*transition)
        history.append(transition)
    assert len(buffer) == 40 and buffer.filled == 20
    # the frames of episode starts push the oldest transitions out of the frame ring (margin 0 here):
    # a transition is kept exactly when all of its frames are still the ones it was stored with
    slots = np.arange(buffer.filled)
    for env in range(2):
        valid = buffer._valid(np.full(20, env), slots)
        assert 5 <= valid.sum() < 20
        for slot in slots:
            age = (buffer.position - 1 - slot) % 20  # 0 = newest
            obs, action, reward, next_obs, terminated = (x[env] for x in history[-1 - age])
            got = buffer.transitions(np.array([env]), np.array([slot]))
            exact = np.array_equal(got.obs[0], obs) and np.array_equal(got.next_obs[0], next_obs)
            assert exact == valid[slot], (env, slot)
            assert (got.actions[0], got.rewards[0], got.terminated[0]) == (action, reward, terminated)
    batch = buffer.sample(256)
    assert batch.obs.shape == (256, 3, 2, 2) and batch.obs.dtype == np.uint8
    np.testing.assert_array_equal(batch.next_obs[:, :-1], batch.obs[:, 1:])
    again = FrameStackReplayBuffer(capacity=40, obs_shape=(3, 2, 2), num_envs=2, frame_margin=0.0, seed=0)
    for transition in history:
        again.add(*transition)
    np.testing.assert_array_equal(again.sample(256).obs, batch.obs)  # seeded


def test_frame_stack_buffer_stores_each_frame_once():
    buffer = FrameStackReplayBuffer(capacity=1_000, obs_shape=(4, 84, 84), num_envs=2)
    plain = 2 * 1_000 * 4 * 84 * 84
    assert buffer.frames.nbytes < 0.15 * plain


def test_frame_stack_buffer_rejects_what_is_not_a_frame_stack():
    buffer = FrameStackReplayBuffer(capacity=8, obs_shape=(3, 2, 2), num_envs=2)
    obs, actions, rewards, next_obs, terminated = next(_frame_stack_stream(steps=1))
    with pytest.raises(ValueError, match="not frame stacks"):
        buffer.add(obs, actions, rewards, next_obs[:, ::-1], terminated)
    with pytest.raises(ValueError, match="expected 2 sub-envs"):
        buffer.add(obs[:1], actions[:1], rewards[:1], next_obs[:1], terminated[:1])
    with pytest.raises(ValueError, match="frame stacks"):
        FrameStackReplayBuffer(capacity=8, obs_shape=(4,), num_envs=1)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)


# ---- GAE ------------------------------------------------------------------------------------------------


def test_gae_hand_computed_with_a_done_in_the_middle():
    # one env, 3 steps; obs[2] starts a new episode (dones[2] = 1), so step 1 does not bootstrap
    rewards = torch.tensor([1.0, 2.0, 3.0])
    values = torch.tensor([0.5, 1.0, 1.5])
    dones = torch.tensor([0.0, 0.0, 1.0])
    gamma, lam = 0.5, 0.5
    next_value, next_done = torch.tensor(2.0), torch.tensor(0.0)
    advantages, returns = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)
    delta2 = 3.0 + 0.5 * 2.0 - 1.5  # 2.5
    delta1 = 2.0 - 1.0  # 1.0, the episode ended after step 1
    delta0 = 1.0 + 0.5 * 1.0 - 0.5  # 1.0
    a1 = delta1
    a0 = delta0 + gamma * lam * a1  # 1.25
    torch.testing.assert_close(advantages, torch.tensor([a0, a1, delta2]))
    torch.testing.assert_close(returns, advantages + values)


def test_gae_matches_a_direct_sum_of_discounted_td_errors():
    generator = torch.Generator().manual_seed(0)
    steps, num_envs, gamma, lam = 12, 3, 0.9, 0.8
    rewards = torch.randn(steps, num_envs, generator=generator)
    values = torch.randn(steps, num_envs, generator=generator)
    dones = (torch.rand(steps, num_envs, generator=generator) < 0.25).float()
    next_value, next_done = torch.randn(num_envs, generator=generator), torch.tensor([0.0, 1.0, 0.0])
    advantages, _ = compute_gae(rewards, values, dones, next_value, next_done, gamma, lam)

    all_values = torch.cat([values, next_value[None]])
    all_dones = torch.cat([dones, next_done[None]])
    expected = torch.zeros(steps, num_envs)
    for env in range(num_envs):
        for t in range(steps):  # A_t = sum_k (gamma lam)^k delta_{t+k}, up to the end of the episode
            for k in range(steps - t):
                u = t + k
                alive = 1.0 - all_dones[u + 1, env]
                delta = rewards[u, env] + gamma * all_values[u + 1, env] * alive - values[u, env]
                expected[t, env] += (gamma * lam) ** k * delta
                if alive == 0:
                    break
    torch.testing.assert_close(advantages, expected)


# ---- schedules and networks -----------------------------------------------------------------------------


def test_schedules_hit_their_endpoints_and_hold():
    linear = linear_schedule(1.0, 0.05, duration=100)
    assert linear(0) == 1.0 and linear(50) == pytest.approx(0.525)
    assert linear(100) == pytest.approx(0.05) and linear(10_000) == pytest.approx(0.05)
    decay = exponential_schedule(1e-3, 1e-5, duration=10)
    assert decay(0) == pytest.approx(1e-3) and decay(5) == pytest.approx(1e-4)
    assert decay(10) == pytest.approx(1e-5) and decay(99) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="start and end > 0"):
        exponential_schedule(1.0, 0.0, 10)


def test_layer_init_and_network_shapes():
    layer = layer_init(torch.nn.Linear(8, 8), std=2.0, bias=0.5)
    torch.testing.assert_close(layer.weight @ layer.weight.T, 4.0 * torch.eye(8), atol=1e-5, rtol=0)
    assert (layer.bias == 0.5).all()
    net = CategoricalActorCritic(obs_dim=4, n_actions=3)
    action, log_prob, entropy, value = net(torch.zeros(5, 4))
    assert action.shape == log_prob.shape == entropy.shape == value.shape == (5,)
    assert entropy.mean().item() == pytest.approx(np.log(3), abs=1e-3)  # the near-uniform start
    assert QNetwork(obs_dim=4, n_actions=3)(torch.zeros(5, 4)).shape == (5, 3)
    assert as_policy(net, greedy=False)(np.zeros(4)) in range(3)
    with pytest.raises(ValueError, match="no action distribution"):
        as_policy(QNetwork(4, 3), greedy=False)


# ---- the pieces learn -----------------------------------------------------------------------------------


def test_q_learning_from_replay_solves_the_identity_env():
    torch.manual_seed(0)
    envs = make_vector_env(IDENTITY_ID, 4, seed=0, wrappers=[gym.wrappers.FlattenObservation])
    q_net = QNetwork(obs_dim=4, n_actions=4, hidden=(32,))
    optimizer = torch.optim.Adam(q_net.parameters(), lr=1e-2)
    buffer = ReplayBuffer(2_000, obs_shape=(4,), seed=0)
    epsilon = linear_schedule(1.0, 0.05, duration=150)
    rng, gamma = np.random.default_rng(0), 0.5
    obs, _ = envs.reset(seed=0)
    for step in range(400):
        with torch.no_grad():
            greedy = q_net(torch.as_tensor(obs, dtype=torch.float32)).argmax(-1).numpy()
        explore = rng.random(4) < epsilon(step)
        actions = np.where(explore, envs.action_space.sample(), greedy)
        next_obs, rewards, terminated, _, infos = envs.step(actions)
        buffer.add(obs, actions, rewards, final_observations(next_obs, infos), terminated)
        obs = next_obs
        if len(buffer) >= 64:
            batch = buffer.sample(64).to_torch()
            with torch.no_grad():
                target = batch.rewards + gamma * (1 - batch.terminated) * q_net(batch.next_obs).max(-1).values
            chosen = q_net(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)
            loss = torch.nn.functional.mse_loss(chosen, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    env = make_env(IDENTITY_ID, wrappers=[gym.wrappers.FlattenObservation])
    result = evaluate(env, as_policy(q_net), episodes=10, seed=100)
    assert result.returns == [8.0] * 10


def test_testing_env_arguments_are_checked():
    with pytest.raises(ValueError, match="size >= 2"):
        IdentityEnv(size=1)
    with pytest.raises(ValueError, match="length >= 2"):
        CorridorEnv(length=1)
