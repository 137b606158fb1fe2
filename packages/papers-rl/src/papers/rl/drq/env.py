"""A grid world seen only through pixels, with a new layout and goal every episode (a toy benchmark).

An ``n x n`` board (default 8) whose outer ring is wall; inside it ``n_walls`` random wall cells, the
agent and the goal are placed at random at every reset, always with a free path from agent to goal.
The observation is an RGB image, ``cell`` pixels per board cell (default 4, so 3 x 32 x 32, uint8):

    floor black, wall grey (128), agent red (255, 0, 0), goal green (0, 255, 0)

Actions 0..3 move up, down, left, right; a move into a wall stays put. Reaching the goal terminates the
episode with reward ``1 - 0.9 * t / max_steps`` (t = steps taken, MiniGrid's convention); every other
step gives 0; after ``max_steps`` steps the episode is truncated. Since the layout changes every episode,
the agent must read the positions from the image: no fixed action sequence works.
"""

from __future__ import annotations

from collections import deque

import gymnasium as gym
import numpy as np
from gymnasium import spaces

FLOOR, WALL, AGENT, GOAL = (0, 0, 0), (128, 128, 128), (255, 0, 0), (0, 255, 0)
MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))  # up, down, left, right as (row, column) steps


class PixelGridWorld(gym.Env):
    """Navigate to a randomly placed goal on a randomly walled board, observed as an RGB image."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        size: int = 8,
        cell: int = 4,
        n_walls: int = 3,
        max_steps: int = 30,
        render_mode: str | None = None,
    ):
        if size < 4:
            raise ValueError(f"size must be >= 4 (an outer wall ring and a 2 x 2 inside), got {size}")
        if cell < 1:
            raise ValueError(f"cell must be >= 1 pixel, got {cell}")
        if not 0 <= n_walls <= (size - 2) ** 2 - 2:
            raise ValueError(f"n_walls must be in [0, {(size - 2) ** 2 - 2}] for size {size}, got {n_walls}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size, self.cell, self.n_walls, self.max_steps = size, cell, n_walls, max_steps
        self.render_mode = render_mode
        pixels = size * cell
        self.observation_space = spaces.Box(0, 255, shape=(3, pixels, pixels), dtype=np.uint8)
        self.action_space = spaces.Discrete(4)
        self.walls = np.zeros((size, size), dtype=bool)
        self.agent = (1, 1)
        self.goal = (1, 2)
        self.steps = 0

    # ---- layout ---------------------------------------------------------------------------------------

    def _reachable(self, start: tuple[int, int]) -> np.ndarray:
        seen = np.zeros_like(self.walls)
        seen[start] = True
        queue = deque([start])
        while queue:
            r, c = queue.popleft()
            for dr, dc in MOVES:
                nxt = (r + dr, c + dc)
                if not self.walls[nxt] and not seen[nxt]:
                    seen[nxt] = True
                    queue.append(nxt)
        return seen

    def _new_layout(self) -> None:
        inside = [(r, c) for r in range(1, self.size - 1) for c in range(1, self.size - 1)]
        while True:
            self.walls = np.zeros((self.size, self.size), dtype=bool)
            self.walls[[0, -1], :] = True
            self.walls[:, [0, -1]] = True
            cells = self.np_random.permutation(len(inside))
            for i in cells[: self.n_walls]:
                self.walls[inside[i]] = True
            self.agent = inside[cells[self.n_walls]]
            self.goal = inside[cells[self.n_walls + 1]]
            if self._reachable(self.agent)[self.goal]:
                return

    # ---- gymnasium API --------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._new_layout()
        self.steps = 0
        return self._observation(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be in 0..3, got {action!r}")
        dr, dc = MOVES[int(action)]
        nxt = (self.agent[0] + dr, self.agent[1] + dc)
        if not self.walls[nxt]:
            self.agent = nxt
        self.steps += 1
        terminated = self.agent == self.goal
        reward = 1.0 - 0.9 * self.steps / self.max_steps if terminated else 0.0
        truncated = not terminated and self.steps >= self.max_steps
        return self._observation(), float(reward), terminated, truncated, {}

    def _board(self) -> np.ndarray:
        """The (size, size, 3) colours of the cells."""
        board = np.zeros((self.size, self.size, 3), dtype=np.uint8)
        board[self.walls] = WALL
        board[self.goal] = GOAL
        board[self.agent] = AGENT
        return board

    def _observation(self) -> np.ndarray:
        image = self._board().repeat(self.cell, axis=0).repeat(self.cell, axis=1)
        return np.ascontiguousarray(image.transpose(2, 0, 1))

    def render(self):
        if self.render_mode == "rgb_array":
            return self._observation().transpose(1, 2, 0)
        return None

    def shortest_path(self) -> int:
        """Moves an optimal agent needs from the current state (breadth-first search)."""
        dist = {self.agent: 0}
        queue = deque([self.agent])
        while queue:
            r, c = queue.popleft()
            if (r, c) == self.goal:
                return dist[(r, c)]
            for dr, dc in MOVES:
                nxt = (r + dr, c + dc)
                if not self.walls[nxt] and nxt not in dist:
                    dist[nxt] = dist[(r, c)] + 1
                    queue.append(nxt)
        raise RuntimeError("goal unreachable")  # excluded by _new_layout
