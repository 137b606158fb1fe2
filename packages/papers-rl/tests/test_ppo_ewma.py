"""PPO-EWMA: the decoupled objective by hand, its PPO special case, the EWMA, the scaling rule, runs."""

from __future__ import annotations

import math

import pytest
import torch

from papers.rl.agents import make_vector_env
from papers.rl.ppo import make_agent, ppo_loss
from papers.rl.ppo_ewma import (
    EXPERIMENT,
    DecoupledSettings,
    binned_returns,
    center_of_mass_beta,
    decoupled_ppo_loss,
    ewma_update_,
    scaled_hyperparameters,
    train_decoupled,
)


def test_decoupled_loss_matches_a_hand_computation():
    new = torch.log(torch.tensor([0.5, 0.3, 0.9, 0.2]))
    prox = torch.log(torch.tensor([0.25, 0.3, 0.5, 0.4]))  # r = 2, 1, 1.8, 0.5
    behav = torch.log(torch.tensor([0.5, 0.6, 0.5, 0.2]))  # w = 0.5, 0.5, 1, 2
    adv = torch.tensor([1.0, -1.0, -2.0, 0.5])
    parts = decoupled_ppo_loss(new, prox, behav, adv, clip_coef=0.2)
    # min(r A, clip(r) A): 1.2, -1, -3.6, 0.25; weighted: 0.6, -0.5, -3.6, 0.5
    assert parts["policy_loss"].item() == pytest.approx(-(0.6 - 0.5 - 3.6 + 0.5) / 4)
    assert parts["clipfrac"].item() == pytest.approx(0.75)
    assert parts["mean_weight"].item() == pytest.approx(1.0)
    r, w = torch.tensor([2.0, 1.0, 1.8, 0.5]), torch.tensor([0.5, 0.5, 1.0, 2.0])
    assert parts["approx_kl"].item() == pytest.approx((w * ((r - 1) - r.log())).mean().item())


def test_prox_equal_to_behaviour_is_ppo():
    torch.manual_seed(0)
    new, old, adv = torch.randn(32) * 0.3 - 1, torch.randn(32) * 0.3 - 1, torch.randn(32)
    new.requires_grad_()
    ours = decoupled_ppo_loss(new, old, old, adv, clip_coef=0.2)["policy_loss"]
    zeros = torch.zeros(32)
    ref = ppo_loss(new, old, adv, zeros, zeros, zeros, zeros, norm_adv=False, clip_coef=0.2)["policy_loss"]
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)
    (g1,) = torch.autograd.grad(ours, new)
    (g2,) = torch.autograd.grad(ref, new)
    torch.testing.assert_close(g1, g2)


def test_gradient_flows_only_through_the_current_policy_and_is_weighted():
    # inside the clip range d loss / d log pi_theta = -w r A / n; the proximal log-prob gets no gradient
    new = torch.log(torch.tensor([0.3, 0.3])).requires_grad_()
    prox = torch.log(torch.tensor([0.3, 0.3])).requires_grad_()
    behav = torch.log(torch.tensor([0.6, 0.15]))  # w = 0.5, 2
    decoupled_ppo_loss(new, prox, behav, torch.tensor([1.0, 1.0]))["policy_loss"].backward()
    torch.testing.assert_close(new.grad, torch.tensor([-0.25, -1.0]))
    assert prox.grad is None or torch.all(prox.grad == 0)


def test_loss_rejects_bad_input():
    with pytest.raises(ValueError, match="share a shape"):
        decoupled_ppo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="clip_coef"):
        decoupled_ppo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), clip_coef=0)


def test_ewma_update_is_the_exponential_average():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    a0 = [p.detach().clone() for p in a.parameters()]
    ewma_update_(a, b, 0.75)
    for p, p0, q in zip(a.parameters(), a0, b.parameters(), strict=True):
        torch.testing.assert_close(p, 0.75 * p0 + 0.25 * q)
    # repeated updates towards a fixed source: the gap shrinks by beta each time
    for _ in range(9):
        ewma_update_(a, b, 0.75)
    for p, p0, q in zip(a.parameters(), a0, b.parameters(), strict=True):
        torch.testing.assert_close(p - q, 0.75**10 * (p0 - q))
    ewma_update_(a, b, 0.0)  # beta = 0 copies
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    with pytest.raises(ValueError, match="beta"):
        ewma_update_(a, b, 1.0)
    with pytest.raises(ValueError, match="shapes"):
        ewma_update_(a, torch.nn.Linear(2, 3), 0.5)


def test_scaling_rule_keeps_the_ewma_age_in_samples():
    hp = scaled_hyperparameters(
        0.25, lr=1e-3, beta_prox=0.9, adam_betas=(0.9, 0.999), scale_adam_betas=True, beta_adv=0.5
    )
    assert hp["lr"] == pytest.approx(2.5e-4)
    assert hp["beta_prox"] == pytest.approx(0.9**0.25)
    # per-sample decay is unchanged: beta_c ** (samples / (c B)) == beta ** (samples / B)
    assert hp["beta_prox"] ** 4 == pytest.approx(0.9)
    assert hp["adam_betas"][1] == pytest.approx(0.999**0.25)
    assert hp["beta_adv"] == pytest.approx(0.5**0.25)
    # first-order agreement with 1 - beta -> c (1 - beta)
    assert 1 - scaled_hyperparameters(0.5, 1.0, 0.99)["beta_prox"] == pytest.approx(0.005, rel=1e-2)
    assert scaled_hyperparameters(0.5, 1.0, 0.9)["adam_betas"] == (0.9, 0.999)  # the default: step size only
    same = {"lr": 3e-4, "beta_prox": 0.8, "adam_betas": (0.9, 0.999), "beta_adv": None}
    assert scaled_hyperparameters(1.0, 3e-4, 0.8) == same
    with pytest.raises(ValueError, match="positive"):
        scaled_hyperparameters(0.0, 1e-3, 0.9)
    with pytest.raises(ValueError, match="beta_prox"):
        scaled_hyperparameters(0.5, 1e-3, 1.0)
    with pytest.raises(ValueError, match="beta_adv"):
        scaled_hyperparameters(0.5, 1e-3, 0.5, beta_adv=-0.1)


def test_center_of_mass_beta_matches_ppo_mean_age():
    k = 16
    beta = center_of_mass_beta(k)
    assert beta / (1 - beta) == pytest.approx((k - 1) / 2)
    assert center_of_mass_beta(1) == 0.0
    with pytest.raises(ValueError):
        center_of_mass_beta(0)


def test_binned_returns():
    episodes = [(10.0, 10, 5), (20.0, 20, 10), (30.0, 30, 11), (40.0, 40, 40)]
    curve = binned_returns(episodes, total_steps=40, bin_steps=10)
    assert curve[0] == 15.0 and curve[1] == 30.0 and math.isnan(curve[2]) and curve[3] == 40.0
    # at the midpoint with 2 envs: 5 - 10 -> bin 0, 10 - 20 -> 0, 11 - 30 -> 0, 40 - 40 = 0 -> 0
    assert binned_returns(episodes, total_steps=40, bin_steps=10, num_envs=2)[0] == 25.0
    mid = binned_returns([(1.0, 10, 30)], total_steps=40, bin_steps=10, num_envs=2)  # midpoint 20
    assert mid[1] == 1.0 and math.isnan(mid[2])
    with pytest.raises(ValueError, match="num_envs"):
        binned_returns(episodes, 40, 10, num_envs=0)


def _train(proximal: str, seed: int = 0, steps: int = 512, adv_norm_beta=None):
    envs = make_vector_env("CartPole-v1", 2, seed)
    torch.manual_seed(seed)
    agent = make_agent(envs.single_observation_space, envs.single_action_space, (16,))
    settings = DecoupledSettings(
        total_steps=steps, num_steps=64, num_minibatches=2, update_epochs=2, lr=1e-3, proximal=proximal,
        beta_prox=0.8, adv_norm_beta=adv_norm_beta,
    )  # fmt: skip
    history = train_decoupled(envs, agent, settings, seed=seed)
    envs.close()
    return agent, history


def test_training_is_deterministic_and_ewma_differs_from_ppo():
    a1, h1 = _train("ewma")
    a2, h2 = _train("ewma")
    for p, q in zip(a1.parameters(), a2.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert [u["policy_loss"] for u in h1["updates"]] == [u["policy_loss"] for u in h2["updates"]]
    _, h_ppo = _train("old")
    assert all(u["behav_prox_kl"] == 0 and u["mean_weight"] == pytest.approx(1.0) for u in h_ppo["updates"])
    # after the first iteration the EWMA's policy lags behind the new behaviour policy: w != 1
    assert any(u["behav_prox_kl"] > 0 for u in h1["updates"][1:])
    _, h_adv = _train("ewma", adv_norm_beta=0.5)  # the EWMA advantage normalisation runs and differs
    assert [u["policy_loss"] for u in h_adv["updates"]] != [u["policy_loss"] for u in h1["updates"]]


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="proximal"):
        DecoupledSettings(proximal="new").validate(2)
    with pytest.raises(ValueError, match="divisible"):
        DecoupledSettings(num_steps=3, num_minibatches=2).validate(1)
    with pytest.raises(ValueError, match="beta_prox"):
        DecoupledSettings(beta_prox=1.5).validate(2)
    with pytest.raises(ValueError, match="adv_norm_beta"):
        DecoupledSettings(adv_norm_beta=1.0).validate(2)


def test_config_validation():
    from papers.rl.ppo_ewma.experiment import Config

    Config().validate()
    with pytest.raises(ValueError, match="whole number of envs"):
        Config(batch_scales=(1.0, 0.3)).validate()
    with pytest.raises(ValueError, match="at least two"):
        Config(batch_scales=(1.0,)).validate()
    with pytest.raises(ValueError, match="seeds"):
        Config(seeds=0).validate()
    with pytest.raises(ValueError, match="bin_steps"):
        Config(bin_steps=0).validate()


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    assert "ppo_curve_gap" in result.metrics and "ppo_ewma_curve_gap" in result.metrics
    assert len(result.checks) == 4
    assert (run_dir / "figures" / "learning_curves.png").exists() or result.figures
