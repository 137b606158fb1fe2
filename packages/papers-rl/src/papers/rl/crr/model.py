"""CRR's mechanism for discrete actions: a categorical policy, the advantage, the filter f and both losses.

    critic:  y      = r + gamma (1 - terminated) sum_a' pi'(a'|s') Q'(s', a')        (target nets pi', Q')
             L_Q    = E_D[ Huber(y - Q(s, a)) ]          (a scalar critic; the paper's is distributional)
    actor:   A(s,a) = Q(s, a) - (1/m) sum_j Q(s, a_j),   a_j ~ pi(.|s)            ("mean" estimator, m = 4)
                    = Q(s, a) - sum_a' pi(a'|s) Q(s, a')                          (advantage="exact")
             f      = 1[A(s, a) > 0]                                             (binary)
                    = min(exp(A(s, a) / beta), max_weight)                       (exp, beta = 1, max 20)
                    = 1                                                          (behaviour cloning)
             L_pi   = -E_D[ f(Q, pi, s, a) log pi(a|s) ]                         (no gradient through f)

The naive offline DQN baseline uses ``papers.rl.dqn.td_target`` (y = r + gamma (1 - terminated)
max_a' Q'(s', a')) on the same data and acts greedily on Q.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Categorical

from papers.rl.agents import mlp

WEIGHTINGS = ("binary", "exp", "bc")
ADVANTAGES = ("mean", "exact")


class CategoricalPolicy(nn.Module):
    """pi(a|s) = softmax(logits(s)) for a flat observation; an MLP with ReLU, last layer small (std 0.01)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (256, 256)):
        super().__init__()
        self.n_actions = n_actions
        self.logits = mlp([obs_dim, *hidden, n_actions], nn.ReLU, output_std=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs)

    def distribution(self, obs: torch.Tensor) -> Categorical:
        return Categorical(logits=self.logits(obs))

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits(obs).argmax(-1)


def _check_q(q_values: torch.Tensor, probs: torch.Tensor) -> None:
    if q_values.ndim != 2 or q_values.shape != probs.shape:
        raise ValueError(
            f"q_values and probs must both be (batch, n_actions), got {tuple(q_values.shape)} "
            f"and {tuple(probs.shape)}"
        )


def crr_advantage(
    q_values: torch.Tensor,
    probs: torch.Tensor,
    actions: torch.Tensor,
    estimator: str = "mean",
    m: int = 4,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A(s, a) = Q(s, a) - V(s): V by m actions sampled from pi ("mean") or the exact sum over pi ("exact").

    ``q_values`` and ``probs`` are (batch, n_actions), ``actions`` (batch,). Returns (batch,), no gradient.
    """
    _check_q(q_values, probs)
    if estimator not in ADVANTAGES:
        raise ValueError(f"advantage estimator must be one of {ADVANTAGES}, got {estimator!r}")
    if m < 1:
        raise ValueError(f"m must be >= 1, got {m}")
    with torch.no_grad():
        q_taken = q_values.gather(1, actions.long().view(-1, 1)).squeeze(1)
        if estimator == "exact":
            value = (probs * q_values).sum(1)
        else:
            sampled = torch.multinomial(probs, m, replacement=True, generator=generator)  # (batch, m)
            value = q_values.gather(1, sampled).mean(1)
        return q_taken - value


def crr_weights(advantage: torch.Tensor, kind: str = "binary", beta: float = 1.0,
                max_weight: float = 20.0) -> torch.Tensor:  # fmt: skip
    """f(A): 1[A > 0] (binary), min(exp(A / beta), max_weight) (exp) or 1 everywhere (bc)."""
    if kind not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {kind!r}")
    if not beta > 0 or not max_weight > 0:
        raise ValueError(f"beta and max_weight must be > 0, got {beta}, {max_weight}")
    advantage = advantage.detach()
    if kind == "binary":
        return (advantage > 0).to(advantage.dtype)
    if kind == "exp":
        return torch.exp(advantage / beta).clamp(max=max_weight)
    return torch.ones_like(advantage)


def weighted_bc_loss(logits: torch.Tensor, actions: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """L_pi = -mean_i( w_i log pi(a_i|s_i) ); the weights carry no gradient."""
    if logits.ndim != 2 or actions.shape != (logits.shape[0],) or weights.shape != actions.shape:
        raise ValueError(
            f"need logits (batch, n_actions), actions and weights (batch,), got {tuple(logits.shape)}, "
            f"{tuple(actions.shape)}, {tuple(weights.shape)}"
        )
    log_pi = torch.log_softmax(logits, dim=-1).gather(1, actions.long().view(-1, 1)).squeeze(1)
    return -(weights.detach() * log_pi).mean()


def policy_td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor,
                     next_probs: torch.Tensor, gamma: float) -> torch.Tensor:  # fmt: skip
    """y = r + gamma (1 - terminated) sum_a' pi'(a'|s') Q'(s', a'): the expectation under the policy."""
    _check_q(next_q_target, next_probs)
    if rewards.shape != (next_q_target.shape[0],) or terminated.shape != rewards.shape:
        raise ValueError(
            f"rewards and terminated must be (batch,) with batch {next_q_target.shape[0]}, got "
            f"{tuple(rewards.shape)} and {tuple(terminated.shape)}"
        )
    with torch.no_grad():
        next_value = (next_probs * next_q_target).sum(1)
        return rewards + gamma * (1.0 - terminated.float()) * next_value
