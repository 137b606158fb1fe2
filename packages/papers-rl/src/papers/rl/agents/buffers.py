"""A uniform replay buffer for off-policy agents: fixed capacity, numpy storage, seeded sampling.

Bootstrapping: a TD target is y = r + gamma * (1 - terminated) * max_a Q(s', a). Store ``terminated``
(the MDP ended) and not ``terminated or truncated``: a time-limit cut still has a future worth
bootstrapping from, so its ``next_obs`` must be the true last observation (see
``envs.final_observations``) and its flag 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class ReplayBatch(NamedTuple):
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray

    def to_torch(self, device="cpu") -> ReplayBatch:
        """The same batch as torch tensors on ``device`` (rewards and flags as float32)."""
        import torch

        return ReplayBatch(
            torch.as_tensor(self.obs, device=device),
            torch.as_tensor(self.actions, device=device),
            torch.as_tensor(self.rewards, dtype=torch.float32, device=device),
            torch.as_tensor(self.next_obs, device=device),
            torch.as_tensor(self.terminated, dtype=torch.float32, device=device),
        )


class ReplayBuffer:
    """The last ``capacity`` transitions; :meth:`add` takes one vector-env step (a leading ``num_envs`` axis).

    When full, the oldest transitions are overwritten first. :meth:`sample` draws uniformly with
    replacement from a generator seeded with ``seed``.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype=np.float32,
        action_shape: tuple[int, ...] = (),
        action_dtype=np.int64,
        seed: int = 0,
    ):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros((capacity, *action_shape), dtype=action_dtype)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.bool_)
        self.position = 0  # where the next transition goes
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Store a batch; ``next_obs`` are the true last observations, ``terminated`` excludes truncation."""
        count = len(rewards)
        slots = (self.position + np.arange(count)) % self.capacity
        self.obs[slots] = obs
        self.actions[slots] = actions
        self.rewards[slots] = rewards
        self.next_obs[slots] = next_obs
        self.terminated[slots] = terminated
        self.position = int((self.position + count) % self.capacity)
        self.size = min(self.size + count, self.capacity)

    def sample(self, batch_size: int) -> ReplayBatch:
        """``batch_size`` stored transitions chosen uniformly at random."""
        if self.size == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        index = self.rng.integers(0, self.size, size=batch_size)
        stored = (self.obs, self.actions, self.rewards, self.next_obs, self.terminated)
        return ReplayBatch(*(array[index] for array in stored))


class FrameStackReplayBuffer:
    """A replay buffer for frame-stacked observations that stores each frame once.

    An observation is ``stack`` frames along axis 0 (Atari: 4 x 84 x 84), and ``s'[:-1] == s[1:]``, so
    storing both stacks of every transition keeps each frame 2 * stack times. Here each sub-env has a
    ring of frames: a transition keeps the position p of its observation's newest frame, and

        s  = frames[p - stack + 1 .. p],        s' = frames[p - stack + 2 .. p + 1].

    :meth:`add` appends one frame per step (s'[-1]) and all ``stack`` frames of s when s does not continue
    the sub-env's previous s' (after a reset). Memory is about 1/(2 * stack) of :class:`ReplayBuffer`'s
    (Atari, 1M transitions: ~7.8 GB instead of 56 GB). ``capacity`` counts transitions over all sub-envs;
    the frame rings keep ``frame_margin`` more frames for the extra frames of episode starts, and a
    transition whose frames were overwritten is never sampled.
    """

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        num_envs: int,
        obs_dtype=np.uint8,
        frame_margin: float = 0.1,
        seed: int = 0,
    ):
        if capacity < 1 or num_envs < 1:
            raise ValueError(f"capacity and num_envs must be >= 1, got {capacity} and {num_envs}")
        if len(obs_shape) < 2:
            raise ValueError(f"observations must be frame stacks (stack, ...), got shape {obs_shape}")
        self.stack, self.num_envs = obs_shape[0], num_envs
        self.per_env = -(-capacity // num_envs)
        self.ring = self.per_env + self.stack + 1 + int(frame_margin * self.per_env)
        self.frames = np.zeros((num_envs, self.ring, *obs_shape[1:]), dtype=obs_dtype)
        self.written = np.zeros(num_envs, dtype=np.int64)  # frames ever written per sub-env
        self.newest = np.zeros((num_envs, self.per_env), dtype=np.int64)  # p of each transition
        self.actions = np.zeros((num_envs, self.per_env), dtype=np.int64)
        self.rewards = np.zeros((num_envs, self.per_env), dtype=np.float32)
        self.terminated = np.zeros((num_envs, self.per_env), dtype=np.bool_)
        self.last_next = np.zeros((num_envs, *obs_shape), dtype=obs_dtype)
        self.has_last = np.zeros(num_envs, dtype=np.bool_)
        self.position = 0
        self.filled = 0  # transitions per sub-env
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.filled * self.num_envs

    def _append(self, env: int, frames: np.ndarray) -> None:
        for frame in frames:
            self.frames[env, self.written[env] % self.ring] = frame
            self.written[env] += 1

    def add(self, obs, actions, rewards, next_obs, terminated) -> None:
        """Store one vector step (leading axis ``num_envs``); ``next_obs`` are the true last observations."""
        obs, next_obs = np.asarray(obs), np.asarray(next_obs)
        if obs.shape[0] != self.num_envs:
            raise ValueError(f"expected {self.num_envs} sub-envs, got a batch of {obs.shape[0]}")
        for env in range(self.num_envs):
            if not np.array_equal(next_obs[env][:-1], obs[env][1:]):
                raise ValueError("observations are not frame stacks: s'[:-1] differs from s[1:] along axis 0")
            if not (self.has_last[env] and np.array_equal(obs[env], self.last_next[env])):
                self._append(env, obs[env])  # a new episode: all its frames
            self.newest[env, self.position] = self.written[env] - 1
            self._append(env, next_obs[env][-1:])
            self.last_next[env] = next_obs[env]
            self.has_last[env] = True
        self.actions[:, self.position] = actions
        self.rewards[:, self.position] = rewards
        self.terminated[:, self.position] = terminated
        self.position = (self.position + 1) % self.per_env
        self.filled = min(self.filled + 1, self.per_env)

    def _valid(self, envs: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Are all stack frames of s still in the ring?"""
        oldest = self.newest[envs, slots] - self.stack + 1
        return oldest >= self.written[envs] - self.ring

    def transitions(self, envs: np.ndarray, slots: np.ndarray) -> ReplayBatch:
        """The stored transitions at (sub-env, slot) pairs, stacks rebuilt from the frame rings."""
        envs, slots = np.asarray(envs), np.asarray(slots)
        offsets = np.arange(-self.stack + 1, 1)
        frame_index = (self.newest[envs, slots][:, None] + offsets) % self.ring
        rows = envs[:, None]
        return ReplayBatch(
            self.frames[rows, frame_index],
            self.actions[envs, slots],
            self.rewards[envs, slots],
            self.frames[rows, (frame_index + 1) % self.ring],
            self.terminated[envs, slots],
        )

    def sample(self, batch_size: int) -> ReplayBatch:
        """``batch_size`` stored transitions chosen uniformly at random among those whose frames remain."""
        if self.filled == 0:
            raise ValueError("cannot sample from an empty replay buffer")
        envs = np.empty(0, dtype=np.int64)
        slots = np.empty(0, dtype=np.int64)
        while len(envs) < batch_size:
            flat = self.rng.integers(0, self.filled * self.num_envs, size=batch_size - len(envs))
            e, s = flat // self.filled, flat % self.filled
            keep = self._valid(e, s)
            envs, slots = np.concatenate([envs, e[keep]]), np.concatenate([slots, s[keep]])
        return self.transitions(envs, slots)
