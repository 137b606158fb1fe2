"""A continuous 2-D point mass in a walled square arena, generated in code (no assets).

    state  s = (x, y) in [-bound, bound]^2, every episode starts at the origin
    action a in [-1, 1]^2  (clipped), one step moves by max_step * a and stops at the walls:
           s' = clip(s + max_step * clip(a, -1, 1), -bound, bound)
    reward 0 (DIAYN needs none); optional sparse goal: reward 1 and termination when |s' - goal| <= radius
    length max_steps steps, then truncation (not termination: the future is still worth bootstrapping)

:class:`PointMassEnv` is the gymnasium env (it passes ``gymnasium.utils.env_checker.check_env``);
:class:`BatchPointMass` steps many copies at once in numpy with the same :func:`point_mass_step`, which is
what the agents train on (a gymnasium vector env of this env would only add Python overhead).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def point_mass_step(positions: np.ndarray, actions: np.ndarray, max_step: float, bound: float) -> np.ndarray:
    """s' = clip(s + max_step * clip(a, -1, 1), -bound, bound), for one (2,) or a batch (n, 2) of states."""
    positions, actions = np.asarray(positions, dtype=np.float32), np.asarray(actions, dtype=np.float32)
    if positions.shape[-1:] != (2,) or actions.shape != positions.shape:
        raise ValueError(
            f"positions and actions must both be (..., 2) of one shape, got {positions.shape}, "
            f"{actions.shape}"
        )
    moved = positions + max_step * np.clip(actions, -1.0, 1.0)
    return np.clip(moved, -bound, bound).astype(np.float32)


def _check_arena(max_step: float, bound: float, max_steps: int, goal, goal_radius: float) -> None:
    if not bound > 0 or not 0 < max_step <= bound:
        raise ValueError(f"need bound > 0 and 0 < max_step <= bound, got bound={bound}, max_step={max_step}")
    if max_steps < 1:
        raise ValueError(f"max_steps must be >= 1, got {max_steps}")
    if goal is not None:
        goal = np.asarray(goal, dtype=np.float32)
        if goal.shape != (2,) or np.any(np.abs(goal) > bound):
            raise ValueError(f"goal must be a point (x, y) inside the arena, got {goal.tolist()}")
        if not goal_radius > 0:
            raise ValueError(f"goal_radius must be > 0, got {goal_radius}")


class PointMassEnv(gym.Env):
    """One point mass; ``goal=None`` gives the reward-free arena DIAYN explores."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        max_step: float = 0.1,
        bound: float = 1.0,
        max_steps: int = 50,
        goal: tuple[float, float] | None = None,
        goal_radius: float = 0.15,
        render_mode: str | None = None,
    ):
        _check_arena(max_step, bound, max_steps, goal, goal_radius)
        self.max_step, self.bound, self.max_steps = float(max_step), float(bound), int(max_steps)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float32)
        self.goal_radius = float(goal_radius)
        self.render_mode = render_mode
        self.observation_space = spaces.Box(-self.bound, self.bound, (2,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), dtype=np.float32)
        self._position = np.zeros(2, dtype=np.float32)
        self._steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = np.zeros(2, dtype=np.float32)
        self._steps = 0
        return self._position.copy(), {}

    def step(self, action):
        self._position = point_mass_step(self._position, np.asarray(action, dtype=np.float32).reshape(2),
                                         self.max_step, self.bound)  # fmt: skip
        self._steps += 1
        reward, terminated = 0.0, False
        if self.goal is not None and np.linalg.norm(self._position - self.goal) <= self.goal_radius:
            reward, terminated = 1.0, True
        truncated = not terminated and self._steps >= self.max_steps
        return self._position.copy(), reward, terminated, truncated, {}

    def render(self):
        """A 64x64 image: the arena grey, the goal green, the point white."""
        size = 64
        frame = np.full((size, size, 3), 48, dtype=np.uint8)

        def pixel(point):
            scaled = (np.asarray(point) / self.bound + 1.0) / 2.0 * (size - 1)
            return int(round(size - 1 - scaled[1])), int(round(scaled[0]))

        if self.goal is not None:
            row, col = pixel(self.goal)
            frame[max(row - 2, 0) : row + 3, max(col - 2, 0) : col + 3] = (0, 170, 0)
        row, col = pixel(self._position)
        frame[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2] = 255
        return frame


class BatchPointMass:
    """``n`` independent point masses stepped together; each one resets to the origin when its episode ends.

    ``step`` returns ``(next_obs, rewards, terminated, truncated, final_obs)``: ``next_obs`` already holds
    the first observation of the next episode where one ended, ``final_obs`` the true last observation.
    """

    def __init__(
        self,
        n: int,
        max_step: float = 0.1,
        bound: float = 1.0,
        max_steps: int = 50,
        goal: tuple[float, float] | None = None,
        goal_radius: float = 0.15,
    ):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        _check_arena(max_step, bound, max_steps, goal, goal_radius)
        self.n, self.max_step, self.bound, self.max_steps = n, float(max_step), float(bound), int(max_steps)
        self.goal = None if goal is None else np.asarray(goal, dtype=np.float32)
        self.goal_radius = float(goal_radius)
        self.positions = np.zeros((n, 2), dtype=np.float32)
        self.steps = np.zeros(n, dtype=np.int64)

    def reset(self) -> np.ndarray:
        self.positions[:] = 0.0
        self.steps[:] = 0
        return self.positions.copy()

    def step(self, actions: np.ndarray):
        final = point_mass_step(self.positions, actions, self.max_step, self.bound)
        self.steps += 1
        rewards = np.zeros(self.n, dtype=np.float32)
        terminated = np.zeros(self.n, dtype=bool)
        if self.goal is not None:
            terminated = np.linalg.norm(final - self.goal, axis=1) <= self.goal_radius
            rewards = terminated.astype(np.float32)
        truncated = ~terminated & (self.steps >= self.max_steps)
        done = terminated | truncated
        self.positions = np.where(done[:, None], 0.0, final).astype(np.float32)
        self.steps[done] = 0
        return self.positions.copy(), rewards, terminated, truncated, final
