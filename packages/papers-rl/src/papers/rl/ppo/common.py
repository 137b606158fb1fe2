"""What both PPO experiments share: one training run with an evaluation schedule, and the figures."""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from .model import PPOSettings, make_agent, mean_or_nan, policy_function, train_ppo


@dataclass
class PPOHyperparameters:
    """The PPO fields both experiments' configs share, with the single-file reference defaults."""

    num_envs: int = 8
    num_steps: int = 128
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    adam_eps: float = 1e-5
    target_kl: float | None = None


def settings_of(config, **changes) -> PPOSettings:
    """The :class:`PPOSettings` named by the fields of ``config`` (an experiment's Config), with changes."""
    names = {f.name for f in dataclasses.fields(PPOSettings)}
    values = {name: getattr(config, name) for name in names if hasattr(config, name)}
    return PPOSettings(**{**values, **changes})


def validate_common(config) -> None:
    """One-line errors for the fields both experiments have."""
    if config.num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {config.num_envs}")
    for name in ("eval_every", "eval_episodes", "final_eval_episodes", "eval_max_steps"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if any(h < 1 for h in config.hidden) or not config.hidden:
        raise ValueError(f"hidden must be one or more sizes >= 1, got {config.hidden}")
    if config.threads < 0:
        raise ValueError(f"threads must be >= 0, got {config.threads}")
    settings_of(config).validate(config.num_envs)


def train_and_evaluate(config, ctx, make_envs, make_eval_env, name: str, success=None, **changes) -> dict:
    """One seeded PPO run with evaluations every ``eval_every`` env steps (and at steps 0 and the end).

    ``make_envs(seed)`` builds the vector env, ``make_eval_env()`` one evaluation env; evaluation episode
    k is reset with seed 10**6 + k (never a training seed). ``success(returns)`` -> share of successes.
    Returns curves, final evaluation and timings (training time excludes evaluation time).
    """
    from papers.rl.agents import evaluate

    settings = settings_of(config, **changes)
    envs = make_envs(ctx.seed)
    torch.manual_seed(ctx.seed)
    agent = make_agent(envs.single_observation_space, envs.single_action_space, tuple(config.hidden))
    obs_space = envs.single_observation_space
    eval_env = make_eval_env()
    batch = config.num_envs * settings.num_steps
    num_updates = settings.total_steps // batch
    curve: list[dict] = []
    eval_time = [0.0]

    def evaluation(episodes: int, seed: int) -> dict:
        start = time.perf_counter()
        policy = policy_function(agent, obs_space, greedy=config.eval_greedy)
        result = evaluate(eval_env, policy, episodes=episodes, seed=seed, max_steps=config.eval_max_steps)
        eval_time[0] += time.perf_counter() - start
        row = {"mean_return": result.mean_return, "std_return": result.std_return,
               "mean_length": result.mean_length, "returns": result.returns}  # fmt: skip
        if success is not None:
            row["success_rate"] = success(result.returns)
        return row

    curve.append({"global_step": 0, "train_time_s": 0.0, **evaluation(config.eval_episodes, 10**6)})
    eval_time[0] = 0.0  # from here: evaluation seconds inside the training loop's clock
    train_curve: list[dict] = []
    next_eval = [config.eval_every]
    with ctx.progress_bar(num_updates, f"PPO {name}") as bar:

        def on_update(record: dict) -> None:
            returns = [r for r, _ in record["episodes"]]
            keys = ("update", "global_step", "lr", "policy_loss", "value_loss", "entropy", "approx_kl",
                    "clipfrac", "explained_variance")  # fmt: skip
            row = {k: record[k] for k in keys}
            row["episode_return"] = mean_or_nan(returns) if returns else None  # JSON has no nan
            if not math.isfinite(row["explained_variance"]):
                row["explained_variance"] = None
            row["episodes"] = len(returns)
            row["truncations"] = record["truncations"]
            train_curve.append(row)
            logged = {k: v for k, v in row.items() if k not in ("update", "global_step") and v is not None}
            ctx.log({f"{name}_{k}": v for k, v in logged.items()},
                    step=record["global_step"])  # fmt: skip
            last = record["update"] == num_updates - 1
            if record["global_step"] >= next_eval[0] or last:
                while next_eval[0] <= record["global_step"]:
                    next_eval[0] += config.eval_every
                train_time = record["time_s"] - eval_time[0]
                ev = evaluation(config.eval_episodes, 10**6)
                curve.append({"global_step": record["global_step"], "train_time_s": train_time, **ev})
                ctx.log({f"{name}_eval_return": ev["mean_return"]}, step=record["global_step"])
            bar.update(1, ret=row["episode_return"] or 0.0)

        history = train_ppo(envs, agent, settings, seed=ctx.seed, device=ctx.device, on_update=on_update)
    envs.close()
    train_time = history["time_s"] - eval_time[0]
    final = evaluation(config.final_eval_episodes, 10**7)
    return {
        "curve": curve,
        "train_curve": train_curve,
        "final": final,
        "initial": curve[0],
        "global_step": history["global_step"],
        "train_time_s": train_time,
        "steps_per_s": history["global_step"] / max(train_time, 1e-9),
        "lrs": [row["lr"] for row in train_curve],
        "truncations": int(sum(row["truncations"] for row in train_curve)),
    }


def first_step_reaching(curve: list[dict], threshold: float, key: str = "mean_return") -> float:
    """The first evaluated env step with ``key >= threshold`` (nan when never)."""
    for row in curve:
        if row[key] >= threshold:
            return float(row["global_step"])
    return math.nan


def curve_mean(curve: list[dict], key: str = "mean_return") -> float:
    """Mean of ``key`` over the evaluations after step 0 (the area under the learning curve / steps)."""
    values = [row[key] for row in curve if row["global_step"] > 0]
    return float(np.mean(values)) if values else math.nan


def learning_figure(ctx, runs: dict[str, dict], key: str, ylabel: str, name: str, threshold=None) -> None:
    from papers.core.plots import figure, moving_average

    fig, (ax_eval, ax_train, ax_kl) = figure(ncols=3)
    for label, run in runs.items():
        steps = [row["global_step"] for row in run["curve"]]
        ax_eval.plot(steps, [row[key] for row in run["curve"]], marker="o", markersize=3, label=label)
        train = run["train_curve"]
        train_steps = [row["global_step"] for row in train]
        filled, last = [], 0.0
        for row in train:  # an update without a finished episode repeats the last value
            last = row["episode_return"] if row["episode_return"] is not None else last
            filled.append(last)
        ax_train.plot(train_steps, moving_average(filled, 10), label=label)
        ax_kl.plot(train_steps, moving_average([row["approx_kl"] for row in train], 5), label=label)
    if threshold is not None:
        ax_eval.axhline(threshold, color="grey", linestyle="--", linewidth=1, label=f"{threshold:g}")
    ax_eval.set(xlabel="env steps", ylabel=ylabel, title="evaluation")
    ax_train.set(xlabel="env steps", ylabel="training episode return (smoothed)", title="training episodes")
    ax_kl.set(xlabel="env steps", ylabel="approx. KL(old || new) per update", title="policy change")
    ax_kl.set_yscale("log")
    for ax in (ax_eval, ax_train, ax_kl):
        ax.legend(fontsize=8)
    ctx.save_figure(fig, name)
