"""Reproduction: DQN on CartPole-v1 (default) or Atari (``full``), with a target-network ablation.

The agent, top to bottom (:func:`train_dqn`, CleanRL's ``dqn.py`` order):

    for each env step t:   epsilon_t = linear(start_epsilon -> end_epsilon over exploration_fraction * T)
                           a_t = epsilon-greedy(Q_online(s_t)); step; store (s, a, r, s'_true, terminated)
        if t > learning_starts and every train_frequency steps: gradient_steps times
                           sample a batch, y = r + gamma (1 - term) max_a' Q_target(s', a'),
                           Huber/MSE(y - Q_online(s, a)), clip the gradient norm, Adam step
        every target_update_interval steps:  theta_target <- tau theta + (1 - tau) theta_target

A time-limit cut (CartPole's 500 steps) is not a termination: the transition bootstraps from the true
last observation. Greedy evaluation (epsilon = 0) runs every ``eval_interval`` steps on
``eval_interval_episodes`` episodes, and at the end on ``eval_episodes`` episodes with other seeds.

Measured in one run of the default: the last policy's greedy return (the claim, against CartPole-v1's
own ``reward_threshold`` 475), the best intermediate policy re-evaluated (extra information only), and
the same agent at equal steps without a target network (bootstrapping from the online net).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from papers.core.errors import PapersError
from papers.core.experiment import Check, Result
from papers.rl.agents import (
    FrameStackReplayBuffer,
    ReplayBuffer,
    as_policy,
    atari_wrappers,
    evaluate,
    final_observations,
    finished_episodes,
    linear_schedule,
    make_env,
    make_vector_env,
)

from .model import (
    LOSSES,
    epsilon_greedy,
    make_q_network,
    n_params,
    td_loss,
    td_target,
    update_target,
)

ABLATIONS = ("none", "no_target", "double")


@dataclass
class Config:
    env_id: str = "CartPole-v1"
    total_steps: int = 50_000  # env steps (agent decisions; one Atari step is 4 frames)
    num_envs: int = 1
    # replay and learning
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_frequency: int = 256  # env steps between training phases
    gradient_steps: int = 64  # gradient steps per training phase
    batch_size: int = 64
    learning_rate: float = 2.3e-3
    adam_eps: float = 1e-8
    gamma: float = 0.99
    loss: str = "huber"
    max_grad_norm: float = 10.0  # 0 = no clipping
    double_q: bool = False
    hidden: tuple[int, ...] = (256, 256)
    # target network: hard copy (tau = 1) every target_update_interval env steps, or Polyak (tau < 1)
    target_update_interval: int = 10
    tau: float = 1.0
    # linear epsilon schedule
    start_epsilon: float = 1.0
    end_epsilon: float = 0.04
    exploration_fraction: float = 0.16
    # Atari (used when env_id starts with "ALE/")
    frame_stack: int = 4
    noop_max: int = 30
    clip_rewards: bool = False  # sign(r) in the TD target; returns reported unclipped
    episodic_life: bool = True  # life loss is terminal for the TD target
    fire_reset: bool = True
    sticky_actions: float = 0.0  # ALE v5's repeat_action_probability (the Nature setup had none)
    # greedy evaluation
    eval_episodes: int = 20
    eval_interval: int = 2_500
    eval_interval_episodes: int = 5
    eval_max_steps: int = 1_000
    # the extra arm at equal steps: "no_target", "double" (Double-DQN target) or "none"
    ablation: str = "no_target"
    threads: int = 1

    @property
    def atari(self) -> bool:
        return self.env_id.startswith("ALE/")

    def validate(self) -> None:
        for name in (
            "total_steps",
            "num_envs",
            "buffer_size",
            "train_frequency",
            "gradient_steps",
            "batch_size",
            "target_update_interval",
            "eval_episodes",
            "eval_interval",
            "eval_interval_episodes",
            "eval_max_steps",
            "frame_stack",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "noop_max", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_starts >= self.total_steps:
            raise ValueError(
                f"learning_starts ({self.learning_starts}) must be < total_steps ({self.total_steps})"
            )
        if not self.learning_rate > 0 or not self.adam_eps > 0:
            raise ValueError(f"learning_rate and adam_eps must be > 0, got {self.learning_rate}, "
                             f"{self.adam_eps}")  # fmt: skip
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        for name in ("start_epsilon", "end_epsilon", "sticky_actions"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 < self.exploration_fraction <= 1.0:
            raise ValueError(f"exploration_fraction must be in (0, 1], got {self.exploration_fraction}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.ablation not in ABLATIONS:
            raise ValueError(f"ablation must be one of {ABLATIONS}, got {self.ablation!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden needs at least one layer width >= 1, got {self.hidden}")


PRESETS = {
    "smoke": {"total_steps": 1_200, "buffer_size": 1_200, "learning_starts": 200, "train_frequency": 64,
              "gradient_steps": 8, "batch_size": 32, "hidden": (32, 32), "eval_interval": 500,
              "eval_interval_episodes": 1, "eval_episodes": 2, "eval_max_steps": 100},
    "default": {},
    # Nature DQN on Breakout, 10M frames = 2.5M agent steps (CleanRL dqn_atari hyperparameters).
    "full": {"env_id": "ALE/Breakout-v5", "total_steps": 2_500_000, "buffer_size": 1_000_000,
             "learning_starts": 80_000, "train_frequency": 4, "gradient_steps": 1, "batch_size": 32,
             "learning_rate": 1e-4, "gamma": 0.99, "loss": "huber", "max_grad_norm": 10.0,
             "target_update_interval": 1_000, "tau": 1.0, "start_epsilon": 1.0, "end_epsilon": 0.01,
             "exploration_fraction": 0.1, "clip_rewards": True, "episodic_life": True, "fire_reset": True,
             "eval_episodes": 10, "eval_interval": 250_000, "eval_interval_episodes": 3,
             "eval_max_steps": 27_000, "ablation": "none"},
}  # fmt: skip


# ---- environments ---------------------------------------------------------------------------------------


def env_wrappers(config: Config) -> list:
    """Atari: noop reset, 4-frame max-pool skip, 84x84 grey, FIRE/life handling, 4-frame stack."""
    if not config.atari:
        return []
    return atari_wrappers(config.frame_stack, config.noop_max, lives=True, fire=config.fire_reset)


def env_kwargs(config: Config) -> dict:
    return {"frameskip": 1, "repeat_action_probability": config.sticky_actions} if config.atari else {}


def make_envs(config: Config, seed: int) -> gym.vector.VectorEnv:
    return make_vector_env(config.env_id, config.num_envs, seed, wrappers=env_wrappers(config),
                           **env_kwargs(config))  # fmt: skip


def make_eval_env(config: Config) -> gym.Env:
    return make_env(config.env_id, wrappers=env_wrappers(config), **env_kwargs(config))


def greedy_evaluation(net: nn.Module, config: Config, episodes: int, seed: int) -> list[float]:
    env = make_eval_env(config)
    try:
        result = evaluate(env, as_policy(net), episodes=episodes, seed=seed, max_steps=config.eval_max_steps)
        return result.returns
    finally:
        env.close()


def make_optimizer(net: nn.Module, config: Config) -> torch.optim.Optimizer:
    """Adam (CleanRL, SB3; the Nature paper used RMSProp); the fused kernel where torch has one."""
    try:
        return torch.optim.Adam(net.parameters(), lr=config.learning_rate, eps=config.adam_eps, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(net.parameters(), lr=config.learning_rate, eps=config.adam_eps)


def epsilon_schedule(config: Config):
    """epsilon(t): linear from start_epsilon at t = 0 to end_epsilon at exploration_fraction * total_steps."""
    duration = max(1, int(config.exploration_fraction * config.total_steps))
    return linear_schedule(config.start_epsilon, config.end_epsilon, duration)


def replay_transition(next_obs, rewards, terminated, infos: dict, config: Config):
    """What one vector step stores after (s, a): (r or sign(r), s' true last observation, terminated for TD).

    A truncated episode keeps terminated = 0 and its true last observation (not the autoreset one), so it
    bootstraps; with ``episodic_life`` a lost Atari life counts as terminated.
    """
    done = np.asarray(terminated, dtype=bool)
    if config.atari and config.episodic_life and "life_lost" in infos:
        done = done | (np.asarray(infos["life_lost"], dtype=bool) & infos["_life_lost"])
    stored_rewards = np.sign(rewards) if config.clip_rewards else np.asarray(rewards)
    return stored_rewards, final_observations(next_obs, infos), done


def _crossed(step: int, advance: int, interval: int) -> bool:
    """Did the step counter pass a multiple of ``interval`` going from ``step - advance`` to ``step``?"""
    return step // interval > (step - advance) // interval


# ---- the agent ------------------------------------------------------------------------------------------


def train_dqn(config: Config, seed: int, ctx=None, name: str = "dqn", use_target: bool = True,
              double_q: bool | None = None, keep_net: bool = False) -> dict:  # fmt: skip
    """Train one DQN agent; returns its learning curves, timings and final/best greedy evaluations.

    ``use_target=False`` bootstraps from the online net itself; ``keep_net`` adds the last ``"net"``.
    """
    double_q = config.double_q if double_q is None else double_q
    torch.manual_seed(seed)
    envs = make_envs(config, seed)
    obs_space, n_actions = envs.single_observation_space, int(envs.single_action_space.n)
    online = make_q_network(obs_space, n_actions, config.hidden)
    target = copy.deepcopy(online) if use_target else online
    for p in target.parameters() if use_target else ():
        p.requires_grad_(False)
    optimizer = make_optimizer(online, config)
    obs_dtype = np.int64 if isinstance(obs_space, gym.spaces.Discrete) else obs_space.dtype
    if config.atari:  # each frame once: 1M Atari transitions in ~8 GB instead of 56 GB
        buffer = FrameStackReplayBuffer(config.buffer_size, obs_space.shape, config.num_envs, seed=seed)
    else:
        buffer = ReplayBuffer(config.buffer_size, obs_space.shape, obs_dtype=obs_dtype, seed=seed)
    rng = np.random.default_rng(seed)
    epsilon = epsilon_schedule(config)

    history = {"episode_step": [], "episode_return": [], "eval_step": [], "eval_return": [],
               "loss_step": [], "loss": [], "q_mean": []}  # fmt: skip
    best = {"return": -math.inf, "step": -1, "state": None}
    eval_seed = seed + 10_000  # intermediate evaluations; the final one uses other seeds
    iterations = math.ceil(config.total_steps / config.num_envs)
    grad_steps, grad_time, env_time, eval_time, updates = 0, 0.0, 0.0, 0.0, 0
    obs, _ = envs.reset(seed=seed)
    start = time.perf_counter()
    bar = ctx.progress_bar(iterations * config.num_envs, f"training {name}") if ctx else None
    if bar:
        bar.__enter__()
    try:
        for it in range(1, iterations + 1):
            step = it * config.num_envs
            t0 = time.perf_counter()
            eps = epsilon(step - config.num_envs)
            with torch.no_grad():
                q = online(torch.as_tensor(obs))
            actions = epsilon_greedy(q, eps, rng, n_actions)
            next_obs, rewards, terminated, truncated, infos = envs.step(actions)
            for ret, _length in finished_episodes(infos):
                history["episode_step"].append(step)
                history["episode_return"].append(ret)
            buffer.add(obs, actions, *replay_transition(next_obs, rewards, terminated, infos, config))
            obs = next_obs
            env_time += time.perf_counter() - t0

            if step > config.learning_starts and _crossed(step, config.num_envs, config.train_frequency):
                t0 = time.perf_counter()
                for _ in range(config.gradient_steps):
                    batch = buffer.sample(config.batch_size).to_torch()
                    with torch.no_grad():
                        next_q_target = target(batch.next_obs)
                        next_q_online = online(batch.next_obs) if double_q else None
                    y = td_target(batch.rewards, batch.terminated, next_q_target, config.gamma, next_q_online)
                    q_taken = online(batch.obs).gather(1, batch.actions.long().reshape(-1, 1)).squeeze(1)
                    loss = td_loss(q_taken, y, config.loss)
                    optimizer.zero_grad()
                    loss.backward()
                    if config.max_grad_norm > 0:
                        nn.utils.clip_grad_norm_(online.parameters(), config.max_grad_norm)
                    optimizer.step()
                    grad_steps += 1
                if not math.isfinite(loss.item()):
                    raise PapersError(f"{name}: non-finite TD loss at step {step}")
                grad_time += time.perf_counter() - t0
                history["loss_step"].append(step)
                history["loss"].append(loss.item())
                history["q_mean"].append(q_taken.mean().item())
            if use_target and _crossed(step, config.num_envs, config.target_update_interval):
                update_target(target, online, config.tau)
                updates += 1

            if _crossed(step, config.num_envs, config.eval_interval) or it == iterations:
                t0 = time.perf_counter()
                returns = greedy_evaluation(online, config, config.eval_interval_episodes, eval_seed)
                eval_time += time.perf_counter() - t0
                mean = float(np.mean(returns))
                history["eval_step"].append(step)
                history["eval_return"].append(mean)
                if mean >= best["return"]:  # ties go to the later policy
                    best = {"return": mean, "step": step, "state": copy.deepcopy(online.state_dict())}
                if ctx:
                    ctx.log({f"{name}_eval_return": mean, f"{name}_epsilon": eps}, step=step)
            if bar:
                bar.update(config.num_envs, eps=eps)
    finally:
        if bar:
            bar.__exit__(None, None, None)
        envs.close()
    train_time = time.perf_counter() - start

    final_seed = seed + 20_000
    last_returns = greedy_evaluation(online, config, config.eval_episodes, final_seed)
    last_state = copy.deepcopy(online.state_dict()) if keep_net else None
    online.load_state_dict(best["state"])
    best_returns = greedy_evaluation(online, config, config.eval_episodes, final_seed)
    if keep_net:
        online.load_state_dict(last_state)
    return ({"net": online} if keep_net else {}) | {
        "history": history,
        "last_returns": last_returns,
        "last_mean_return": float(np.mean(last_returns)),
        "best_returns": best_returns,
        "best_mean_return": float(np.mean(best_returns)),
        "best_step": best["step"],
        "best_interval_return": best["return"],
        "mean_interval_eval_return": float(np.mean(history["eval_return"])),
        "gradient_steps": grad_steps,
        "target_updates": updates,
        "train_time_s": train_time,
        "env_steps_per_s": iterations * config.num_envs / max(env_time, 1e-9),
        "gradient_steps_per_s": grad_steps / max(grad_time, 1e-9),
        "eval_time_s": eval_time,
        "params": n_params(online),
    }


# ---- the reproduction -----------------------------------------------------------------------------------


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    main = ctx.stage("train_dqn", lambda: train_dqn(config, ctx.seed, ctx, "dqn"))
    arms = {"dqn": main}
    if config.ablation == "no_target":
        arms["no_target"] = ctx.stage(
            "train_no_target", lambda: train_dqn(config, ctx.seed, ctx, "no_target", use_target=False)
        )
    elif config.ablation == "double":
        arms["double"] = ctx.stage(
            "train_double", lambda: train_dqn(config, ctx.seed, ctx, "double", double_q=not config.double_q)
        )
    threshold = gym.spec(config.env_id).reward_threshold
    metrics: dict = {}
    for arm, part in arms.items():
        for key in ("last_mean_return", "best_mean_return", "best_step", "mean_interval_eval_return",
                    "gradient_steps", "target_updates", "train_time_s", "env_steps_per_s",
                    "gradient_steps_per_s", "eval_time_s"):  # fmt: skip
            metrics[f"{arm}_{key}"] = part[key]
        metrics[f"{arm}_last_std_return"] = float(np.std(part["last_returns"]))
        metrics[f"{arm}_final_batch_q_mean"] = part["history"]["q_mean"][-1]
        metrics[f"{arm}_last10_training_return"] = float(np.mean(part["history"]["episode_return"][-10:]))
    metrics["params"] = main["params"]
    metrics["reward_threshold"] = threshold
    checks = []
    if threshold is not None:
        checks.append(Check(f"last DQN policy: mean greedy return over {config.eval_episodes} episodes "
                            f"reaches the env's reward threshold", main["last_mean_return"], ">=",
                            threshold, f"{config.env_id} reward_threshold"))  # fmt: skip
    if len(arms) > 1:
        other, part = [(k, v) for k, v in arms.items() if k != "dqn"][0]
        label = {"no_target": "without a target network", "double": "with the Double-DQN target"}[other]
        checks.append(Check(f"DQN's last policy returns at least as much as the same agent {label}",
                            main["last_mean_return"], ">=", part["last_mean_return"],
                            f"{other} last-policy return, equal steps"))  # fmt: skip
        checks.append(Check(f"DQN's mean greedy return over training evaluations >= the agent {label}",
                            main["mean_interval_eval_return"], ">=", part["mean_interval_eval_return"],
                            f"{other}, equal steps"))  # fmt: skip
    if not checks:
        checks.append(Check("last DQN policy beats its first evaluation", main["last_mean_return"], ">",
                            main["history"]["eval_return"][0], "first greedy evaluation"))  # fmt: skip
    figures(config, ctx, arms, threshold)
    notes = (
        f"One seed ({ctx.seed}). The claim is the LAST policy's greedy return over {config.eval_episodes} "
        f"episodes: {main['last_mean_return']:.1f} ± {np.std(main['last_returns']):.1f}. The best "
        f"intermediate policy (step {main['best_step']}, chosen on {config.eval_interval_episodes} "
        f"episodes every {config.eval_interval} steps, then re-evaluated on the same {config.eval_episodes} "
        f"held-out seeds) returns {main['best_mean_return']:.1f}: extra information only, since choosing "
        f"it peeks at evaluation. {main['gradient_steps']} gradient steps; "
        f"{main['env_steps_per_s']:.0f} env steps/s (acting + replay insert), "
        f"{main['gradient_steps_per_s']:.0f} gradient steps/s of batch {config.batch_size} "
        f"(wall-clock rates, slowed by whatever else ran on the machine; the result's cpu_time_s is "
        f"the cost alone). With "
        f"target_update_interval {config.target_update_interval} <= train_frequency {config.train_frequency} "
        f"the target is a copy of the online net taken before each phase of {config.gradient_steps} "
        f"gradient steps; the no-target arm bootstraps from the online net as it changes."
    )
    h = main["history"]
    if threshold is not None and max(h["eval_return"]) >= threshold:
        first = next(i for i, r in enumerate(h["eval_return"]) if r >= threshold)
        notes += (f" Instability: the greedy evaluation first reached {threshold:g} at step "
                  f"{h['eval_step'][first]} and fell as low as {min(h['eval_return'][first:]):.1f} after it; "
                  f"the last 10 epsilon-greedy training episodes average "
                  f"{metrics['dqn_last10_training_return']:.1f}.")  # fmt: skip
    for arm, part in arms.items():
        if arm != "dqn":
            notes += (f" Ablation {arm} at equal steps: last {part['last_mean_return']:.1f}, best "
                      f"{part['best_mean_return']:.1f}, mean over training evaluations "
                      f"{part['mean_interval_eval_return']:.1f} vs DQN's "
                      f"{main['mean_interval_eval_return']:.1f}; its batch mean Q ends at "
                      f"{part['history']['q_mean'][-1]:.3g} vs DQN's {h['q_mean'][-1]:.3g}.")  # fmt: skip
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, arms: dict, threshold: float | None) -> None:
    from papers.core.plots import figure, moving_average

    names = {"dqn": "DQN (target network)", "no_target": "no target network", "double": "Double-DQN target"}
    fig, (ax_train, ax_eval, ax_loss) = figure(ncols=3)
    for arm, part in arms.items():
        h = part["history"]
        ax_train.plot(h["episode_step"], moving_average(h["episode_return"], 10), label=names[arm])
        ax_eval.plot(h["eval_step"], h["eval_return"], marker="o", markersize=3, label=names[arm])
        ax_loss.plot(h["loss_step"], h["q_mean"], label=names[arm])
    for ax in (ax_train, ax_eval):
        if threshold is not None:
            ax.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="reward threshold")
        ax.set_xlabel("env step")
        ax.legend(fontsize=7)
    ax_train.set_ylabel("training episode return (10-episode mean)")
    ax_train.set_title("epsilon-greedy training")
    ax_eval.set_ylabel(f"greedy return ({config.eval_interval_episodes} episodes)")
    ax_eval.set_title("greedy evaluation")
    ax_loss.set_xlabel("env step")
    ax_loss.set_yscale("symlog")
    ax_loss.set_ylabel("mean Q(s, a) of the batch (symlog)")
    ax_loss.set_title("value estimates")
    ctx.save_figure(fig, "curves")
