"""DIAYN's pieces: the skill discriminator, its pseudo-reward, and the soft actor-critic that maximises it.

    z ~ p(z) = Uniform{0..K-1}, fixed for an episode; the policy sees (s, one_hot(z))
    r_z(s')   = log q_phi(z | s') - log p(z) = log_softmax(D_phi(s'))[z] + log K             (pseudo-reward)
    L(phi)    = E_{(s', z) ~ replay} [ -log q_phi(z | s') ]                                  (discriminator)

Soft actor-critic (Haarnoja et al. 2018, arXiv:1801.01290) with a fixed temperature alpha (0.1 in DIAYN),
a tanh-squashed Gaussian policy and two Q-functions with Polyak-averaged targets:

    a = tanh(u), u ~ N(mu(x), sigma(x)),  log pi(a|x) = log N(u) - sum log(1 - tanh(u)^2)
    y      = r + gamma (1 - terminated) [ min_i Q'_i(x', a') - alpha log pi(a'|x') ],  a' ~ pi(.|x')
    L(Q_i) = E (Q_i(x, a) - y)^2
    L(pi)  = E [ alpha log pi(a|x) - min_i Q_i(x, a) ],   a ~ pi(.|x) reparameterised
    theta' <- tau theta + (1 - tau) theta'

With K = 1 the pseudo-reward is identically 0 (q(z|s) = 1 = p(z)): the agent only maximises entropy.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from papers.rl.agents import layer_init, mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


def skill_input(states: torch.Tensor, skills: torch.Tensor, n_skills: int) -> torch.Tensor:
    """(s, one_hot(z)): states (B, d) and integer skills (B,) -> (B, d + K)."""
    if states.dim() != 2 or skills.shape != states.shape[:1]:
        raise ValueError(f"states must be (B, d) and skills (B,), got {tuple(states.shape)}, "
                         f"{tuple(skills.shape)}")  # fmt: skip
    if skills.numel() and (int(skills.min()) < 0 or int(skills.max()) >= n_skills):
        raise ValueError(f"skills must be in [0, {n_skills}), got range [{int(skills.min())}, "
                         f"{int(skills.max())}]")  # fmt: skip
    return torch.cat([states, F.one_hot(skills.long(), n_skills).to(states.dtype)], dim=-1)


def diayn_reward(logits: torch.Tensor, skills: torch.Tensor) -> torch.Tensor:
    """r = log q(z|s) - log p(z), p uniform over the K = logits.shape[-1] skills: log_softmax[z] + log K."""
    if logits.dim() != 2 or skills.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (B, K) and skills (B,), got {tuple(logits.shape)}, "
                         f"{tuple(skills.shape)}")  # fmt: skip
    n_skills = logits.shape[-1]
    log_q = torch.log_softmax(logits, dim=-1).gather(-1, skills.long().unsqueeze(-1)).squeeze(-1)
    return log_q + math.log(n_skills)


class Discriminator(nn.Module):
    """q_phi(z | s) = softmax(D_phi(s)): an MLP from the state (not the skill) to K logits."""

    def __init__(self, state_dim: int, n_skills: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.n_skills = n_skills
        self.net = mlp([state_dim, *hidden, n_skills], nn.ReLU)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)

    def loss(self, states: torch.Tensor, skills: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cross-entropy -log q(z|s) averaged, accuracy of argmax q(.|s) on the batch)."""
        logits = self(states)
        accuracy = (logits.argmax(-1) == skills).float().mean()
        return F.cross_entropy(logits, skills.long()), accuracy


class TanhGaussianActor(nn.Module):
    """pi(a|x): a = tanh(u), u ~ N(mu(x), diag sigma(x)^2), log sigma clamped to [-5, 2]."""

    def __init__(self, input_dim: int, action_dim: int, hidden: Sequence[int] = (128, 128)):
        super().__init__()
        self.trunk = mlp([input_dim, *hidden], nn.ReLU)
        self.trunk.append(nn.ReLU())
        self.mean = layer_init(nn.Linear(hidden[-1], action_dim), std=0.01)
        self.log_std = layer_init(nn.Linear(hidden[-1], action_dim), std=0.01)

    def forward(self, x: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """(action in (-1, 1)^d, log pi(action|x)); the mean action tanh(mu) when ``deterministic``."""
        h = self.trunk(x)
        mu = self.mean(h)
        log_std = self.log_std(h).clamp(LOG_STD_MIN, LOG_STD_MAX)
        u = mu if deterministic else mu + log_std.exp() * torch.randn_like(mu)
        return torch.tanh(u), tanh_gaussian_log_prob(u, mu, log_std)


def tanh_gaussian_log_prob(u: torch.Tensor, mu: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log density of a = tanh(u), u ~ N(mu, exp(log_std)^2), summed over the last axis.

    log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), the numerically stable form.
    """
    gaussian = -0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    jacobian = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
    return (gaussian - jacobian).sum(-1)


class TwinQ(nn.Module):
    """Q_1(x, a), Q_2(x, a): two independent MLPs on (x, a), evaluated together as one batched matmul
    per layer (weights (2, fan_in, fan_out), each initialised like its own ``nn.Linear``)."""

    def __init__(self, input_dim: int, action_dim: int, hidden: Sequence[int] = (128, 128), n_q: int = 2):
        super().__init__()
        sizes = [input_dim + action_dim, *hidden, 1]
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            layers = [nn.Linear(fan_in, fan_out) for _ in range(n_q)]  # torch's default initialisation
            self.weights.append(nn.Parameter(torch.stack([layer.weight.detach().T for layer in layers])))
            self.biases.append(nn.Parameter(torch.stack([layer.bias.detach() for layer in layers])[:, None]))

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = torch.cat([x, a], dim=-1).expand(len(self.weights[0]), -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return tuple(h.squeeze(-1))


class SAC(nn.Module):
    """Soft actor-critic with a fixed temperature; :meth:`update` takes one gradient step of Q and pi."""

    def __init__(
        self,
        input_dim: int,
        action_dim: int,
        hidden: Sequence[int] = (128, 128),
        alpha: float = 0.1,
        gamma: float = 0.99,
        tau: float = 0.01,
        lr: float = 3e-4,
    ):
        super().__init__()
        if not alpha >= 0 or not 0 <= gamma <= 1 or not 0 < tau <= 1 or not lr > 0:
            raise ValueError(f"need alpha >= 0, gamma in [0, 1], tau in (0, 1], lr > 0; got alpha={alpha}, "
                             f"gamma={gamma}, tau={tau}, lr={lr}")  # fmt: skip
        self.alpha, self.gamma, self.tau = alpha, gamma, tau
        self.actor = TanhGaussianActor(input_dim, action_dim, hidden)
        self.critic = TwinQ(input_dim, action_dim, hidden)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = adam(self.actor.parameters(), lr)
        self.critic_optimizer = adam(self.critic.parameters(), lr)

    @torch.no_grad()
    def act(self, x: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.actor(x, deterministic)[0]

    def td_target(self, rewards, next_x, terminated) -> torch.Tensor:
        """y = r + gamma (1 - terminated) (min_i Q'_i(x', a') - alpha log pi(a'|x')), a' ~ pi(.|x')."""
        with torch.no_grad():
            next_a, next_log_pi = self.actor(next_x)
            next_q = torch.min(*self.critic_target(next_x, next_a)) - self.alpha * next_log_pi
            return rewards + self.gamma * (1.0 - terminated) * next_q

    def update(self, x, actions, rewards, next_x, terminated) -> dict[str, float]:
        y = self.td_target(rewards, next_x, terminated)
        q1, q2 = self.critic(x, actions)
        critic_loss = F.mse_loss(q1, y) + F.mse_loss(q2, y)
        self.critic_optimizer.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optimizer.step()

        new_a, log_pi = self.actor(x)
        self.critic.requires_grad_(False)
        actor_loss = (self.alpha * log_pi - torch.min(*self.critic(x, new_a))).mean()
        self.actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optimizer.step()
        self.critic.requires_grad_(True)

        polyak_update(self.critic_target, self.critic, self.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "entropy": -log_pi.detach().mean().item(), "q_mean": q1.detach().mean().item()}  # fmt: skip


def adam(parameters, lr: float) -> torch.optim.Optimizer:
    """Adam, with the fused kernel where this torch build has one for the device."""
    parameters = list(parameters)
    try:
        return torch.optim.Adam(parameters, lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(parameters, lr=lr)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta'."""
    for t, o in zip(target.parameters(), online.parameters(), strict=True):
        t.lerp_(o, tau)


class DIAYN(nn.Module):
    """A skill-conditioned SAC agent trained on the discriminator's pseudo-reward.

    Replay stores the augmented observation x = (s, one_hot(z)); :meth:`update` recomputes the reward
    of each sampled transition with the current discriminator, then takes one discriminator step and
    one SAC step.
    """

    def __init__(
        self,
        state_dim: int,
        action_dim: int,
        n_skills: int = 8,
        hidden: Sequence[int] = (128, 128),
        alpha: float = 0.1,
        gamma: float = 0.99,
        tau: float = 0.01,
        lr: float = 3e-4,
        discriminator_lr: float | None = None,
    ):
        super().__init__()
        if n_skills < 1:
            raise ValueError(f"n_skills must be >= 1, got {n_skills}")
        self.state_dim, self.n_skills = state_dim, n_skills
        self.sac = SAC(state_dim + n_skills, action_dim, hidden, alpha, gamma, tau, lr)
        self.discriminator = Discriminator(state_dim, n_skills, hidden)
        self.discriminator_optimizer = adam(self.discriminator.parameters(), discriminator_lr or lr)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(states, skills) from augmented observations (B, d + K)."""
        return x[:, : self.state_dim], x[:, self.state_dim :].argmax(-1)

    @torch.no_grad()
    def act(self, states: torch.Tensor, skills: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.sac.act(skill_input(states, skills, self.n_skills), deterministic)

    @torch.no_grad()
    def reward(self, next_states: torch.Tensor, skills: torch.Tensor) -> torch.Tensor:
        return diayn_reward(self.discriminator(next_states), skills)

    def update(self, x, actions, next_x, terminated) -> dict[str, float]:
        next_states, skills = self.split(next_x)
        rewards = self.reward(next_states, skills)
        d_loss, d_accuracy = self.discriminator.loss(next_states, skills)
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        self.discriminator_optimizer.step()
        stats = self.sac.update(x, actions, rewards, next_x, terminated)
        return stats | {"pseudo_reward": rewards.mean().item(), "discriminator_loss": d_loss.item(),
                        "discriminator_accuracy": d_accuracy.item()}  # fmt: skip


class MetaController(nn.Module):
    """A categorical policy over frozen skills, pi_meta(z | s), for hierarchical use (DIAYN Sec. 4.2.2)."""

    def __init__(self, state_dim: int, n_skills: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.net = mlp([state_dim, *hidden, n_skills], nn.Tanh, output_std=0.01)

    def distribution(self, states: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(logits=self.net(states))
