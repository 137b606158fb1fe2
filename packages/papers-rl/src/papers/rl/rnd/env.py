"""A generated multi-room grid world with one sparse reward, and its "noisy TV" variant.

    env = MultiRoomGrid(rooms=3, room_size=4, layout_seed=0, noisy_tv=True)
    obs, info = env.reset(seed=1)             # obs = [one-hot of the agent's cell | tv_bits noise bits]

The layout is an ``rooms x rooms`` grid of square rooms (``room_size`` free cells a side) separated by
one-cell walls. ``layout_seed`` draws a random spanning tree of the rooms (randomised depth-first
search): neighbouring rooms of the tree share one doorway at a random place in their wall, the others
none, so the rooms form a maze with exactly one route between any two. The agent starts in the centre
of room (0, 0); the goal is a cell of the room farthest from it along the tree. Reaching the goal gives
reward 1 and ends the episode (the only reward); ``max_steps`` cuts it otherwise (``truncated``).

Actions: 0 up, 1 right, 2 down, 3 left; walking into a wall leaves the agent in place. The observation
is the one-hot index of the agent's free cell followed by ``tv_bits`` extra entries. In the plain world
they are always 0. With ``noisy_tv=True`` one cell of the start room is a TV: while the agent stands on
it, the extra entries are fresh independent random bits at every step (drawn from the env's seeded
``np_random``), an irreducibly unpredictable observation the agent can keep watching by pushing into a
wall. The layout, start, goal and TV cell do not depend on the reset seed, only the noise does.

Toy: a 4-action tabular-scale world instead of Atari frames (see the README).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "papers/RNDMultiRoom-v0"
MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])  # (dy, dx) of up, right, down, left


def room_tree(rooms: int, rng: np.random.Generator) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The edges of a random spanning tree of the ``rooms x rooms`` room grid (randomised DFS from (0, 0))."""
    seen, stack, edges = {(0, 0)}, [(0, 0)], []
    while stack:
        r, c = stack[-1]
        options = [(r + dr, c + dc) for dr, dc in ((-1, 0), (0, 1), (1, 0), (0, -1))]
        options = [(a, b) for a, b in options if 0 <= a < rooms and 0 <= b < rooms and (a, b) not in seen]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        seen.add(nxt)
        edges.append(((r, c), nxt))
        stack.append(nxt)
    return edges


def tree_distances(rooms: int, edges) -> dict[tuple[int, int], int]:
    """Number of doorways between room (0, 0) and every room along the tree."""
    neighbours: dict = {}
    for a, b in edges:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    dist, frontier = {(0, 0): 0}, [(0, 0)]
    while frontier:
        room = frontier.pop()
        for other in neighbours.get(room, []):
            if other not in dist:
                dist[other] = dist[room] + 1
                frontier.append(other)
    return dist


class MultiRoomGrid(gym.Env):
    """The multi-room maze (see the module docstring). ``info`` reports ``cell``, ``room`` and ``on_tv``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(
        self,
        rooms: int = 3,
        room_size: int = 4,
        layout_seed: int = 0,
        noisy_tv: bool = False,
        tv_bits: int = 8,
        max_steps: int = 200,
        render_mode: str | None = None,
    ):
        if rooms < 1 or room_size < 2:
            raise ValueError(f"need rooms >= 1 and room_size >= 2, got {rooms}, {room_size}")
        if tv_bits < 1 or max_steps < 1:
            raise ValueError(f"need tv_bits >= 1 and max_steps >= 1, got {tv_bits}, {max_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.rooms, self.room_size, self.noisy_tv = rooms, room_size, noisy_tv
        self.tv_bits, self.max_steps, self.render_mode = tv_bits, max_steps, render_mode
        side = rooms * (room_size + 1) + 1
        free = np.zeros((side, side), dtype=bool)
        for r in range(rooms):
            for c in range(rooms):
                free[self._room_slice(r, c)] = True
        rng = np.random.default_rng(layout_seed)
        edges = room_tree(rooms, rng)
        for (r1, c1), (r2, c2) in edges:
            offset = int(rng.integers(room_size))
            if r1 == r2:  # side by side: a doorway in the vertical wall between them
                free[r1 * (room_size + 1) + 1 + offset, max(c1, c2) * (room_size + 1)] = True
            else:
                free[max(r1, r2) * (room_size + 1), c1 * (room_size + 1) + 1 + offset] = True
        self.free = free
        self.cells = np.argwhere(free)  # (n_free, 2) rows of (y, x), row-major
        self.index = -np.ones(free.shape, dtype=np.int64)
        self.index[free] = np.arange(len(self.cells))
        self.room_distance = tree_distances(rooms, edges)
        half = room_size // 2
        self.start = (1 + half, 1 + half)
        far = max(self.room_distance.values())
        goal_room = min(room for room, d in self.room_distance.items() if d == far)
        gy, gx = (goal_room[0] * (room_size + 1) + 1, goal_room[1] * (room_size + 1) + 1)
        self.goal = (gy + int(rng.integers(room_size)), gx + int(rng.integers(room_size)))
        tv = self.start
        while tv == self.start or free[tv[0], tv[1] + 1]:  # start room, against its right-hand wall
            tv = (1 + int(rng.integers(room_size)), room_size)
        self.tv = tv
        self.n_cells = len(self.cells)
        self.observation_space = spaces.Box(0.0, 1.0, shape=(self.n_cells + tv_bits,), dtype=np.float32)
        self.action_space = spaces.Discrete(4)
        self._pos = self.start
        self._t = 0

    def _room_slice(self, r: int, c: int):
        s = self.room_size + 1
        return slice(r * s + 1, r * s + s), slice(c * s + 1, c * s + s)

    def room_of(self, cell: tuple[int, int]) -> int:
        """Room number r * rooms + c of a cell; a doorway belongs to the room above or to the left."""
        s = self.room_size + 1
        y, x = cell
        return min((y - 1) // s, self.rooms - 1) * self.rooms + min((x - 1) // s, self.rooms - 1)

    def room_of_index(self) -> np.ndarray:
        """The room number of every free cell index, shape (n_cells,)."""
        return np.array([self.room_of(tuple(cell)) for cell in self.cells])

    def _observation(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, dtype=np.float32)
        obs[self.index[self._pos]] = 1.0
        if self.noisy_tv and self._pos == self.tv:
            obs[self.n_cells :] = self.np_random.integers(0, 2, self.tv_bits)
        return obs

    def _info(self) -> dict:
        return {
            "cell": int(self.index[self._pos]),
            "room": self.room_of(self._pos),
            "on_tv": self._pos == self.tv,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._pos, self._t = self.start, 0
        return self._observation(), self._info()

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be one of 0..3, got {action!r}")
        dy, dx = MOVES[int(action)]
        target = (self._pos[0] + int(dy), self._pos[1] + int(dx))
        if self.free[target]:
            self._pos = target
        self._t += 1
        terminated = self._pos == self.goal
        truncated = not terminated and self._t >= self.max_steps
        return self._observation(), float(terminated), terminated, truncated, self._info()

    def grid_image(self, values: np.ndarray | None = None) -> np.ndarray:
        """A (side, side) float array: ``values`` per free cell (nan on walls), or 1 on free cells."""
        image = np.full(self.free.shape, np.nan)
        image[self.free] = 1.0 if values is None else np.asarray(values, dtype=float)
        return image

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        frame = np.where(self.free[..., None], 230, 40).astype(np.uint8).repeat(3, axis=-1)
        frame[self.goal] = (0, 170, 0)
        if self.noisy_tv:
            frame[self.tv] = (200, 0, 200)
        frame[self._pos] = (220, 30, 30)
        return frame.repeat(8, axis=0).repeat(8, axis=1)


def register_env() -> None:
    """Register ``papers/RNDMultiRoom-v0`` (idempotent); its keyword arguments go to ``gym.make``."""
    if ENV_ID not in gym.registry:
        gym.register(ENV_ID, entry_point=f"{__name__}:MultiRoomGrid")


class MultiRoomVectorEnv(gym.vector.VectorEnv):
    """``num_envs`` copies of :class:`MultiRoomGrid` stepped together in numpy (same-step autoreset).

    It behaves like ``SyncVectorEnv([MultiRoomGrid(**kwargs)] * num_envs)`` with
    ``AutoresetMode.SAME_STEP`` (a finished sub-env returns its next episode's first observation and
    puts the last one in ``infos["final_obs"]``, flagged by ``infos["_final_obs"]``), at a fraction of
    the Python cost per step. Sub-env i draws its TV noise from a generator seeded ``seed + i``.
    """

    metadata = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int, **kwargs):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.layout = MultiRoomGrid(**kwargs)
        self.num_envs = num_envs
        self.single_observation_space = self.layout.observation_space
        self.single_action_space = self.layout.action_space
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, num_envs)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, num_envs)
        layout = self.layout
        # next cell index for (cell index, action): the whole dynamics as one lookup table
        self.transitions = np.zeros((layout.n_cells, 4), dtype=np.int64)
        for i, (y, x) in enumerate(layout.cells):
            for a, (dy, dx) in enumerate(MOVES):
                ty, tx = y + dy, x + dx
                self.transitions[i, a] = layout.index[ty, tx] if layout.free[ty, tx] else i
        self.start_cell = int(layout.index[layout.start])
        self.goal_cell = int(layout.index[layout.goal])
        self.tv_cell = int(layout.index[layout.tv])
        self.cell = np.full(num_envs, self.start_cell)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self.rngs = [np.random.default_rng(i) for i in range(num_envs)]

    def _observations(self, cells: np.ndarray) -> np.ndarray:
        layout = self.layout
        obs = np.zeros((len(cells), layout.n_cells + layout.tv_bits), dtype=np.float32)
        obs[np.arange(len(cells)), cells] = 1.0
        if layout.noisy_tv:
            for i in np.flatnonzero(cells == self.tv_cell):
                obs[i, layout.n_cells :] = self.rngs[i].integers(0, 2, layout.tv_bits)
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.rngs = [np.random.default_rng(seed + i) for i in range(self.num_envs)]
        self.cell[:] = self.start_cell
        self.t[:] = 0
        return self._observations(self.cell), {}

    def step(self, actions):
        actions = np.asarray(actions, dtype=np.int64)
        if actions.shape != (self.num_envs,) or actions.min() < 0 or actions.max() > 3:
            raise ValueError(f"actions must be {self.num_envs} integers in 0..3, got {actions!r}")
        self.cell = self.transitions[self.cell, actions]
        self.t += 1
        terminated = self.cell == self.goal_cell
        truncated = ~terminated & (self.t >= self.layout.max_steps)
        obs = self._observations(self.cell)
        infos: dict = {}
        done = terminated | truncated
        if done.any():
            infos["final_obs"] = np.array([obs[i] if d else None for i, d in enumerate(done)], dtype=object)
            infos["_final_obs"] = done.copy()
            self.cell[done] = self.start_cell
            self.t[done] = 0
            obs[done] = self._observations(self.cell[done])
        return obs, terminated.astype(np.float64), terminated, truncated, infos


def make_vector_env(num_envs: int, seed: int, **kwargs):
    """:class:`MultiRoomVectorEnv` with episode statistics (``infos["episode"]``), action space seeded."""
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    envs = RecordEpisodeStatistics(MultiRoomVectorEnv(num_envs, **kwargs))
    envs.action_space.seed(seed)
    return envs
