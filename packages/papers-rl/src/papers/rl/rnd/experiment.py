"""Reproduction: PPO vs PPO + forward-model curiosity vs PPO + RND in a generated multi-room maze,
with and without a noisy TV.

Default: a 3 x 3 maze of 3 x 3-cell rooms (89 free cells, one route between any two rooms, the goal in
the room farthest from the start: 8 doorways away), 200-step episodes, reward 1 only at the goal.
Each method trains on 16 envs x 128 steps x 20 updates (40,960 steps) for each of 2 seeds, in the plain
world and in the noisy-TV world (a start-room cell whose observation carries 8 fresh random bits per
step), i.e. 3 x 2 x 2 = 12 runs. All methods share the same two-head PPO agent, hyperparameters and
seeds; only the intrinsic reward differs (none / forward-model error in random features / RND error).

Measured per run: distinct cells and rooms reached over training (coverage), goal reaches, the share of
steps spent on the TV cell, the raw bonus on and off the TV, and, for RND, the final bonus of each cell
against its visit count (Spearman rank correlation).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch

from papers.core.experiment import Check, Result

from .agent import METHODS, ExplorerSettings, train_explorer

WORLDS = ("plain", "noisy_tv")
RUN_KEYS = ("cells_visited", "rooms_visited", "goals", "mean_return", "late_return", "tv_share",
            "late_tv_share", "peak_tv_share", "final_tv_share", "raw_int_tv", "raw_int_not_tv",
            "int_reward_tv_share")  # fmt: skip


@dataclass
class Config(ExplorerSettings):
    # the world
    rooms: int = 3
    room_size: int = 3
    layout_seed: int = 0
    tv_bits: int = 8
    max_steps: int = 200
    # the runs
    total_steps: int = 40_960
    num_envs: int = 16
    seeds: int = 2  # seeds ctx.seed, ctx.seed + 1, ...
    methods: tuple[str, ...] = METHODS
    threads: int = 1

    def validate(self) -> None:
        if self.rooms < 1 or self.room_size < 2:
            raise ValueError(f"need rooms >= 1 and room_size >= 2, got {self.rooms}, {self.room_size}")
        for name in ("tv_bits", "max_steps", "num_envs", "seeds"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        settings_of(self).validate(self.num_envs)


PRESETS = {
    "smoke": {"total_steps": 512, "num_envs": 4, "num_steps": 64, "update_epochs": 1, "seeds": 1,
              "norm_init_steps": 8},
    "default": {},
    "full": {"rooms": 4, "room_size": 4, "max_steps": 400, "total_steps": 1_048_576, "num_envs": 32,
             "seeds": 5},
}  # fmt: skip


def settings_of(config: Config) -> ExplorerSettings:
    names = {f.name for f in dataclasses.fields(ExplorerSettings)}
    return ExplorerSettings(**{name: getattr(config, name) for name in names})


def world_kwargs(config: Config, world: str) -> dict:
    names = ("rooms", "room_size", "layout_seed", "tv_bits", "max_steps")
    return {"noisy_tv": world == "noisy_tv", **{name: getattr(config, name) for name in names}}


def ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n of ``values``, tied values sharing their average rank."""
    order = np.argsort(values, kind="stable")
    ranked = np.empty(len(values))
    ranked[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        ranked[tied] = ranked[tied].mean()
    return ranked


def spearman(x, y) -> float:
    """Spearman rank correlation (Pearson correlation of average ranks); nan when a side is constant."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of one length, got {x.shape}, {y.shape}")
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan
    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def one_run(config: Config, world: str, method: str, seed: int, ctx) -> dict:
    from .env import MultiRoomVectorEnv, make_vector_env

    kwargs = world_kwargs(config, world)
    envs = make_vector_env(config.num_envs, seed, **kwargs)
    layout: MultiRoomVectorEnv = envs.unwrapped
    settings = settings_of(config)
    name = f"{world}/{method}/seed{seed}"
    num_updates = settings.total_steps // (config.num_envs * settings.num_steps)
    with ctx.progress_bar(num_updates, name) as bar:

        def on_update(row: dict) -> None:
            ctx.log({f"{world}_{method}_s{seed}_{k}": row[k] for k in ("cells_visited", "tv_share", "goals")},
                    step=row["global_step"])  # fmt: skip
            bar.update(1, cells=row["cells_visited"])

        history = train_explorer(envs, method, settings, seed=seed, n_cells=layout.layout.n_cells,
                                 tv_cell=layout.tv_cell, on_update=on_update)  # fmt: skip
    rows = history["rows"]
    visits = history["visits"]
    rooms = layout.layout.room_of_index()
    cell_bonus = None
    if history["bonus"] is not None and method == "rnd":
        clean = torch.eye(layout.layout.n_cells, layout.single_observation_space.shape[0])
        cell_bonus = history["bonus"].reward(None, None, clean).tolist()
    last = rows[len(rows) - max(1, len(rows) // 4) :]
    returns = [r for row in rows for r, _ in row["episodes"]]
    late_returns = [r for row in last for r, _ in row["episodes"]]

    def mean_of(key, part):
        values = [row[key] for row in part if row[key] is not None]
        return float(np.mean(values)) if values else None

    return {
        "steps": [row["global_step"] for row in rows],
        "cells_curve": [row["cells_visited"] for row in rows],
        "tv_curve": [row["tv_share"] for row in rows],
        "visits": visits.tolist(),
        "cells_visited": int((visits > 0).sum()),
        "rooms_visited": int(len(set(rooms[visits > 0].tolist()))),
        "goals": int(sum(row["goals"] for row in rows)),
        "mean_return": float(np.mean(returns)) if returns else 0.0,
        "late_return": float(np.mean(late_returns)) if late_returns else 0.0,
        "tv_share": float(np.mean([row["tv_share"] for row in rows])),
        "late_tv_share": float(np.mean([row["tv_share"] for row in last])),
        "peak_tv_share": float(max(row["tv_share"] for row in rows)),
        "final_tv_share": float(rows[-1]["tv_share"]),
        "raw_int_tv": mean_of("raw_int_tv", last),
        "raw_int_not_tv": mean_of("raw_int_not_tv", last),
        "int_reward_tv_share": mean_of("int_reward_tv_share", last),
        "cell_bonus": cell_bonus,
        "time_s": history["time_s"],
    }


def run(config: Config, ctx) -> Result:
    from .env import MultiRoomGrid

    if config.threads:
        torch.set_num_threads(config.threads)
    seeds = [ctx.seed + k for k in range(config.seeds)]
    runs: dict[str, dict[str, list[dict]]] = {w: {m: [] for m in config.methods} for w in WORLDS}
    for world in WORLDS:
        for method in config.methods:
            for seed in seeds:
                part = ctx.stage(f"{world}_{method}_seed{seed}",
                                 lambda w=world, m=method, s=seed: one_run(config, w, m, s, ctx))  # fmt: skip
                runs[world][method].append(part)
    layout = MultiRoomGrid(**world_kwargs(config, "noisy_tv"))

    def avg(world, method, key):
        values = [r[key] for r in runs[world][method] if r[key] is not None]
        return float(np.mean(values)) if values else math.nan

    metrics: dict = {"n_cells": layout.n_cells, "n_rooms": config.rooms**2, "seeds": seeds,
                     "goal_room_distance": max(layout.room_distance.values())}  # fmt: skip
    for world in WORLDS:
        for method in config.methods:
            for key in RUN_KEYS:
                if key.startswith(("raw_int", "int_reward")) and method == "ppo":
                    continue
                metrics[f"{world}_{method}_{key}"] = avg(world, method, key)
    rho = math.nan
    if "rnd" in config.methods:
        rhos = [spearman(r["visits"], r["cell_bonus"]) for r in runs["plain"]["rnd"]]
        rho = float(np.nanmean(rhos)) if not all(math.isnan(v) for v in rhos) else math.nan
        metrics["rnd_bonus_visit_spearman"] = rho
    metrics["train_time_s"] = float(
        sum(r["time_s"] for w in WORLDS for m in config.methods for r in runs[w][m])
    )

    figures(ctx, config, runs, layout)

    m = metrics.get
    checks = []
    if {"ppo", "rnd"} <= set(config.methods):
        checks.append(Check("plain world: PPO+RND reaches more cells than PPO", m("plain_rnd_cells_visited"),
                            ">", m("plain_ppo_cells_visited"), "PPO, cells reached"))  # fmt: skip
        checks.append(Check("plain world: PPO+RND reaches the goal more often than PPO", m("plain_rnd_goals"),
                            ">", m("plain_ppo_goals"), "PPO, goal reaches"))  # fmt: skip
    if {"curiosity", "rnd"} <= set(config.methods):
        checks.append(Check("noisy TV: curiosity spends a larger share of steps on the TV than RND",
                            m("noisy_tv_curiosity_tv_share"), ">", m("noisy_tv_rnd_tv_share"),
                            "RND, TV share"))  # fmt: skip
        checks.append(Check("noisy TV: PPO+RND reaches more cells than PPO+curiosity",
                            m("noisy_tv_rnd_cells_visited"), ">", m("noisy_tv_curiosity_cells_visited"),
                            "curiosity, cells reached"))  # fmt: skip
    if "rnd" in config.methods:
        checks.append(Check("the RND bonus falls with visit count (Spearman rank correlation < 0)",
                            rho, "<", 0.0, "no relation (the sign the paper implies)"))  # fmt: skip
    return Result(metrics=metrics, checks=checks, notes=notes_for(metrics, config))


def notes_for(metrics: dict, config: Config) -> str:
    m = metrics.get
    lines = [f"{config.seeds} seed(s), {config.total_steps} steps per run, {m('n_cells')} cells in "
             f"{m('n_rooms')} rooms, goal {m('goal_room_distance')} doorways from the start."]  # fmt: skip
    for world in WORLDS:
        parts = []
        for method in config.methods:
            parts.append(f"{method}: {m(f'{world}_{method}_cells_visited'):.1f} cells, "
                         f"{m(f'{world}_{method}_rooms_visited'):.1f} rooms, "
                         f"{m(f'{world}_{method}_goals'):.1f} goal reaches, "
                         f"TV share {m(f'{world}_{method}_tv_share'):.3f}")  # fmt: skip
        lines.append(f"{world}: " + "; ".join(parts) + ".")
    if {"ppo", "curiosity", "rnd"} <= set(config.methods):
        tv = {
            k: (m(f"noisy_tv_{k}_peak_tv_share"), m(f"noisy_tv_{k}_final_tv_share")) for k in config.methods
        }
        lines.append(
            "Noisy TV, share of steps on the TV at its peak -> in the last update: "
            + ", ".join(f"{k} {p:.2f} -> {f:.2f}" for k, (p, f) in tv.items())
            + "."
        )
        (rnd_peak, rnd_final), (cur_peak, cur_final) = tv["rnd"], tv["curiosity"]
        if rnd_peak > 2 * tv["ppo"][0]:
            lines.append(
                "RND is drawn to the TV too: its bonus on the 2^tv_bits noise patterns is learnt only "
                "gradually while the rest of this small maze is learnt quickly."
            )
        if rnd_final < rnd_peak - 0.05 and cur_final >= cur_peak - 0.05:
            lines.append(
                "But RND's TV share falls from its peak by the end while curiosity's stays near its own: "
                "the forward model's error on the noise cannot fall, RND's (a deterministic target) can."
            )
        plain_cur, plain_rnd = m("plain_curiosity_cells_visited"), m("plain_rnd_cells_visited")
        lines.append(
            f"Without the TV, random-feature curiosity reaches {plain_cur:.1f} cells against RND's "
            f"{plain_rnd:.1f}: in a deterministic world its forward-model error is a novelty bonus too."
        )
        if not m("plain_rnd_goals", 0) > m("plain_ppo_goals", 0):
            lines.append(
                f"The goal check fails at this budget: the goal is {m('goal_room_distance')} doorways "
                f"away and the plain-maze goal reaches are PPO {m('plain_ppo_goals'):.1f}, RND "
                f"{m('plain_rnd_goals'):.1f} (mean over seeds), so coverage is the informative measure here."
            )
    return " ".join(lines)


def figures(ctx, config: Config, runs: dict, layout) -> None:
    from papers.core.plots import figure

    fig, axes = figure(ncols=len(WORLDS))
    for ax, world in zip(axes, WORLDS, strict=True):
        for k, method in enumerate(config.methods):
            color = f"C{k}"
            curves = np.array([r["cells_curve"] for r in runs[world][method]], dtype=float)
            steps = runs[world][method][0]["steps"]
            for curve in curves:
                ax.plot(steps, curve, color=color, alpha=0.3, linewidth=0.8)
            ax.plot(steps, curves.mean(0), color=color, label=method)
        ax.axhline(layout.n_cells, color="grey", linestyle="--", linewidth=1, label="all cells")
        ax.set(xlabel="env steps", ylabel="distinct cells reached", title=f"coverage, {world}")
        ax.legend(fontsize=8)
    ctx.save_figure(fig, "coverage")

    fig, axes = figure(ncols=len(config.methods), nrows=len(WORLDS), width=3.4, height=3.2)
    for i, world in enumerate(WORLDS):
        for j, method in enumerate(config.methods):
            ax = axes[i * len(config.methods) + j]
            visits = np.asarray(runs[world][method][0]["visits"], dtype=float)
            image = ax.imshow(layout.grid_image(np.log10(1 + visits)), cmap="viridis")
            ax.plot(layout.start[1], layout.start[0], "w^", markersize=5)
            ax.plot(layout.goal[1], layout.goal[0], "r*", markersize=9)
            if world == "noisy_tv":
                ax.plot(layout.tv[1], layout.tv[0], "ms", markersize=6, fillstyle="none")
            ax.set(title=f"{method}, {world}", xticks=[], yticks=[])
            ax.grid(False)
            fig.colorbar(image, ax=ax, fraction=0.046, label="log10(1 + visits)")
    ctx.save_figure(fig, "visitation")

    fig, (ax_tv, ax_bonus) = figure(ncols=2)
    for k, method in enumerate(config.methods):
        curves = np.array([r["tv_curve"] for r in runs["noisy_tv"][method]], dtype=float)
        ax_tv.plot(runs["noisy_tv"][method][0]["steps"], curves.mean(0), color=f"C{k}", label=method)
    ax_tv.set(xlabel="env steps", ylabel="share of steps on the TV cell", title="noisy TV")
    ax_tv.legend(fontsize=8)
    if "rnd" in config.methods:
        run0 = runs["plain"]["rnd"][0]
        ax_bonus.scatter(1 + np.asarray(run0["visits"]), run0["cell_bonus"], s=10)
        ax_bonus.set_xscale("log")
        ax_bonus.set_yscale("log")
    ax_bonus.set(xlabel="1 + visits of the cell", ylabel="final RND bonus (raw)", title="RND bonus vs visits")
    ctx.save_figure(fig, "tv_and_bonus")
