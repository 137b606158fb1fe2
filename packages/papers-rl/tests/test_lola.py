"""LOLA: exact IPD values against closed forms and Monte Carlo, the LOLA term against finite differences."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.rl.lola import (
    IMP,
    IPD,
    exact_values,
    lola_correction,
    monte_carlo_values,
    policy_step,
    train_pair,
    transition_matrix,
)

F64 = torch.float64
GAMMA = 0.96


def _thetas(batch=4, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, 5, generator=generator, dtype=F64),
        torch.randn(batch, 5, generator=generator, dtype=F64),
    )


# ---------- exact values ----------


def test_transition_matrix_is_stochastic():
    theta1, theta2 = _thetas()
    p0, P = transition_matrix(theta1, theta2)
    assert p0.shape == (4, 4) and P.shape == (4, 4, 4)
    torch.testing.assert_close(p0.sum(-1), torch.ones(4, dtype=F64))
    torch.testing.assert_close(P.sum(-1), torch.ones(4, 4, dtype=F64))
    assert (P >= 0).all()


@pytest.mark.parametrize(
    ("logit1", "logit2", "v1", "v2"),
    [
        (30.0, 30.0, -1.0, -1.0),  # always cooperate: -1 every step
        (-30.0, -30.0, -2.0, -2.0),  # always defect: -2 every step
        (30.0, -30.0, -3.0, 0.0),  # sucker vs defector
    ],
)
def test_constant_policies_match_closed_form(logit1, logit2, v1, v2):
    theta1 = torch.full((5,), logit1, dtype=F64)
    theta2 = torch.full((5,), logit2, dtype=F64)
    values = exact_values(theta1, theta2, IPD, GAMMA)
    torch.testing.assert_close(values[0], torch.tensor(v1 / (1 - GAMMA), dtype=F64))
    torch.testing.assert_close(values[1], torch.tensor(v2 / (1 - GAMMA), dtype=F64))


def test_tit_for_tat_against_always_defect():
    tft = torch.tensor([30.0, 30.0, -30.0, 30.0, -30.0], dtype=F64)  # cooperate iff the opponent did
    defect = torch.full((5,), -30.0, dtype=F64)
    v1, v2 = exact_values(tft, defect, IPD, GAMMA)
    # CD once, then DD forever
    torch.testing.assert_close(v1, torch.tensor(-3.0 - 2.0 * GAMMA / (1 - GAMMA), dtype=F64))
    torch.testing.assert_close(v2, torch.tensor(0.0 - 2.0 * GAMMA / (1 - GAMMA), dtype=F64))


@pytest.mark.parametrize("game", [IPD, IMP])
def test_exact_value_matches_monte_carlo(game):
    theta1, theta2 = _thetas(batch=1, seed=3)
    v1, v2 = exact_values(theta1[0], theta2[0], game, GAMMA)
    m1, se1, m2, se2 = monte_carlo_values(
        theta1[0],
        theta2[0],
        game,
        GAMMA,
        episodes=4000,
        horizon=400,
        generator=torch.Generator().manual_seed(0),
    )
    assert abs(m1 - v1) < 4 * se1 + 1e-3, (m1, se1, v1)
    assert abs(m2 - v2) < 4 * se2 + 1e-3, (m2, se2, v2)
    assert se1 < 0.5  # the check has teeth: a few standard errors are small against |V| ~ 25


def test_value_is_symmetric_under_swapping_agents():
    theta1, theta2 = _thetas(batch=6, seed=1)
    v1, v2 = exact_values(theta1, theta2, IPD, GAMMA)
    w1, w2 = exact_values(theta2, theta1, IPD, GAMMA)
    torch.testing.assert_close(v1, w2)
    torch.testing.assert_close(v2, w1)


def test_batched_values_equal_one_by_one():
    theta1, theta2 = _thetas(batch=5, seed=2)
    v1, _ = exact_values(theta1, theta2, IPD, GAMMA)
    single = torch.stack([exact_values(a, b, IPD, GAMMA)[0] for a, b in zip(theta1, theta2, strict=True)])
    torch.testing.assert_close(v1, single)


# ---------- the LOLA term ----------


def _grad_theta2(values_index: int, theta1: torch.Tensor, theta2: torch.Tensor) -> torch.Tensor:
    theta2 = theta2.detach().requires_grad_(True)
    value = exact_values(theta1, theta2, IPD, GAMMA)[values_index]
    return torch.autograd.grad(value.sum(), theta2)[0]


def test_lola_correction_matches_finite_differences():
    """(∇θ2 V1)ᵀ ∇θ1∇θ2 V2 = d/dθ1 ⟨∇θ2 V2(θ1, θ2), c⟩ with c = ∇θ2 V1 frozen, by central differences."""
    theta1, theta2 = _thetas(batch=1, seed=4)
    theta1, theta2 = theta1[0], theta2[0]
    c = _grad_theta2(0, theta1, theta2)
    h = 1e-5
    fd = torch.empty(5, dtype=F64)
    for j in range(5):
        e = torch.zeros(5, dtype=F64)
        e[j] = h
        plus = (_grad_theta2(1, theta1 + e, theta2) * c).sum()
        minus = (_grad_theta2(1, theta1 - e, theta2) * c).sum()
        fd[j] = (plus - minus) / (2 * h)
    correction = lola_correction(theta1, theta2, IPD, GAMMA)
    assert correction.abs().max() > 1e-2  # not trivially zero
    torch.testing.assert_close(correction, fd, rtol=1e-6, atol=1e-6)


def test_lola_correction_is_the_shaping_part_of_the_lookahead_gradient():
    """d/dθ1 V1(θ1, θ2 + η∇θ2V2) = ∇θ1V1 + η[shaping + (∇θ1∇θ2V1) ∇θ2V2] + O(η²)."""
    theta1, theta2 = _thetas(batch=1, seed=5)
    theta1, theta2 = theta1[0], theta2[0]
    eta = 1e-4

    def lookahead(t1):
        t2 = theta2.detach().requires_grad_(True)
        v2 = exact_values(t1, t2, IPD, GAMMA)[1]
        (g22,) = torch.autograd.grad(v2, t2, create_graph=True)
        return exact_values(t1, theta2 + eta * g22, IPD, GAMMA)[0]

    t1 = theta1.clone().requires_grad_(True)
    (full,) = torch.autograd.grad(lookahead(t1), t1)
    t1 = theta1.clone().requires_grad_(True)
    t2 = theta2.clone().requires_grad_(True)
    v1, v2 = exact_values(t1, t2, IPD, GAMMA)
    g11, g12 = torch.autograd.grad(v1, (t1, t2), create_graph=True, retain_graph=True)
    (g22,) = torch.autograd.grad(v2, t2, retain_graph=True)
    (other,) = torch.autograd.grad((g12 * g22).sum(), t1)  # (∇θ1∇θ2 V1) ∇θ2 V2
    first_order = (full - g11.detach()) / eta
    shaping = lola_correction(theta1, theta2, IPD, GAMMA)
    torch.testing.assert_close(first_order, shaping + other, rtol=1e-3, atol=1e-3)


def test_lola_with_eta_zero_is_the_naive_learner():
    theta1, theta2 = _thetas(batch=3, seed=6)
    naive = policy_step(theta1, theta2, ("naive", "naive"), lr=0.5, game=IPD)
    lola = policy_step(theta1, theta2, ("lola", "lola"), lr=0.5, eta=0.0, game=IPD)
    for a, b in zip(naive, lola, strict=True):
        torch.testing.assert_close(a, b)
    different = policy_step(theta1, theta2, ("lola", "lola"), lr=0.5, eta=1.0, game=IPD)
    assert not torch.allclose(different[0], naive[0])


def test_policy_step_uses_each_agents_own_correction():
    theta1, theta2 = _thetas(batch=2, seed=7)
    new1, new2, _, _ = policy_step(theta1, theta2, ("lola", "naive"), lr=0.3, eta=2.0, game=IPD)
    t1 = theta1.clone().requires_grad_(True)
    t2 = theta2.clone().requires_grad_(True)
    v1, v2 = exact_values(t1, t2, IPD, GAMMA)
    (g1,) = torch.autograd.grad(v1.sum(), t1, retain_graph=True)
    (g2,) = torch.autograd.grad(v2.sum(), t2)
    c1 = lola_correction(theta1, theta2, IPD, GAMMA, agent=1)
    torch.testing.assert_close(new1, theta1 + 0.3 * g1 + 0.3 * 2.0 * c1)
    torch.testing.assert_close(new2, theta2 + 0.3 * g2)
    # agent 2's mirrored correction equals agent 1's with the roles swapped (the IPD is symmetric)
    c2 = lola_correction(theta1, theta2, IPD, GAMMA, agent=2)
    torch.testing.assert_close(c2, lola_correction(theta2, theta1, IPD, GAMMA, agent=1))


def test_short_training_lola_cooperates_and_naive_defects():
    theta1, theta2 = _thetas(batch=16, seed=8)
    nl = train_pair(theta1, theta2, ("naive", "naive"), 40)
    lola = train_pair(theta1, theta2, ("lola", "lola"), 40)
    assert nl["reward1"].shape == (41, 16)
    assert nl["reward1"][-1].mean() < -1.8 and lola["reward1"][-1].mean() > -1.3


# ---------- errors ----------


def test_clear_errors_on_bad_input():
    theta1, theta2 = _thetas()
    with pytest.raises(ValueError, match=r"shape \[\.\.\., 5\]"):
        exact_values(theta1[:, :4], theta2[:, :4])
    with pytest.raises(ValueError, match="same shape"):
        exact_values(theta1, theta2[:2])
    with pytest.raises(ValueError, match="gamma"):
        exact_values(theta1, theta2, IPD, gamma=1.0)
    with pytest.raises(ValueError, match="unknown learner 'sgd'"):
        policy_step(theta1, theta2, ("sgd", "naive"))
    with pytest.raises(ValueError, match="agent must be 1 or 2"):
        lola_correction(theta1, theta2, agent=3)
    with pytest.raises(ValueError, match="one policy pair"):
        monte_carlo_values(theta1, theta2)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("seeds", 0),
        ("steps", 0),
        ("lr", 0.0),
        ("eta", -1.0),
        ("gamma", 1.0),
        ("init_std", float("nan")),
        ("threads", -1),
        ("imp_steps", 0),
    ],
)
def test_config_validation(key, value):
    from papers.rl.lola.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


# ---------- the experiment ----------


def test_smoke_run_is_deterministic(run_smoke):
    from papers.rl.lola import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/policy.png", "figures/reward.png"]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"ipd_nl_nl", "ipd_lola_lola", "ipd_lola_nl", "imp_nl_nl", "imp_lola_lola"}
    other, _ = run_smoke(EXPERIMENT, seed=1)
    assert other.metrics["lola_lola_reward"] != result.metrics["lola_lola_reward"]
