"""PPO-EWMA (Hilton, Cobbe, Schulman 2021, arXiv:2110.00641): the decoupled objective, the EWMA proximal
policy, the batch-size scaling rule and a small training loop that runs PPO and PPO-EWMA alike.

    parts = decoupled_ppo_loss(new_logprob, prox_logprob, behav_logprob, advantages, clip_coef=0.2)
    ewma_update_(prox_agent, agent, beta_prox)          # after every optimiser step
    hp = scaled_hyperparameters(c, lr=..., beta_prox=..., adam_betas=(0.9, 0.999))
    history = train_decoupled(envs, agent, DecoupledSettings(proximal="ewma", ...), seed=0)

PPO is the special case pi_prox = pi_behav (``proximal="old"``): the importance weight is 1 and the
ratio is taken against the policy that collected the data, as in ``papers.rl.ppo.ppo_loss``. The loop
reuses ``papers.rl.ppo``'s sampling (``act``), network factory, observation encoder and time-limit
bootstrap, and ``papers.rl.agents.compute_gae``; it is a separate loop because ``train_ppo`` fixes the
loss to the one of the behaviour policy and has no hook for a second (proximal) network.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from papers.core.errors import PapersError
from papers.rl.agents import compute_gae
from papers.rl.ppo.model import act, bootstrap_truncated, logits_and_value, observation_encoder

# ---- the objective --------------------------------------------------------------------------------------


def decoupled_ppo_loss(
    new_logprob: torch.Tensor,
    prox_logprob: torch.Tensor,
    behav_logprob: torch.Tensor,
    advantages: torch.Tensor,
    clip_coef: float = 0.2,
) -> dict[str, torch.Tensor]:
    """The decoupled clipped objective of one minibatch (eq. 2 of the paper), as a loss to minimise.

        w_t     = pi_prox(a|s) / pi_behav(a|s)                          (no gradient)
        r_t     = pi_theta(a|s) / pi_prox(a|s)
        L       = E[ w_t * min(r_t A_t, clip(r_t, 1 - eps, 1 + eps) A_t) ]
        loss    = -L

    With ``prox_logprob == behav_logprob`` this is PPO's L^CLIP. The advantages are used as given
    (normalise them beforehand). Also returns, without gradients, ``approx_kl`` of pi_theta from
    pi_prox (E_behav[w ((r - 1) - log r)]), ``clipfrac`` (the share with |r - 1| > eps) and
    ``mean_weight`` (E[w], 1 in expectation under pi_behav).
    """
    if not (new_logprob.shape == prox_logprob.shape == behav_logprob.shape == advantages.shape):
        raise ValueError(
            "log-probabilities and advantages must share a shape, got "
            f"{tuple(new_logprob.shape)}, {tuple(prox_logprob.shape)}, {tuple(behav_logprob.shape)}, "
            f"{tuple(advantages.shape)}"
        )
    if not clip_coef > 0:
        raise ValueError(f"clip_coef must be > 0, got {clip_coef}")
    weight = (prox_logprob - behav_logprob).detach().exp()
    log_ratio = new_logprob - prox_logprob.detach()
    ratio = log_ratio.exp()
    surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    policy_loss = -(weight * surrogate).mean()
    with torch.no_grad():
        approx_kl = (weight * ((ratio - 1) - log_ratio)).mean()
        clipfrac = ((ratio - 1).abs() > clip_coef).float().mean()
    return {
        "policy_loss": policy_loss,
        "approx_kl": approx_kl,
        "clipfrac": clipfrac,
        "mean_weight": weight.mean(),
    }


# ---- the EWMA proximal policy and the scaling rule ------------------------------------------------------


@torch.no_grad()
def ewma_update_(target: nn.Module, source: nn.Module, beta: float) -> None:
    """theta_prox <- beta * theta_prox + (1 - beta) * theta, in place, for every parameter."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    target_params, source_params = list(target.parameters()), list(source.parameters())
    if len(target_params) != len(source_params):
        raise ValueError("target and source must have the same parameters")
    for t, s in zip(target_params, source_params, strict=True):
        if t.shape != s.shape:
            raise ValueError(f"parameter shapes differ: {tuple(t.shape)} vs {tuple(s.shape)}")
    torch._foreach_mul_(target_params, beta)
    torch._foreach_add_(target_params, source_params, alpha=1 - beta)


def center_of_mass_beta(steps_per_iteration: int) -> float:
    """The EWMA decay whose mean age (beta / (1 - beta) optimiser steps) equals PPO's.

    In PPO the old policy is k steps old at the k-th (0-based) of the K = epochs * minibatches
    steps of an iteration: (K - 1) / 2 on average. beta / (1 - beta) = (K - 1) / 2 gives
    beta = (K - 1) / (K + 1).
    """
    if steps_per_iteration < 1:
        raise ValueError(f"steps_per_iteration must be >= 1, got {steps_per_iteration}")
    return (steps_per_iteration - 1) / (steps_per_iteration + 1)


def scaled_hyperparameters(
    c: float,
    lr: float,
    beta_prox: float,
    adam_betas: tuple[float, float] = (0.9, 0.999),
    scale_adam_betas: bool = False,
    beta_adv: float | None = None,
) -> dict:
    """The paper's rule for a batch size multiplied by ``c``: keep every EWMA's age fixed in samples.

        lr        -> c * lr                         (Adam step size proportional to the batch size)
        beta_prox -> beta_prox ** c                 (decay per sample fixed: 1 - beta scales by ~c)
        beta_adv  -> beta_adv ** c                  (the advantage-normalisation EWMA, per iteration,
                                                     whose size scales with c: its age in samples fixed)
        beta_i    -> beta_i ** c   (Adam, only if scale_adam_betas; the paper adjusts the step size only)

    ``beta ** c`` agrees with ``1 - c (1 - beta)`` to first order and stays in [0, 1) for any c > 0.
    """
    if not c > 0 or not math.isfinite(c):
        raise ValueError(f"the batch-size factor c must be a positive number, got {c}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not 0 <= beta_prox < 1:
        raise ValueError(f"beta_prox must be in [0, 1), got {beta_prox}")
    if not all(0 <= b < 1 for b in adam_betas):
        raise ValueError(f"adam_betas must be in [0, 1), got {adam_betas}")
    if beta_adv is not None and not 0 <= beta_adv < 1:
        raise ValueError(f"beta_adv must be in [0, 1) or None, got {beta_adv}")
    betas = tuple(b**c for b in adam_betas) if scale_adam_betas else tuple(adam_betas)
    return {"lr": lr * c, "beta_prox": beta_prox**c, "adam_betas": betas,
            "beta_adv": None if beta_adv is None else beta_adv**c}  # fmt: skip


# ---- the training loop ----------------------------------------------------------------------------------


@dataclass
class DecoupledSettings:
    """Hyperparameters of one run; ``proximal="old"`` is PPO, ``"ewma"`` PPO-EWMA."""

    total_steps: int = 65_536
    num_steps: int = 128  # T per env
    num_minibatches: int = 4
    update_epochs: int = 4
    lr: float = 2.5e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_coef: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    norm_adv: bool = True
    # None: normalise by the iteration's own mean and std; a decay: by an EWMA over iterations of the
    # iterations' mean and mean square (debiased), so the statistics' age in samples can be held fixed
    adv_norm_beta: float | None = None
    max_grad_norm: float | None = None  # None: no clipping (a global norm clip is not batch size-invariant)
    proximal: str = "ewma"  # "ewma" (PPO-EWMA) or "old" (PPO: pi_prox = pi_behav)
    beta_prox: float = 0.9

    def validate(self, num_envs: int) -> None:
        for name in ("total_steps", "num_steps", "num_minibatches", "update_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.proximal not in ("ewma", "old"):
            raise ValueError(f"proximal must be 'ewma' or 'old', got {self.proximal!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.beta_prox < 1:
            raise ValueError(f"beta_prox must be in [0, 1), got {self.beta_prox}")
        if self.adv_norm_beta is not None and not 0 <= self.adv_norm_beta < 1:
            raise ValueError(f"adv_norm_beta must be in [0, 1) or None, got {self.adv_norm_beta}")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}")
        if not 0 <= self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma and gae_lambda must be in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if not self.clip_coef > 0 or not self.adam_eps > 0:
            raise ValueError(f"clip_coef and adam_eps must be > 0, got {self.clip_coef}, {self.adam_eps}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        batch = num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {batch} is not divisible by num_minibatches = {self.num_minibatches}"
            )
        if self.total_steps < batch:
            raise ValueError(f"total_steps = {self.total_steps} is less than one rollout of {batch} steps")


def _policy_logprob(agent: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    logits, _ = logits_and_value(agent, obs)
    return torch.log_softmax(logits, -1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def train_decoupled(
    envs,
    agent: nn.Module,
    settings: DecoupledSettings,
    seed: int = 0,
    on_update: Callable[[dict], bool | None] | None = None,
) -> dict:
    """Train ``agent`` on the vector env ``envs`` with PPO (``proximal="old"``) or PPO-EWMA.

    Each iteration collects ``num_envs * num_steps`` steps with the current (behaviour) policy, then runs
    ``update_epochs`` epochs of ``num_minibatches`` shuffled minibatches of Adam on
    ``-L + vf_coef * 1/2 (V - R)^2 - ent_coef * H``. For PPO-EWMA the proximal network is an EWMA of
    the parameters (decay ``beta_prox``), updated after every optimiser step and never reset. The
    value loss is the plain squared error (PPO's value clip around the old values is a second,
    batch size-dependent proximal term, left out for both methods). ``on_update(record)`` gets the
    statistics of each iteration; returning True stops.
    """
    num_envs = envs.num_envs
    settings.validate(num_envs)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    encode = observation_encoder(envs.single_observation_space)
    ewma = settings.proximal == "ewma"
    prox = copy.deepcopy(agent).requires_grad_(False) if ewma else None
    optimizer = torch.optim.Adam(
        agent.parameters(), lr=settings.lr, betas=tuple(settings.adam_betas), eps=settings.adam_eps
    )
    T, batch_size = settings.num_steps, num_envs * settings.num_steps
    minibatch = batch_size // settings.num_minibatches
    num_updates = settings.total_steps // batch_size
    shape = encode(envs.observation_space.sample()).shape[1:]
    obs_buf = torch.zeros((T, num_envs, *shape))
    actions = torch.zeros((T, num_envs), dtype=torch.long)
    logprobs, rewards, dones, values = (torch.zeros((T, num_envs)) for _ in range(4))

    next_obs_np, _ = envs.reset(seed=seed)
    next_obs, next_done = encode(next_obs_np), torch.zeros(num_envs)
    global_step, history = 0, {"updates": []}
    start = time.perf_counter()
    n_steps = settings.update_epochs * settings.num_minibatches
    adv_moments = torch.zeros(2)  # EWMA of (mean, mean square) of the advantages, if adv_norm_beta
    for update in range(num_updates):
        episodes: list[tuple[float, int, int]] = []  # (return, length, global step at its end)
        for t in range(T):
            global_step += num_envs
            obs_buf[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = act(agent, next_obs)
            actions[t], logprobs[t], values[t] = action, logprob, value
            next_obs_np, reward, terminated, truncated, infos = envs.step(action.numpy())
            reward_t = torch.as_tensor(np.asarray(reward, dtype=np.float32))
            reward_t, _ = bootstrap_truncated(
                reward_t, terminated, truncated, next_obs_np, infos, agent.value, encode, settings.gamma
            )
            rewards[t] = reward_t
            next_obs = encode(next_obs_np)
            next_done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    r, n = float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])
                    episodes.append((r, n, global_step))
        with torch.no_grad():
            next_value = agent.value(next_obs)
        advantages, returns = compute_gae(
            rewards, values, dones, next_value, next_done, settings.gamma, settings.gae_lambda
        )
        b_obs = obs_buf.reshape(batch_size, *shape)
        b_logprobs, b_actions = logprobs.reshape(-1), actions.reshape(-1)
        b_adv, b_returns = advantages.reshape(-1), returns.reshape(-1)
        if settings.norm_adv and settings.adv_norm_beta is not None:
            adv_moments = settings.adv_norm_beta * adv_moments + (1 - settings.adv_norm_beta) * torch.stack(
                (b_adv.mean(), b_adv.pow(2).mean())
            )
            mean, square = adv_moments / (1 - settings.adv_norm_beta ** (update + 1))
            b_adv = (b_adv - mean) / ((square - mean**2).clamp_min(0).sqrt() + 1e-8)
        elif settings.norm_adv and batch_size > 1:
            b_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
        stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0,
                 "clipfrac": 0.0, "mean_weight": 0.0, "behav_prox_kl": 0.0}  # fmt: skip
        for _epoch in range(settings.update_epochs):
            order = torch.randperm(batch_size, generator=generator)
            for first in range(0, batch_size, minibatch):
                index = order[first : first + minibatch]
                obs, acts = b_obs[index], b_actions[index]
                _, new_logprob, entropy, new_value = act(agent, obs, acts)
                behav = b_logprobs[index]
                if ewma:
                    with torch.no_grad():
                        prox_logprob = _policy_logprob(prox, obs, acts)
                else:
                    prox_logprob = behav
                parts = decoupled_ppo_loss(new_logprob, prox_logprob, behav, b_adv[index], settings.clip_coef)
                value_loss = 0.5 * (new_value - b_returns[index]).pow(2).mean()
                loss = (
                    parts["policy_loss"] + settings.vf_coef * value_loss - settings.ent_coef * entropy.mean()
                )
                if not torch.isfinite(loss):
                    raise PapersError(f"non-finite loss at update {update}, step {global_step}")
                optimizer.zero_grad()
                loss.backward()
                if settings.max_grad_norm is not None:
                    nn.utils.clip_grad_norm_(agent.parameters(), settings.max_grad_norm)
                optimizer.step()
                if ewma:
                    ewma_update_(prox, agent, settings.beta_prox)
                with torch.no_grad():
                    log_w = prox_logprob - behav  # E_behav[w log w]: KL(prox || behav) estimate
                    parts["behav_prox_kl"] = (log_w.exp() * log_w).mean()
                parts.update(value_loss=value_loss, entropy=entropy.mean())
                for key in stats:
                    stats[key] += float(parts[key].detach()) / n_steps
        record = {"update": update, "global_step": global_step, **stats, "episodes": episodes,
                  "time_s": time.perf_counter() - start}  # fmt: skip
        history["updates"].append(record)
        if on_update is not None and on_update(record):
            break
    history["global_step"] = global_step
    history["time_s"] = time.perf_counter() - start
    return history


def binned_returns(
    episodes: list[tuple[float, int, int]], total_steps: int, bin_steps: int, num_envs: int | None = None
) -> list[float]:
    """Mean return of the training episodes ``(return, length, global step at its end)`` in each
    ``bin_steps`` window of env steps (nan for a window without one): ``return vs environment steps``.

    With ``num_envs`` an episode is placed at its midpoint, ``end - length * num_envs / 2`` env steps
    (summed over the envs): an episode of length L spans L * num_envs global steps, so placing it at its
    end would lag the curve by an amount that grows with the number of envs, i.e. with the batch size.
    Without it, at its end.
    """
    if bin_steps < 1:
        raise ValueError(f"bin_steps must be >= 1, got {bin_steps}")
    if num_envs is not None and num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    n_bins = max(1, total_steps // bin_steps)
    sums, counts = np.zeros(n_bins), np.zeros(n_bins)
    for r, n, step in episodes:
        at = step if num_envs is None else step - n * num_envs / 2
        b = min(n_bins - 1, max(0, int((at - 1) // bin_steps)))
        sums[b] += r
        counts[b] += 1
    with np.errstate(invalid="ignore"):
        return [float(x) for x in np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)]
