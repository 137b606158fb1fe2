"""PPO: the clipped objective by hand, truncation bootstrapping, initialisation, schedule, learning, runs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from gymnasium import spaces

from papers.core.errors import PapersError
from papers.rl.agents import CORRIDOR_ID, IDENTITY_ID, compute_gae, evaluate, make_env, make_vector_env
from papers.rl.ppo import (
    EXPERIMENT,
    MINIGRID_EXPERIMENT,
    NatureCNNActorCritic,
    PPOSettings,
    act,
    bootstrap_truncated,
    lr_at,
    make_agent,
    observation_encoder,
    policy_function,
    ppo_loss,
    train_ppo,
)

# ---- the objective --------------------------------------------------------------------------------------


def _loss_inputs():
    new_logprob = torch.log(torch.tensor([0.5, 0.3, 0.9, 0.2]))
    old_logprob = torch.log(torch.tensor([0.25, 0.3, 0.5, 0.4]))  # ratios 2, 1, 1.8, 0.5
    advantages = torch.tensor([1.0, -1.0, -2.0, 0.5])
    new_value = torch.tensor([1.0, 0.0, 2.0, -1.0])
    old_value = torch.tensor([0.5, 0.1, 2.5, -1.0])
    returns = torch.tensor([2.0, 0.0, 1.0, 0.0])
    entropy = torch.tensor([0.6, 0.6, 0.2, 0.2])
    return new_logprob, old_logprob, advantages, new_value, old_value, returns, entropy


def test_clipped_loss_matches_a_hand_computation():
    parts = ppo_loss(*_loss_inputs(), clip_coef=0.2, ent_coef=0.01, vf_coef=0.5, norm_adv=False)
    # min(r A, clip(r, 0.8, 1.2) A): (2, 1.2)*1 -> 1.2; (1, 1)*-1 -> -1; (1.8, 1.2)*-2 -> -3.6;
    # (.5, .8)*.5 -> .25
    policy = -(1.2 - 1.0 - 3.6 + 0.25) / 4
    # V clipped to V_old +- 0.2: 0.7, 0.0, 2.3, -1.0; max of squared errors: 1, 0, 1.69, 1
    value = 0.5 * (max(1.0, 1.69) + 0.0 + max(1.0, 1.69) + 1.0) / 4
    assert parts["policy_loss"].item() == pytest.approx(policy)
    assert parts["value_loss"].item() == pytest.approx(value)
    assert parts["entropy"].item() == pytest.approx(0.4)
    assert parts["loss"].item() == pytest.approx(policy + 0.5 * value - 0.01 * 0.4)
    assert parts["clipfrac"].item() == pytest.approx(0.75)
    ratios = torch.tensor([2.0, 1.0, 1.8, 0.5])
    assert parts["approx_kl"].item() == pytest.approx(((ratios - 1) - ratios.log()).mean().item())


def test_unclipped_and_unclipped_value_variants():
    parts = ppo_loss(*_loss_inputs(), clip_policy=False, clip_vloss=False, norm_adv=False)
    assert parts["policy_loss"].item() == pytest.approx(-(2.0 - 1.0 - 3.6 + 0.25) / 4)
    assert parts["value_loss"].item() == pytest.approx(0.5 * (1.0 + 0.0 + 1.0 + 1.0) / 4)


def test_advantages_are_normalised_per_minibatch():
    new_logprob, old_logprob, advantages, *rest = _loss_inputs()
    scaled = ppo_loss(new_logprob, old_logprob, 10 * advantages + 3, *rest)
    plain = ppo_loss(new_logprob, old_logprob, advantages, *rest)
    assert scaled["policy_loss"].item() == pytest.approx(plain["policy_loss"].item(), abs=1e-6)


def test_clipping_removes_the_gradient_outside_the_trust_region():
    # ratio 2 with A > 0 and ratio 0.5 with A < 0 are clipped: no gradient; inside the range there is one
    log_new = torch.log(torch.tensor([0.5, 0.125, 0.25])).requires_grad_()
    log_old = torch.log(torch.tensor([0.25, 0.25, 0.25]))
    advantages = torch.tensor([1.0, -1.0, 1.0])
    zeros = torch.zeros(3)
    ppo_loss(log_new, log_old, advantages, zeros, zeros, zeros, zeros, norm_adv=False)["loss"].backward()
    assert log_new.grad[0] == 0 and log_new.grad[1] == 0
    assert log_new.grad[2] == pytest.approx(-1 / 3)  # d(-r A / 3)/dlog r at r = 1


def test_loss_rejects_mismatched_shapes():
    new_logprob, old_logprob, advantages, new_value, old_value, returns, entropy = _loss_inputs()
    with pytest.raises(ValueError, match="log-probabilities and advantages"):
        ppo_loss(new_logprob, old_logprob[:3], advantages, new_value, old_value, returns, entropy)
    with pytest.raises(ValueError, match="values and returns"):
        ppo_loss(new_logprob, old_logprob, advantages, new_value[:2], old_value, returns, entropy)


def test_act_matches_the_categorical_distribution():
    agent = make_agent(spaces.Box(-1, 1, (4,)), spaces.Discrete(3))
    obs, actions = torch.randn(5, 4), torch.tensor([0, 1, 2, 1, 0])
    _, logprob, entropy, value = act(agent, obs, actions)
    _, ref_logprob, ref_entropy, ref_value = agent(obs, actions)
    assert torch.allclose(logprob, ref_logprob, atol=1e-6) and torch.allclose(entropy, ref_entropy, atol=1e-6)
    assert torch.equal(value, ref_value)


# ---- truncation vs termination ----------------------------------------------------------------------------


def test_truncation_is_bootstrapped_from_the_final_observation():
    # corridor of 10 cells, cut after 3 steps: walking right, the cut happens at cell 3, the reset is cell 0
    envs = make_vector_env(CORRIDOR_ID, 2, seed=0, length=10, max_episode_steps=3)
    envs.reset(seed=0)
    encode = observation_encoder(envs.single_observation_space)
    value_fn = lambda x: x.argmax(-1).float()  # noqa: E731  V(cell k) = k
    for _ in range(3):
        next_obs, reward, terminated, truncated, infos = envs.step(np.ones(2, dtype=np.int64))
    assert truncated.all() and not terminated.any() and (next_obs == 0).all()
    rewards, cut = bootstrap_truncated(
        torch.as_tensor(reward, dtype=torch.float32),
        terminated,
        truncated,
        next_obs,
        infos,
        value_fn,
        encode,
        0.9,
    )
    assert cut == 2
    assert torch.allclose(rewards, torch.tensor([0.9 * 3, 0.9 * 3]))  # gamma * V(cell 3), not V(cell 0)
    # a termination is not bootstrapped
    same, cut = bootstrap_truncated(
        torch.ones(2), np.array([True, True]), np.array([False, True]), next_obs, infos, value_fn, encode, 0.9
    )
    assert cut == 0 and torch.equal(same, torch.ones(2))


def test_gae_with_a_bootstrapped_truncation_cuts_the_recursion():
    gamma, lam = 0.9, 0.8
    values = torch.tensor([[1.0], [2.0], [5.0]])  # step 2 starts a new episode after a cut at step 1
    rewards = torch.tensor([[0.0], [0.5 + gamma * 3.0], [1.0]])  # step 1 truncated, V(s_final) = 3
    dones = torch.tensor([[0.0], [0.0], [1.0]])
    advantages, returns = compute_gae(
        rewards, values, dones, torch.tensor([4.0]), torch.tensor([0.0]), gamma, lam
    )
    delta1 = 0.5 + gamma * 3.0 - 2.0  # bootstrapped from the final observation, not from V(reset) = 5
    delta0 = 0.0 + gamma * 2.0 - 1.0
    assert advantages[1, 0].item() == pytest.approx(delta1)
    assert advantages[0, 0].item() == pytest.approx(delta0 + gamma * lam * delta1)
    assert advantages[2, 0].item() == pytest.approx(1.0 + gamma * 4.0 - 5.0)
    assert torch.allclose(returns, advantages + values)


def test_training_counts_truncations_on_a_time_limited_env():
    envs = make_vector_env("CartPole-v1", 2, seed=0, max_episode_steps=10)
    agent = make_agent(envs.single_observation_space, envs.single_action_space)
    history = train_ppo(envs, agent, PPOSettings(total_steps=128, num_steps=32, update_epochs=1), seed=0)
    assert sum(u["truncations"] for u in history["updates"]) > 0


# ---- initialisation and schedule --------------------------------------------------------------------------


def _singular_values(weight: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1))


def test_orthogonal_initialisation_gains():
    agent = make_agent(spaces.Box(-1, 1, (4,)), spaces.Discrete(2))
    for net in (agent.actor, agent.critic):
        linears = [m for m in net if isinstance(m, torch.nn.Linear)]
        for hidden in linears[:-1]:
            s = _singular_values(hidden.weight)
            assert torch.allclose(s, torch.full_like(s, math.sqrt(2)), atol=1e-4)
            assert torch.equal(hidden.bias, torch.zeros_like(hidden.bias))
    assert torch.allclose(_singular_values(agent.actor[-1].weight), torch.full((2,), 0.01), atol=1e-6)
    assert _singular_values(agent.critic[-1].weight).item() == pytest.approx(1.0, abs=1e-5)
    cnn = NatureCNNActorCritic(4, 6)
    convs = [m for m in cnn.trunk if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    assert len(convs) == 4
    for layer in convs:
        s = _singular_values(layer.weight)
        assert torch.allclose(s, torch.full_like(s, math.sqrt(2)), atol=1e-4)
    assert torch.allclose(_singular_values(cnn.actor.weight), torch.full((6,), 0.01), atol=1e-6)
    assert _singular_values(cnn.critic.weight).item() == pytest.approx(1.0, abs=1e-5)


def test_initial_policy_is_near_uniform():
    agent = make_agent(spaces.Box(-1, 1, (4,)), spaces.Discrete(2))
    _, logprob, entropy, _ = act(agent, torch.randn(64, 4))
    assert torch.allclose(entropy, torch.full((64,), math.log(2)), atol=1e-3)


def test_learning_rate_anneals_linearly_to_zero():
    settings = PPOSettings(lr=1e-3, total_steps=4 * 32 * 5, num_steps=32, update_epochs=1)
    assert lr_at(settings, 0, 5) == 1e-3 and lr_at(settings, 5, 5) == 0.0
    assert lr_at(PPOSettings(anneal_lr=False), 5, 5) == 2.5e-4
    envs = make_vector_env(IDENTITY_ID, 4, seed=0)
    agent = make_agent(envs.single_observation_space, envs.single_action_space)
    history = train_ppo(envs, agent, settings, seed=0)
    lrs = [u["lr"] for u in history["updates"]]
    assert lrs == pytest.approx([1e-3 * (1 - u / 5) for u in range(5)])
    # a straight line through the recorded rates reaches 0 at the end of the schedule
    assert lrs[-1] + (lrs[-1] - lrs[-2]) == pytest.approx(0.0, abs=1e-12)


# ---- learning and determinism -----------------------------------------------------------------------------


def _identity_run(seed: int, total_steps: int = 1024):
    envs = make_vector_env(IDENTITY_ID, 4, seed=seed)
    torch.manual_seed(seed)  # the initial weights; train_ppo seeds the sampling itself
    agent = make_agent(envs.single_observation_space, envs.single_action_space, hidden=(32, 32))
    settings = PPOSettings(total_steps=total_steps, num_steps=32, lr=1e-2, ent_coef=0.0, update_epochs=4)
    history = train_ppo(envs, agent, settings, seed=seed)
    return agent, envs, history


def test_ppo_learns_identity_in_seconds():
    agent, envs, _ = _identity_run(0)
    result = evaluate(
        make_env(IDENTITY_ID), policy_function(agent, envs.single_observation_space), episodes=10
    )
    assert result.mean_return >= 7.5  # optimal 8, random 2


def test_same_seed_gives_identical_returns_and_weights():
    def run(seed):
        agent, _, history = _identity_run(seed, total_steps=256)
        returns = [r for u in history["updates"] for r, _ in u["episodes"]]
        return returns, torch.cat([p.detach().flatten() for p in agent.parameters()])

    (returns_a, weights_a), (returns_b, weights_b) = run(3), run(3)
    assert returns_a == returns_b and torch.equal(weights_a, weights_b)
    returns_c, weights_c = run(4)
    assert not torch.equal(weights_a, weights_c)


# ---- configuration errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_minibatches", "3", "not divisible by num_minibatches"),
        ("total_steps", "100", "less than one rollout"),
        ("clip_coef", "0", "clip_coef must be > 0"),
        ("gamma", "1.5", "gamma and gae_lambda must be in"),
        ("num_envs", "0", "num_envs must be >= 1"),
        ("eval_episodes", "0", "eval_episodes must be >= 1"),
    ],
)
def test_bad_config_is_a_one_line_error(key, value, message):
    with pytest.raises(PapersError, match=message):
        EXPERIMENT.make_config("default", {key: value})


def test_bad_minigrid_config_and_spaces_are_errors():
    with pytest.raises(PapersError, match="success_bar must be in"):
        MINIGRID_EXPERIMENT.make_config("default", {"success_bar": "2"})
    with pytest.raises(PapersError, match="Discrete action spaces"):
        make_agent(spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (1,)))
    with pytest.raises(ValueError, match="num_envs \\* num_steps"):
        PPOSettings(num_minibatches=7).validate(num_envs=4)


def test_full_preset_is_valid_and_uses_atari():
    config = EXPERIMENT.make_config("full")
    assert config.env_id.startswith("ALE/") and config.total_steps == 10_000_000
    assert config.clip_rewards and config.clip_coef == 0.1


# ---- runs -------------------------------------------------------------------------------------------------


def test_smoke_run_cartpole(run_smoke):
    result, _ = run_smoke(EXPERIMENT)
    assert result.metrics["env_steps"] == 1024
    assert "unclipped_final_eval_return" in result.metrics
    assert result.metrics["final_lr"] > 0


def test_smoke_run_minigrid(run_smoke):
    result, _ = run_smoke(MINIGRID_EXPERIMENT)
    assert 0 <= result.metrics["final_success_rate"] <= 1
    assert result.metrics["env_steps"] == 1024


def test_atari_pipeline_smoke(run_smoke):
    pytest.importorskip("ale_py")
    result, _ = run_smoke(EXPERIMENT, env_id="ALE/Pong-v5", clip_coef=0.1, clip_rewards=True, ablation=False,
                          num_envs=4, num_steps=128, total_steps=2048, eval_every=2048, eval_episodes=1,
                          final_eval_episodes=1, eval_max_steps=100, update_epochs=1)  # fmt: skip
    assert result.metrics["env_steps"] == 2048
    assert math.isfinite(result.metrics["final_eval_return"])
