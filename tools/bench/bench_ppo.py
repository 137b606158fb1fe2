"""Benchmark papers.rl.ppo against stable-baselines3's PPO on CartPole-v1 at matched hyperparameters.

    python tools/bench/bench_ppo.py [--json PATH] [--seed 0] [--threads 1] [--total-steps 163840]

Both: 8 envs x 128 steps, 4 epochs of 4 minibatches (256), lr 2.5e-4 annealed linearly to 0 over
``--total-steps``, gamma 0.99, lambda 0.95, clip 0.2 for ratio and value, entropy 0.01, value 0.5,
grad-norm 0.5, Adam eps 1e-5, tanh MLPs 64-64 for actor and critic with orthogonal init (SB3's
``MlpPolicy`` defaults), advantages normalised, time-limit truncations bootstrapped. The same evaluation
for both, at the end of the first rollout past every ``--eval-every`` steps: ``papers.rl.agents.evaluate``
with greedy actions over ``--eval-episodes`` episodes seeded 10**6 + k. Reported: env steps per second of
training (evaluation time excluded), the training wall time and env steps at the first evaluation with a
mean return >= 475, and the ratios ours / SB3 (below 1: ours is faster or needs fewer steps).
stable-baselines3 is a development dependency only; it is imported here, never by the package.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch

from papers.rl.agents import evaluate, make_env, make_vector_env
from papers.rl.ppo import PPOSettings, make_agent, policy_function, train_ppo

THRESHOLD = 475.0


class Schedule:
    """Evaluate at the first rollout end past each multiple of ``every``; keep training time apart."""

    def __init__(self, every: int, episodes: int):
        self.every, self.episodes, self.next = every, episodes, every
        self.eval_time, self.curve, self.reached = 0.0, [], None
        self.env = make_env("CartPole-v1")

    def maybe_evaluate(self, step: int, elapsed: float, policy) -> bool:
        """True once the threshold is reached (training should stop)."""
        if step < self.next:
            return False
        while self.next <= step:
            self.next += self.every
        start = time.perf_counter()
        mean = evaluate(self.env, policy, episodes=self.episodes, seed=10**6).mean_return
        self.eval_time += time.perf_counter() - start
        train_time = elapsed - self.eval_time
        self.curve.append((step, train_time, mean))
        if mean >= THRESHOLD and self.reached is None:
            self.reached = {"steps": step, "train_time_s": train_time}
            return True
        return False


def run_ours(args) -> dict:
    torch.manual_seed(args.seed)
    envs = make_vector_env("CartPole-v1", 8, seed=args.seed)
    agent = make_agent(envs.single_observation_space, envs.single_action_space)
    schedule = Schedule(args.eval_every, args.eval_episodes)
    policy = policy_function(agent, envs.single_observation_space)
    settings = PPOSettings(total_steps=args.total_steps, num_steps=128)
    start = time.perf_counter()

    def on_update(record):
        return schedule.maybe_evaluate(record["global_step"], time.perf_counter() - start, policy)

    history = train_ppo(envs, agent, settings, seed=args.seed, on_update=on_update)
    train_time = time.perf_counter() - start - schedule.eval_time
    return {"steps": history["global_step"], "train_time_s": train_time,
            "steps_per_s": history["global_step"] / train_time, "reached": schedule.reached,
            "curve": schedule.curve}  # fmt: skip


def run_sb3(args) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
    model = PPO(
        "MlpPolicy", envs, n_steps=128, batch_size=256, n_epochs=4, learning_rate=lambda p: 2.5e-4 * p,
        gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.01, vf_coef=0.5,
        max_grad_norm=0.5, normalize_advantage=True, seed=args.seed, device="cpu", verbose=0,
    )  # fmt: skip
    schedule = Schedule(args.eval_every, args.eval_episodes)

    def policy(obs):
        return int(model.predict(obs, deterministic=True)[0])

    class Evaluate(BaseCallback):
        def _on_training_start(self):
            self.start = time.perf_counter()

        def _on_step(self) -> bool:
            return not getattr(self, "stop", False)

        def _on_rollout_start(self) -> None:
            # called after the previous rollout's update: the same point as ours' on_update
            if self.num_timesteps:
                elapsed = time.perf_counter() - self.start
                self.stop = schedule.maybe_evaluate(self.num_timesteps, elapsed, policy)

    callback = Evaluate()
    start = time.perf_counter()
    model.learn(total_timesteps=args.total_steps, callback=callback)
    train_time = time.perf_counter() - start - schedule.eval_time
    steps = model.num_timesteps
    return {"steps": steps, "train_time_s": train_time, "steps_per_s": steps / train_time,
            "reached": schedule.reached, "curve": schedule.curve}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--total-steps", type=int, default=163_840)
    parser.add_argument("--eval-every", type=int, default=16_384)
    parser.add_argument("--eval-episodes", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch's one-time optimiser imports here
    results = {}
    for name, runner in (("ours", run_ours), ("sb3", run_sb3)):
        cpu = time.process_time()
        results[name] = runner(args)
        results[name]["cpu_time_s"] = time.process_time() - cpu
        r = results[name]
        reached = r["reached"] or {"steps": math.nan, "train_time_s": math.nan}
        print(
            f"{name:5s} {r['steps_per_s']:8.0f} env steps/s  reached {THRESHOLD:g} at step "
            f"{reached['steps']} "
            f"after {reached['train_time_s']:.1f} s of training  (cpu {r['cpu_time_s']:.0f} s)",
            flush=True,
        )
    ours, sb3 = results["ours"], results["sb3"]
    ratios = {"steps_per_s": ours["steps_per_s"] / sb3["steps_per_s"]}
    if ours["reached"] and sb3["reached"]:
        ratios["time_to_475"] = ours["reached"]["train_time_s"] / sb3["reached"]["train_time_s"]
        ratios["steps_to_475"] = ours["reached"]["steps"] / sb3["reached"]["steps"]
    results["ratios"] = ratios
    results["load_average"] = list(np.round(__import__("os").getloadavg(), 2))
    print("ratios ours / sb3:", {k: round(v, 3) for k, v in ratios.items()}, "load", results["load_average"])
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
