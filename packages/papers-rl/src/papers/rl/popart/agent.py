"""Multi-task actor-critic with one shared network and per-task PopArt value heads (a small A2C).

Tasks: copies of cart-pole (the Barto, Sutton & Anderson physics of gymnasium's CartPole, batched in
numpy here so that all tasks step together) whose rewards are multiplied by per-task scales (e.g.
0.01, 1, 100) and whose action meanings are swapped on odd tasks, so one policy must tell them apart;
the observation is the 4-d state followed by a one-hot task id. Episodes end when the pole falls or
after ``max_steps`` steps (a time-limit cut bootstraps from the value of the last observation).

One network: trunk MLP → policy logits (shared by all tasks, as the single policy of PopArt-IMPALA)
and a :class:`PopArt` head with one normalised value output per task. Every update collects
``rollout`` steps from each env, computes GAE returns R_t with the unnormalised values, and

    PopArt ("popart"/"art"):  update (μ_k, σ_k) from task k's R_t  (+ preserve step for "popart"),
                              value loss ½ ((R_t − μ_k)/σ_k − n_k(s_t))²,
                              policy advantage (R_t − V(s_t)) / σ_k   (normalised, as PopArt-IMPALA)
    plain ("none"):           value loss ½ (R_t − V(s_t))²,  policy advantage R_t − V(s_t)

loss = −E[log π(a|s) A] + c_v · value loss − c_e · entropy, Adam, global gradient-norm clip.
Score of a task: the unscaled episode length / ``max_steps`` (1 = balanced for the whole episode).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from papers.rl.agents.gae import compute_gae
from papers.rl.agents.nets import mlp

from .model import PopArt

__all__ = ["A2CSettings", "MultiTaskCartPole", "MultiTaskNet", "train_multitask"]


class MultiTaskCartPole:
    """``num_tasks × envs_per_task`` cart-poles stepped together; env i belongs to task i // envs_per_task.

    Same-step reset: the returned observation of a finished env is already its next episode's first one.
    ``step`` returns ``(obs, scaled_reward, terminated, truncated, final_obs, episode_lengths)`` where
    ``episode_lengths[i]`` is the finished episode's length (0 where none finished).
    """

    gravity, masscart, masspole, length, force_mag, tau = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
    theta_threshold, x_threshold = 12 * 2 * math.pi / 360, 2.4

    def __init__(self, reward_scales, envs_per_task: int, max_steps: int = 200, seed: int = 0):
        if envs_per_task < 1 or max_steps < 1 or len(reward_scales) < 1:
            raise ValueError("MultiTaskCartPole needs >= 1 task, envs_per_task >= 1 and max_steps >= 1")
        self.num_tasks = len(reward_scales)
        self.num_envs = self.num_tasks * envs_per_task
        self.task = np.repeat(np.arange(self.num_tasks), envs_per_task)
        self.scale = np.asarray(reward_scales, dtype=np.float64)[self.task]
        self.swap = (self.task % 2) == 1
        self.max_steps = max_steps
        self.rng = np.random.default_rng(seed)
        self.state = self.rng.uniform(-0.05, 0.05, size=(self.num_envs, 4))
        self.steps = np.zeros(self.num_envs, dtype=np.int64)
        self.one_hot = np.eye(self.num_tasks)[self.task]

    @property
    def obs_dim(self) -> int:
        return 4 + self.num_tasks

    def _obs(self, state: np.ndarray) -> np.ndarray:
        return np.concatenate([state, self.one_hot], axis=1).astype(np.float32)

    def reset(self) -> np.ndarray:
        return self._obs(self.state)

    def step(self, action: np.ndarray):
        push_right = (np.asarray(action) == 1) ^ self.swap
        force = np.where(push_right, self.force_mag, -self.force_mag)
        x, x_dot, theta, theta_dot = self.state.T
        cos, sin = np.cos(theta), np.sin(theta)
        total_mass, pm_length = self.masscart + self.masspole, self.masspole * self.length
        temp = (force + pm_length * theta_dot**2 * sin) / total_mass
        theta_acc = (self.gravity * sin - cos * temp) / (
            self.length * (4.0 / 3.0 - self.masspole * cos**2 / total_mass)
        )
        x_acc = temp - pm_length * theta_acc * cos / total_mass
        x, x_dot = x + self.tau * x_dot, x_dot + self.tau * x_acc  # explicit Euler, as gymnasium
        theta, theta_dot = theta + self.tau * theta_dot, theta_dot + self.tau * theta_acc
        self.state = np.stack([x, x_dot, theta, theta_dot], axis=1)
        self.steps += 1
        terminated = (np.abs(x) > self.x_threshold) | (np.abs(theta) > self.theta_threshold)
        truncated = (self.steps >= self.max_steps) & ~terminated
        reward = self.scale * 1.0
        final_obs = self._obs(self.state)
        done = terminated | truncated
        lengths = np.where(done, self.steps, 0)
        if done.any():
            self.state[done] = self.rng.uniform(-0.05, 0.05, size=(int(done.sum()), 4))
            self.steps[done] = 0
        return self._obs(self.state), reward, terminated, truncated, final_obs, lengths


class MultiTaskNet(nn.Module):
    """Shared trunk → (policy logits, PopArt head with one normalised value per task)."""

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        num_tasks: int,
        hidden=(64, 64),
        *,
        mode="popart",
        beta=3e-3,
        sigma_min=1e-4,
    ):
        super().__init__()
        self.trunk = nn.Sequential(mlp([obs_dim, *hidden], nn.Tanh, output_std=math.sqrt(2)), nn.Tanh())
        self.policy = mlp([hidden[-1], n_actions], output_std=0.01)
        self.value_head = PopArt(hidden[-1], num_tasks, beta=beta, mode=mode, sigma_min=sigma_min)

    def forward(self, obs: torch.Tensor, task: torch.Tensor):
        """``(Categorical policy, normalised values n_task(s))``."""
        h = self.trunk(obs)
        return Categorical(logits=self.policy(h)), self.value_head(h, task)


@dataclass
class A2CSettings:
    reward_scales: tuple[float, ...] = (0.01, 1.0, 100.0)
    envs_per_task: int = 32
    max_steps: int = 200
    total_steps: int = 400_000  # over all envs and tasks
    rollout: int = 8
    gamma: float = 0.99
    gae_lambda: float = 0.95
    lr: float = 1e-3
    adam_eps: float = 1e-5
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    max_grad_norm: float = 0.5
    hidden: tuple[int, ...] = (64, 64)
    beta: float = 3e-3
    sigma_min: float = 1e-4
    curve_points: int = 20


def train_multitask(settings: A2CSettings, mode: str, seed: int, progress=None) -> dict:
    """Train one shared agent on all tasks; returns per-task score curves and PopArt diagnostics."""
    torch.manual_seed(seed)
    s = settings
    envs = MultiTaskCartPole(s.reward_scales, s.envs_per_task, s.max_steps, seed=seed)
    net = MultiTaskNet(
        envs.obs_dim, 2, envs.num_tasks, s.hidden, mode=mode, beta=s.beta, sigma_min=s.sigma_min
    )
    head = net.value_head
    optimizer = torch.optim.Adam(net.parameters(), lr=s.lr, eps=s.adam_eps)
    task = torch.as_tensor(envs.task)
    n_envs, T = envs.num_envs, s.rollout
    updates = max(1, s.total_steps // (n_envs * T))
    obs = torch.as_tensor(envs.reset())
    window = max(1, updates // s.curve_points)
    curve_steps, curves = [], [[] for _ in range(envs.num_tasks)]
    recent = [[] for _ in range(envs.num_tasks)]
    all_lengths = [[] for _ in range(envs.num_tasks)]
    max_output_change, stats_change_sum, stats_updates = 0.0, 0.0, 0
    for update in range(updates):
        obs_buf = torch.zeros(T, n_envs, envs.obs_dim)
        act_buf = torch.zeros(T, n_envs, dtype=torch.long)
        rew_buf, val_buf, done_buf = torch.zeros(T, n_envs), torch.zeros(T, n_envs), torch.zeros(T, n_envs)
        next_done = torch.zeros(n_envs)
        with torch.no_grad():
            for t in range(T):
                h = net.trunk(obs)
                n = head(h, task)
                action = torch.multinomial(torch.softmax(net.policy(h), -1), 1).squeeze(-1)
                obs_buf[t], act_buf[t], done_buf[t] = obs, action, next_done
                val_buf[t] = head.unnormalise(n, task)
                next_obs, reward, terminated, truncated, final_obs, lengths = envs.step(action.numpy())
                reward = torch.as_tensor(reward, dtype=torch.float32)
                if truncated.any():  # time-limit cut: bootstrap from the value of the true last observation
                    idx = torch.as_tensor(np.flatnonzero(truncated))
                    _, n_final = net(torch.as_tensor(final_obs[truncated.nonzero()[0]]), task[idx])
                    reward[idx] += s.gamma * head.unnormalise(n_final, task[idx])
                rew_buf[t] = reward
                next_done = torch.as_tensor(terminated | truncated, dtype=torch.float32)
                obs = torch.as_tensor(next_obs)
                for i in np.flatnonzero(lengths):
                    recent[envs.task[i]].append(lengths[i] / s.max_steps)
                    all_lengths[envs.task[i]].append(float(lengths[i]))
            _, n_next = net(obs, task)
            next_value = head.unnormalise(n_next, task)
            _, returns = compute_gae(rew_buf, val_buf, done_buf, next_value, next_done, s.gamma, s.gae_lambda)
        flat_obs, flat_act = obs_buf.reshape(-1, envs.obs_dim), act_buf.reshape(-1)
        flat_ret, flat_task = returns.reshape(-1), task.repeat(T)
        if mode != "none":
            with torch.no_grad():
                features = net.trunk(flat_obs)
                n_before = head(features, flat_task)
                mu, sigma = head.mu[flat_task], head.sigma[flat_task]
                head.update(flat_ret, flat_task)
                new_mu, new_sigma = head.mu[flat_task], head.sigma[flat_task]
                # changes of V in each task's normalised units, |ΔV| / σ'_task: the actual one (float32
                # rounding for "popart") and the one the statistics alone would cause (no preserve step)
                actual = head.unnormalise(head(features, flat_task), flat_task) - (sigma * n_before + mu)
                without = (new_sigma - sigma) * n_before + new_mu - mu
                max_output_change = max(max_output_change, (actual.abs() / new_sigma).max().item())
                stats_change_sum += (without.abs() / new_sigma).mean().item()
                stats_updates += 1
        dist, n = net(flat_obs, flat_task)
        target = head.normalise(flat_ret, flat_task)  # "none": μ = 0, σ = 1, so target = R and n = V
        advantage = (target - n).detach()  # (R − V) / σ_task
        value_loss = 0.5 * (target - n).pow(2).mean()
        policy_loss = -(dist.log_prob(flat_act) * advantage).mean()
        loss = policy_loss + s.vf_coef * value_loss - s.ent_coef * dist.entropy().mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{mode}: non-finite loss at update {update}")
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), s.max_grad_norm)
        optimizer.step()
        if (update + 1) % window == 0 or update == updates - 1:
            curve_steps.append((update + 1) * n_envs * T)
            for k in range(envs.num_tasks):
                previous = curves[k][-1] if curves[k] else 0.0
                curves[k].append(float(np.mean(recent[k])) if recent[k] else previous)
                recent[k] = []
        if progress is not None:
            progress(1)
    return {
        "steps": curve_steps,
        "curves": curves,
        "sigma": head.sigma.tolist(),
        "mu": head.mu.tolist(),
        "max_output_change": max_output_change,  # largest |ΔV|/σ' caused by a statistics update
        "mean_stats_change": stats_change_sum / max(stats_updates, 1),  # mean |ΔV|/σ' without preserving
        "episodes": [len(x) for x in all_lengths],
    }
