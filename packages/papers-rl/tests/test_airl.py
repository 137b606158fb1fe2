"""AIRL: soft value iteration against brute force, exact occupancies, the discriminator's form and optimum."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from papers_testing import untimed

from papers.rl.airl import (
    ACTIONS,
    AIRLDiscriminator,
    GAILDiscriminator,
    discriminator_loss,
    grid_transitions,
    occupancy,
    policy_return,
    soft_value_iteration,
    train_adversarial,
    transition_weights,
    wall_with_gap,
)

F64 = torch.float64
GAMMA = 0.9


def _random_mdp(batch=2, states=3, actions=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    P = torch.rand(batch, states, actions, states, generator=generator, dtype=F64) ** 3
    P = P / P.sum(-1, keepdim=True)
    reward = torch.randn(batch, states, actions, generator=generator, dtype=F64)
    p0 = torch.softmax(torch.randn(batch, states, generator=generator, dtype=F64), -1)
    return P, reward, p0


def _soft_policy_value(P, reward, pi, gamma, alpha):
    """V^π of the entropy-regularised objective by a direct linear solve."""
    P_pi = torch.einsum("bsa,bsat->bst", pi, P)
    r_pi = (pi * (reward - alpha * pi.clamp_min(1e-300).log())).sum(-1)
    eye = torch.eye(P.shape[1], dtype=F64)
    return torch.linalg.solve(eye - gamma * P_pi, r_pi[..., None])[..., 0]


def _map(height=4, width=5, col=1, gap=0, goal=(2, 4), seed=0):
    P = grid_transitions(height, width, wall_with_gap(height, col, gap))[None]
    generator = torch.Generator().manual_seed(seed)
    r = -0.3 * torch.rand(1, height * width, generator=generator, dtype=F64)
    r[0, goal[0] * width + goal[1]] = 1.0
    return P, r, torch.full((1, height * width), 1.0 / (height * width), dtype=F64)


# ---------- grid worlds ----------


def test_grid_transitions_moves_walls_and_edges():
    H, W = 3, 4
    P = grid_transitions(H, W, wall_with_gap(H, col=1, gap_row=2))
    assert P.shape == (H * W, len(ACTIONS), H * W)
    torch.testing.assert_close(P.sum(-1), torch.ones(H * W, len(ACTIONS), dtype=F64))
    nxt = P.argmax(-1)
    s = 1 * W + 1  # row 1, col 1: right is blocked by the wall, the others move
    assert nxt[s, ACTIONS.index("stay")] == s and nxt[s, ACTIONS.index("right")] == s
    assert nxt[s, ACTIONS.index("left")] == s - 1 and nxt[s, ACTIONS.index("up")] == s - W
    assert nxt[s, ACTIONS.index("down")] == s + W
    gap = 2 * W + 1  # the gap row lets the agent through, both ways
    assert nxt[gap, ACTIONS.index("right")] == gap + 1 and nxt[gap + 1, ACTIONS.index("left")] == gap
    assert nxt[0, ACTIONS.index("up")] == 0 and nxt[0, ACTIONS.index("left")] == 0  # grid edge: stay


# ---------- soft value iteration ----------


@pytest.mark.parametrize("alpha", [1.0, 0.3])
def test_soft_value_iteration_fixed_point_and_methods_agree(alpha):
    P, reward, _ = _random_mdp()
    by_value = soft_value_iteration(reward, P, GAMMA, alpha=alpha, tol=1e-12, method="value")
    by_policy = soft_value_iteration(reward, P, GAMMA, alpha=alpha, tol=1e-12, method="policy")
    torch.testing.assert_close(by_value["V"], by_policy["V"], atol=1e-9, rtol=0)
    assert by_policy["iterations"] < by_value["iterations"] / 10  # Newton vs a γ-contraction
    Q, V, pi = by_policy["Q"], by_policy["V"], by_policy["pi"]
    torch.testing.assert_close(Q, reward + GAMMA * torch.einsum("bsat,bt->bsa", P, V))  # soft Bellman
    torch.testing.assert_close(V, alpha * torch.logsumexp(Q / alpha, -1))
    torch.testing.assert_close(pi.sum(-1), torch.ones(2, 3, dtype=F64))
    # V is the soft value of its own policy
    torch.testing.assert_close(_soft_policy_value(P, reward, pi, GAMMA, alpha), V, atol=1e-9, rtol=0)


def test_soft_optimal_policy_beats_random_policies():
    P, reward, _ = _random_mdp(seed=3)
    best = soft_value_iteration(reward, P, GAMMA, tol=1e-12)
    generator = torch.Generator().manual_seed(1)
    for _ in range(50):
        pi = torch.softmax(3 * torch.randn(2, 3, 2, generator=generator, dtype=F64), -1)
        assert (_soft_policy_value(P, reward, pi, GAMMA, 1.0) <= best["V"] + 1e-10).all()


def test_small_temperature_matches_brute_force_over_deterministic_policies():
    """As α → 0 the soft value tends to the best of all A^S deterministic policies, state by state."""
    P, reward, _ = _random_mdp(batch=1, states=3, actions=3, seed=5)
    alpha = 1e-4
    soft = soft_value_iteration(reward, P, GAMMA, alpha=alpha, tol=1e-12)
    best = torch.full((1, 3), -math.inf, dtype=F64)
    for actions in itertools.product(range(3), repeat=3):
        pi = torch.nn.functional.one_hot(torch.tensor(actions), 3).to(F64)[None]
        best = torch.maximum(best, _soft_policy_value(P, reward, pi, GAMMA, 0.0))
    bound = alpha * math.log(3) / (1 - GAMMA)  # entropy bonus at most α log A per step
    assert (soft["V"] >= best - 1e-9).all() and (soft["V"] <= best + bound + 1e-9).all()
    assert soft["pi"].max(-1).values.min() > 0.99


# ---------- occupancies and returns ----------


def test_occupancy_and_return_match_the_power_series():
    P, reward, p0 = _random_mdp(seed=2)
    pi = torch.softmax(torch.randn(2, 3, 2, dtype=F64), -1)
    P_pi = torch.einsum("bsa,bsat->bst", pi, P)
    r_pi = (pi * reward).sum(-1)
    p, rho, J = p0.clone(), torch.zeros_like(p0), torch.zeros(2, dtype=F64)
    for t in range(600):
        rho += (1 - GAMMA) * GAMMA**t * p
        J += GAMMA**t * (p * r_pi).sum(-1)
        p = torch.einsum("bs,bst->bt", p, P_pi)
    exact = occupancy(P, pi, p0, GAMMA)
    torch.testing.assert_close(exact, rho, atol=1e-12, rtol=0)
    torch.testing.assert_close(exact.sum(-1), torch.ones(2, dtype=F64))
    torch.testing.assert_close(policy_return(P, pi, p0, reward, GAMMA), J, atol=1e-10, rtol=0)
    w = transition_weights(P, pi, exact)
    assert w.shape == P.shape and torch.allclose(w.sum((1, 2, 3)), torch.ones(2, dtype=F64))


# ---------- discriminators ----------


def test_airl_discriminator_form():
    torch.manual_seed(0)
    S, A = 4, 3
    disc = AIRLDiscriminator(2, S, A, GAMMA)
    with torch.no_grad():
        disc.g.normal_()
        disc.h.normal_()
    log_pi = torch.log_softmax(torch.randn(2, S, A, dtype=F64), -1)
    f = disc.f()
    s, a, s2 = 1, 2, 3
    torch.testing.assert_close(f[:, s, a, s2], disc.g[:, s] + GAMMA * disc.h[:, s2] - disc.h[:, s])
    D = disc.D(log_pi)
    expected = f.exp() / (f.exp() + log_pi.exp()[..., None])
    torch.testing.assert_close(D, expected)
    torch.testing.assert_close((D / (1 - D)).log(), f - log_pi[..., None])  # the policy's reward f − log π
    # potential shaping: g + c with h + c / (1 − γ) leaves f unchanged
    with torch.no_grad():
        disc.g += 2.0
        disc.h += 2.0 / (1 - GAMMA)
    torch.testing.assert_close(disc.f(), f)
    state_action = AIRLDiscriminator(2, S, A, GAMMA, state_only=False)
    assert state_action.g.shape == (2, S, A) and state_action.f().shape == (2, S, A, S)


def test_true_reward_and_soft_value_are_the_airl_optimum():
    """Deterministic dynamics: g = r, h = V* give f(s, a, T(s, a)) = log π_E(a|s): D = 1/2 on the expert."""
    P, r, p0 = _map()
    expert = soft_value_iteration(r, P, GAMMA, tol=1e-13)
    disc = AIRLDiscriminator(1, P.shape[1], len(ACTIONS), GAMMA)
    with torch.no_grad():
        disc.g.copy_(r)
        disc.h.copy_(expert["V"])
    f_next = (disc.f() * P).sum(-1)  # f at the one reachable s'
    torch.testing.assert_close(f_next, expert["log_pi"], atol=1e-10, rtol=0)
    D = (disc.D(expert["log_pi"]) * P).sum(-1)
    torch.testing.assert_close(D, torch.full_like(D, 0.5), atol=1e-10, rtol=0)
    w = transition_weights(P, expert["pi"], occupancy(P, expert["pi"], p0, GAMMA))
    loss = disc.loss(expert["log_pi"], w, w)
    torch.testing.assert_close(loss, torch.tensor(2 * math.log(2), dtype=F64))


def test_gail_discriminator_and_loss():
    disc = GAILDiscriminator(1, 2, 2)
    with torch.no_grad():
        disc.d.copy_(torch.tensor([[[0.0, 1.0], [-2.0, 3.0]]], dtype=F64))
    torch.testing.assert_close(disc.policy_reward(), torch.sigmoid(disc.d).log())
    logits = torch.tensor([0.5, -1.0], dtype=F64)[None]
    w_e = torch.tensor([[0.25, 0.75]], dtype=F64)
    w_p = torch.tensor([[0.6, 0.4]], dtype=F64)
    expected = -(w_e * torch.sigmoid(logits).log()).sum() - (w_p * (1 - torch.sigmoid(logits)).log()).sum()
    torch.testing.assert_close(discriminator_loss(logits, w_e, w_p), expected)


def test_airl_recovers_reward_and_value_on_a_small_map():
    """A real learning test: exact AIRL on a 4 x 5 map recovers r and V* up to constants."""
    P, r, p0 = _map()
    expert = soft_value_iteration(r, P, GAMMA, tol=1e-12)
    out = train_adversarial("airl", P, p0, expert["pi"], GAMMA, iterations=150, disc_steps=5, lr=0.05)
    g, h = out["disc"].g.detach(), out["disc"].h.detach()

    def centred(x):
        return x - x.mean(-1, keepdim=True)

    assert (centred(g) - centred(r)).norm() < 0.05 * centred(r).norm()
    assert (centred(h) - centred(expert["V"])).norm() < 0.05 * centred(expert["V"]).norm()
    kl = (expert["pi"] * (expert["log_pi"] - out["log_pi"])).sum(-1).max()
    assert kl < 1e-3


def test_training_is_deterministic():
    P, r, p0 = _map(height=3, width=4, goal=(1, 3))
    expert = soft_value_iteration(r, P, GAMMA)
    runs = [train_adversarial("airl_sa", P, p0, expert["pi"], GAMMA, iterations=10) for _ in range(2)]
    assert torch.equal(runs[0]["disc"].g, runs[1]["disc"].g) and runs[0]["losses"] == runs[1]["losses"]


# ---------- errors ----------


def test_clear_errors_on_bad_input():
    P, reward, p0 = _random_mdp()
    with pytest.raises(ValueError, match=r"P must have shape \[B, S, A, S\]"):
        soft_value_iteration(reward, P[0], GAMMA)
    with pytest.raises(ValueError, match="probability distributions"):
        soft_value_iteration(reward, 2 * P, GAMMA)
    with pytest.raises(ValueError, match="reward must have shape"):
        soft_value_iteration(reward[:, :2], P, GAMMA)
    with pytest.raises(ValueError, match="gamma must be in"):
        soft_value_iteration(reward, P, 1.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        soft_value_iteration(reward, P, GAMMA, alpha=0.0)
    with pytest.raises(ValueError, match="method must be"):
        soft_value_iteration(reward, P, GAMMA, method="newton")
    with pytest.raises(ValueError, match="kind must be"):
        train_adversarial("maxent", P, p0, torch.full_like(reward, 0.5), GAMMA)
    with pytest.raises(ValueError, match="log_pi must have shape"):
        AIRLDiscriminator(2, 3, 2, GAMMA).logits(torch.zeros(2, 3, 5, dtype=F64))
    with pytest.raises(ValueError, match="grid must be"):
        grid_transitions(0, 3)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("height", 2),
        ("n_maps", 0),
        ("gamma", 1.0),
        ("lr", 0.0),
        ("gail_alpha", -1.0),
        ("cost_scale", -0.1),
        ("threads", -1),
    ],
)
def test_config_validation(key, value):
    from papers.rl.airl.experiment import Config

    with pytest.raises(ValueError, match=key if key != "height" else "grid"):
        Config(**{key: value}).validate()


# ---------- the experiment ----------


def test_maps_move_the_gap_and_keep_the_states():
    from papers.rl.airl.experiment import Config, make_maps

    config = Config(n_maps=5)
    maps = make_maps(config, torch.Generator().manual_seed(0))
    S = config.height * config.width
    assert maps["P_train"].shape == maps["P_new"].shape == (5, S, len(ACTIONS), S)
    assert maps["reward"].shape == (5, S) and maps["reward"].max(-1).values.eq(config.goal_reward).all()
    for b, layout in enumerate(maps["layouts"]):
        assert layout["gap_old"] != layout["gap_new"] and layout["goal"][1] > layout["wall_col"]
        assert not torch.equal(maps["P_train"][b], maps["P_new"][b])


def test_slippery_dynamics_stay_stochastic():
    from papers.rl.airl.experiment import slippery

    P = grid_transitions(3, 4, wall_with_gap(3, 1, 0))[None]
    Q = slippery(P, 0.2)
    torch.testing.assert_close(Q.sum(-1), torch.ones(1, 12, len(ACTIONS), dtype=F64))
    assert torch.equal(slippery(P, 0.0), P)
    torch.testing.assert_close(Q[0, 5, ACTIONS.index("up"), 1], torch.tensor(0.8 + 0.2 / 5, dtype=F64))


def test_smoke_run_is_deterministic_and_resumable(run_smoke):
    from papers.core.runner import resume_run
    from papers.rl.airl import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("reward_maps", "training", "transfer")]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"train_airl", "train_airl_sa", "train_gail", "train_airl_slip", "train_airl_sa_slip"}
    (run_dir / "stages" / "train_gail.json").unlink()
    resumed, _ = resume_run(run_dir, progress=False)
    assert untimed(resumed.metrics) == untimed(result.metrics)
    assert resumed.metrics["airl_train_time_s"] == result.metrics["airl_train_time_s"]
