"""Evaluate a policy over whole episodes, and record the frames of one episode to look at.

    result = evaluate(make_env("CartPole-v1"), as_policy(net), episodes=10, seed=0)
    result.mean_return, result.std_return, result.returns, result.lengths
    frames = record_frames(make_env("CartPole-v1", render_mode="rgb_array"), policy, seed=0)
    save_frames(frames, "out/cartpole")   # out/cartpole.gif with pillow, else out/cartpole/frame_0000.png
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import gymnasium as gym
import numpy as np

Policy = Callable[[object], object]


@dataclass(frozen=True)
class Evaluation:
    returns: list[float]
    lengths: list[int]

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std_return(self) -> float:
        return float(np.std(self.returns))

    @property
    def mean_length(self) -> float:
        return float(np.mean(self.lengths))


def evaluate(env: gym.Env, policy: Policy, episodes: int = 10, seed: int = 0, max_steps: int = 100_000):
    """Run ``policy(obs) -> action`` for ``episodes`` episodes; episode k is reset with ``seed + k``."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns, lengths = [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
        returns.append(total)
        lengths.append(steps)
    return Evaluation(returns, lengths)


def record_frames(env: gym.Env, policy: Policy, seed: int = 0, max_steps: int = 500) -> list[np.ndarray]:
    """The frames of one episode, reset frame first; ``env`` needs ``render_mode="rgb_array"``."""
    if env.render_mode != "rgb_array":
        raise ValueError(f"record_frames needs render_mode='rgb_array', got {env.render_mode!r}")
    obs, _ = env.reset(seed=seed)
    frames = [env.render()]
    for _ in range(max_steps):
        obs, _, terminated, truncated, _ = env.step(policy(obs))
        frames.append(env.render())
        if terminated or truncated:
            break
    return frames


def save_frames(frames: list[np.ndarray], path: str | Path, fps: int = 15, gif: bool | None = None):
    """Write ``frames`` as ``path.gif`` (by default when pillow is installed) or as PNGs in folder ``path``.

    Returns the files written.
    """
    path = Path(path)
    if gif is None:
        gif = find_spec("PIL") is not None
    if gif:
        from PIL import Image

        images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in frames]
        target = path.with_suffix(".gif")
        target.parent.mkdir(parents=True, exist_ok=True)
        images[0].save(target, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
        return [target]
    import matplotlib.image

    path.mkdir(parents=True, exist_ok=True)
    written = []
    for i, frame in enumerate(frames):
        target = path / f"frame_{i:04d}.png"
        matplotlib.image.imsave(target, np.asarray(frame, dtype=np.uint8))
        written.append(target)
    return written
