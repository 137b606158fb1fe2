"""Two tiny environments with known optimal returns, for testing agents in seconds.

    papers/Identity-v0   observe a symbol in {0..n-1}, reward 1 for repeating it; optimal return = length
    papers/Corridor-v0   walk right along a corridor of `length` cells; reward 1 only at the far end,
                         optimal return 1 in length - 1 steps (registered with a 24-step limit)

Both are seeded through ``reset(seed=...)``, deterministic given the seed, and picklable.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

IDENTITY_ID = "papers/Identity-v0"
CORRIDOR_ID = "papers/Corridor-v0"


class IdentityEnv(gym.Env):
    """Each step shows a random symbol; the reward is 1 when the action equals it.

    The episode terminates after ``length`` steps, so a perfect policy returns ``length``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, size: int = 4, length: int = 8, render_mode: str | None = None):
        if size < 2 or length < 1:
            raise ValueError(f"IdentityEnv needs size >= 2 and length >= 1, got size={size}, length={length}")
        self.size, self.length, self.render_mode = size, length, render_mode
        self.observation_space = spaces.Discrete(size)
        self.action_space = spaces.Discrete(size)
        self._symbol, self._steps = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._symbol, self._steps = int(self.np_random.integers(self.size)), 0
        return self._symbol, {}

    def step(self, action):
        reward = float(int(action) == self._symbol)
        self._steps += 1
        self._symbol = int(self.np_random.integers(self.size))
        return self._symbol, reward, self._steps >= self.length, False, {}

    def render(self):
        """A grey bar per symbol, the current one white."""
        frame = np.full((16, 16 * self.size, 3), 64, dtype=np.uint8)
        frame[:, 16 * self._symbol : 16 * (self._symbol + 1)] = 255
        return frame


class CorridorEnv(gym.Env):
    """Start in cell 0 of ``length`` cells; action 0 steps left, 1 steps right; reward 1 at the last cell."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, length: int = 6, render_mode: str | None = None):
        if length < 2:
            raise ValueError(f"CorridorEnv needs length >= 2, got {length}")
        self.length, self.render_mode = length, render_mode
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)
        self._position = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._position = 0
        return self._position, {}

    def step(self, action):
        move = 1 if int(action) == 1 else -1
        self._position = int(np.clip(self._position + move, 0, self.length - 1))
        at_goal = self._position == self.length - 1
        return self._position, float(at_goal), at_goal, False, {}

    def render(self):
        """The corridor as grey cells, the agent white and the goal green."""
        frame = np.full((16, 16 * self.length, 3), 64, dtype=np.uint8)
        frame[:, -16:] = (0, 160, 0)
        frame[:, 16 * self._position : 16 * (self._position + 1)] = 255
        return frame


def register_testing_envs() -> None:
    """Register ``papers/Identity-v0`` and ``papers/Corridor-v0`` with gymnasium (idempotent)."""
    if IDENTITY_ID not in gym.registry:
        gym.register(IDENTITY_ID, entry_point=f"{__name__}:IdentityEnv")
    if CORRIDOR_ID not in gym.registry:
        gym.register(CORRIDOR_ID, entry_point=f"{__name__}:CorridorEnv", max_episode_steps=24)
