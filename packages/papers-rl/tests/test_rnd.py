"""RND and random-feature curiosity: the maze (check_env, seeding, the vector env against the single
env), the normalisers (exact moments, clipping, the return filter), the bonuses (RND falls on trained
states and is deterministic in s'; the forward model cannot learn noise), the two-head loop, config
errors, a smoke run and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from papers_testing import untimed

from papers.core.errors import PapersError
from papers.rl.rnd import (
    EXPERIMENT,
    ExplorerSettings,
    ForwardCuriosity,
    IntrinsicRewardNormaliser,
    MultiRoomGrid,
    MultiRoomVectorEnv,
    ObservationNormaliser,
    RNDBonus,
    RunningMeanStd,
    TwoHeadActorCritic,
    make_vector_env,
    train_explorer,
)
from papers.rl.rnd.experiment import spearman

# ---- the world ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("noisy_tv", [False, True])
def test_check_env_passes(noisy_tv):
    check_env(MultiRoomGrid(noisy_tv=noisy_tv, render_mode="rgb_array"), skip_render_check=False)


@pytest.mark.parametrize("layout_seed", range(4))
def test_layout_is_a_connected_tree_with_the_goal_farthest(layout_seed):
    env = MultiRoomGrid(rooms=3, room_size=3, layout_seed=layout_seed)
    assert len(env.room_distance) == 9  # every room reachable
    assert env.n_cells == 9 * 9 + 8  # 9 rooms of 3 x 3 and exactly 8 doorways: a spanning tree
    goal_room = env.room_of(env.goal)
    assert env.room_distance[(goal_room // 3, goal_room % 3)] == max(env.room_distance.values())
    assert env.room_of(env.tv) == 0 and env.tv != env.start and not env.free[env.tv[0], env.tv[1] + 1]


def test_shortest_path_reaches_goal_with_reward_one():
    env = MultiRoomGrid(rooms=2, room_size=3, layout_seed=1, max_steps=100)
    # breadth-first search over cells gives the actions of a shortest path
    vec = MultiRoomVectorEnv(1, rooms=2, room_size=3, layout_seed=1)
    start, goal = vec.start_cell, vec.goal_cell
    parent = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for cell in frontier:
            for a in range(4):
                c = int(vec.transitions[cell, a])
                if c not in parent:
                    parent[c] = (cell, a)
                    nxt.append(c)
        frontier = nxt
    path, cell = [], goal
    while parent[cell] is not None:
        cell, a = parent[cell]
        path.append(a)
    env.reset(seed=0)
    total = 0.0
    for k, a in enumerate(reversed(path)):
        _, r, terminated, truncated, info = env.step(a)
        total += r
        assert terminated == (k == len(path) - 1) and not truncated
    assert total == 1.0 and info["cell"] == goal


def test_walls_block_and_time_limit_truncates():
    env = MultiRoomGrid(rooms=1, room_size=3, max_steps=5)
    env.reset(seed=0)
    for _ in range(5):
        obs, r, terminated, truncated, info = env.step(0)  # up, into the wall after one move
    assert info["cell"] == int(env.index[1, 2]) and truncated and not terminated and r == 0.0


def test_tv_noise_only_on_tv_and_seeded():
    env = MultiRoomGrid(rooms=1, room_size=3, noisy_tv=True, tv_bits=16)
    env.reset(seed=3)
    env._pos = env.tv
    a, b = env._observation(), env._observation()
    assert a[-16:].sum() > 0 and not np.array_equal(a[-16:], b[-16:])  # fresh noise each step
    env._pos = env.start
    assert env._observation()[-16:].sum() == 0
    env2 = MultiRoomGrid(rooms=1, room_size=3, noisy_tv=True, tv_bits=16)
    env2.reset(seed=3)
    env2._pos = env2.tv
    assert np.array_equal(env2._observation(), a)
    plain = MultiRoomGrid(rooms=1, room_size=3, noisy_tv=False, tv_bits=16)
    plain.reset(seed=3)
    plain._pos = plain.tv
    assert plain._observation()[-16:].sum() == 0


def test_vector_env_matches_single_envs():
    kwargs = {"rooms": 2, "room_size": 3, "layout_seed": 2, "max_steps": 7}
    vec = MultiRoomVectorEnv(3, **kwargs)
    singles = [MultiRoomGrid(**kwargs) for _ in range(3)]
    obs, _ = vec.reset(seed=0)
    for env in singles:
        env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(30):
        actions = rng.integers(0, 4, 3)
        obs, rew, term, trunc, infos = vec.step(actions)
        for i, env in enumerate(singles):
            o, r, te, tr, _ = env.step(int(actions[i]))
            assert (r, te, tr) == (rew[i], term[i], trunc[i])
            if te or tr:
                assert infos["_final_obs"][i] and np.array_equal(infos["final_obs"][i], o)
                o, _ = env.reset()
            assert np.array_equal(obs[i], o)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="room_size"):
        MultiRoomGrid(room_size=1)
    with pytest.raises(ValueError, match="action"):
        MultiRoomGrid().step(4)
    vec = MultiRoomVectorEnv(2)
    vec.reset(seed=0)
    with pytest.raises(ValueError, match="actions"):
        vec.step(np.array([0, 5]))
    with pytest.raises(ValueError, match="next_obs"):
        RNDBonus(5).errors(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="action"):
        ForwardCuriosity(5, 4).errors(torch.zeros(3, 5), torch.zeros(2), torch.zeros(3, 5))
    with pytest.raises(ValueError, match="rewards"):
        IntrinsicRewardNormaliser(4).normalise(torch.zeros(3, 5))


# ---- normalisers ----------------------------------------------------------------------------------------


def test_running_mean_std_matches_numpy_over_batches():
    g = np.random.default_rng(0)
    data = g.normal(3.0, 2.0, size=(1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0 + 1e-12)
    for chunk in np.array_split(data, 7):
        rms.update(torch.as_tensor(chunk))
    assert np.allclose(rms.mean.numpy(), data.mean(0), atol=1e-9)
    assert np.allclose(rms.var.numpy(), data.var(0), atol=1e-9)


def test_observation_normaliser_standardises_and_clips():
    norm = ObservationNormaliser(2, clip=5.0)
    norm.update(torch.tensor([[0.0, 0.0], [2.0, 0.0]]))  # mean (1, 0), std (1, 0)
    out = norm(torch.tensor([[3.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(out[0, 0], torch.tensor(2.0), atol=1e-3)
    assert out[0, 1] == 5.0 and torch.allclose(out[1], torch.zeros(2), atol=1e-3)  # clipped at +5


def test_intrinsic_reward_divided_by_std_of_discounted_return():
    gamma = 0.9
    norm = IntrinsicRewardNormaliser(2, gamma)
    rewards = torch.tensor([[1.0, 2.0], [0.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
    out = norm.normalise(rewards)
    returns, seen = np.zeros(2), []
    for t in range(3):
        returns = returns * gamma + rewards[t].numpy()
        seen.append(returns.copy())
    expected_std = np.std(np.array(seen).ravel())  # epsilon-weighted prior is negligible
    assert np.allclose(out.numpy(), rewards.numpy() / expected_std, rtol=1e-3)
    # the filter is not reset: the next rollout continues the same discounted sums
    norm.normalise(torch.zeros(1, 2, dtype=torch.float64))
    assert np.allclose(norm.returns.numpy(), returns * gamma)


# ---- the bonuses ----------------------------------------------------------------------------------------


def test_rnd_target_fixed_and_error_falls_on_trained_states_only():
    torch.manual_seed(0)
    bonus = RNDBonus(10, out_dim=16, hidden=32)
    states = torch.eye(10)
    bonus.update_obs_stats(states)
    target_before = [p.clone() for p in bonus.target.parameters()]
    before = bonus.reward(None, None, states)
    optimizer = torch.optim.Adam([p for p in bonus.parameters() if p.requires_grad], lr=1e-2)
    trained = states[:5]
    for _ in range(150):
        optimizer.zero_grad()
        bonus.loss(None, None, trained).backward()
        optimizer.step()
    after = bonus.reward(None, None, states)
    assert all(torch.equal(a, b) for a, b in zip(target_before, bonus.target.parameters(), strict=True))
    assert after[:5].max() < 0.05 * before[:5].min()  # seen states: error nearly gone
    assert after[5:].mean() > 10 * after[:5].mean()  # novel states: still surprising
    # deterministic in s' and independent of s and a
    assert torch.equal(bonus.reward(torch.zeros(10, 10), torch.zeros(10), states), after)


def test_mask_trains_on_the_selected_samples_only():
    torch.manual_seed(0)
    bonus = RNDBonus(4, out_dim=3, hidden=8)
    x = torch.randn(6, 4)
    mask = torch.tensor([1, 0, 1, 0, 0, 0])
    loss = bonus.loss(None, None, x, mask)
    assert torch.allclose(loss, bonus.errors(x)[mask.bool()].mean())
    # gradient reaches the predictor, never the target
    loss.backward()
    assert all(p.grad is None for p in bonus.target.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in bonus.predictor.parameters())


def test_forward_model_cannot_learn_noise_but_rnd_can_learn_a_finite_noise_source():
    """The noisy TV in miniature: s' = (TV cell, k random bits) after the same (s, a)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    dim, bits = 6, 4
    n = 128
    obs = torch.zeros(n, dim)
    obs[:, 0] = 1.0
    actions = torch.zeros(n, dtype=torch.long)

    def next_obs():
        out = torch.zeros(n, dim)
        out[:, 1] = 1.0
        out[:, 2:] = torch.randint(0, 2, (n, bits), generator=g).float()
        return out

    curiosity, rnd = ForwardCuriosity(dim, 2, feature_dim=16, hidden=64), RNDBonus(dim, out_dim=16, hidden=64)
    for module in (curiosity, rnd):
        module.update_obs_stats(torch.cat([obs, next_obs()]))
    opts = [
        torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=3e-3) for m in (curiosity, rnd)
    ]
    start = (curiosity.reward(obs, actions, next_obs()).mean(), rnd.reward(obs, actions, next_obs()).mean())
    for _ in range(250):
        batch = next_obs()
        for module, opt in zip((curiosity, rnd), opts, strict=True):
            opt.zero_grad()
            module.loss(obs, actions, batch).backward()
            opt.step()
    end = (curiosity.reward(obs, actions, next_obs()).mean(), rnd.reward(obs, actions, next_obs()).mean())
    assert end[1] < 0.02 * start[1]  # RND: f(s') is a function of s', learnable over 16 noise patterns
    assert end[0] > 0.2 * start[0]  # forward model: the bits are unpredictable from (s, a)


def test_two_head_actor_critic_shapes():
    net = TwoHeadActorCritic(7, 4, (16,))
    logits, values = net.logits_and_value(torch.zeros(5, 7))
    assert logits.shape == (5, 4) and values.shape == (5, 2) and net.value(torch.zeros(5, 7)).shape == (5,)


def test_spearman_ranks_and_ties():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 2, 3], [5, 5, 6, 7]) == pytest.approx(1.0)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3]))


# ---- the loop -------------------------------------------------------------------------------------------


def test_settings_errors():
    with pytest.raises(ValueError, match="predictor_fraction"):
        ExplorerSettings(predictor_fraction=0.0).validate(4)
    with pytest.raises(ValueError, match="gamma_ext"):
        ExplorerSettings(gamma_ext=1.5).validate(4)
    with pytest.raises(ValueError, match="divisible"):
        ExplorerSettings(num_steps=3, num_minibatches=4, total_steps=100).validate(1)
    envs = make_vector_env(2, 0, rooms=1, room_size=3)
    with pytest.raises(ValueError, match="method"):
        train_explorer(envs, "icm", ExplorerSettings(total_steps=64, num_steps=32))


def test_config_errors_are_one_line():
    with pytest.raises(PapersError, match="methods"):
        EXPERIMENT.make_config("smoke", {"methods": "ppo,icm"})
    with pytest.raises(PapersError, match="seeds"):
        EXPERIMENT.make_config("smoke", {"seeds": "0"})
    with pytest.raises(PapersError, match="room_size"):
        EXPERIMENT.make_config("smoke", {"room_size": "1"})


@pytest.mark.parametrize("method", ["ppo", "curiosity", "rnd"])
def test_train_explorer_runs_and_is_deterministic(method):
    def once():
        envs = make_vector_env(2, 0, rooms=2, room_size=3, noisy_tv=True)
        layout = envs.unwrapped
        settings = ExplorerSettings(total_steps=128, num_steps=32, num_minibatches=2, update_epochs=1,
                                    norm_init_steps=4, hidden=(16,), bonus_hidden=16,
                                    bonus_dim=8)  # fmt: skip
        h = train_explorer(
            envs, method, settings, seed=3, n_cells=layout.layout.n_cells, tv_cell=layout.tv_cell
        )
        return h

    a, b = once(), once()
    assert len(a["rows"]) == 2 and a["visits"].sum() == 128
    assert untimed([{k: v for k, v in r.items()} for r in a["rows"]]) == untimed(
        [{k: v for k, v in r.items()} for r in b["rows"]]
    )
    for pa, pb in zip(a["agent"].parameters(), b["agent"].parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert len(result.checks) == 5
    assert (run_dir / "figures").exists() or result.figures
    for key in ("plain_rnd_cells_visited", "noisy_tv_curiosity_tv_share", "rnd_bonus_visit_spearman"):
        assert key in result.metrics


@pytest.mark.parametrize("preset", ["smoke", "default", "full"])
def test_presets_validate(preset):
    config = EXPERIMENT.make_config(preset)
    assert config.total_steps >= config.num_envs * config.num_steps
