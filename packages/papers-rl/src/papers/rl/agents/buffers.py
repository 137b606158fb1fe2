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
