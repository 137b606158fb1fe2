"""IMPALA: V-trace against its double-sum definition, its reductions, episode ends, the loss, runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from papers.core.errors import PapersError
from papers.rl.impala import (
    EXPERIMENT,
    LearnerSettings,
    correction_log_rhos,
    impala_loss,
    train_stale,
    vtrace,
    vtrace_double_sum,
)

GAMMA = 0.9


def _chain(T=7, B=3, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    log_rhos = spread * torch.randn(T, B, generator=g, dtype=torch.float64)
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    values = torch.randn(T, B, generator=g, dtype=torch.float64)
    bootstrap = torch.randn(B, generator=g, dtype=torch.float64)
    next_values = torch.cat([values[1:], bootstrap[None]])
    discounts = torch.full((T, B), GAMMA, dtype=torch.float64)
    return log_rhos, rewards, values, next_values, discounts, bootstrap


@pytest.mark.parametrize(("rho_bar", "c_bar", "lam"), [(1.0, 1.0, 1.0), (0.7, 0.4, 1.0), (2.0, 1.0, 0.8),
                                                       (math.inf, math.inf, 1.0)])  # fmt: skip
def test_vtrace_equals_the_double_sum_definition(rho_bar, c_bar, lam):
    log_rhos, rewards, values, next_values, discounts, bootstrap = _chain()
    # many ratios exceed the truncation levels, so the clipping is exercised
    assert (log_rhos.exp() > max(rho_bar, c_bar) if math.isfinite(rho_bar) else log_rhos.exp() > 1).any()
    vs, _ = vtrace(log_rhos, rewards, values, next_values, discounts, rho_bar=rho_bar, c_bar=c_bar, lam=lam)
    for b in range(3):
        expected = vtrace_double_sum(log_rhos[:, b], rewards[:, b], values[:, b], bootstrap[b], GAMMA,
                                     rho_bar=rho_bar, c_bar=c_bar, lam=lam)  # fmt: skip
        np.testing.assert_allclose(vs[:, b].numpy(), expected, rtol=1e-10, atol=1e-10)


def test_vtrace_policy_gradient_advantage_uses_the_next_target():
    log_rhos, rewards, values, next_values, discounts, bootstrap = _chain()
    vs, adv = vtrace(log_rhos, rewards, values, next_values, discounts, rho_bar=1.0)
    vs_next = torch.cat([vs[1:], bootstrap[None]])
    expected = log_rhos.exp().clamp(max=1.0) * (rewards + GAMMA * vs_next - values)
    torch.testing.assert_close(adv, expected)


def _n_step_returns(rewards, bootstrap, gamma):
    out, running = np.empty(len(rewards)), bootstrap
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def test_on_policy_with_lambda_one_gives_n_step_bellman_returns():
    _, rewards, values, next_values, discounts, bootstrap = _chain()
    vs, _ = vtrace(torch.zeros_like(rewards), rewards, values, next_values, discounts)
    for b in range(3):
        expected = _n_step_returns(rewards[:, b].numpy(), bootstrap[b].item(), GAMMA)
        np.testing.assert_allclose(vs[:, b].numpy(), expected, rtol=1e-10)


def test_c_bar_zero_gives_one_step_td_targets():
    log_rhos, rewards, values, next_values, discounts, _ = _chain()
    vs, _ = vtrace(log_rhos, rewards, values, next_values, discounts, rho_bar=1.0, c_bar=0.0)
    rho = log_rhos.exp().clamp(max=1.0)
    torch.testing.assert_close(vs, values + rho * (rewards + GAMMA * next_values - values))
    # and on-policy: the plain TD(0) target r + γ V(x')
    vs0, _ = vtrace(torch.zeros_like(rewards), rewards, values, next_values, discounts, c_bar=0.0)
    torch.testing.assert_close(vs0, rewards + GAMMA * next_values)


def test_termination_stops_bootstrapping_and_the_trace():
    _, rewards, values, next_values, discounts, bootstrap = _chain(T=6, B=1)
    discounts[2] = 0.0  # terminated at step 2: steps 3.. are the next episode
    vs, adv = vtrace(torch.zeros_like(rewards), rewards, values, next_values, discounts)
    r = rewards[:, 0].numpy()
    first = _n_step_returns(r[:3], 0.0, GAMMA)  # no bootstrap after the termination
    second = _n_step_returns(r[3:], bootstrap[0].item(), GAMMA)
    np.testing.assert_allclose(vs[:, 0].numpy(), np.concatenate([first, second]), rtol=1e-10)
    assert adv[2, 0].item() == pytest.approx(r[2] - values[2, 0].item())


def test_truncation_bootstraps_from_the_final_observation_and_cuts_the_trace():
    _, rewards, values, next_values, discounts, bootstrap = _chain(T=5, B=1)
    final_value = 3.0  # V of the true last observation at the time-limit cut after step 1
    next_values[1] = final_value
    done = torch.zeros_like(rewards)
    done[1] = 1.0
    vs, _ = vtrace(torch.zeros_like(rewards), rewards, values, next_values, discounts, done)
    r = rewards[:, 0].numpy()
    first = _n_step_returns(r[:2], final_value, GAMMA)
    second = _n_step_returns(r[2:], bootstrap[0].item(), GAMMA)
    np.testing.assert_allclose(vs[:, 0].numpy(), np.concatenate([first, second]), rtol=1e-10)


def test_shapes_and_one_dimensional_input():
    log_rhos, rewards, values, next_values, discounts, _ = _chain(T=4, B=5)
    vs, adv = vtrace(log_rhos, rewards, values, next_values, discounts)
    assert vs.shape == adv.shape == (4, 5)
    vs1, _ = vtrace(log_rhos[:, 0], rewards[:, 0], values[:, 0], next_values[:, 0], discounts[:, 0])
    torch.testing.assert_close(vs1, vs[:, 0])


def test_bad_inputs_are_errors():
    log_rhos, rewards, values, next_values, discounts, _ = _chain()
    with pytest.raises(ValueError, match="one shape"):
        vtrace(log_rhos[:3], rewards, values, next_values, discounts)
    with pytest.raises(ValueError, match="rho_bar > 0"):
        vtrace(log_rhos, rewards, values, next_values, discounts, rho_bar=0.0)
    with pytest.raises(ValueError, match="lam in"):
        vtrace(log_rhos, rewards, values, next_values, discounts, lam=1.5)
    with pytest.raises(ValueError, match="correction must be one of"):
        correction_log_rhos("retrace", log_rhos, log_rhos)
    with pytest.raises(ValueError, match="less than one batch"):
        LearnerSettings(total_steps=10).validate()


@pytest.mark.parametrize(("key", "value", "message"), [("lag", "0", "lag must be >= 1"),
                                                       ("seeds", "0", "seeds must be >= 1"),
                                                       ("c_bar", "-1", "c_bar >= 0"),
                                                       ("gamma", "2", "gamma and lam")])  # fmt: skip
def test_bad_config_is_a_one_line_error(key, value, message):
    with pytest.raises(PapersError, match=message):
        EXPERIMENT.make_config("default", {key: value})


def test_loss_gradient_is_rho_weighted_policy_gradient():
    T, B, A = 3, 2, 2
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(T, B, A, generator=g, requires_grad=True)
    values = torch.randn(T, B, generator=g, requires_grad=True)
    actions = torch.randint(A, (T, B), generator=g)
    behaviour_logp = torch.log_softmax(torch.randn(T, B, A, generator=g), -1).gather(-1, actions[..., None])[
        ..., 0
    ]
    rewards, next_values = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    discounts, done = torch.full((T, B), GAMMA), torch.zeros(T, B)
    parts = impala_loss(logits, values, actions, behaviour_logp, rewards, next_values, discounts, done,
                        vf_coef=0.0, ent_coef=0.0)  # fmt: skip
    parts["loss"].backward()
    target_logp = torch.log_softmax(logits.detach(), -1).gather(-1, actions[..., None])[..., 0]
    _, adv = vtrace(target_logp - behaviour_logp, rewards, values.detach(), next_values, discounts, done)
    logits2 = logits.detach().clone().requires_grad_()
    logp = torch.log_softmax(logits2, -1).gather(-1, actions[..., None])[..., 0]
    (-(logp * adv).mean()).backward()
    torch.testing.assert_close(logits.grad, logits2.grad)
    assert values.grad.abs().sum() == 0  # vf_coef = 0: the targets carry no gradient


def test_corrections_coincide_on_policy():
    # lag 0: π = μ at every update, so every arm computes the same loss and the same run
    runs = [
        train_stale(
            "CartPole-v1", LearnerSettings(correction=c, lag=0, num_envs=2, unroll=5, total_steps=50), seed=0
        )  # fmt: skip
        for c in ("vtrace", "none", "is")
    ]
    weights = [torch.cat([p.detach().flatten() for p in r["learner"].parameters()]) for r in runs]
    assert torch.allclose(weights[0], weights[1], atol=1e-6) and torch.allclose(
        weights[0], weights[2], atol=1e-6
    )
    assert runs[0]["updates"][-1]["behaviour_kl"] == pytest.approx(0.0, abs=1e-6)


def test_stale_actors_act_with_an_older_policy():
    out = train_stale(
        "CartPole-v1", LearnerSettings(lag=3, num_envs=2, unroll=5, total_steps=100, lr=1e-2), seed=0
    )
    kls = [u["behaviour_kl"] for u in out["updates"]]
    assert kls[0] == pytest.approx(0.0, abs=1e-6) and max(kls[3:]) > 1e-6


def test_same_seed_same_run():
    def once(seed):
        out = train_stale(
            "CartPole-v1", LearnerSettings(lag=2, num_envs=2, unroll=5, total_steps=100), seed=seed
        )
        return out["episodes"], torch.cat([p.detach().flatten() for p in out["learner"].parameters()])

    (ep_a, w_a), (ep_b, w_b), (_, w_c) = once(3), once(3), once(4)
    assert ep_a == ep_b and torch.equal(w_a, w_b) and not torch.equal(w_a, w_c)


def test_smoke_run(run_smoke):
    result, _ = run_smoke(EXPERIMENT)
    assert result.metrics["env_steps_per_run"] == 320
    assert {"vtrace_late_return", "none_late_return", "is_late_return", "onpolicy_late_return"} <= set(
        result.metrics
    )
