"""Environments for agents: one seeded constructor for single and vector envs, and observation wrappers.

    make_env("CartPole-v1")                                    one env, our test envs registered on demand
    envs = make_vector_env("CartPole-v1", num_envs=8, seed=1)  Sync/AsyncVectorEnv + RecordEpisodeStatistics
    obs, _ = envs.reset(seed=1)                                sub-env i is reset with seed 1 + i
    make_atari_vector_env("ALE/Pong-v5", 8, seed=1)            AtariPreprocessing + 4-frame stack: (4, 84, 84)
    make_atari_vector_env(..., lives=True)                     + FIRE at reset, info["life_lost"] (AtariLives)
    make_env("MiniGrid-Empty-5x5-v0", wrappers=minigrid_wrappers(one_hot=True))

Vector envs autoreset in the same step (gymnasium's ``SAME_STEP``): the observation returned for a finished
sub-env is already the first one of its next episode, and the last one is in ``infos["final_obs"]``;
:func:`final_observations` puts it back, which a replay buffer needs to bootstrap a time-limit cut.
Finished episodes report ``infos["episode"]["r"]`` and ``["l"]`` where ``infos["_episode"]`` is true.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from importlib import import_module

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from papers.core.errors import PapersError

Wrapper = Callable[[gym.Env], gym.Env]

# (id prefix, module whose import registers those ids, the install hint when it is missing)
_ID_PROVIDERS = (
    ("ALE/", "ale_py", "pip install 'papers-rl[atari]'"),
    ("MiniGrid-", "minigrid", "pip install minigrid"),
    ("BabyAI-", "minigrid", "pip install minigrid"),
)


def make_env(env_id: str, wrappers: Sequence[Wrapper] = (), **make_kwargs) -> gym.Env:
    """``gym.make(env_id, **make_kwargs)`` with each of ``wrappers`` applied in order."""
    _ensure_registered(env_id)
    env = gym.make(env_id, **make_kwargs)
    for wrap in wrappers:
        env = wrap(env)
    return env


def make_vector_env(
    env_id: str,
    num_envs: int,
    seed: int,
    async_: bool = False,
    wrappers: Sequence[Wrapper] = (),
    **make_kwargs,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``make_env(env_id, wrappers, **make_kwargs)`` with episode statistics.

    The action spaces are seeded from ``seed`` here (``envs.action_space.sample()`` is repeatable);
    reset with ``envs.reset(seed=seed)`` to seed the sub-envs themselves (sub-env i gets ``seed + i``).
    ``async_=True`` steps each sub-env in its own process; wrappers must then pickle (classes,
    ``functools.partial``, module-level functions).
    """
    if num_envs < 1:
        raise PapersError(f"num_envs must be >= 1, got {num_envs}")
    _ensure_registered(env_id)
    thunks = [partial(make_env, env_id, tuple(wrappers), **make_kwargs) for _ in range(num_envs)]
    vector_cls = AsyncVectorEnv if async_ else SyncVectorEnv
    envs = RecordEpisodeStatistics(vector_cls(thunks, autoreset_mode=AutoresetMode.SAME_STEP))
    envs.action_space.seed(seed)
    envs.single_action_space.seed(seed)
    return envs


def final_observations(next_obs: np.ndarray, infos: dict) -> np.ndarray:
    """``next_obs`` with each sub-env that just finished given its true last observation, not the reset."""
    if "_final_obs" not in infos:
        return next_obs
    real = np.array(next_obs, copy=True)
    for i in np.flatnonzero(infos["_final_obs"]):
        real[i] = infos["final_obs"][i]
    return real


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """``(return, length)`` of every episode that ended in this vector step."""
    if "_episode" not in infos:
        return []
    done = np.flatnonzero(infos["_episode"])
    return [(float(infos["episode"]["r"][i]), int(infos["episode"]["l"][i])) for i in done]


# ---- Atari ----------------------------------------------------------------------------------------------


class AtariLives(gym.Wrapper):
    """Fire at reset, and mark life loss as the end of a training episode without resetting the game.

    At reset (and after a lost life) it presses FIRE when the game has it, so Breakout's ball is launched.
    ``info["life_lost"]`` is True on a step that lost a life: the agent stores it as ``terminated`` for the
    TD target (the Nature setup) while the episode, its return and its reset stay those of the whole game.
    Goes between ``AtariPreprocessing`` and the frame stack.
    """

    def __init__(self, env: gym.Env, fire: bool = True):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        self.fire_action = meanings.index("FIRE") if fire and "FIRE" in meanings else None
        self.lives = 0

    def _ale_lives(self) -> int:
        return int(self.env.unwrapped.ale.lives())

    def _fire(self, obs, info):
        reward, terminated, truncated = 0.0, False, False
        if self.fire_action is not None:
            obs, reward, terminated, truncated, info = self.env.step(self.fire_action)
        return obs, float(reward), terminated, truncated, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self._fire(obs, info)
        if terminated or truncated:
            obs, info = self.env.reset(**kwargs)
        self.lives = self._ale_lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self._ale_lives()
        lost = lives < self.lives
        self.lives = lives
        info = dict(info, life_lost=bool(lost))
        if lost and not (terminated or truncated):
            obs, extra, terminated, truncated, fire_info = self._fire(obs, info)
            reward = float(reward) + extra
            info = dict(fire_info, life_lost=True)
            self.lives = self._ale_lives()
        return obs, reward, terminated, truncated, info


def atari_wrappers(
    frame_stack: int = 4,
    noop_max: int = 30,
    terminal_on_life_loss: bool = False,
    lives: bool = False,
    fire: bool = True,
) -> list:
    """The usual DQN preprocessing: up to ``noop_max`` no-ops at reset, 4-frame max-pooled skip, 84x84 grey,
    then the last ``frame_stack`` frames stacked to ``(frame_stack, 84, 84)`` uint8. ``lives=True`` adds
    :class:`AtariLives` before the stack (FIRE at reset when ``fire``, ``info["life_lost"]`` on a lost life).
    Rewards are left as the game gives them (episode statistics report the real score); a learner that
    clips them does so on its side.

    The env must be made with ``frameskip=1`` (``AtariPreprocessing`` does the skipping).
    """
    preprocess = partial(
        gym.wrappers.AtariPreprocessing,
        noop_max=noop_max,
        frame_skip=4,
        screen_size=84,
        terminal_on_life_loss=terminal_on_life_loss,
        grayscale_obs=True,
    )
    stack = partial(gym.wrappers.FrameStackObservation, stack_size=frame_stack)
    return [preprocess, partial(AtariLives, fire=fire), stack] if lives else [preprocess, stack]


def make_atari_vector_env(
    env_id: str,
    num_envs: int,
    seed: int,
    async_: bool = False,
    frame_stack: int = 4,
    lives: bool = False,
    fire: bool = True,
    **make_kwargs,
) -> gym.vector.VectorEnv:
    """An ALE v5 vector env (``frameskip=1``) with :func:`atari_wrappers`."""
    wrappers = atari_wrappers(frame_stack, lives=lives, fire=fire)
    return make_vector_env(env_id, num_envs, seed, async_, wrappers=wrappers, frameskip=1, **make_kwargs)


# ---- MiniGrid -------------------------------------------------------------------------------------------


class MiniGridOneHot(gym.ObservationWrapper):
    """One-hot encoding of a MiniGrid image (H, W, 3) of (object, colour, state) indices.

    Each cell becomes ``n_objects + n_colours + n_states`` zeros and ones (11 + 6 + 3 = 20 in MiniGrid),
    as channels ``(20, H, W)`` for a conv net or ``flatten=True`` as a vector of ``H * W * 20``.
    Wraps either the raw dict observation (its ``"image"`` is used) or an ``ImgObsWrapper`` env.
    """

    def __init__(self, env: gym.Env, flatten: bool = False):
        super().__init__(env)
        from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

        space = env.observation_space
        self._from_dict = isinstance(space, spaces.Dict)
        image_space = space["image"] if self._from_dict else space
        if not isinstance(image_space, spaces.Box) or image_space.shape[-1:] != (3,):
            raise PapersError(f"MiniGridOneHot needs a (H, W, 3) MiniGrid image, got {image_space}")
        self.flatten = flatten
        self.depths = (len(OBJECT_TO_IDX), len(COLOR_TO_IDX), len(STATE_TO_IDX))
        height, width, _ = image_space.shape
        shape = (height * width * sum(self.depths),) if flatten else (sum(self.depths), height, width)
        self.observation_space = spaces.Box(0, 1, shape, dtype=np.uint8)

    def observation(self, observation):
        image = observation["image"] if self._from_dict else observation
        parts = [np.eye(depth, dtype=np.uint8)[image[..., k]] for k, depth in enumerate(self.depths)]
        cells = np.concatenate(parts, axis=-1)  # (H, W, 20)
        return cells.reshape(-1) if self.flatten else np.ascontiguousarray(cells.transpose(2, 0, 1))


def minigrid_wrappers(one_hot: bool = False, flatten: bool = False) -> list:
    """``ImgObsWrapper`` (the (7, 7, 3) egocentric image) and, with ``one_hot``, :class:`MiniGridOneHot`."""
    from minigrid.wrappers import ImgObsWrapper

    wrappers: list = [ImgObsWrapper]
    if one_hot:
        wrappers.append(partial(MiniGridOneHot, flatten=flatten))
    return wrappers


# ---- registration ---------------------------------------------------------------------------------------


def _ensure_registered(env_id: str) -> None:
    """Register the ids ``env_id`` needs (ours, ALE, MiniGrid), or fail with one line if it is unknown."""
    if env_id.startswith("papers/"):
        from papers.rl.agents.testing_envs import register_testing_envs

        register_testing_envs()
    for prefix, module, hint in _ID_PROVIDERS:
        if env_id.startswith(prefix):
            try:
                provider = import_module(module)
            except ImportError:
                raise PapersError(f"environment {env_id!r} needs {module}: {hint}") from None
            if module == "ale_py":
                gym.register_envs(provider)
    try:
        gym.spec(env_id)
    except gym.error.Error as err:
        raise PapersError(f"unknown environment {env_id!r}: {err}") from None
