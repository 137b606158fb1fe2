"""DrQ: the random shift is a replicate-border translation; the averaged target and loss; the grid world."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch.nn import functional as F

from papers.rl.agents import as_policy, evaluate
from papers.rl.dqn import td_loss, td_target
from papers.rl.drq import (
    EXPERIMENT,
    PixelGridWorld,
    PixelQNetwork,
    augment_repeats,
    draw_shifts,
    drq_q_loss,
    drq_target,
    random_shift,
    scaled_pad,
)
from papers.rl.drq.env import MOVES
from papers.rl.drq.experiment import Config, greedy_evaluation, make_env, train_agent

# ---- the random shift ---------------------------------------------------------------------------------


def test_scaled_pad_keeps_the_papers_ratio():
    assert scaled_pad(84) == 4  # the paper
    assert scaled_pad(32) == 2 and scaled_pad(16) == 1 and scaled_pad(5) == 1
    with pytest.raises(ValueError, match="size must be"):
        scaled_pad(0)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_shift_keeps_shape_and_dtype(dtype):
    x = (torch.rand(5, 3, 12, 10) * 255).to(dtype)
    out = random_shift(x, 2, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == dtype


def test_shift_equals_replicate_pad_then_crop_at_the_drawn_offsets():
    x = torch.rand(6, 3, 9, 11)
    pad = 3
    offsets = draw_shifts(6, pad, torch.Generator().manual_seed(1))
    out = random_shift(x, pad, offsets=offsets)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    for b, (dy, dx) in enumerate(offsets.tolist()):
        torch.testing.assert_close(out[b], padded[b, :, dy : dy + 9, dx : dx + 11], rtol=0, atol=0)


def test_shift_is_a_translation_by_the_offset_minus_pad():
    pad = 2
    x = torch.zeros(4, 1, 12, 12)
    x[:, :, 6, 5] = 1.0  # one bright interior pixel
    offsets = torch.tensor([[0, 0], [2, 2], [4, 1], [3, 4]])
    out = random_shift(x, pad, offsets=offsets)
    for b, (dy, dx) in enumerate(offsets.tolist()):
        # out[i, j] = x[i + dy - pad, j + dx - pad]: the pixel moves by (pad - dy, pad - dx)
        assert out[b, 0].nonzero().tolist() == [[6 + pad - dy, 5 + pad - dx]]
    assert torch.equal(random_shift(x, pad, offsets=torch.full((4, 2), pad)), x)  # centre crop: identity


def test_shift_draws_every_offset_independently_per_image():
    offsets = draw_shifts(4_000, 2, torch.Generator().manual_seed(0))
    assert offsets.min() == 0 and offsets.max() == 4
    counts = torch.bincount(offsets[:, 0] * 5 + offsets[:, 1], minlength=25)
    assert counts.min() > 100  # all 25 offsets occur, about uniformly
    x = torch.rand(1, 3, 8, 8).repeat(64, 1, 1, 1)
    out = random_shift(x, 2, torch.Generator().manual_seed(3))
    assert len({tuple(o.flatten().tolist()) for o in out}) > 10  # copies of one image differ


def test_shift_is_deterministic_under_a_seed_and_pad_zero_is_identity():
    x = torch.rand(8, 3, 10, 10)
    a = random_shift(x, 2, torch.Generator().manual_seed(7))
    b = random_shift(x, 2, torch.Generator().manual_seed(7))
    c = random_shift(x, 2, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_shift(x, 0), x)


def test_shift_rejects_bad_input():
    with pytest.raises(ValueError, match="needs a \\(B, C, H, W\\) batch"):
        random_shift(torch.rand(3, 8, 8), 1)
    with pytest.raises(ValueError, match="pad must be >= 0"):
        random_shift(torch.rand(1, 3, 8, 8), -1)
    with pytest.raises(ValueError, match="offsets must be \\(2, 2\\)"):
        random_shift(torch.rand(2, 3, 8, 8), 1, offsets=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="offsets must lie in"):
        random_shift(torch.rand(2, 3, 8, 8), 1, offsets=torch.full((2, 2), 3))
    with pytest.raises(ValueError, match="repeats must be"):
        augment_repeats(torch.rand(2, 3, 8, 8), 0, 1)


# ---- the averaged target and Q loss -------------------------------------------------------------------


def _nets(seed=0):
    torch.manual_seed(seed)
    return PixelQNetwork((3, 8, 8), 4, (4,), 8), PixelQNetwork((3, 8, 8), 4, (4,), 8)


def test_target_without_augmentation_is_the_dqn_target_for_any_k():
    online, target = _nets()
    obs = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    r, term = torch.rand(5), torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])
    plain = td_target(r, term, target(obs), 0.9, online(obs))
    for k in (1, 3):
        torch.testing.assert_close(drq_target(r, term, obs, target, 0.9, k, pad=0, online_net=online), plain)


def test_target_is_the_mean_of_k_dqn_targets_on_independent_shifts():
    online, target = _nets()
    obs = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    r, term = torch.rand(5), torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    y = drq_target(r, term, obs, target, 0.9, k=2, pad=1, generator=torch.Generator().manual_seed(4))
    views = random_shift(obs.repeat(2, 1, 1, 1), 1, torch.Generator().manual_seed(4)).reshape(2, 5, 3, 8, 8)
    by_hand = torch.stack([td_target(r, term, target(v), 0.9) for v in views]).mean(0)
    torch.testing.assert_close(y, by_hand)
    assert not y.requires_grad
    assert y[1] == r[1]  # a terminal sample does not bootstrap, whatever the view


def test_q_loss_is_the_mean_over_m_views_and_has_gradients():
    online, _ = _nets()
    obs = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    actions, y = torch.randint(0, 4, (6,)), torch.randn(6)
    loss, q = drq_q_loss(online, obs, actions, y, m=2, pad=1, generator=torch.Generator().manual_seed(5))
    views = random_shift(obs.repeat(2, 1, 1, 1), 1, torch.Generator().manual_seed(5)).reshape(2, 6, 3, 8, 8)
    per_view = [td_loss(online(v).gather(1, actions[:, None]).squeeze(1), y) for v in views]
    torch.testing.assert_close(loss, torch.stack(per_view).mean())
    assert q.shape == (12,)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in online.parameters())
    with pytest.raises(ValueError, match="target and actions must have 6 rows"):
        drq_q_loss(online, obs, actions, torch.zeros(5))


def test_q_network_checks_its_input_shape():
    net = PixelQNetwork((3, 16, 16), 4)
    assert net(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 4)
    with pytest.raises(ValueError, match="PixelQNetwork needs"):
        net(torch.zeros(2, 3, 8, 8))


# ---- the pixel grid world -----------------------------------------------------------------------------


def test_env_passes_check_env_and_renders_the_board():
    env = PixelGridWorld()
    check_env(env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 32, 32) and obs.dtype == np.uint8
    colours = {tuple(c) for c in obs.reshape(3, -1).T.tolist()}
    assert {(0, 0, 0), (128, 128, 128), (255, 0, 0), (0, 255, 0)} == colours
    r, c = env.agent
    assert obs[:, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4].reshape(3, -1).T.tolist() == [[255, 0, 0]] * 16


def test_env_layout_is_random_per_episode_and_seeded():
    env = PixelGridWorld()
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    layouts = {env.reset(seed=s)[0].tobytes() for s in range(20)}
    assert np.array_equal(a, b) and len(layouts) == 20


def test_env_walls_block_and_the_goal_pays_by_steps_taken():
    env = PixelGridWorld(size=5, n_walls=0, max_steps=10)
    env.reset(seed=0)
    env.agent, env.goal = (1, 1), (1, 3)
    _, reward, terminated, _, _ = env.step(0)  # up into the outer wall: no move
    assert env.agent == (1, 1) and reward == 0.0 and not terminated
    env.step(3)
    _, reward, terminated, truncated, _ = env.step(3)
    assert terminated and not truncated and reward == pytest.approx(1 - 0.9 * 3 / 10)
    env.reset(seed=1)
    env.agent, env.goal = (1, 1), (3, 3)
    for t in range(1, 11):  # bump into the wall until the time limit
        _, reward, terminated, truncated, _ = env.step(0)
        assert reward == 0.0 and not terminated and truncated == (t == 10)
    with pytest.raises(ValueError, match="n_walls must be in"):
        PixelGridWorld(size=4, n_walls=3)
    with pytest.raises(ValueError, match="action must be in"):
        env.step(4)


def test_shortest_path_policy_reaches_the_optimal_return():
    env = PixelGridWorld(n_walls=6)
    for seed in range(10):
        env.reset(seed=seed)
        optimal, steps = env.shortest_path(), 0
        while True:  # greedy descent of the BFS distance
            best = None
            for action, (dr, dc) in enumerate(MOVES):
                nxt = (env.agent[0] + dr, env.agent[1] + dc)
                if not env.walls[nxt]:
                    saved = env.agent
                    env.agent = nxt
                    d = env.shortest_path()
                    env.agent = saved
                    best = (d, action) if best is None or d < best[0] else best
            _, reward, terminated, _, _ = env.step(best[1])
            steps += 1
            if terminated:
                break
        assert steps == optimal and reward == pytest.approx(1 - 0.9 * optimal / env.max_steps)


# ---- the experiment -----------------------------------------------------------------------------------


def test_batched_greedy_evaluation_matches_the_episode_by_episode_one():
    config = Config(n_walls=2)
    torch.manual_seed(0)
    net = PixelQNetwork((3, config.image_size, config.image_size), 4, (4, 8), 16)
    one_by_one = evaluate(make_env(config), as_policy(net), episodes=6, seed=11).returns
    assert greedy_evaluation(net, config, 6, 11) == pytest.approx(one_by_one)


def test_config_rejects_bad_values():
    for bad, message in [({"k": 0}, "k must be >= 1"), ({"arms": ("none", "crop")}, "unknown arm"),
                         ({"pad": 18}, "pad \\(18\\) must be < the image size"),
                         ({"learning_starts": 5_000}, "learning_starts"), ({"gamma": 1.5}, "gamma"),
                         ({"n_walls": 15}, "n_walls must be <=")]:  # fmt: skip
        with pytest.raises(ValueError, match=message):
            Config(**bad).validate()
    Config().validate()
    assert Config().shift_pad == 1 and Config(pad=3).shift_pad == 3
    with pytest.raises(ValueError, match="unknown arm"):
        train_agent(Config(), 0, "crop")


def test_training_is_deterministic_under_a_seed():
    config = EXPERIMENT.make_config("smoke", {"total_steps": "160", "learning_starts": "100"})
    a, b = (train_agent(config, 4, "drq") for _ in range(2))
    assert a["history"]["loss"] == b["history"]["loss"] and a["final_returns"] == b["final_returns"]
    assert a["k"] == a["m"] == 2 and a["pad"] == 1


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert {"none_final_return", "shift_final_return", "drq_final_return", "optimal_return"} <= set(
        result.metrics
    )
    assert result.metrics["optimal_return"] > result.metrics["random_return"]
    assert (run_dir / "figures" / "curves.png").is_file()
    assert (run_dir / "figures" / "augmentations.png").is_file()
