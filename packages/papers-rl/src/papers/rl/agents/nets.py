"""Small networks for discrete-action agents, with the orthogonal initialisation PPO and DQN use.

layer_init(nn.Linear(64, 64))            orthogonal weights of gain sqrt(2), zero bias
CategoricalActorCritic(obs_dim, n)       pi(a|s) = softmax(actor(s)), V(s) = critic(s), separate MLPs
QNetwork(obs_dim, n)                     Q(s, .) as one MLP
nature_cnn(4)                            the Nature-DQN trunk: (4, 84, 84) frames -> 512 features
as_policy(net, greedy=True)              numpy observation -> int action, for ``evaluate``
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights scaled by ``std`` and a constant ``bias``; returns ``layer``."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(
    sizes: Sequence[int], activation: type[nn.Module] = nn.Tanh, output_std: float = 1.0
) -> nn.Sequential:
    """Linear layers ``sizes[0] -> ... -> sizes[-1]`` with ``activation`` between them, not after the last."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        last = i == len(sizes) - 2
        layers.append(layer_init(nn.Linear(fan_in, fan_out), std=output_std if last else math.sqrt(2)))
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


def nature_cnn(in_channels: int, hidden: int = 512, size: int = 84) -> nn.Sequential:
    """The trunk of Mnih et al. (2015) on (C, size, size) frames already scaled to [0, 1]:
    Conv(32, 8, s4) -> Conv(64, 4, s2) -> Conv(64, 3, s1) -> FC ``hidden``, ReLU after each,
    orthogonal weights of gain sqrt(2).
    """
    convs = nn.Sequential(
        layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
        nn.ReLU(),
        layer_init(nn.Conv2d(32, 64, 4, stride=2)),
        nn.ReLU(),
        layer_init(nn.Conv2d(64, 64, 3, stride=1)),
        nn.ReLU(),
        nn.Flatten(),
    )
    with torch.no_grad():
        flat = convs(torch.zeros(1, in_channels, size, size)).shape[1]
    return nn.Sequential(*convs, layer_init(nn.Linear(flat, hidden)), nn.ReLU())


class CategoricalActorCritic(nn.Module):
    """Actor and critic MLPs on a flat observation; the actor's last layer starts tiny (std 0.01),
    so the initial policy is close to uniform, and the critic's at std 1."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.actor = mlp([obs_dim, *hidden, n_actions], nn.Tanh, output_std=0.01)
        self.critic = mlp([obs_dim, *hidden, 1], nn.Tanh, output_std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """V(s), shape (batch,)."""
        return self.critic(obs).squeeze(-1)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.actor(obs))

    def forward(self, obs: torch.Tensor, action: torch.Tensor | None = None):
        """``(action, log pi(action|s), entropy, V(s))``; samples ``action`` unless one is given."""
        dist = self.distribution(obs)
        if action is None:
            action = dist.sample()
        return action, dist.log_prob(action), dist.entropy(), self.value(obs)

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs).argmax(-1)


class QNetwork(nn.Module):
    """Q(s, a) for every action of a flat observation."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (120, 84)):
        super().__init__()
        self.q = mlp([obs_dim, *hidden, n_actions], nn.ReLU)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs)

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).argmax(-1)


def as_policy(net: nn.Module, greedy: bool = True, device="cpu") -> Callable[[np.ndarray], int]:
    """A single-env policy: the net's greedy action, or (``greedy=False``) a sample from its distribution."""
    if not greedy and not hasattr(net, "distribution"):
        raise ValueError(f"{type(net).__name__} has no action distribution to sample; use greedy=True")

    @torch.no_grad()
    def policy(obs: np.ndarray) -> int:
        batch = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=device).unsqueeze(0)
        action = net.greedy_action(batch) if greedy else net.distribution(batch).sample()
        return int(action.item())

    return policy
