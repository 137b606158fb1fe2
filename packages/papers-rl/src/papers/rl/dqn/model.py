"""DQN's mechanism: Q-networks, the TD target and loss, target-network updates, epsilon-greedy actions.

    y        = r + gamma * (1 - terminated) * max_a' Q_target(s', a')                 (DQN)
    y_double = r + gamma * (1 - terminated) * Q_target(s', argmax_a' Q_online(s', a'))  (Double DQN)
    L(theta) = E_(s,a,r,s') [ l(y - Q_online(s, a)) ],   l = Huber (the paper's error clipping) or square
    hard:    theta_target <- theta                       every C gradient-update steps
    Polyak:  theta_target <- tau * theta + (1 - tau) * theta_target

``terminated`` is 1 only when the MDP ended; a time-limit truncation bootstraps from the true last
observation (``papers.rl.agents.final_observations``), and life loss counts as termination in Atari.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.nn import functional as F

from papers.rl.agents import QNetwork, layer_init, mlp, nature_cnn

LOSSES = ("huber", "mse")


class OneHotQNetwork(nn.Module):
    """Q(s, .) of a discrete observation s in {0..n_obs-1}: a one-hot vector into an MLP."""

    def __init__(self, n_obs: int, n_actions: int, hidden: Sequence[int] = (64,)):
        super().__init__()
        self.n_obs = n_obs
        self.q = mlp([n_obs, *hidden, n_actions], nn.ReLU)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(F.one_hot(obs.long().reshape(-1), self.n_obs).float())

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(obs).argmax(-1)


class NatureCNN(nn.Module):
    """The Nature-DQN network on stacked 84x84 frames (uint8 0..255, scaled by 1/255 here).

    conv 32 8x8 stride 4 -> conv 64 4x4 stride 2 -> conv 64 3x3 stride 1 -> fc 512 -> one Q per action,
    ReLU after every layer but the last.
    """

    def __init__(self, in_channels: int, n_actions: int, hidden: int = 512):
        super().__init__()
        self.features = nature_cnn(in_channels, hidden)
        self.head = layer_init(nn.Linear(hidden, n_actions), std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.shape[-2:] != (84, 84):
            raise ValueError(f"NatureCNN needs (..., C, 84, 84) frames, got shape {tuple(obs.shape)}")
        return self.head(self.features(obs.float() / 255.0))

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(obs).argmax(-1)


def make_q_network(observation_space: spaces.Space, n_actions: int, hidden: Sequence[int]) -> nn.Module:
    """The Q-network an observation space calls for: one-hot MLP, flat MLP, or NatureCNN for frames."""
    if isinstance(observation_space, spaces.Discrete):
        return OneHotQNetwork(int(observation_space.n), n_actions, hidden)
    if isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 1:
        return QNetwork(observation_space.shape[0], n_actions, hidden)
    if isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3:
        return NatureCNN(observation_space.shape[0], n_actions)
    raise ValueError(f"no Q-network for observation space {observation_space}")


def td_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float,
    next_q_online: torch.Tensor | None = None,
) -> torch.Tensor:
    """y = r + gamma (1 - terminated) Q_target(s', a*), a* = argmax of Q_online (double) or of Q_target.

    ``next_q_*`` are (batch, n_actions); ``rewards`` and ``terminated`` (batch,). No gradient flows.
    """
    if next_q_target.ndim != 2 or next_q_target.shape[0] != rewards.shape[0]:
        raise ValueError(
            f"next_q_target must be (batch, n_actions) with batch {rewards.shape[0]}, "
            f"got {tuple(next_q_target.shape)}"
        )
    with torch.no_grad():
        if next_q_online is None:
            next_value = next_q_target.max(dim=1).values
        else:
            best = next_q_online.argmax(dim=1, keepdim=True)
            next_value = next_q_target.gather(1, best).squeeze(1)
        return rewards + gamma * (1.0 - terminated.float()) * next_value


def td_loss(q_taken: torch.Tensor, target: torch.Tensor, kind: str = "huber") -> torch.Tensor:
    """Mean Huber (delta 1: the paper's clipping of the error to [-1, 1]) or squared TD error."""
    if kind == "huber":
        return F.smooth_l1_loss(q_taken, target)
    if kind == "mse":
        return F.mse_loss(q_taken, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


@torch.no_grad()
def update_target(target: nn.Module, online: nn.Module, tau: float = 1.0) -> None:
    """theta_target <- tau theta + (1 - tau) theta_target; tau = 1 is the hard copy."""
    if not 0.0 < tau <= 1.0:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        if tau == 1.0:
            t.copy_(o)
        else:
            t.lerp_(o, tau)


def epsilon_greedy(
    q_values: torch.Tensor, epsilon: float, rng: np.random.Generator, n_actions: int
) -> np.ndarray:
    """Per row: a uniform random action with probability ``epsilon``, else argmax Q."""
    greedy = q_values.argmax(dim=-1).cpu().numpy()
    explore = rng.random(len(greedy)) < epsilon
    random = rng.integers(0, n_actions, size=len(greedy))
    return np.where(explore, random, greedy)


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
