"""Generalised advantage estimation (Schulman et al. 2016, arXiv:1506.02438) for a (T, num_envs) rollout.

``dones[t]`` is 1 when ``obs[t]`` starts a new episode (the step before it ended one), and
``next_value``/``next_done`` describe the observation after the last step. With d_T = next_done and
V(s_T) = next_value:

    delta_t = r_t + gamma * V(s_{t+1}) * (1 - d_{t+1}) - V(s_t)
    A_t     = delta_t + gamma * lam * (1 - d_{t+1}) * A_{t+1},      A_T = 0
    R_t     = A_t + V(s_t)                                          (the value target)

lam = 1 gives Monte-Carlo returns minus V, lam = 0 the one-step TD error.
"""

from __future__ import annotations

import torch


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    next_done: torch.Tensor,
    gamma: float = 0.99,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(advantages, returns)``, each shaped like ``rewards`` (T, num_envs) or (T,)."""
    if not (rewards.shape == values.shape == dones.shape):
        raise ValueError(
            f"rewards, values and dones must share a shape, got {tuple(rewards.shape)}, "
            f"{tuple(values.shape)}, {tuple(dones.shape)}"
        )
    advantages = torch.zeros_like(rewards, dtype=torch.float32)
    last_advantage = torch.zeros_like(next_value, dtype=torch.float32)
    for t in reversed(range(rewards.shape[0])):
        if t == rewards.shape[0] - 1:
            continues, following_value = 1.0 - next_done.float(), next_value
        else:
            continues, following_value = 1.0 - dones[t + 1].float(), values[t + 1]
        delta = rewards[t] + gamma * following_value * continues - values[t]
        last_advantage = delta + gamma * lam * continues * last_advantage
        advantages[t] = last_advantage
    return advantages, advantages + values
