"""Reproduction: DQN from pixels with no augmentation vs random shifts (K = M = 1) vs DrQ (K = M = 2).

One agent (:func:`train_agent`), three arms that differ only in the augmentation of replay samples:

    none    y and L on the raw s', s                           (plain Double DQN from pixels)
    shift   one random shift of s' and one of s (K = M = 1)    (DrQ's "augmentation only" ablation)
    drq     y averaged over K = 2 shifts of s', L over M = 2 shifts of s   (the paper's DrQ)

on :class:`~papers.rl.drq.env.PixelGridWorld` (3 x 18 x 18 images, agent and goal placed anew every
episode), at the same small budget of env steps and gradient steps, over several seeds. Each seed uses
the same network initialisation and the same exploration noise in every arm. Greedy evaluation
(epsilon = 0) runs every ``eval_interval`` steps on fixed held-out layouts and at the end on
``eval_episodes`` other ones. The claim: augmentation raises the return at that budget, and averaging
over augmentations adds to it.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.rl.agents import ReplayBuffer, evaluate, linear_schedule
from papers.rl.dqn import epsilon_greedy, update_target

from .env import PixelGridWorld
from .model import (
    PixelQNetwork,
    draw_shifts,
    drq_q_loss,
    drq_target,
    n_params,
    random_shift,
    scaled_pad,
)

# arm -> (augment, K, M)
ARMS = {"none": (False, 1, 1), "shift": (True, 1, 1), "drq": (True, 2, 2)}
LABELS = {"none": "no augmentation", "shift": "shift, K = M = 1", "drq": "DrQ: shift, K = M = 2"}


@dataclass
class Config:
    # environment (PixelGridWorld)
    grid_size: int = 6  # board cells per side, outer wall ring included: 4 x 4 inside
    cell: int = 3  # pixels per cell: 6 x 3 = 18 x 18 images
    n_walls: int = 0  # random inner walls (the agent and goal cells are random in any case)
    max_steps: int = 20
    # DrQ
    pad: int = 0  # 0: the paper's 4 pixels at 84, scaled to the image size (1 at 18)
    k: int = 2  # augmentations of s' averaged in the target (drq arm)
    m: int = 2  # augmentations of s averaged in the Q loss (drq arm)
    arms: tuple[str, ...] = ("none", "shift", "drq")
    seeds: int = 3
    # the DQN agent
    total_steps: int = 4_000
    buffer_size: int = 4_000
    learning_starts: int = 500
    train_frequency: int = 2
    gradient_steps: int = 1
    batch_size: int = 64
    learning_rate: float = 5e-4
    adam_eps: float = 1.5e-4
    gamma: float = 0.9
    loss: str = "huber"
    max_grad_norm: float = 10.0
    double_q: bool = True
    target_update_interval: int = 100
    start_epsilon: float = 1.0
    end_epsilon: float = 0.05
    exploration_fraction: float = 0.4
    channels: tuple[int, ...] = (16, 32)
    hidden: int = 64
    # greedy evaluation
    eval_interval: int = 500
    eval_interval_episodes: int = 30
    eval_episodes: int = 100
    threads: int = 1  # torch threads per agent
    workers: int = 3  # agents trained at once in worker processes (1: one after another, in process)

    @property
    def image_size(self) -> int:
        return self.grid_size * self.cell

    @property
    def shift_pad(self) -> int:
        return self.pad or scaled_pad(self.image_size)

    def validate(self) -> None:
        for name in ("cell", "max_steps", "k", "m", "seeds", "total_steps", "buffer_size", "train_frequency",
                     "gradient_steps", "batch_size", "target_update_interval", "hidden", "eval_interval",
                     "eval_interval_episodes", "eval_episodes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pad", "n_walls", "learning_starts", "threads", "workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.grid_size < 4:
            raise ValueError(f"grid_size must be >= 4, got {self.grid_size}")
        if self.n_walls > (self.grid_size - 2) ** 2 - 2:
            raise ValueError(f"n_walls must be <= {(self.grid_size - 2) ** 2 - 2} for grid_size "
                             f"{self.grid_size}, got {self.n_walls}")  # fmt: skip
        if self.shift_pad >= self.image_size:
            raise ValueError(f"pad ({self.shift_pad}) must be < the image size ({self.image_size})")
        if self.learning_starts >= self.total_steps:
            raise ValueError(f"learning_starts ({self.learning_starts}) must be < total_steps "
                             f"({self.total_steps})")  # fmt: skip
        if not self.arms or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must be distinct names from {tuple(ARMS)}, got {self.arms}")
        for arm in self.arms:
            if arm not in ARMS:
                raise ValueError(f"unknown arm {arm!r}; choose from {tuple(ARMS)}")
        if not (self.learning_rate > 0 and self.adam_eps > 0):
            raise ValueError(f"learning_rate and adam_eps must be > 0, got {self.learning_rate}, "
                             f"{self.adam_eps}")  # fmt: skip
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if not 0.0 <= self.end_epsilon <= self.start_epsilon <= 1.0:
            raise ValueError(f"need 0 <= end_epsilon <= start_epsilon <= 1, got {self.start_epsilon}, "
                             f"{self.end_epsilon}")  # fmt: skip
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(f"exploration_fraction must be in (0, 1], got {self.exploration_fraction}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive widths, got {self.channels}")


PRESETS = {
    "smoke": {"total_steps": 300, "buffer_size": 300, "learning_starts": 100, "seeds": 1,
              "train_frequency": 4, "batch_size": 8, "channels": (4, 8), "hidden": 16, "eval_interval": 100,
              "eval_interval_episodes": 2, "eval_episodes": 3, "workers": 1},
    "default": {},
    # More seeds and a 5x longer budget (not the recorded run).
    "full": {"seeds": 10, "total_steps": 30_000, "buffer_size": 30_000, "learning_starts": 1_600,
             "eval_interval": 2_000, "eval_episodes": 200},
}  # fmt: skip


# ---- environment and evaluation ---------------------------------------------------------------------------


def make_env(config: Config, render_mode: str | None = None) -> PixelGridWorld:
    return PixelGridWorld(config.grid_size, config.cell, config.n_walls, config.max_steps, render_mode)


def greedy_evaluation(net: nn.Module, config: Config, episodes: int, seed: int) -> list[float]:
    """Returns of the greedy policy (epsilon = 0) on the layouts of seeds seed, seed + 1, ...

    The episodes run side by side with one batched forward pass per step; episode i is the one
    ``papers.rl.agents.evaluate`` would play with reset seed ``seed + i``.
    """
    envs = [make_env(config) for _ in range(episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns, active = np.zeros(episodes), np.ones(episodes, dtype=bool)
    while active.any():
        index = np.flatnonzero(active)
        with torch.no_grad():
            actions = net(torch.as_tensor(obs[index])).argmax(-1).tolist()
        for i, action in zip(index, actions, strict=True):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            returns[i] += reward
            active[i] = not (terminated or truncated)
    return returns.tolist()


def reference_returns(config: Config, episodes: int, seed: int) -> dict:
    """The optimal return (shortest path) and a uniformly random policy's on the same layouts."""
    env = make_env(config)
    optimal = []
    for episode in range(episodes):
        env.reset(seed=seed + episode)
        optimal.append(1.0 - 0.9 * env.shortest_path() / config.max_steps)
    rng = np.random.default_rng(seed)
    rand = evaluate(env, lambda _obs: int(rng.integers(4)), episodes=episodes, seed=seed).returns
    return {"optimal": float(np.mean(optimal)), "random": float(np.mean(rand))}


def make_optimizer(net: nn.Module, config: Config) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=config.learning_rate, eps=config.adam_eps)


# ---- the agent --------------------------------------------------------------------------------------------


def train_agent(config: Config, seed: int, arm: str = "drq", ctx=None, keep_net: bool = False) -> dict:
    """Train one Double-DQN agent from pixels with the arm's augmentation; curves and greedy returns.

    The network initialisation, the exploration noise and the replay sampling depend on ``seed`` only,
    so the arms of one seed differ only in how replay samples are augmented.
    """
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}; choose from {tuple(ARMS)}")
    augment, k, m = ARMS[arm]
    pad = config.shift_pad if augment else 0
    if arm == "drq":
        k, m = config.k, config.m
    torch.manual_seed(seed)
    env = make_env(config)
    obs_shape, n_actions = env.observation_space.shape, int(env.action_space.n)
    online = PixelQNetwork(obs_shape, n_actions, config.channels, config.hidden)
    target = copy.deepcopy(online)
    for p in target.parameters():
        p.requires_grad_(False)
    optimizer = make_optimizer(online, config)
    buffer = ReplayBuffer(config.buffer_size, obs_shape, obs_dtype=np.uint8, seed=seed)
    rng = np.random.default_rng(seed)
    shifts = torch.Generator().manual_seed(seed + 1)  # the augmentation draws
    epsilon = linear_schedule(config.start_epsilon, config.end_epsilon,
                              max(1, int(config.exploration_fraction * config.total_steps)))  # fmt: skip
    history = {"episode_step": [], "episode_return": [], "eval_step": [], "eval_return": [],
               "loss_step": [], "loss": [], "q_mean": []}  # fmt: skip
    eval_seed = seed * 1_000 + 100_000  # the interval evaluations' layouts; the final ones differ
    grad_steps, episode_return, start = 0, 0.0, time.perf_counter()
    obs, _ = env.reset(seed=seed)
    bar = ctx.progress_bar(config.total_steps, f"{arm} seed {seed}") if ctx else None
    if bar:
        bar.__enter__()
    try:
        for step in range(1, config.total_steps + 1):
            eps = epsilon(step - 1)
            with torch.no_grad():
                q = online(torch.as_tensor(obs[None]))
            action = int(epsilon_greedy(q, eps, rng, n_actions)[0])
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs[None], [action], [reward], next_obs[None], [terminated])
            episode_return += reward
            obs = next_obs
            if terminated or truncated:
                history["episode_step"].append(step)
                history["episode_return"].append(episode_return)
                obs, _ = env.reset()
                episode_return = 0.0

            if step > config.learning_starts and step % config.train_frequency == 0:
                for _ in range(config.gradient_steps):
                    batch = buffer.sample(config.batch_size).to_torch()
                    y = drq_target(batch.rewards, batch.terminated, batch.next_obs, target, config.gamma,
                                   k, pad, shifts, online if config.double_q else None)  # fmt: skip
                    loss, q_taken = drq_q_loss(online, batch.obs, batch.actions, y, m, pad, shifts,
                                               config.loss)  # fmt: skip
                    optimizer.zero_grad()
                    loss.backward()
                    if config.max_grad_norm > 0:
                        nn.utils.clip_grad_norm_(online.parameters(), config.max_grad_norm)
                    optimizer.step()
                    grad_steps += 1
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{arm} seed {seed}: non-finite TD loss at step {step}")
                if step % 50 == 0:
                    history["loss_step"].append(step)
                    history["loss"].append(loss.item())
                    history["q_mean"].append(q_taken.mean().item())
            if step % config.target_update_interval == 0:
                update_target(target, online)

            if step % config.eval_interval == 0 or step == config.total_steps:
                mean = float(np.mean(greedy_evaluation(online, config, config.eval_interval_episodes,
                                                       eval_seed)))  # fmt: skip
                history["eval_step"].append(step)
                history["eval_return"].append(mean)
                if ctx:
                    ctx.log({f"{arm}_seed{seed}_eval_return": mean, "epsilon": eps}, step=step)
            if bar:
                bar.update(1, eps=eps)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    train_time = time.perf_counter() - start
    final = greedy_evaluation(online, config, config.eval_episodes, seed * 1_000 + 500_000)
    return ({"net": online} if keep_net else {}) | {
        "history": history,
        "final_returns": final,
        "final_mean_return": float(np.mean(final)),
        "final_success": float(np.mean(np.asarray(final) > 0)),
        "mean_eval_return": float(np.mean(history["eval_return"])),
        "gradient_steps": grad_steps,
        "train_time_s": train_time,
        "pad": pad,
        "k": k,
        "m": m,
        "params": n_params(online),
    }


# ---- the reproduction -------------------------------------------------------------------------------------


def _train_in_worker(config: Config, seed: int, arm: str) -> dict:
    """One agent in a worker process (its own torch thread setting; no progress bar or log)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    return train_agent(config, seed, arm)


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    seeds = [ctx.seed + i for i in range(config.seeds)]
    jobs = [(seed, arm) for seed in seeds for arm in config.arms]  # seed-major
    parts: dict[str, list[dict]] = {arm: [] for arm in config.arms}
    if config.workers > 1:
        # Agents are independent and seeded, so training them in worker processes gives the same
        # numbers as one after another; ctx.stage still keeps each one (a resume recomputes the rest).
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(config.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {job: pool.submit(_train_in_worker, config, *job) for job in jobs}
            for seed, arm in jobs:
                parts[arm].append(ctx.stage(f"train_{arm}_seed{seed}", futures[seed, arm].result))
                ctx.log({f"{arm}_seed{seed}_final_return": parts[arm][-1]["final_mean_return"]}, step=0)
            pool.shutdown(cancel_futures=True)
    else:
        for seed, arm in jobs:
            parts[arm].append(ctx.stage(f"train_{arm}_seed{seed}", lambda a=arm, s=seed: train_agent(
                config, s, a, ctx)))  # fmt: skip
    refs = ctx.stage("references", lambda: reference_returns(config, config.eval_episodes, 777_000))

    metrics: dict = {}
    for arm, runs in parts.items():
        finals = [p["final_mean_return"] for p in runs]
        metrics[f"{arm}_final_return"] = float(np.mean(finals))
        metrics[f"{arm}_final_return_std"] = float(np.std(finals))
        metrics[f"{arm}_final_success"] = float(np.mean([p["final_success"] for p in runs]))
        metrics[f"{arm}_mean_eval_return"] = float(np.mean([p["mean_eval_return"] for p in runs]))
        metrics[f"{arm}_train_time_s"] = float(np.mean([p["train_time_s"] for p in runs]))
        for seed, p in zip(seeds, runs, strict=True):
            metrics[f"{arm}_seed{seed}_final_return"] = p["final_mean_return"]
    metrics["optimal_return"] = refs["optimal"]
    metrics["random_return"] = refs["random"]
    metrics["pad"] = config.shift_pad
    metrics["params"] = next(iter(parts.values()))[0]["params"]
    metrics["gradient_steps"] = next(iter(parts.values()))[0]["gradient_steps"]

    checks = []
    budget = f"{config.total_steps} env steps, {len(seeds)} seeds"
    if "none" in parts:
        for arm in ("shift", "drq"):
            if arm in parts:
                checks.append(Check(f"{LABELS[arm]}: final greedy return above no augmentation",
                                    metrics[f"{arm}_final_return"], ">", metrics["none_final_return"],
                                    f"no augmentation, {budget}"))  # fmt: skip
        if "drq" in parts:
            checks.append(Check("DrQ: mean greedy return over training evaluations (sample efficiency) above "
                                "no augmentation", metrics["drq_mean_eval_return"], ">",
                                metrics["none_mean_eval_return"], f"no augmentation, {budget}"))  # fmt: skip
    if "shift" in parts and "drq" in parts:
        checks.append(Check("averaging (K = M = 2) adds to the shift alone (K = M = 1): final greedy return",
                            metrics["drq_final_return"], ">=", metrics["shift_final_return"],
                            f"shift K = M = 1, {budget}"))  # fmt: skip

    figures(config, ctx, parts, refs, seeds)
    per_seed = "; ".join(
        f"{arm} " + ", ".join(f"{p['final_mean_return']:.2f}" for p in runs) for arm, runs in parts.items()
    )
    notes = (
        f"Toy pixel grid world ({config.image_size} x {config.image_size} RGB, {config.grid_size - 2} x "
        f"{config.grid_size - 2} inside, {config.n_walls} random walls; agent, goal and walls placed anew "
        "every episode), "
        f"Double DQN with a {len(config.channels)}-conv encoder, {config.total_steps} env steps and "
        f"{metrics['gradient_steps']} gradient steps of batch {config.batch_size} per agent, seeds {seeds}. "
        f"Random shift: replicate-pad {config.shift_pad} px (the paper's 4 px at 84, scaled) and crop. "
        f"Final greedy return over {config.eval_episodes} held-out layouts, mean ± std over seeds: "
        + ", ".join(
            f"{LABELS[a]} {metrics[f'{a}_final_return']:.3f} ± {metrics[f'{a}_final_return_std']:.3f}"
            for a in parts
        )  # fmt: skip
        + f" (optimal {refs['optimal']:.3f}, random policy {refs['random']:.3f}). Per seed: {per_seed}. "
        "Equal env and gradient steps in every arm; the K = M = 2 arm does twice the forward/backward work "
        "per gradient step (its train time is in the metrics)."
    )
    failed = [c.name for c in checks if not c.passed]
    held = [c.name for c in checks if c.passed]
    if held:
        notes += " Held: " + "; ".join(held) + "."
    if failed:
        notes += (
            " Did not hold: " + "; ".join(failed) + ". A likely reason (a hypothesis, not tested by this "
            "run): the paper's augmentation counters an encoder overfitting scarce, varied images, while "
            f"this toy has only {(config.grid_size - 2) ** 2} x {(config.grid_size - 2) ** 2 - 1} agent/goal "
            "placements"
            + (f" x wall layouts ({config.n_walls} walls)" if config.n_walls else "")
            + f", visited many times in {config.total_steps} steps, so there is little to overfit, and a "
            "shifted image shows the same state at another pixel phase, which the small strided encoder "
            "must also learn to map to the same values within the same number of gradient steps."
        )
    if "none" in parts:
        for arm in ("shift", "drq"):
            if arm in parts:
                wins = sum(a["final_mean_return"] > b["final_mean_return"]
                           for a, b in zip(parts[arm], parts["none"], strict=True))  # fmt: skip
                metrics[f"{arm}_seeds_above_none"] = wins
                notes += f" {LABELS[arm]} beats no augmentation on {wins} of {len(seeds)} seeds."
    return Result(metrics=metrics, checks=checks, notes=notes)


# ---- figures ----------------------------------------------------------------------------------------------


def figures(config: Config, ctx, parts: dict, refs: dict, seeds: list[int]) -> None:
    from papers.core.plots import figure, moving_average

    fig, (ax_eval, ax_train) = figure(ncols=2, width=4.8)
    for arm, runs in parts.items():
        steps = runs[0]["history"]["eval_step"]
        curves = np.array([p["history"]["eval_return"] for p in runs])
        mean, std = curves.mean(0), curves.std(0)
        (line,) = ax_eval.plot(steps, mean, marker="o", markersize=3, label=LABELS[arm])
        ax_eval.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        for p in runs:
            h = p["history"]
            ax_train.plot(h["episode_step"], moving_average(h["episode_return"], 50), color=line.get_color(),
                          alpha=0.6, linewidth=1, label=LABELS[arm] if p is runs[0] else None)  # fmt: skip
    for ax in (ax_eval, ax_train):
        ax.axhline(refs["optimal"], color="grey", linestyle="--", linewidth=1, label="optimal")
        ax.axhline(refs["random"], color="grey", linestyle=":", linewidth=1, label="random policy")
        ax.set_xlabel("env step")
        ax.legend(fontsize=7)
    ax_eval.set_ylabel(f"greedy return ({config.eval_interval_episodes} layouts)")
    ax_eval.set_title(f"evaluation, mean ± std over {len(seeds)} seeds")
    ax_train.set_ylabel("training episode return (50-episode mean)")
    ax_train.set_title("epsilon-greedy training, each seed")
    ctx.save_figure(fig, "curves")

    # An augmented-sample strip: one observation, six independent random shifts of it (content moved by
    # (down, right) pixels, borders replicated) and the difference of the first from the original.
    obs, _ = make_env(config).reset(seed=ctx.seed)
    pad = config.shift_pad
    offsets = draw_shifts(6, pad, torch.Generator().manual_seed(ctx.seed))
    views = random_shift(torch.as_tensor(obs[None]).repeat(6, 1, 1, 1), pad, offsets=offsets).numpy()
    fig, axes = figure(ncols=8, width=1.5, height=1.7)
    panels = [("s", obs)] + [
        (f"moved ({pad - dy}, {pad - dx}) px", v) for (dy, dx), v in zip(offsets.tolist(), views, strict=True)
    ]
    for ax, (title, image) in zip(axes, panels, strict=False):
        ax.imshow(image.transpose(1, 2, 0), interpolation="nearest")
        ax.set_title(title, fontsize=7)
    diff = np.abs(views[0].astype(int) - obs.astype(int)).sum(0)
    axes[-1].imshow(diff, cmap="magma", interpolation="nearest")
    axes[-1].set_title("|f(s) - s|, 1st shift", fontsize=7)
    for ax in axes:
        ax.grid(False)
        ax.set_xticks([])
        ax.set_yticks([])
    ctx.save_figure(fig, "augmentations")
