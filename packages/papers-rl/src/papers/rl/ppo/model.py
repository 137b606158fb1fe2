"""PPO (Schulman et al. 2017, arXiv:1707.06347): the clipped objective, the networks and the training loop.

    loss = ppo_loss(new_logprob, old_logprob, advantages, new_value, old_value, returns, entropy, ...)
    agent = make_agent(envs.single_observation_space, envs.single_action_space)  # MLP or NatureCNN
    history = train_ppo(envs, agent, PPOSettings(total_steps=100_000), seed=0, on_update=...)

The loop is the one of the best single-file references (CleanRL ``ppo.py`` / ``ppo_atari.py``, and the
"37 implementation details of PPO"): N synchronous envs, rollouts of T steps, GAE(gamma, lambda),
K epochs of shuffled minibatches, per-minibatch advantage normalisation, the clipped surrogate, the
clipped value loss, an entropy bonus, one global gradient-norm clip, Adam(eps=1e-5) with the learning
rate annealed linearly to 0. A time-limit truncation is not a termination: the reward of a truncated
step gets gamma * V(s_final) added, with s_final the true last observation (``infos["final_obs"]``,
the vector envs autoreset in the same step), and the advantage recursion is cut there as for a
termination.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.distributions import Categorical

from papers.core.errors import PapersError
from papers.rl.agents import CategoricalActorCritic, compute_gae, final_observations, layer_init, nature_cnn

# ---- the objective --------------------------------------------------------------------------------------


def ppo_loss(
    new_logprob: torch.Tensor,
    old_logprob: torch.Tensor,
    advantages: torch.Tensor,
    new_value: torch.Tensor,
    old_value: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    clip_coef: float = 0.2,
    clip_vloss: bool = True,
    ent_coef: float = 0.01,
    vf_coef: float = 0.5,
    norm_adv: bool = True,
    clip_policy: bool = True,
) -> dict[str, torch.Tensor]:
    """The PPO loss of one minibatch, to be minimised, and its parts.

        r_t      = exp(log pi(a|s) - log pi_old(a|s))
        A_t      = (A_t - mean A) / (std A + 1e-8)                          (norm_adv, per minibatch)
        L_clip   = E[ min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]       (clip_policy; else E[r_t A_t])
        L_vf     = 1/2 E[ max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2) ]   (clip_vloss)
                   1/2 E[ (V - R)^2 ]                                                    (otherwise)
        loss     = -L_clip + vf_coef * L_vf - ent_coef * E[H(pi(.|s))]

    Also returns ``approx_kl`` (E[(r - 1) - log r], Schulman's low-variance estimator) and
    ``clipfrac`` (the share of |r - 1| > eps), both without gradients.
    """
    if not (new_logprob.shape == old_logprob.shape == advantages.shape):
        raise ValueError(
            f"log-probabilities and advantages must share a shape, got {tuple(new_logprob.shape)}, "
            f"{tuple(old_logprob.shape)}, {tuple(advantages.shape)}"
        )
    if not (new_value.shape == old_value.shape == returns.shape):
        raise ValueError(
            f"values and returns must share a shape, got {tuple(new_value.shape)}, "
            f"{tuple(old_value.shape)}, {tuple(returns.shape)}"
        )
    log_ratio = new_logprob - old_logprob
    ratio = log_ratio.exp()
    if norm_adv and advantages.numel() > 1:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    surrogate = ratio * advantages
    if clip_policy:
        surrogate = torch.min(surrogate, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    policy_loss = -surrogate.mean()
    if clip_vloss:
        clipped = old_value + (new_value - old_value).clamp(-clip_coef, clip_coef)
        value_loss = 0.5 * torch.max((new_value - returns) ** 2, (clipped - returns) ** 2).mean()
    else:
        value_loss = 0.5 * ((new_value - returns) ** 2).mean()
    entropy_loss = entropy.mean()
    loss = policy_loss - ent_coef * entropy_loss + vf_coef * value_loss
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clipfrac = ((ratio - 1).abs() > clip_coef).float().mean()
    return {
        "loss": loss,
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy_loss,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
    }


# ---- networks -------------------------------------------------------------------------------------------


class NatureCNNActorCritic(nn.Module):
    """The Atari network of Mnih et al. (2015) shared by actor and critic, as in the PPO paper.

    uint8 frames (C, 84, 84) / 255 -> Conv(32, 8, s4) -> Conv(64, 4, s2) -> Conv(64, 3, s1) -> FC 512,
    all ReLU and orthogonal with gain sqrt(2); policy head gain 0.01, value head gain 1.
    """

    def __init__(self, in_channels: int, n_actions: int, size: int = 84):
        super().__init__()
        self.trunk = nature_cnn(in_channels, 512, size)
        self.actor = layer_init(nn.Linear(512, n_actions), std=0.01)
        self.critic = layer_init(nn.Linear(512, 1), std=1.0)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        return self.trunk(obs / 255.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(self._features(obs)).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.actor(self._features(obs)))

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        """``(action, log pi(action|s), entropy, V(s))``; samples ``action`` unless one is given."""
        features = self._features(obs)
        dist = Categorical(logits=self.actor(features))
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.critic(features).squeeze(-1)

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._features(obs)
        return self.actor(features), self.critic(features).squeeze(-1)

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(self._features(obs)).argmax(-1)


def is_image(space: spaces.Space) -> bool:
    """A stack of square frames (C, H, H) with H >= 36, the smallest NatureCNN takes."""
    shape = getattr(space, "shape", None) or ()
    return isinstance(space, spaces.Box) and len(shape) == 3 and shape[1] == shape[2] >= 36


def observation_encoder(space: spaces.Space) -> Callable[[np.ndarray], torch.Tensor]:
    """numpy observations (a leading batch axis) -> the float tensor the networks take.

    Discrete -> one-hot; a Box -> float32, flattened unless it is an image (C, H, H) (the CNN scales it).
    """
    if isinstance(space, spaces.Discrete):
        n, start = int(space.n), int(space.start)

        def one_hot(obs):
            index = torch.as_tensor(np.asarray(obs, dtype=np.int64) - start)
            return nn.functional.one_hot(index, n).float()

        return one_hot
    if isinstance(space, spaces.Box):
        if is_image(space):
            return lambda obs: torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        return lambda obs: torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(len(obs), -1)
    raise PapersError(f"PPO here supports Discrete and Box observations, got {space}")


def logits_and_value(agent: nn.Module, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Policy logits (batch, n_actions) and V(s) (batch,) of an actor-critic in one call."""
    if hasattr(agent, "logits_and_value"):
        return agent.logits_and_value(obs)
    return agent.actor(obs), agent.value(obs)


def act(agent: nn.Module, obs: torch.Tensor, action: torch.Tensor | None = None):
    """``(action, log pi(action|s), entropy, V(s))`` like ``agent(obs, action)``, without building a
    ``torch.distributions.Categorical`` (its argument checks cost more than the small MLPs).

    Sampling uses ``torch.multinomial`` on the global torch generator, seeded by ``torch.manual_seed``.
    """
    logits, value = logits_and_value(agent, obs)
    log_probs = torch.log_softmax(logits, dim=-1)
    if action is None:
        action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
    logprob = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return action, logprob, entropy, value


def make_agent(obs_space: spaces.Space, action_space: spaces.Space, hidden: tuple[int, ...] = (64, 64)):
    """An actor-critic for the spaces: NatureCNN for (C, 84, 84) images, else two tanh MLPs."""
    if not isinstance(action_space, spaces.Discrete):
        raise PapersError(f"this PPO handles Discrete action spaces, got {action_space}")
    n_actions = int(action_space.n)
    if is_image(obs_space):
        return NatureCNNActorCritic(obs_space.shape[0], n_actions, size=obs_space.shape[1])
    if isinstance(obs_space, spaces.Discrete):
        return CategoricalActorCritic(int(obs_space.n), n_actions, hidden)
    if isinstance(obs_space, spaces.Box):
        return CategoricalActorCritic(int(np.prod(obs_space.shape)), n_actions, hidden)
    raise PapersError(f"no PPO network for observation space {obs_space}")


def policy_function(agent: nn.Module, obs_space: spaces.Space, greedy: bool = True):
    """A single-env policy ``obs -> int`` for ``papers.rl.agents.evaluate`` (one-hot for Discrete obs)."""
    encode = observation_encoder(obs_space)

    @torch.no_grad()
    def policy(obs) -> int:
        batch = encode(np.asarray(obs)[None])
        action = agent.greedy_action(batch) if greedy else agent.distribution(batch).sample()
        return int(action.item())

    return policy


# ---- the training loop ----------------------------------------------------------------------------------


@dataclass
class PPOSettings:
    """Every PPO hyperparameter (CleanRL's CartPole defaults; Atari: ``clip_coef=0.1``, 8 envs)."""

    total_steps: int = 500_000  # environment steps summed over the envs
    num_steps: int = 128  # T: rollout length per env
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_policy: bool = True  # False: the unclipped surrogate r_t A_t (the paper's "no clipping" row)
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    target_kl: float | None = None
    clip_rewards: bool = False  # sign(r) for learning (Atari); episode statistics stay raw

    def validate(self, num_envs: int) -> None:
        for name in ("total_steps", "num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}")
        for name in ("clip_coef", "max_grad_norm", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        batch = num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {batch} is not divisible by num_minibatches = {self.num_minibatches}"
            )
        if self.total_steps < batch:
            raise ValueError(f"total_steps = {self.total_steps} is less than one rollout of {batch} steps")


def bootstrap_truncated(rewards, terminated, truncated, next_obs, infos, value_fn, encode, gamma):
    """``(rewards + gamma * V(s_final) where truncated and not terminated, number of such envs)``.

    A time-limit cut is not the end of the MDP: its return continues, so the last reward gets the value
    of the true last observation (``final_observations``: the vector env already autoreset ``next_obs``).
    The GAE recursion is then cut there like at a termination (``dones`` = terminated or truncated).
    """
    cut = np.flatnonzero(np.asarray(truncated) & ~np.asarray(terminated))
    if cut.size == 0:
        return rewards, 0
    rewards = rewards.clone()
    final = encode(final_observations(next_obs, infos)[cut]).to(rewards.device)
    with torch.no_grad():
        rewards[torch.as_tensor(cut, device=rewards.device)] += gamma * value_fn(final).to(rewards.dtype)
    return rewards, int(cut.size)


def lr_at(settings: PPOSettings, update: int, num_updates: int) -> float:
    """Learning rate of update ``update`` (0-based): lr * (1 - update / num_updates), 0 at ``num_updates``."""
    if not settings.anneal_lr:
        return settings.lr
    return settings.lr * (1.0 - min(update, num_updates) / num_updates)


def train_ppo(
    envs,
    agent: nn.Module,
    settings: PPOSettings,
    seed: int = 0,
    device: str | torch.device = "cpu",
    on_update: Callable[[dict], bool | None] | None = None,
) -> dict:
    """Train ``agent`` with PPO on the vector env ``envs``; returns per-update statistics.

    ``on_update(stats)`` is called after each update with ``update``, ``global_step``, ``lr``, the losses,
    ``episodes`` (the (return, length) pairs finished in that rollout) and ``time_s``; returning True
    stops training. Seeds torch with ``seed`` and resets sub-env i with ``seed + i``.
    """
    num_envs = envs.num_envs
    settings.validate(num_envs)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    obs_space = envs.single_observation_space
    encode = observation_encoder(obs_space)
    agent = agent.to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=settings.lr, eps=settings.adam_eps)

    T, batch_size = settings.num_steps, num_envs * settings.num_steps
    minibatch = batch_size // settings.num_minibatches
    num_updates = settings.total_steps // batch_size
    encoded_shape = encode(envs.observation_space.sample()).shape[1:]
    obs_buf = torch.zeros((T, num_envs, *encoded_shape), device=device)
    actions = torch.zeros((T, num_envs), dtype=torch.long, device=device)
    logprobs = torch.zeros((T, num_envs), device=device)
    rewards = torch.zeros((T, num_envs), device=device)
    dones = torch.zeros((T, num_envs), device=device)
    values = torch.zeros((T, num_envs), device=device)

    next_obs_np, _ = envs.reset(seed=seed)
    next_obs = encode(next_obs_np).to(device)
    next_done = torch.zeros(num_envs, device=device)
    global_step, history = 0, {"updates": []}
    start = time.perf_counter()
    for update in range(num_updates):
        lr = lr_at(settings, update, num_updates)
        for group in optimizer.param_groups:
            group["lr"] = lr
        episodes: list[tuple[float, int]] = []
        truncations = 0
        for t in range(T):
            global_step += num_envs
            obs_buf[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = act(agent, next_obs)
            actions[t], logprobs[t], values[t] = action, logprob, value
            next_obs_np, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
            reward = np.asarray(reward, dtype=np.float32)
            if settings.clip_rewards:
                reward = np.sign(reward)
            reward_t = torch.as_tensor(reward, device=device)
            reward_t, cut = bootstrap_truncated(
                reward_t, terminated, truncated, next_obs_np, infos, agent.value, encode, settings.gamma
            )
            truncations += cut
            rewards[t] = reward_t
            next_obs = encode(next_obs_np).to(device)
            next_done = torch.as_tensor(
                np.logical_or(terminated, truncated), dtype=torch.float32, device=device
            )
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episodes.append((float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))

        with torch.no_grad():
            next_value = agent.value(next_obs)
        advantages, returns = compute_gae(
            rewards, values, dones, next_value, next_done, settings.gamma, settings.gae_lambda
        )

        b_obs = obs_buf.reshape(batch_size, *encoded_shape)
        b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
        b_adv, b_returns, b_values = advantages.reshape(-1), returns.reshape(-1), values.reshape(-1)
        stats: dict[str, float] = {}
        stopped_early = False
        for _epoch in range(settings.update_epochs):
            order = torch.randperm(batch_size, generator=generator)
            for first in range(0, batch_size, minibatch):
                index = order[first : first + minibatch].to(device)
                _, new_logprob, entropy, new_value = act(agent, b_obs[index], b_actions[index])
                parts = ppo_loss(
                    new_logprob, b_logprobs[index], b_adv[index], new_value, b_values[index],
                    b_returns[index], entropy, clip_coef=settings.clip_coef,
                    clip_vloss=settings.clip_vloss, ent_coef=settings.ent_coef, vf_coef=settings.vf_coef,
                    norm_adv=settings.norm_adv, clip_policy=settings.clip_policy,
                )  # fmt: skip
                if not torch.isfinite(parts["loss"]):
                    raise PapersError(f"PPO: non-finite loss at update {update}, step {global_step}")
                optimizer.zero_grad()
                parts["loss"].backward()
                grad_norm = nn.utils.clip_grad_norm_(agent.parameters(), settings.max_grad_norm)
                optimizer.step()
                for key, value in parts.items():
                    stats[key] = stats.get(key, 0.0) + float(value.detach()) / (
                        settings.update_epochs * settings.num_minibatches
                    )
                stats["grad_norm"] = float(grad_norm)
            if settings.target_kl is not None and float(parts["approx_kl"]) > settings.target_kl:
                stopped_early = True
                break
        variance = b_returns.var()
        explained = float("nan") if variance == 0 else float(1 - (b_returns - b_values).var() / variance)
        record = {
            "update": update,
            "global_step": global_step,
            "lr": lr,
            **stats,
            "explained_variance": explained,
            "episodes": episodes,
            "truncations": truncations,
            "stopped_early": stopped_early,
            "time_s": time.perf_counter() - start,
        }
        history["updates"].append(record)
        if on_update is not None and on_update(record):
            break
    history["num_updates"] = num_updates
    history["global_step"] = global_step
    history["time_s"] = time.perf_counter() - start
    return history


def mean_or_nan(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else math.nan
