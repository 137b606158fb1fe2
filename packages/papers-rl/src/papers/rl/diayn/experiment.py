"""Reproduction: DIAYN with SAC on a 2-D point mass; discriminability, coverage and hierarchical reuse.

Arms, one seed, measured in one run:

    diayn         K skills (8), SAC (alpha 0.1) on r = log q(z|s') - log p(z)        (the method)
    single_skill  the same learner with K = 1: r = 0, a maximum-entropy policy only  (ablation)
    random        uniform random actions                                            (baseline)

Held-out rollouts (fresh episodes, stochastic policy, ``eval_episodes_per_skill`` per skill, the same
number of episodes for every arm) measure

    discriminator accuracy   mean over the states s_1..s_T of held-out episodes of [argmax q(.|s) = z]
                             (chance 1/K; the first steps near the common start cannot be told apart)
    coverage                 the fraction of the grid_cells x grid_cells cells of the arena visited

Hierarchical use (Sec. 4.2.2): a meta-controller pi_meta(z|s) picks one of the frozen skills every
``skill_steps`` steps on a sparse-goal task (reward 1 on reaching the goal disc), trained by REINFORCE;
against SAC learning the same task from scratch, both with ``goal_steps`` env steps (the skills'
reward-free pre-training is not counted, as in the paper).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from papers.core.experiment import Check, Result
from papers.rl.agents import ReplayBuffer

from .env import BatchPointMass, point_mass_step
from .model import DIAYN, SAC, MetaController, adam


@dataclass
class Config:
    # the arena
    n_skills: int = 8
    episode_steps: int = 50
    max_step: float = 0.1
    bound: float = 1.0
    # DIAYN / SAC (the paper: alpha 0.1, lr 3e-4, batch 128, tau 0.01, gamma 0.99, 2 x 300 units)
    total_steps: int = 24_000  # env transitions per learner
    num_envs: int = 16
    learning_starts: int = 1_600
    gradient_steps: int = 1  # per vector step of num_envs transitions
    batch_size: int = 128
    hidden: tuple[int, ...] = (128, 128)
    alpha: float = 0.1
    gamma: float = 0.99
    tau: float = 0.01
    lr: float = 1e-3
    buffer_size: int = 100_000
    # evaluation
    eval_interval: int = 3_000  # env transitions between held-out evaluations
    eval_episodes_per_skill: int = 4
    grid_cells: int = 20
    single_skill: bool = True
    # hierarchy: a meta-controller over frozen skills vs SAC from scratch on a sparse goal
    hierarchy: bool = True
    goal_x: float = 0.7
    goal_y: float = 0.7
    goal_radius: float = 0.15
    goal_episode_steps: int = 100
    skill_steps: int = 10
    goal_steps: int = 16_000  # env steps for each learner
    meta_lr: float = 1e-2
    meta_entropy: float = 0.01
    goal_eval_episodes: int = 32
    threads: int = 1

    def validate(self) -> None:
        for name in ("n_skills", "episode_steps", "total_steps", "num_envs", "gradient_steps", "batch_size",
                     "buffer_size", "eval_interval", "eval_episodes_per_skill", "grid_cells",
                     "goal_episode_steps", "skill_steps", "goal_steps", "goal_eval_episodes"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("learning_starts", "threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_starts >= self.total_steps:
            raise ValueError(f"learning_starts ({self.learning_starts}) must be < total_steps "
                             f"({self.total_steps})")  # fmt: skip
        if not self.bound > 0 or not 0 < self.max_step <= self.bound:
            raise ValueError(f"need bound > 0 and 0 < max_step <= bound, got {self.bound}, {self.max_step}")
        if not self.alpha >= 0:
            raise ValueError(f"alpha must be >= 0, got {self.alpha}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        for name in ("lr", "meta_lr", "goal_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.meta_entropy < 0:
            raise ValueError(f"meta_entropy must be >= 0, got {self.meta_entropy}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden needs at least one layer width >= 1, got {self.hidden}")
        if max(abs(self.goal_x), abs(self.goal_y)) > self.bound:
            raise ValueError(f"the goal ({self.goal_x}, {self.goal_y}) must lie inside the arena "
                             f"[-{self.bound}, {self.bound}]^2")  # fmt: skip


PRESETS = {
    "smoke": {"total_steps": 320, "num_envs": 8, "learning_starts": 160, "batch_size": 16, "hidden": (8,),
              "eval_interval": 160, "eval_episodes_per_skill": 1, "episode_steps": 20, "goal_steps": 320,
              "goal_episode_steps": 20, "goal_eval_episodes": 4, "buffer_size": 400},
    "default": {},
    # closer to the paper: its learning rate, two layers of 300 units, one gradient step per transition
    "full": {"total_steps": 400_000, "num_envs": 8, "gradient_steps": 8, "batch_size": 128,
             "hidden": (300, 300), "lr": 3e-4, "buffer_size": 400_000, "eval_interval": 20_000,
             "eval_episodes_per_skill": 16, "goal_steps": 100_000},
}  # fmt: skip


# ---- rollouts and measurements ------------------------------------------------------------------------


def one_hot(skills: np.ndarray, n_skills: int) -> np.ndarray:
    return np.eye(n_skills, dtype=np.float32)[skills]


def rollout(policy, skills: np.ndarray, config: Config) -> np.ndarray:
    """States s_1..s_T (n, T, 2) of one episode per entry of ``skills``, all from the origin;
    ``policy(states, skills) -> actions`` on numpy arrays."""
    positions = np.zeros((len(skills), 2), dtype=np.float32)
    states = np.empty((len(skills), config.episode_steps, 2), dtype=np.float32)
    for t in range(config.episode_steps):
        positions = point_mass_step(positions, policy(positions, skills), config.max_step, config.bound)
        states[:, t] = positions
    return states


def agent_policy(agent: DIAYN, deterministic: bool = False):
    def policy(positions, skills):
        actions = agent.act(torch.from_numpy(positions), torch.from_numpy(skills), deterministic)
        return actions.numpy()

    return policy


def random_policy(seed: int):
    rng = np.random.default_rng(seed)
    return lambda positions, skills: rng.uniform(-1.0, 1.0, size=positions.shape).astype(np.float32)


def coverage(states: np.ndarray, cells: int, bound: float) -> float:
    """Fraction of the cells x cells grid over [-bound, bound]^2 that some state falls in."""
    flat = np.asarray(states, dtype=np.float64).reshape(-1, 2)
    index = np.clip(np.floor((flat + bound) / (2 * bound) * cells), 0, cells - 1).astype(np.int64)
    return len(np.unique(index[:, 0] * cells + index[:, 1])) / cells**2


@torch.no_grad()
def discriminator_accuracy(agent: DIAYN, states: np.ndarray, skills: np.ndarray) -> tuple[float, float]:
    """(accuracy over every state of the episodes, accuracy on their last states) of argmax q(.|s) = z."""
    n, steps, _ = states.shape
    logits = agent.discriminator(torch.from_numpy(states.reshape(-1, 2)))
    guess = logits.argmax(-1).numpy().reshape(n, steps)
    right = guess == skills[:, None]
    return float(right.mean()), float(right[:, -1].mean())


def evaluation_skills(config: Config, n_skills: int) -> np.ndarray:
    """The skills of the held-out episodes: the same number of episodes (K x per-skill) for every arm."""
    episodes = config.n_skills * config.eval_episodes_per_skill
    return np.arange(episodes, dtype=np.int64) % n_skills


def evaluate_agent(agent: DIAYN, config: Config) -> dict:
    skills = evaluation_skills(config, agent.n_skills)
    states = rollout(agent_policy(agent), skills, config)
    accuracy, final_accuracy = discriminator_accuracy(agent, states, skills)
    measured = {"accuracy": accuracy, "final_accuracy": final_accuracy, "skills": skills, "states": states,
                "coverage": coverage(states, config.grid_cells, config.bound)}  # fmt: skip
    return measured | spread(states, config)


def spread(states: np.ndarray, config: Config) -> dict:
    """Where the episodes end up: grid coverage of the last states alone, and their mean distance from the
    start (extra measures, reported next to the all-states coverage of the claim)."""
    last = states[:, -1]
    return {"final_state_coverage": coverage(last, config.grid_cells, config.bound),
            "final_distance": float(np.linalg.norm(last, axis=1).mean())}  # fmt: skip


# ---- DIAYN training -------------------------------------------------------------------------------------


def train_diayn(config: Config, seed: int, n_skills: int | None = None, ctx=None, name: str = "diayn"):
    """Train one DIAYN agent; returns (a JSON-able record of curves and held-out measurements, the agent)."""
    n_skills = config.n_skills if n_skills is None else n_skills
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    agent = DIAYN(2, 2, n_skills, config.hidden, config.alpha, config.gamma, config.tau, config.lr)
    envs = BatchPointMass(config.num_envs, config.max_step, config.bound, config.episode_steps)
    buffer = ReplayBuffer(min(config.buffer_size, config.total_steps), (2 + n_skills,),
                          action_shape=(2,), action_dtype=np.float32, seed=seed)  # fmt: skip
    positions = envs.reset()
    skills = rng.integers(n_skills, size=config.num_envs)
    no_termination = np.zeros(config.num_envs, dtype=bool)  # the arena never terminates: always bootstrap
    history = {key: [] for key in ("step", "discriminator_accuracy", "pseudo_reward", "entropy",
                                   "critic_loss", "eval_step", "eval_accuracy", "eval_final_accuracy",
                                   "eval_coverage")}  # fmt: skip
    vector_steps = math.ceil(config.total_steps / config.num_envs)
    stats_sum, stats_count, updates, step = {}, 0, 0, 0
    start = time.perf_counter()
    bar = ctx.progress_bar(vector_steps, name).__enter__() if ctx is not None else None
    try:
        for _ in range(vector_steps):
            if step < config.learning_starts:
                actions = rng.uniform(-1.0, 1.0, size=(config.num_envs, 2)).astype(np.float32)
            else:
                actions = agent_policy(agent)(positions, skills)
            next_positions, _, _, truncated, final = envs.step(actions)
            z = one_hot(skills, n_skills)
            buffer.add(np.concatenate([positions, z], 1), actions, np.zeros(config.num_envs),
                       np.concatenate([final, z], 1), no_termination)  # fmt: skip
            positions = next_positions
            skills = np.where(truncated, rng.integers(n_skills, size=config.num_envs), skills)
            step += config.num_envs
            if step >= config.learning_starts:
                for _ in range(config.gradient_steps):
                    batch = buffer.sample(config.batch_size).to_torch()
                    stats = agent.update(batch.obs, batch.actions, batch.next_obs, batch.terminated)
                    updates += 1
                    for key, value in stats.items():
                        stats_sum[key] = stats_sum.get(key, 0.0) + value
                    stats_count += 1
            if stats_count and (step // config.num_envs) % 25 == 0:
                means = {key: value / stats_count for key, value in stats_sum.items()}
                history["step"].append(step)
                for key in ("discriminator_accuracy", "pseudo_reward", "entropy", "critic_loss"):
                    history[key].append(means[key])
                if ctx is not None:
                    ctx.log({f"{name}_{k}": v for k, v in means.items()}, step=step)
                stats_sum, stats_count = {}, 0
            if step // config.eval_interval > (step - config.num_envs) // config.eval_interval:
                held_out = evaluate_agent(agent, config)
                history["eval_step"].append(step)
                for key in ("accuracy", "final_accuracy", "coverage"):
                    history[f"eval_{key}"].append(held_out[key])
                if ctx is not None:
                    ctx.log({f"{name}_eval_accuracy": held_out["accuracy"],
                             f"{name}_eval_coverage": held_out["coverage"]}, step=step)  # fmt: skip
            if bar:
                bar.update(1, updates=updates)
    finally:
        if bar:
            bar.__exit__(None, None, None)
    train_time = time.perf_counter() - start
    final = evaluate_agent(agent, config)
    record = {
        "history": history,
        "accuracy": final["accuracy"],
        "final_accuracy": final["final_accuracy"],
        "coverage": final["coverage"],
        "final_state_coverage": final["final_state_coverage"],
        "final_distance": final["final_distance"],
        "eval_states": final["states"].round(4).tolist(),
        "eval_skills": final["skills"].tolist(),
        "gradient_steps": updates,
        "train_time_s": train_time,
        "gradient_steps_per_s": updates / max(train_time, 1e-9),
    }
    return record, agent


# ---- hierarchy: a meta-controller over frozen skills vs SAC from scratch ---------------------------------


def goal_config(config: Config) -> dict:
    return {"max_step": config.max_step, "bound": config.bound, "max_steps": config.goal_episode_steps,
            "goal": (config.goal_x, config.goal_y), "goal_radius": config.goal_radius}  # fmt: skip


def goal_episodes(choose, skill_policy, n: int, config: Config):
    """Run ``n`` goal episodes in lockstep; every ``skill_steps`` steps ``choose(states) -> skills``, then the
    frozen ``skill_policy`` acts. Returns (states (n, T, 2), reached (n,), the step each episode ended
    (n,), the decisions as a list of (states, skills, active mask, time))."""
    goal = np.array([config.goal_x, config.goal_y], dtype=np.float32)
    positions = np.zeros((n, 2), dtype=np.float32)
    states = np.zeros((n, config.goal_episode_steps, 2), dtype=np.float32)
    active = np.ones(n, dtype=bool)
    reached = np.zeros(n, dtype=bool)
    ended = np.full(n, config.goal_episode_steps, dtype=np.int64)
    decisions, skills = [], np.zeros(n, dtype=np.int64)
    for t in range(config.goal_episode_steps):
        if t % config.skill_steps == 0:
            skills = choose(positions)
            decisions.append((positions.copy(), skills.copy(), active.copy(), t))
        moved = point_mass_step(positions, skill_policy(positions, skills), config.max_step, config.bound)
        positions = np.where(active[:, None], moved, positions).astype(np.float32)
        states[:, t] = positions
        reached_now = active & (np.linalg.norm(positions - goal, axis=1) <= config.goal_radius)
        ended[reached_now] = t + 1
        reached |= reached_now
        active &= ~reached_now
        if not active.any():
            states[:, t + 1 :] = positions[:, None]
            break
    return states, reached, ended, decisions


def train_meta_controller(agent: DIAYN, config: Config, seed: int) -> dict:
    """REINFORCE on pi_meta(z|s) over frozen skills: loss = -sum_k log pi(z_k|s_k) (G_k - b) - c H, with
    G_k = gamma^(T_end - t_k) when the goal is reached (else 0) and b the batch mean."""
    torch.manual_seed(seed)
    meta = MetaController(2, agent.n_skills)
    optimizer = adam(meta.parameters(), config.meta_lr)
    skill_policy = agent_policy(agent)

    def choose(positions):
        with torch.no_grad():
            return meta.distribution(torch.from_numpy(positions)).sample().numpy()

    steps, curve_step, curve_success = 0, [], []
    while steps < config.goal_steps:
        _, reached, ended, decisions = goal_episodes(choose, skill_policy, config.num_envs, config)
        steps += int(ended.sum())
        curve_step.append(steps)
        curve_success.append(float(reached.mean()))
        states, skills, weights = [], [], []
        for positions, chosen, active, t in decisions:
            returns = np.where(reached, config.gamma ** (ended - t).clip(min=0), 0.0)
            keep = active
            states.append(positions[keep])
            skills.append(chosen[keep])
            weights.append(returns[keep])
        returns = np.concatenate(weights)
        advantages = torch.as_tensor(returns - returns.mean(), dtype=torch.float32)
        dist = meta.distribution(torch.from_numpy(np.concatenate(states)))
        log_prob = dist.log_prob(torch.from_numpy(np.concatenate(skills)))
        loss = -(log_prob * advantages).mean() - config.meta_entropy * dist.entropy().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _, reached, ended, _ = goal_episodes(choose, skill_policy, config.goal_eval_episodes, config)
    states, _, _, _ = goal_episodes(choose, skill_policy, 8, config)
    return {"curve_step": curve_step, "curve_success": curve_success, "final_success": float(reached.mean()),
            "final_mean_length": float(ended.mean()), "sample_states": states.round(4).tolist()}  # fmt: skip


def train_sac_goal(config: Config, seed: int, ctx=None) -> dict:
    """SAC (same hyperparameters) learning the sparse-goal task from scratch for ``goal_steps`` env steps."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    sac = SAC(2, 2, config.hidden, config.alpha, config.gamma, config.tau, config.lr)
    envs = BatchPointMass(config.num_envs, **goal_config(config))
    buffer = ReplayBuffer(min(config.buffer_size, config.goal_steps), (2,), action_shape=(2,),
                          action_dtype=np.float32, seed=seed)  # fmt: skip
    positions = envs.reset()
    steps, curve_step, curve_success, finished = 0, [], [], []
    learning_starts = min(config.learning_starts, config.goal_steps // 2)
    while steps < config.goal_steps:
        if steps < learning_starts:
            actions = rng.uniform(-1.0, 1.0, size=(config.num_envs, 2)).astype(np.float32)
        else:
            actions = sac.act(torch.from_numpy(positions)).numpy()
        next_positions, rewards, terminated, truncated, final = envs.step(actions)
        buffer.add(positions, actions, rewards, final, terminated)
        positions = next_positions
        steps += config.num_envs
        finished.extend(terminated[terminated | truncated].astype(float).tolist())
        if len(finished) >= config.num_envs:
            curve_step.append(steps)
            curve_success.append(float(np.mean(finished)))
            finished = []
        if steps >= learning_starts:
            for _ in range(config.gradient_steps):
                batch = buffer.sample(config.batch_size).to_torch()
                sac.update(batch.obs, batch.actions, batch.rewards, batch.next_obs, batch.terminated)

    def sac_policy(positions, skills):
        return sac.act(torch.from_numpy(positions)).numpy()

    no_choice = lambda positions: np.zeros(len(positions), dtype=np.int64)  # noqa: E731
    _, reached, ended, _ = goal_episodes(no_choice, sac_policy, config.goal_eval_episodes, config)
    states, _, _, _ = goal_episodes(no_choice, sac_policy, 8, config)
    return {"curve_step": curve_step, "curve_success": curve_success, "final_success": float(reached.mean()),
            "final_mean_length": float(ended.mean()), "sample_states": states.round(4).tolist()}  # fmt: skip


# ---- the reproduction -----------------------------------------------------------------------------------


def run(config: Config, ctx) -> Result:
    if config.threads:
        torch.set_num_threads(config.threads)
    held: dict = {}

    def train_main():
        record, agent = train_diayn(config, ctx.seed, ctx=ctx, name="diayn")
        held["agent"] = agent
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        torch.save(agent.state_dict(), ctx.checkpoint_dir / "diayn.pt")
        return record

    main = ctx.stage("train_diayn", train_main)
    if "agent" not in held:  # resumed: the finished agent is in the checkpoint
        agent = DIAYN(2, 2, config.n_skills, config.hidden, config.alpha, config.gamma, config.tau, config.lr)
        agent.load_state_dict(torch.load(ctx.checkpoint_dir / "diayn.pt"))
        held["agent"] = agent
    agent = held["agent"]
    single = None
    if config.single_skill:
        single = ctx.stage(
            "train_single_skill",
            lambda: train_diayn(config, ctx.seed, n_skills=1, ctx=ctx, name="single_skill")[0],
        )
    random_states = rollout(random_policy(ctx.seed + 1), evaluation_skills(config, config.n_skills), config)
    random_coverage = coverage(random_states, config.grid_cells, config.bound)
    random_spread = spread(random_states, config)

    hierarchy = None
    if config.hierarchy:
        hierarchy = {
            "meta": ctx.stage("hierarchy_meta", lambda: train_meta_controller(agent, config, ctx.seed + 2)),
            "scratch": ctx.stage("hierarchy_scratch", lambda: train_sac_goal(config, ctx.seed + 3, ctx)),
        }

    chance = 1.0 / config.n_skills
    metrics = {
        "diayn_accuracy": main["accuracy"],
        "diayn_final_state_accuracy": main["final_accuracy"],
        "chance_accuracy": chance,
        "diayn_coverage": main["coverage"],
        "random_coverage": random_coverage,
        "diayn_final_state_coverage": main["final_state_coverage"],
        "random_final_state_coverage": random_spread["final_state_coverage"],
        "diayn_final_distance": main["final_distance"],
        "random_final_distance": random_spread["final_distance"],
        "diayn_gradient_steps": main["gradient_steps"],
        "diayn_train_time_s": main["train_time_s"],
        "diayn_gradient_steps_per_s": main["gradient_steps_per_s"],
    }
    checks = [
        Check(f"held-out discriminator accuracy of the {config.n_skills} skills beats chance",
              main["accuracy"], ">", chance, f"chance 1/{config.n_skills}"),
        Check("DIAYN's held-out episodes cover more of the arena than a random policy's",
              main["coverage"], ">", random_coverage, "random policy, same number of episodes"),
    ]  # fmt: skip
    if single is not None:
        metrics |= {"single_skill_coverage": single["coverage"],
                    "single_skill_final_state_coverage": single["final_state_coverage"],
                    "single_skill_final_distance": single["final_distance"],
                    "single_skill_train_time_s": single["train_time_s"]}  # fmt: skip
        checks.append(
            Check(
                "DIAYN covers more of the arena than the same learner with a single skill",
                main["coverage"],
                ">",
                single["coverage"],
                "K = 1, same learner and steps",
            )
        )
    if hierarchy is not None:
        meta, scratch = hierarchy["meta"], hierarchy["scratch"]
        metrics |= {
            "meta_final_success": meta["final_success"],
            "scratch_final_success": scratch["final_success"],
            "meta_mean_training_success": float(np.mean(meta["curve_success"])),
            "scratch_mean_training_success": float(np.mean(scratch["curve_success"] or [0.0])),
            "meta_final_mean_length": meta["final_mean_length"],
            "scratch_final_mean_length": scratch["final_mean_length"],
        }
        checks.append(Check("a meta-controller over frozen skills learns the sparse goal faster than SAC "
                            "from scratch (mean success over training)",
                            metrics["meta_mean_training_success"], ">",
                            metrics["scratch_mean_training_success"],
                            f"SAC from scratch, {config.goal_steps} env steps each"))  # fmt: skip
        checks.append(Check("... and its final policy succeeds at least as often",
                            meta["final_success"], ">=", scratch["final_success"],
                            f"SAC from scratch, {config.goal_eval_episodes} held-out episodes"))  # fmt: skip
    figures(config, ctx, main, single, random_states, hierarchy)
    notes = notes_for(config, main, single, random_coverage, random_spread, hierarchy)
    return Result(metrics=metrics, checks=checks, notes=notes)


def notes_for(config: Config, main: dict, single: dict | None, random_coverage: float, random_spread: dict,
              hierarchy) -> str:  # fmt: skip
    chance = 1 / config.n_skills
    notes = (
        f"One seed. SAC (fixed alpha {config.alpha}) on a 2-D point mass (step {config.max_step}, arena "
        f"[-{config.bound:g}, {config.bound:g}]^2, {config.episode_steps}-step episodes from the origin), "
        f"{config.n_skills} skills, {config.total_steps} env steps and {main['gradient_steps']} gradient "
        f"steps per learner ({main['gradient_steps_per_s']:.1f}/s wall-clock under the machine's load). "
        f"Discriminability: held-out discriminator accuracy over all states of "
        f"{config.n_skills * config.eval_episodes_per_skill} fresh episodes {main['accuracy']:.3f} (chance "
        f"{chance:.3f}; on the last state {main['final_accuracy']:.3f}); "
        + ("holds. " if main["accuracy"] > chance else "does not hold. ")
    )
    arms = [("DIAYN", main["coverage"]), ("random actions", random_coverage)]
    if single is not None:
        arms.append(("single skill (r = 0, entropy only)", single["coverage"]))
    notes += (
        f"Coverage (fraction of a {config.grid_cells}x{config.grid_cells} grid visited by all states of "
        f"the same number of held-out episodes): " + ", ".join(f"{n} {c:.3f}" for n, c in arms) + ". "
    )
    beaten = [n for n, c in arms[1:] if main["coverage"] <= c]
    if beaten:
        notes += (
            f"DIAYN does not cover more cells than {' or '.join(beaten)}: its skills become nearly "
            f"deterministic runs (policy entropy {main['history']['entropy'][-1]:.2f} nats at the end) that "
            f"reach the walls in about {config.bound / config.max_step:.0f} steps and stay there for the "
            f"rest of the episode, so its {config.episode_steps} states per episode fall in few cells, while "
            f"an undirected random walk spreads its states over the centre of the arena. "
        )
    else:
        notes += "DIAYN covers more cells than every baseline arm. "
    margin = main["coverage"] - max(c for _, c in arms[1:])
    single_trace = single["history"]["eval_coverage"] if single is not None else []
    spread_single = max(single_trace) - min(single_trace) if single_trace else 0.0
    trace = [("DIAYN", main["history"]["eval_coverage"])]
    if single is not None:
        trace.append(("single skill", single["history"]["eval_coverage"]))
    notes += (
        "The margin is to be read against the noise of this measure: over the held-out evaluations during "
        "training the coverage ranged "
        + ", ".join(f"{n} {min(c):.3f}-{max(c):.3f}" for n, c in trace if c)
        + (
            f" (DIAYN's falls as its skills sharpen: {trace[0][1][0]:.3f} at the first evaluation, "
            f"{trace[0][1][-1]:.3f} at the last). "
            if trace[0][1] and trace[0][1][-1] < trace[0][1][0]
            else ". "
        )
        + (
            f"DIAYN's margin over the best baseline here ({margin:+.3f}) is smaller than the spread of the "
            f"single-skill arm's own evaluations ({spread_single:.3f}): at one seed the coverage checks are "
            f"not decisive either way. "
            if single is not None and single["history"]["eval_coverage"] and abs(margin) < spread_single
            else ""
        )
        + f"Where the episodes end up (extra measures, not checks): the last states cover "
        f"{main['final_state_coverage']:.3f} of the grid for DIAYN vs "
        f"{random_spread['final_state_coverage']:.3f} for random actions"
        + (f" and {single['final_state_coverage']:.3f} for one skill" if single is not None else "")
        + f", at a mean distance from the start of {main['final_distance']:.2f} vs "
        f"{random_spread['final_distance']:.2f}"
        + (f" and {single['final_distance']:.2f}" if single is not None else "")
        + ": the skills reach the far parts of the arena that random exploration does not, but each skill "
        "parks in a small region rather than sweeping the arena. "
    )
    if hierarchy is not None:
        meta, scratch = hierarchy["meta"], hierarchy["scratch"]
        notes += (
            f"Hierarchy: goal disc of radius {config.goal_radius} at ({config.goal_x}, {config.goal_y}), "
            f"fixed before any run; the meta-controller (REINFORCE, a skill every {config.skill_steps} "
            f"steps) reaches a final success of {meta['final_success']:.2f} vs SAC from scratch "
            f"{scratch['final_success']:.2f}, mean training success {np.mean(meta['curve_success']):.2f} vs "
            f"{np.mean(scratch['curve_success'] or [0.0]):.2f} (its first batch of episodes, before any "
            f"meta update, already {meta['curve_success'][0]:.2f}: some frozen skill heads that way), at "
            f"{config.goal_steps} env steps each; the skills' reward-free pre-training "
            f"({config.total_steps} steps) is not counted, as in the paper."
        )
    return notes


def figures(config: Config, ctx, main: dict, single: dict | None, random_states, hierarchy) -> None:
    import matplotlib.pyplot as plt

    from papers.core.plots import figure, moving_average

    colours = plt.get_cmap("tab10" if config.n_skills <= 10 else "hsv", max(config.n_skills, 2))
    panels = [("DIAYN", main["eval_states"], main["eval_skills"])]
    if single is not None:
        panels.append(("single skill (K = 1)", single["eval_states"], [0] * len(single["eval_skills"])))
    panels.append(("random actions", random_states.tolist(), None))
    fig, axes = figure(ncols=len(panels), width=3.6, height=3.6)
    for ax, (title, states, skills) in zip(axes, panels, strict=True):
        for i, path in enumerate(np.asarray(states)):
            colour = "grey" if skills is None else colours(skills[i])
            path = np.vstack([np.zeros((1, 2)), path])
            ax.plot(path[:, 0], path[:, 1], color=colour, linewidth=1, alpha=0.8)
            ax.plot(path[-1, 0], path[-1, 1], "o", color=colour, markersize=3)
        ax.set_xlim(-config.bound * 1.05, config.bound * 1.05)
        ax.set_ylim(-config.bound * 1.05, config.bound * 1.05)
        ax.set_aspect("equal")
        ax.set_title(title)
    ctx.save_figure(fig, "skills")

    h = main["history"]
    fig, (ax_acc, ax_cov) = figure(ncols=2)
    ax_acc.plot(
        h["step"], moving_average(h["discriminator_accuracy"], 5), label="replay batches (old states too)"
    )
    ax_acc.plot(h["eval_step"], h["eval_accuracy"], marker="o", markersize=3, label="held-out, all states")
    ax_acc.plot(
        h["eval_step"], h["eval_final_accuracy"], marker="s", markersize=3, label="held-out, last state"
    )
    ax_acc.axhline(1 / config.n_skills, color="grey", linestyle="--", linewidth=1, label="chance")
    ax_acc.set_xlabel("env step")
    ax_acc.set_ylabel("discriminator accuracy")
    ax_acc.set_ylim(0, 1.02)
    ax_acc.legend(fontsize=7)
    ax_cov.plot(h["eval_step"], h["eval_coverage"], marker="o", markersize=3, label="DIAYN")
    if single is not None:
        s = single["history"]
        ax_cov.plot(s["eval_step"], s["eval_coverage"], marker="o", markersize=3, label="single skill")
    ax_cov.set_xlabel("env step")
    ax_cov.set_ylabel(f"coverage ({config.grid_cells}x{config.grid_cells} cells)")
    ax_cov.legend(fontsize=7)
    ctx.save_figure(fig, "discriminator")

    if hierarchy is not None:
        fig, (ax_curve, ax_meta, ax_scratch) = figure(ncols=3, width=3.8, height=3.6)
        for name, part in (("meta-controller over skills", hierarchy["meta"]),
                           ("SAC from scratch", hierarchy["scratch"])):  # fmt: skip
            ax_curve.plot(part["curve_step"], moving_average(part["curve_success"], 5), label=name)
        ax_curve.set_xlabel("env step")
        ax_curve.set_ylabel("training success rate (moving mean)")
        ax_curve.legend(fontsize=7)
        for ax, (title, part) in ((ax_meta, ("meta-controller", hierarchy["meta"])),
                                  (ax_scratch, ("SAC from scratch", hierarchy["scratch"]))):  # fmt: skip
            for path in np.asarray(part["sample_states"]):
                path = np.vstack([np.zeros((1, 2)), path])
                ax.plot(path[:, 0], path[:, 1], linewidth=1)
            ax.add_patch(
                plt.Circle((config.goal_x, config.goal_y), config.goal_radius, color="green", alpha=0.3)
            )
            ax.set_xlim(-config.bound * 1.05, config.bound * 1.05)
            ax.set_ylim(-config.bound * 1.05, config.bound * 1.05)
            ax.set_aspect("equal")
            ax.set_title(f"{title}: final success {part['final_success']:.2f}")
        ctx.save_figure(fig, "hierarchy")
