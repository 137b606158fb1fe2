"""Reproduction: PPO on MiniGrid DoorKey-5x5 (pick up the key, open the door, reach the goal).

Observations: the 7x7 egocentric view, each cell one-hot (object, colour, state) and flattened to
980 inputs (``papers.rl.agents.minigrid_wrappers(one_hot=True, flatten=True)``), into the same two
64-unit tanh MLPs as for CartPole. Reward 1 - 0.9 * steps / 250 on reaching the goal, else 0; an episode
is cut (truncated, bootstrapped) at 250 steps. Success = positive return. PPO hyperparameters as for
CartPole except lr 1e-3 (as in the rl-starter-files MiniGrid PPO), 8 envs x 128 steps. Evaluation samples
from the policy (as rl-starter-files does; a greedy policy can loop forever in a deterministic grid).
The baseline is the same network before training, measured in the same run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from papers.core.experiment import Check, Result

from .common import (
    PPOHyperparameters,
    curve_mean,
    first_step_reaching,
    learning_figure,
    train_and_evaluate,
    validate_common,
)


@dataclass
class Config(PPOHyperparameters):
    env_id: str = "MiniGrid-DoorKey-5x5-v0"
    total_steps: int = 81_920
    lr: float = 1e-3
    hidden: tuple[int, ...] = (64, 64)
    # evaluation
    eval_every: int = 8192
    eval_episodes: int = 20
    final_eval_episodes: int = 100
    eval_greedy: bool = False
    eval_max_steps: int = 1000  # the env's own limit (250 steps for 5x5) comes first
    success_bar: float = 0.9  # the bar for "a high success rate"
    threads: int = 1

    def validate(self) -> None:
        validate_common(self)
        if not 0 <= self.success_bar <= 1:
            raise ValueError(f"success_bar must be in [0, 1], got {self.success_bar}")


PRESETS = {
    "smoke": {"total_steps": 1024, "num_steps": 64, "num_envs": 4, "eval_every": 512, "eval_episodes": 2,
              "final_eval_episodes": 3, "update_epochs": 2},
    "default": {},
    "full": {"env_id": "MiniGrid-DoorKey-8x8-v0", "total_steps": 2_000_000, "num_envs": 16},
}  # fmt: skip


def success_rate(returns) -> float:
    """Share of episodes that reached the goal (MiniGrid pays a positive reward only there)."""
    return sum(r > 0 for r in returns) / max(1, len(returns))


def run(config: Config, ctx) -> Result:
    from papers.rl.agents import make_env, make_vector_env, minigrid_wrappers

    if config.threads:
        torch.set_num_threads(config.threads)
    wrappers = minigrid_wrappers(one_hot=True, flatten=True)

    def make_envs(seed):
        return make_vector_env(config.env_id, config.num_envs, seed, wrappers=wrappers)

    def make_eval_env():
        return make_env(config.env_id, wrappers=wrappers)

    part = ctx.stage("train", lambda: train_and_evaluate(config, ctx, make_envs, make_eval_env, "ppo",
                                                          success=success_rate))  # fmt: skip
    learning_figure(ctx, {"PPO": part}, "success_rate", "evaluation success rate", "learning_curves",
                    config.success_bar)  # fmt: skip
    final, initial = part["final"], part["initial"]
    metrics = {
        "final_success_rate": final["success_rate"],
        "final_eval_return": final["mean_return"],
        "final_eval_length": final["mean_length"],
        "final_eval_episodes": len(final["returns"]),
        "initial_success_rate": initial["success_rate"],
        "initial_eval_return": initial["mean_return"],
        "mean_success_over_training": curve_mean(part["curve"], "success_rate"),
        "first_step_at_success_bar": first_step_reaching(part["curve"], config.success_bar, "success_rate"),
        "env_steps": part["global_step"],
        "train_time_s": part["train_time_s"],
        "env_steps_per_s": part["steps_per_s"],
        "truncations_bootstrapped": part["truncations"],
        "eval_curve": [
            {k: r[k] for k in ("global_step", "success_rate", "mean_return", "train_time_s")}
            for r in part["curve"]
        ],  # fmt: skip
    }
    checks = [
        Check(f"PPO's evaluation success rate on {config.env_id} reaches the bar", final["success_rate"],
              ">=",
              config.success_bar, "the issue's bar for a high success rate"),
        Check("PPO beats its untrained policy", final["success_rate"], ">", initial["success_rate"],
              "success rate at step 0, same network"),
    ]  # fmt: skip
    notes = (
        f"One seed. {config.env_id}, {config.num_envs} envs x {config.num_steps} steps, "
        f"{part['global_step']} "
        f"env steps in {part['train_time_s']:.0f} s of training ({part['steps_per_s']:.0f} env steps/s, "
        f"evaluation excluded). Final evaluation (sampled actions, {len(final['returns'])} episodes): "
        f"success "
        f"{final['success_rate']:.2f}, mean return {final['mean_return']:.3f}, mean length "
        f"{final['mean_length']:.1f} steps; the untrained policy succeeded in {initial['success_rate']:.2f}. "
        f"First evaluation at or above {config.success_bar:g}: step "
        f"{metrics['first_step_at_success_bar']:.0f}. "
        f"{part['truncations']} episodes were cut at the time limit and bootstrapped from "
        "V(final observation)."
    )
    return Result(metrics=metrics, checks=checks, notes=notes)
