"""PPO with an exploration bonus: two value heads, two discount factors, a combined advantage.

    history = train_explorer(envs, "rnd", ExplorerSettings(total_steps=100_000), seed=0, n_cells=..., ...)

The PPO pieces are those of :mod:`papers.rl.ppo` (``ppo_loss``, ``act``, ``lr_at``,
``bootstrap_truncated``) and :func:`papers.rl.agents.compute_gae`; what RND adds (Burda et al. 2019,
Sec. 2.3-2.4 and Algorithm 1):

    r_I,t   = bonus(s_t, a_t, s_{t+1}) / std(R_I)          R_I the running non-episodic intrinsic return
    A_E     = GAE(r_E, V_E; gamma_E = 0.999, lambda), cut at episode ends (time-limit cuts bootstrapped)
    A_I     = GAE(r_I, V_I; gamma_I = 0.99, lambda), never cut: the intrinsic stream is non-episodic
    A       = 2 A_E + 1 A_I                                 (ext_coef, int_coef)
    loss    = PPO-clip(A) + vf_coef (1/2 (V_E - R_E)^2 + 1/2 (V_I - R_I)^2) - ent_coef H
              + predictor loss on a random ``predictor_fraction`` of each minibatch (own Adam)

The observation statistics of the bonus start from ``norm_init_steps`` random-action steps per env
(RND's initialisation; those steps count neither as training steps nor for coverage) and are then
updated with every rollout. ``method="ppo"`` is the same agent with r_I = 0 (no bonus, the intrinsic
head idle); ``"curiosity"`` swaps RND for the random-feature forward model, all else equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from papers.core.errors import PapersError
from papers.rl.agents import compute_gae, final_observations
from papers.rl.ppo.model import act, bootstrap_truncated, lr_at, ppo_loss

from .model import ForwardCuriosity, IntrinsicRewardNormaliser, RNDBonus, TwoHeadActorCritic

METHODS = ("ppo", "curiosity", "rnd")


@dataclass
class ExplorerSettings:
    total_steps: int = 100_000
    num_steps: int = 128
    lr: float = 5e-4
    anneal_lr: bool = False
    gamma_ext: float = 0.999
    gamma_int: float = 0.99
    gae_lambda: float = 0.95
    ext_coef: float = 2.0
    int_coef: float = 1.0
    num_minibatches: int = 4
    update_epochs: int = 4
    clip_coef: float = 0.1
    ent_coef: float = 0.001
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    predictor_fraction: float = 0.25
    norm_init_steps: int = 128
    hidden: tuple[int, ...] = (64, 64)
    bonus_hidden: int = 128
    bonus_dim: int = 64

    def validate(self, num_envs: int) -> None:
        for name in ("total_steps", "num_steps", "num_minibatches", "update_epochs", "bonus_hidden",
                     "bonus_dim"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.norm_init_steps < 0:
            raise ValueError(f"norm_init_steps must be >= 0, got {self.norm_init_steps}")
        for name in ("lr", "clip_coef", "max_grad_norm", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("gamma_ext", "gamma_int", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("ext_coef", "int_coef", "ent_coef", "vf_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.predictor_fraction <= 1:
            raise ValueError(f"predictor_fraction must be in (0, 1], got {self.predictor_fraction}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be one or more sizes >= 1, got {self.hidden}")
        batch = num_envs * self.num_steps
        if batch % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {batch} is not divisible by num_minibatches = {self.num_minibatches}"
            )
        if self.total_steps < batch:
            raise ValueError(f"total_steps = {self.total_steps} is less than one rollout of {batch} steps")


def make_bonus(method: str, obs_dim: int, n_actions: int, settings: ExplorerSettings) -> nn.Module | None:
    if method == "ppo":
        return None
    if method == "rnd":
        return RNDBonus(obs_dim, out_dim=settings.bonus_dim, hidden=settings.bonus_hidden)
    if method == "curiosity":
        return ForwardCuriosity(
            obs_dim, n_actions, feature_dim=settings.bonus_dim, hidden=settings.bonus_hidden
        )
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def train_explorer(
    envs,
    method: str,
    settings: ExplorerSettings,
    seed: int = 0,
    n_cells: int | None = None,
    tv_cell: int | None = None,
    on_update: Callable[[dict], None] | None = None,
) -> dict:
    """Train PPO (+ bonus) on the vector env; returns the agent, the bonus, per-update rows and visit counts.

    ``n_cells``: the observation's first ``n_cells`` entries are the one-hot cell of the agent
    (the :class:`MultiRoomGrid` layout); each reached state s_{t+1} is counted in ``visits``, and the
    share of steps that end on ``tv_cell`` is logged.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    num_envs = envs.num_envs
    settings.validate(num_envs)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    n_actions = int(envs.single_action_space.n)
    n_cells = obs_dim if n_cells is None else n_cells
    agent = TwoHeadActorCritic(obs_dim, n_actions, settings.hidden)
    bonus = make_bonus(method, obs_dim, n_actions, settings)
    optimizer = torch.optim.Adam(agent.parameters(), lr=settings.lr, eps=settings.adam_eps)
    bonus_optimizer = None
    if bonus is not None:
        trainable = [p for p in bonus.parameters() if p.requires_grad]
        bonus_optimizer = torch.optim.Adam(trainable, lr=settings.lr, eps=settings.adam_eps)
    reward_normaliser = IntrinsicRewardNormaliser(num_envs, settings.gamma_int)

    def encode(obs) -> torch.Tensor:
        return torch.as_tensor(np.asarray(obs), dtype=torch.float32).reshape(len(obs), -1)

    next_obs_np, _ = envs.reset(seed=seed)
    if bonus is not None and settings.norm_init_steps:  # observation statistics from random actions
        init = []
        for _ in range(settings.norm_init_steps):
            step = envs.step(envs.action_space.sample())
            init.append(encode(final_observations(step[0], step[4])))
            next_obs_np = step[0]
        bonus.update_obs_stats(torch.cat(init))

    T, batch_size = settings.num_steps, num_envs * settings.num_steps
    minibatch = batch_size // settings.num_minibatches
    num_updates = settings.total_steps // batch_size
    obs_buf = torch.zeros((T, num_envs, obs_dim))
    next_buf = torch.zeros((T, num_envs, obs_dim))
    actions = torch.zeros((T, num_envs), dtype=torch.long)
    logprobs = torch.zeros((T, num_envs))
    rewards_ext = torch.zeros((T, num_envs))
    dones = torch.zeros((T, num_envs))
    values = torch.zeros((T, num_envs, 2))
    visits = np.zeros(n_cells, dtype=np.int64)
    next_obs = encode(next_obs_np)
    next_done = torch.zeros(num_envs)
    global_step, rows = 0, []
    start = time.perf_counter()
    for update in range(num_updates):
        lr = lr_at(settings, update, num_updates)
        for opt in (optimizer, bonus_optimizer):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr
        episodes: list[tuple[float, int]] = []
        goals = 0
        for t in range(T):
            global_step += num_envs
            obs_buf[t], dones[t] = next_obs, next_done
            with torch.no_grad():
                action, logprob, _, value = act(agent, next_obs)
            actions[t], logprobs[t], values[t] = action, logprob, value
            next_obs_np, reward, terminated, truncated, infos = envs.step(action.numpy())
            reward_t = torch.as_tensor(np.asarray(reward, dtype=np.float32))
            reward_t, _ = bootstrap_truncated(
                reward_t, terminated, truncated, next_obs_np, infos, agent.value, encode, settings.gamma_ext
            )
            rewards_ext[t] = reward_t
            goals += int(np.sum(terminated))
            next_buf[t] = encode(final_observations(next_obs_np, infos))
            next_obs = encode(next_obs_np)
            next_done = torch.as_tensor(np.logical_or(terminated, truncated), dtype=torch.float32)
            if "_episode" in infos:
                for i in np.flatnonzero(infos["_episode"]):
                    episodes.append((float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])))

        flat_next = next_buf.reshape(batch_size, obs_dim)
        flat_obs, flat_actions = obs_buf.reshape(batch_size, obs_dim), actions.reshape(-1)
        cells = flat_next[:, :n_cells].argmax(-1).numpy()
        np.add.at(visits, cells, 1)
        raw_int = torch.zeros((T, num_envs))
        if bonus is not None:
            raw_int = bonus.reward(flat_obs, flat_actions, flat_next).reshape(T, num_envs)
            rewards_int = reward_normaliser.normalise(raw_int).float()
            bonus.update_obs_stats(flat_next)
        else:
            rewards_int = raw_int
        with torch.no_grad():
            next_values = agent.values(next_obs)
        adv_ext, ret_ext = compute_gae(rewards_ext, values[..., 0], dones, next_values[:, 0], next_done,
                                       settings.gamma_ext, settings.gae_lambda)  # fmt: skip
        never = torch.zeros_like(dones)
        adv_int, ret_int = compute_gae(rewards_int, values[..., 1], never, next_values[:, 1],
                                       never[0], settings.gamma_int, settings.gae_lambda)  # fmt: skip
        if bonus is None:
            adv_int, ret_int = torch.zeros_like(adv_int), values[..., 1].clone()
        advantages = settings.ext_coef * adv_ext + settings.int_coef * adv_int

        b_adv, b_logprobs = advantages.reshape(-1), logprobs.reshape(-1)
        b_ret_ext, b_ret_int = ret_ext.reshape(-1), ret_int.reshape(-1)
        b_val_ext = values[..., 0].reshape(-1)
        stats: dict[str, float] = {}
        share = 1.0 / (settings.update_epochs * settings.num_minibatches)
        for _epoch in range(settings.update_epochs):
            order = torch.randperm(batch_size, generator=generator)
            for first in range(0, batch_size, minibatch):
                index = order[first : first + minibatch]
                _, new_logprob, entropy, new_values = act(agent, flat_obs[index], flat_actions[index])
                parts = ppo_loss(
                    new_logprob, b_logprobs[index], b_adv[index], new_values[:, 0], b_val_ext[index],
                    b_ret_ext[index], entropy, clip_coef=settings.clip_coef, clip_vloss=False,
                    ent_coef=settings.ent_coef, vf_coef=settings.vf_coef,
                )  # fmt: skip
                int_value_loss = 0.5 * ((new_values[:, 1] - b_ret_int[index]) ** 2).mean()
                loss = parts["loss"] + settings.vf_coef * int_value_loss
                if not torch.isfinite(loss):
                    raise PapersError(f"{method}: non-finite loss at update {update}, step {global_step}")
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), settings.max_grad_norm)
                optimizer.step()
                if bonus is not None:
                    mask = torch.rand(len(index), generator=generator) < settings.predictor_fraction
                    bonus_loss = bonus.loss(flat_obs[index], flat_actions[index], flat_next[index], mask)
                    bonus_optimizer.zero_grad()
                    bonus_loss.backward()
                    bonus_optimizer.step()
                    stats["bonus_loss"] = stats.get("bonus_loss", 0.0) + float(bonus_loss.detach()) * share
                for key in ("policy_loss", "value_loss", "entropy", "approx_kl"):
                    stats[key] = stats.get(key, 0.0) + float(parts[key].detach()) * share
                stats["int_value_loss"] = (
                    stats.get("int_value_loss", 0.0) + float(int_value_loss.detach()) * share
                )
        on_tv = (cells == tv_cell) if tv_cell is not None else np.zeros(len(cells), dtype=bool)
        raw = raw_int.reshape(-1).numpy()
        row = {
            "update": update,
            "global_step": global_step,
            "lr": lr,
            **stats,
            "cells_visited": int((visits > 0).sum()),
            "episodes": episodes,
            "goals": goals,
            "tv_share": float(on_tv.mean()),
            "raw_int_mean": float(raw.mean()),
            "raw_int_tv": float(raw[on_tv].mean()) if on_tv.any() else None,
            "raw_int_not_tv": float(raw[~on_tv].mean()) if (~on_tv).any() else None,
            "int_reward_tv_share": float(raw[on_tv].sum() / max(raw.sum(), 1e-12))
            if bonus is not None
            else 0.0,
            "time_s": time.perf_counter() - start,
        }
        rows.append(row)
        if on_update is not None:
            on_update(row)
    return {"agent": agent, "bonus": bonus, "rows": rows, "visits": visits, "global_step": global_step,
            "time_s": time.perf_counter() - start}  # fmt: skip
