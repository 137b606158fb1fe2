"""RND (Burda et al. 2019, arXiv:1810.12894) and the random-feature forward-model curiosity baseline
(Burda et al. 2019, arXiv:1808.04355): the bonus modules, the normalisers and the two-head actor-critic.

    bonus = RNDBonus(obs_dim)                         f fixed and random, f_hat trained
    bonus.update_obs_stats(next_obs)                  running mean/std of observations
    r_int = bonus.reward(obs, action, next_obs)       ||f_hat(s') - f(s')||^2 (mean over outputs), no grad
    loss = bonus.loss(obs, action, next_obs, mask)    the same error, averaged over the masked samples

    curiosity = ForwardCuriosity(obs_dim, n_actions)  phi fixed and random, forward model g trained
    r_int = curiosity.reward(obs, action, next_obs)   ||g(phi(s), a) - phi(s')||^2

Both see observations normalised by their running statistics and clipped: clip((s - mu) / sigma, -5, 5).
The intrinsic reward is then divided by a running standard deviation of the intrinsic *return*
(``IntrinsicRewardNormaliser``: per env, R_t = gamma_I R_{t-1} + r_t, never reset at episode ends).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from papers.rl.agents.nets import layer_init, mlp


class RunningMeanStd(nn.Module):
    """Mean and variance of a stream of batches (parallel-axis merge of Chan et al.), float64 buffers."""

    def __init__(self, shape: Sequence[int] = (), epsilon: float = 1e-4):
        super().__init__()
        self.register_buffer("mean", torch.zeros(tuple(shape), dtype=torch.float64))
        self.register_buffer("var", torch.ones(tuple(shape), dtype=torch.float64))
        self.register_buffer("count", torch.tensor(float(epsilon), dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge ``batch`` (n, *shape) into the statistics."""
        batch = batch.detach().to(torch.float64).reshape(-1, *self.mean.shape)
        if batch.shape[0] == 0:
            return
        mean, var, n = batch.mean(0), batch.var(0, unbiased=False), batch.shape[0]
        delta, total = mean - self.mean, self.count + n
        new_mean = self.mean + delta * n / total
        m2 = self.var * self.count + var * n + delta**2 * self.count * n / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    @property
    def std(self) -> torch.Tensor:
        return self.var.sqrt()


class ObservationNormaliser(nn.Module):
    """``clip((s - mu) / sigma, -clip, clip)`` with running mu, sigma (RND's normalisation, clip 5)."""

    def __init__(self, obs_dim: int, clip: float = 5.0, epsilon: float = 1e-8):
        super().__init__()
        if not clip > 0:
            raise ValueError(f"clip must be > 0, got {clip}")
        self.rms = RunningMeanStd((obs_dim,))
        self.clip, self.epsilon = clip, epsilon

    def update(self, obs: torch.Tensor) -> None:
        self.rms.update(obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, std = self.rms.mean.to(obs.dtype), (self.rms.var + self.epsilon).sqrt().to(obs.dtype)
        return ((obs - mean) / std).clamp(-self.clip, self.clip)


class IntrinsicRewardNormaliser:
    """Divide intrinsic rewards by the running std of the discounted intrinsic return.

    Per env: R_t = gamma * R_{t-1} + r_t over a non-episodic stream; the std is that of all R_t seen.
    ``normalise(rewards)`` takes a (T, num_envs) rollout, updates the statistics, returns r / std(R).
    """

    def __init__(self, num_envs: int, gamma: float = 0.99):
        self.returns = torch.zeros(num_envs, dtype=torch.float64)
        self.rms = RunningMeanStd(())
        self.gamma = gamma

    def normalise(self, rewards: torch.Tensor) -> torch.Tensor:
        if rewards.ndim != 2 or rewards.shape[1] != self.returns.shape[0]:
            raise ValueError(f"rewards must be (T, {self.returns.shape[0]}), got {tuple(rewards.shape)}")
        seen = []
        for t in range(rewards.shape[0]):
            self.returns = self.returns * self.gamma + rewards[t].to(torch.float64)
            seen.append(self.returns.clone())
        self.rms.update(torch.stack(seen).reshape(-1))
        return rewards / math.sqrt(float(self.rms.var) + 1e-8)


def _check_obs(obs: torch.Tensor, obs_dim: int, name: str = "obs") -> None:
    if obs.ndim != 2 or obs.shape[1] != obs_dim:
        raise ValueError(f"{name} must be (batch, {obs_dim}), got {tuple(obs.shape)}")


class RNDBonus(nn.Module):
    """Random network distillation: r_int(s') = mean_k (f_hat(s')_k - f(s')_k)^2.

    ``target`` f: a fixed randomly initialised MLP (orthogonal init, LeakyReLU), never trained;
    ``predictor`` f_hat: a deeper MLP (the paper gives the predictor extra layers) trained by regression
    onto f. Both take the normalised, clipped next observation. The action and current observation are
    ignored: RND's bonus is a function of s' only, so it is deterministic given s'.
    """

    def __init__(self, obs_dim: int, out_dim: int = 64, hidden: int = 128, clip: float = 5.0):
        super().__init__()
        self.obs_dim = obs_dim
        self.normaliser = ObservationNormaliser(obs_dim, clip)
        self.target = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.LeakyReLU(),
            layer_init(nn.Linear(hidden, out_dim), std=1.0),
        )  # fmt: skip
        self.predictor = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.ReLU(),
            layer_init(nn.Linear(hidden, hidden)), nn.ReLU(),
            layer_init(nn.Linear(hidden, out_dim), std=1.0),
        )  # fmt: skip
        for p in self.target.parameters():
            p.requires_grad_(False)

    def update_obs_stats(self, next_obs: torch.Tensor) -> None:
        self.normaliser.update(next_obs)

    def errors(self, next_obs: torch.Tensor) -> torch.Tensor:
        """Per-sample prediction error (batch,), with gradients into the predictor only."""
        _check_obs(next_obs, self.obs_dim, "next_obs")
        x = self.normaliser(next_obs)
        with torch.no_grad():
            target = self.target(x)
        return ((self.predictor(x) - target) ** 2).mean(-1)

    @torch.no_grad()
    def reward(self, obs=None, action=None, next_obs=None) -> torch.Tensor:
        return self.errors(next_obs)

    def loss(self, obs, action, next_obs, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(self.errors(next_obs), mask)


class ForwardCuriosity(nn.Module):
    """Forward-dynamics curiosity in a random fixed feature space (the large-scale study's "RF" variant).

    phi: a fixed random MLP embedding of the normalised observation; g(phi(s), a): a trained MLP
    predicting phi(s'). r_int = mean_k (g(phi(s), a)_k - phi(s')_k)^2. A transition whose next
    observation is random noise keeps this error high however long g is trained (the noisy TV).
    """

    def __init__(
        self, obs_dim: int, n_actions: int, feature_dim: int = 64, hidden: int = 128, clip: float = 5.0
    ):
        super().__init__()
        self.obs_dim, self.n_actions = obs_dim, n_actions
        self.normaliser = ObservationNormaliser(obs_dim, clip)
        self.features = nn.Sequential(
            layer_init(nn.Linear(obs_dim, hidden)), nn.LeakyReLU(),
            layer_init(nn.Linear(hidden, feature_dim), std=1.0),
        )  # fmt: skip
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.forward_model = nn.Sequential(
            layer_init(nn.Linear(feature_dim + n_actions, hidden)), nn.ReLU(),
            layer_init(nn.Linear(hidden, hidden)), nn.ReLU(),
            layer_init(nn.Linear(hidden, feature_dim), std=1.0),
        )  # fmt: skip

    def update_obs_stats(self, next_obs: torch.Tensor) -> None:
        self.normaliser.update(next_obs)

    def errors(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        _check_obs(obs, self.obs_dim)
        _check_obs(next_obs, self.obs_dim, "next_obs")
        if action.shape != (obs.shape[0],):
            raise ValueError(f"action must be ({obs.shape[0]},), got {tuple(action.shape)}")
        with torch.no_grad():
            phi, phi_next = self.features(self.normaliser(obs)), self.features(self.normaliser(next_obs))
        one_hot = nn.functional.one_hot(action.long(), self.n_actions).to(phi.dtype)
        prediction = self.forward_model(torch.cat([phi, one_hot], dim=-1))
        return ((prediction - phi_next) ** 2).mean(-1)

    @torch.no_grad()
    def reward(self, obs, action, next_obs) -> torch.Tensor:
        return self.errors(obs, action, next_obs)

    def loss(self, obs, action, next_obs, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_mean(self.errors(obs, action, next_obs), mask)


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1 (RND trains its predictor on a random share of each batch)."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class TwoHeadActorCritic(nn.Module):
    """pi(a|s) and two value heads V_E(s), V_I(s) (extrinsic, intrinsic) from separate tanh MLPs."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: Sequence[int] = (64, 64)):
        super().__init__()
        self.actor = mlp([obs_dim, *hidden, n_actions], nn.Tanh, output_std=0.01)
        self.critic = mlp([obs_dim, *hidden, 2], nn.Tanh, output_std=1.0)

    def values(self, obs: torch.Tensor) -> torch.Tensor:
        """(batch, 2): column 0 the extrinsic value, column 1 the intrinsic one."""
        return self.critic(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """The extrinsic value V_E(s), (batch,) (the head a time-limit cut bootstraps)."""
        return self.critic(obs)[:, 0]

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor(obs), self.critic(obs)

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs).argmax(-1)
