"""Reproduction: CRR on a fixed, mixed-quality CartPole-v1 dataset against BC and naive offline DQN.

1. Behaviour: a half-trained DQN (``papers.rl.dqn.train_dqn`` stopped after ``behaviour_steps`` env steps),
   acting epsilon-greedily with ``behaviour_epsilon``.
2. Dataset: ``dataset_size`` transitions (s, a, r, s', terminated), a ``random_fraction`` of them from the
   uniform random policy and the rest from the half-trained one; a time-limit cut is not terminal.
3. Four learners on the same data, for the same number of updates and batches: behaviour cloning (f = 1),
   CRR-binary (f = 1[A > 0]), CRR-exp (f = min(exp(A / beta), 20)), each with its own critic trained on
   y = r + gamma E_{a'~pi'} Q'(s', a'), and naive offline DQN (y = r + gamma max_a' Q'(s', a'), greedy on Q).
   No environment interaction during training; evaluation only.
4. Online evaluation every ``eval_interval`` updates and at the end on ``final_episodes`` held-out
   episodes: the learned policy pi is sampled (the paper's policy), its argmax is reported too; DQN
   acts greedily on Q. ``seeds`` learner seeds on the one dataset.
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
from papers.rl.agents import final_observations, finished_episodes, make_env, make_vector_env
from papers.rl.dqn.model import epsilon_greedy, make_q_network, td_loss, td_target, update_target

from .model import (
    ADVANTAGES,
    CategoricalPolicy,
    crr_advantage,
    crr_weights,
    policy_td_target,
    weighted_bc_loss,
)

METHODS = ("bc", "crr_binary", "crr_exp", "dqn")
NAMES = {"bc": "BC", "crr_binary": "CRR-binary", "crr_exp": "CRR-exp", "dqn": "naive offline DQN"}
COLORS = {"bc": "tab:blue", "crr_binary": "tab:orange", "crr_exp": "tab:green", "dqn": "tab:red"}


@dataclass
class Config:
    env_id: str = "CartPole-v1"
    # the behaviour data
    behaviour_steps: int = 8_000  # env steps of DQN training for the half-trained policy
    behaviour_epsilon: float = 0.1
    dataset_size: int = 20_000
    random_fraction: float = 0.5  # share of transitions from the uniform random policy
    collect_envs: int = 8
    # the offline learners (same for all four)
    updates: int = 2_000
    batch_size: int = 256
    learning_rate: float = 1e-3
    gamma: float = 0.95  # the paper: 0.99 (see the README: the critic's horizon fits the budget)
    hidden: tuple[int, ...] = (64, 64)
    target_update_interval: int = 50  # hard copy of Q (and pi for the CRR target) every N updates
    max_grad_norm: float = 10.0  # 0 = no clipping
    # CRR
    advantage: str = "exact"  # "exact": sum over pi (discrete actions); "mean": m samples (the paper)
    m: int = 4
    beta: float = 1.0
    max_weight: float = 20.0
    # evaluation
    eval_interval: int = 200
    eval_episodes: int = 10
    final_episodes: int = 50
    seeds: int = 2
    threads: int = 1

    def validate(self) -> None:
        for name in ("behaviour_steps", "dataset_size", "collect_envs", "updates", "batch_size",
                     "target_update_interval", "m", "eval_interval", "eval_episodes", "final_episodes",
                     "seeds"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.behaviour_steps < 100:
            raise ValueError(f"behaviour_steps must be >= 100, got {self.behaviour_steps}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if not 0.0 <= self.behaviour_epsilon <= 1.0:
            raise ValueError(f"behaviour_epsilon must be in [0, 1], got {self.behaviour_epsilon}")
        if not 0.0 <= self.random_fraction <= 1.0:
            raise ValueError(f"random_fraction must be in [0, 1], got {self.random_fraction}")
        if not 0.0 <= self.gamma < 1.0:
            raise ValueError(f"gamma must be in [0, 1), got {self.gamma}")
        for name in ("learning_rate", "beta", "max_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.max_grad_norm < 0:
            raise ValueError(f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"advantage must be one of {ADVANTAGES}, got {self.advantage!r}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden needs at least one layer width >= 1, got {self.hidden}")


PRESETS = {
    "smoke": {"behaviour_steps": 200, "dataset_size": 400, "updates": 30, "batch_size": 32, "hidden": (16,),
              "target_update_interval": 10, "eval_interval": 20, "eval_episodes": 2, "final_episodes": 2,
              "seeds": 1},
    "default": {},
    "full": {"dataset_size": 100_000, "updates": 20_000, "gamma": 0.99, "target_update_interval": 100,
             "hidden": (256, 256), "advantage": "mean", "eval_interval": 1_000, "final_episodes": 100,
             "seeds": 5},
}  # fmt: skip


# ---- the dataset ----------------------------------------------------------------------------------------


def behaviour_policy(config: Config, seed: int):
    """A half-trained DQN: ``train_dqn`` stopped after ``behaviour_steps`` env steps (its last net)."""
    from papers.rl.dqn.experiment import Config as DQNConfig
    from papers.rl.dqn.experiment import train_dqn

    steps = config.behaviour_steps
    dqn_config = DQNConfig(env_id=config.env_id, total_steps=steps, buffer_size=steps,
                           learning_starts=min(1_000, steps // 4), eval_interval=steps, eval_episodes=10,
                           eval_interval_episodes=1, ablation="none", threads=config.threads)  # fmt: skip
    part = train_dqn(dqn_config, seed=seed, keep_net=True)
    return part["net"], part["last_mean_return"]


def collect(env_id: str, n: int, act, seed: int, num_envs: int = 8) -> dict:
    """Exactly ``n`` transitions of ``act(obs (num_envs, obs_dim)) -> actions`` in a vector env.

    Returns numpy arrays ``obs, actions, rewards, next_obs, terminated`` (the true last observation at a
    time-limit cut, which is not terminal) and the returns of the episodes that finished.
    """
    envs = make_vector_env(env_id, num_envs, seed)
    parts: dict[str, list] = {k: [] for k in ("obs", "actions", "rewards", "next_obs", "terminated")}
    returns: list[float] = []
    try:
        obs, _ = envs.reset(seed=seed)
        count = 0
        while count < n:
            actions = act(obs)
            next_obs, rewards, terminated, _, infos = envs.step(actions)
            for key, value in zip(parts, (obs, actions, rewards, final_observations(next_obs, infos),
                                          terminated), strict=True):  # fmt: skip
                parts[key].append(np.asarray(value))
            returns += [r for r, _ in finished_episodes(infos)]
            obs, count = next_obs, count + num_envs
    finally:
        envs.close()
    data = {k: np.concatenate(v)[:n] for k, v in parts.items()}
    data["obs"], data["next_obs"] = data["obs"].astype(np.float32), data["next_obs"].astype(np.float32)
    data["rewards"] = data["rewards"].astype(np.float32)
    data["actions"], data["terminated"] = data["actions"].astype(np.int64), data["terminated"].astype(bool)
    return data | {"episode_returns": returns}


def build_dataset(config: Config, seed: int, ctx=None) -> tuple[dict, dict]:
    """The mixed dataset and its statistics (behaviour greedy return, per-source episode returns)."""
    t0 = time.perf_counter()
    net, greedy_return = behaviour_policy(config, seed)
    train_time = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 1)
    env = make_env(config.env_id)
    n_actions = int(env.action_space.n)
    env.close()

    @torch.no_grad()
    def half_trained(obs):
        q = net(torch.as_tensor(obs, dtype=torch.float32))
        return epsilon_greedy(q, config.behaviour_epsilon, rng, n_actions)

    def uniform(obs):
        return rng.integers(0, n_actions, size=len(obs))

    n_random = int(round(config.random_fraction * config.dataset_size))
    sources = {"random": (n_random, uniform), "half_trained": (config.dataset_size - n_random, half_trained)}
    pieces = {name: collect(config.env_id, n, act, seed + 100 * k, config.collect_envs)
              for k, (name, (n, act)) in enumerate(sources.items()) if n > 0}  # fmt: skip
    keys = ("obs", "actions", "rewards", "next_obs", "terminated")
    data = {k: np.concatenate([p[k] for p in pieces.values()]) for k in keys}
    all_returns = [r for p in pieces.values() for r in p["episode_returns"]]
    stats = {
        "behaviour_greedy_return": greedy_return,
        "behaviour_train_time_s": train_time,
        "dataset_mean_return": float(np.mean(all_returns)) if all_returns else float("nan"),
        "dataset_episodes": len(all_returns),
        "dataset_terminal_fraction": float(data["terminated"].mean()),
    }
    for name in sources:
        returns = pieces[name]["episode_returns"] if name in pieces else []
        stats[f"{name}_mean_return"] = float(np.mean(returns)) if returns else float("nan")
        stats[f"{name}_episodes"] = len(returns)
        stats[f"{name}_transitions"] = len(pieces[name]["rewards"]) if name in pieces else 0
    return data, stats


# ---- evaluation -----------------------------------------------------------------------------------------


def evaluate_batched(env_id: str, act, episodes: int, seed: int) -> list[float]:
    """Returns of ``episodes`` episodes run side by side (episode k reset with ``seed + k``);
    ``act(obs (n_alive, obs_dim) float tensor) -> actions tensor`` is called once per step for all."""
    envs = [make_env(env_id) for _ in range(episodes)]
    obs = [env.reset(seed=seed + k)[0] for k, env in enumerate(envs)]
    returns, alive = [0.0] * episodes, list(range(episodes))
    try:
        while alive:
            with torch.no_grad():
                actions = act(torch.as_tensor(np.stack([obs[i] for i in alive]), dtype=torch.float32))
            still = []
            for i, action in zip(alive, actions.tolist(), strict=True):
                obs[i], reward, terminated, truncated, _ = envs[i].step(int(action))
                returns[i] += float(reward)
                if not (terminated or truncated):
                    still.append(i)
            alive = still
    finally:
        for env in envs:
            env.close()
    return returns


def actor(method: str, net: nn.Module, mode: str, generator: torch.Generator | None = None):
    """The acting rule: DQN argmax Q; a policy sampled from pi ("sample") or its argmax ("greedy")."""
    if method == "dqn" or mode == "greedy":
        return lambda obs: net(obs).argmax(-1)
    return lambda obs: torch.multinomial(torch.softmax(net(obs), -1), 1, generator=generator).squeeze(1)


# ---- the learners ---------------------------------------------------------------------------------------


def adam(net: nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(net.parameters(), lr=lr)


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, net: nn.Module, max_grad_norm: float):
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm:
        nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
    optimizer.step()


def train_offline(method: str, data: dict, config: Config, seed: int, ctx=None, bar=None) -> dict:
    """Train one learner for ``config.updates`` updates on ``data`` (torch tensors); evaluate online."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    torch.manual_seed(seed)
    obs_dim, n_actions = data["obs"].shape[1], int(data["n_actions"])
    space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    uses_q, uses_pi = method != "bc", method != "dqn"
    q_net = make_q_network(space, n_actions, config.hidden) if uses_q else None
    pi = CategoricalPolicy(obs_dim, n_actions, config.hidden) if uses_pi else None
    q_target = copy.deepcopy(q_net) if uses_q else None
    pi_target = copy.deepcopy(pi) if uses_q and uses_pi else None
    q_opt = adam(q_net, config.learning_rate) if uses_q else None
    pi_opt = adam(pi, config.learning_rate) if uses_pi else None
    acting = pi if uses_pi else q_net
    batches = torch.Generator().manual_seed(seed)
    sampler = torch.Generator().manual_seed(seed + 1)
    weighting = {"bc": "bc", "crr_binary": "binary", "crr_exp": "exp"}.get(method)
    size = len(data["rewards"])

    history = {"eval_update": [], "eval_return": [], "log_update": [], "q_loss": [], "pi_loss": [],
               "q_mean": [], "mean_weight": []}  # fmt: skip
    eval_seed = 1_000 * (seed + 1)

    def evaluation(update: int) -> None:
        gen = torch.Generator().manual_seed(eval_seed + update)
        returns = evaluate_batched(config.env_id, actor(method, acting, "sample", gen), config.eval_episodes,
                                   eval_seed)  # fmt: skip
        history["eval_update"].append(update)
        history["eval_return"].append(float(np.mean(returns)))
        if ctx:
            ctx.log({f"{method}_seed{seed}_eval_return": history["eval_return"][-1]}, step=update)

    start = time.perf_counter()
    evaluation(0)
    log_every = max(1, config.updates // 100)
    for update in range(1, config.updates + 1):
        idx = torch.randint(0, size, (config.batch_size,), generator=batches)
        s, a, r = data["obs"][idx], data["actions"][idx], data["rewards"][idx]
        s2, term = data["next_obs"][idx], data["terminated"][idx]
        q_loss = pi_loss = q_mean = weight_mean = float("nan")
        if uses_q:
            with torch.no_grad():
                next_q = q_target(s2)
                if method == "dqn":
                    y = td_target(r, term, next_q, config.gamma)
                else:
                    y = policy_td_target(r, term, next_q, torch.softmax(pi_target(s2), -1), config.gamma)
            q_all = q_net(s)
            q_taken = q_all.gather(1, a.view(-1, 1)).squeeze(1)
            loss = td_loss(q_taken, y, "huber")
            _step(q_opt, loss, q_net, config.max_grad_norm)
            q_loss, q_mean = loss.item(), q_taken.mean().item()
        if uses_pi:
            logits = pi(s)
            if weighting == "bc":
                weights = torch.ones_like(r)
            else:
                with torch.no_grad():  # the critic of this batch's TD step, before its update
                    probs = torch.softmax(logits.detach(), -1)
                    adv = crr_advantage(q_all.detach(), probs, a, config.advantage, config.m, sampler)
                weights = crr_weights(adv, weighting, config.beta, config.max_weight)
            loss = weighted_bc_loss(logits, a, weights)
            _step(pi_opt, loss, pi, config.max_grad_norm)
            pi_loss, weight_mean = loss.item(), weights.mean().item()
        for value in (q_loss, pi_loss):
            if not math.isnan(value) and not math.isfinite(value):
                raise PapersError(f"{method}: non-finite loss at update {update}")
        if uses_q and update % config.target_update_interval == 0:
            update_target(q_target, q_net)
            if pi_target is not None:
                update_target(pi_target, pi)
        if update % log_every == 0:
            for key, value in (("q_loss", q_loss), ("pi_loss", pi_loss), ("q_mean", q_mean),
                               ("mean_weight", weight_mean)):  # fmt: skip
                history[key].append(None if math.isnan(value) else value)
            history["log_update"].append(update)
        if update % config.eval_interval == 0 or update == config.updates:
            if history["eval_update"][-1] != update:
                evaluation(update)
        if bar:
            bar.update(1)
    train_time = time.perf_counter() - start

    final_seed = 100_000 + 1_000 * seed
    gen = torch.Generator().manual_seed(final_seed)
    final = evaluate_batched(config.env_id, actor(method, acting, "sample", gen), config.final_episodes,
                             final_seed)  # fmt: skip
    out = {"history": history, "final_returns": final, "final_mean_return": float(np.mean(final)),
           "train_time_s": train_time}  # fmt: skip
    if uses_pi:
        greedy = evaluate_batched(
            config.env_id, actor(method, pi, "greedy"), config.final_episodes, final_seed
        )
        out["final_greedy_returns"] = greedy
        out["final_greedy_mean_return"] = float(np.mean(greedy))
    return out


# ---- the reproduction -----------------------------------------------------------------------------------


def as_tensors(data: dict, n_actions: int) -> dict:
    tensors = {k: torch.as_tensor(v) for k, v in data.items()}
    tensors["terminated"] = tensors["terminated"].float()
    return tensors | {"n_actions": n_actions}


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    path = ctx.run_dir / "dataset.npz"

    def dataset_stage() -> dict:
        data, stats = build_dataset(config, ctx.seed, ctx)
        np.savez_compressed(path, **data)
        return stats

    stats = ctx.stage("dataset", dataset_stage)
    if not path.is_file():
        raise PapersError(f"the dataset stage finished but {path} is missing; rerun without resume")
    with np.load(path) as stored:
        arrays = {k: stored[k] for k in stored.files}
    env = make_env(config.env_id)
    data = as_tensors(arrays, int(env.action_space.n))
    env.close()

    seeds = [ctx.seed + k for k in range(config.seeds)]
    parts: dict[str, list[dict]] = {m: [] for m in METHODS}
    bar = ctx.progress_bar(config.updates * len(METHODS) * len(seeds), "offline updates")
    with bar:
        for seed in seeds:
            for method in METHODS:

                def compute(method=method, seed=seed):
                    return train_offline(method, data, config, seed, ctx, bar)

                stage = ctx.stage(f"train_{method}_seed{seed}", compute)
                parts[method].append(stage)

    metrics: dict = dict(stats)
    final = {m: float(np.mean([p["final_mean_return"] for p in parts[m]])) for m in METHODS}
    for m in METHODS:
        metrics[f"{m}_final_return"] = final[m]
        for seed, p in zip(seeds, parts[m], strict=True):
            metrics[f"{m}_final_return_seed{seed}"] = p["final_mean_return"]
        curves = [p["history"]["eval_return"] for p in parts[m]]
        metrics[f"{m}_mean_eval_return"] = float(np.mean(curves))
        half = len(curves[0]) // 2
        metrics[f"{m}_second_half_eval_std"] = float(np.mean([np.std(c[half:]) for c in curves]))
        metrics[f"{m}_best_eval_return"] = float(np.mean([max(c) for c in curves]))
        metrics[f"{m}_best_to_final_drop"] = metrics[f"{m}_best_eval_return"] - final[m]
        metrics[f"{m}_train_time_s"] = float(np.sum([p["train_time_s"] for p in parts[m]]))
        if m != "dqn":
            metrics[f"{m}_final_greedy_return"] = float(
                np.mean([p["final_greedy_mean_return"] for p in parts[m]])
            )
        if m != "bc":
            q = [v for p in parts[m] for v in p["history"]["q_mean"][-10:]]
            metrics[f"{m}_final_batch_q_mean"] = float(np.mean(q))
        if m in ("crr_binary", "crr_exp"):
            w = [v for p in parts[m] for v in p["history"]["mean_weight"][-10:]]
            metrics[f"{m}_final_mean_weight"] = float(np.mean(w))
    # reward 1 per step, and a time-limit cut bootstraps: no Q can exceed 1 / (1 - gamma)
    metrics["q_upper_bound"] = 1 / (1 - config.gamma)

    n = f"{config.final_episodes} episodes x {len(seeds)} seed(s)"
    checks = [
        Check(f"CRR-binary beats BC (final sampled-policy return, {n})", final["crr_binary"], ">",
              final["bc"], "BC, same data and updates"),
        Check(f"CRR-exp beats BC (final sampled-policy return, {n})", final["crr_exp"], ">", final["bc"],
              "BC, same data and updates"),
        Check("CRR-binary beats naive offline DQN (final return)", final["crr_binary"], ">", final["dqn"],
              "naive DQN, greedy on Q"),
        Check("CRR-exp beats naive offline DQN (final return)", final["crr_exp"], ">", final["dqn"],
              "naive DQN, greedy on Q"),
        Check("CRR-binary is more stable than naive offline DQN (std of evaluation returns over the "
              "second half of training)", metrics["crr_binary_second_half_eval_std"], "<",
              metrics["dqn_second_half_eval_std"], "naive DQN's std"),
        Check("binary weighting >= exp weighting on an easy task (CartPole; paper Sec. 5)",
              final["crr_binary"], ">=", final["crr_exp"], "CRR-exp final return"),
    ]  # fmt: skip
    figures(config, ctx, parts, stats)
    best = max(METHODS, key=lambda m: final[m])
    drops = ", ".join(
        f"{NAMES[m]} {metrics[f'{m}_best_eval_return']:.0f} (-{metrics[f'{m}_best_to_final_drop']:.0f})"
        for m in METHODS
    )
    notes = (
        f"Dataset: {config.dataset_size} transitions, {stats['random_transitions']} from the uniform random "
        f"policy (episode return {stats['random_mean_return']:.1f}) and {stats['half_trained_transitions']} "
        f"from a DQN stopped after {config.behaviour_steps} env steps (greedy return "
        f"{stats['behaviour_greedy_return']:.1f}; with epsilon {config.behaviour_epsilon} its episodes "
        f"return "
        f"{stats['half_trained_mean_return']:.1f}); all finished episodes together "
        f"{stats['dataset_mean_return']:.1f}. After {config.updates} updates of batch {config.batch_size}, "
        f"final sampled-policy returns (mean of {len(seeds)} learner seed(s) on the same dataset, "
        f"{config.final_episodes} held-out episodes each): "
        + ", ".join(f"{NAMES[m]} {final[m]:.1f}" for m in METHODS)
        + f"; argmax-pi returns BC {metrics['bc_final_greedy_return']:.1f}, CRR-binary "
        f"{metrics['crr_binary_final_greedy_return']:.1f}, CRR-exp "
        f"{metrics['crr_exp_final_greedy_return']:.1f}."
        f" Best: {NAMES[best]}. Best evaluation during training ({config.eval_episodes} episodes) and its "
        f"drop to the final return: "
        + drops
        + f". Naive DQN's batch mean Q ends at {metrics['dqn_final_batch_q_mean']:.1f} vs "
        f"CRR-binary's {metrics['crr_binary_final_batch_q_mean']:.1f} (no state is worth more than "
        f"1 / (1 - gamma) = {metrics['q_upper_bound']:.1f}). The binary filter keeps "
        f"{metrics['crr_binary_final_mean_weight']:.2f} of each batch at the end; the mean exp weight is "
        f"{metrics['crr_exp_final_mean_weight']:.2f}. Scalar Huber critic (the paper's is distributional); "
        f"advantage estimator {config.advantage!r}"
        + (f" with m = {config.m} actions sampled from pi." if config.advantage == "mean"
           else " (exact mean over pi).")
    )  # fmt: skip
    return Result(metrics=metrics, checks=checks, notes=notes)


def figures(config: Config, ctx, parts: dict, stats: dict) -> None:
    from papers.core.plots import figure

    fig, (ax_eval, ax_q, ax_w) = figure(ncols=3)
    for m in METHODS:
        x = parts[m][0]["history"]["eval_update"]
        curves = np.array([p["history"]["eval_return"] for p in parts[m]])
        ax_eval.plot(x, curves.mean(0), marker="o", markersize=3, label=NAMES[m], color=COLORS[m])
        if len(curves) > 1:
            ax_eval.fill_between(x, curves.min(0), curves.max(0), color=COLORS[m], alpha=0.15)
        if m != "bc":
            lx = parts[m][0]["history"]["log_update"]
            ax_q.plot(
                lx, np.mean([p["history"]["q_mean"] for p in parts[m]], 0), label=NAMES[m], color=COLORS[m]
            )
        if m in ("crr_binary", "crr_exp"):
            lx = parts[m][0]["history"]["log_update"]
            ax_w.plot(
                lx,
                np.mean([p["history"]["mean_weight"] for p in parts[m]], 0),
                label=NAMES[m],
                color=COLORS[m],
            )
    lines = ((stats["dataset_mean_return"], "dataset mean return", ":"),
             (stats["half_trained_mean_return"], "half-trained episodes", "--"))  # fmt: skip
    for value, label, style in lines:
        if math.isfinite(value):
            ax_eval.axhline(value, color="grey", linestyle=style, linewidth=1, label=label)
    ax_eval.set_xlabel("update")
    ax_eval.set_ylabel(f"return ({config.eval_episodes} episodes; band: seeds' range)")
    ax_eval.set_title("online evaluation")
    ax_eval.legend(fontsize=7)
    ax_q.axhline(1 / (1 - config.gamma), color="grey", linestyle="--", linewidth=1,
                 label="max discounted return")  # fmt: skip
    ax_q.set_xlabel("update")
    ax_q.set_ylabel("mean Q(s, a) of the batch")
    ax_q.set_title("critic values")
    ax_q.legend(fontsize=7)
    ax_w.set_xlabel("update")
    ax_w.set_ylabel("mean f(A) over the batch")
    ax_w.set_title("CRR weights")
    ax_w.legend(fontsize=7)
    ctx.save_figure(fig, "curves")
