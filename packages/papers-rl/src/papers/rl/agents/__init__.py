"""The pieces agents are built from: environments, evaluation, replay, advantages, networks, schedules.

    envs          make_env / make_vector_env (seeded Sync/AsyncVectorEnv with episode statistics),
                  Atari preprocessing, frame stack and FIRE/life handling,
                  MiniGrid image and one-hot observations
    evaluation    returns and lengths of a policy over N episodes; frames of an episode as GIF or PNGs
    buffers       uniform replay buffer, numpy storage, seeded sampling, ``terminated`` kept apart;
                  a frame-stack buffer that stores each Atari frame once
    gae           generalised advantage estimation for a (T, num_envs) rollout
    nets          orthogonal ``layer_init``, categorical actor-critic and Q-network MLPs, the Nature CNN trunk
    schedules     linear and exponential schedules for epsilon and learning rates
    testing_envs  papers/Identity-v0 and papers/Corridor-v0, tiny envs with known optimal returns

Names are imported on first use: importing this package imports neither gymnasium nor torch.
"""

from papers.core.lazy import lazy_exports

_MODULE_OF = {
    "envs": (
        "AtariLives", "MiniGridOneHot", "atari_wrappers", "final_observations", "finished_episodes",
        "make_atari_vector_env", "make_env", "make_vector_env", "minigrid_wrappers",
    ),
    "evaluation": ("Evaluation", "evaluate", "record_frames", "save_frames"),
    "buffers": ("FrameStackReplayBuffer", "ReplayBatch", "ReplayBuffer"),
    "gae": ("compute_gae",),
    "nets": ("CategoricalActorCritic", "QNetwork", "as_policy", "layer_init", "mlp", "nature_cnn"),
    "schedules": ("exponential_schedule", "linear_schedule"),
    "testing_envs": ("CORRIDOR_ID", "IDENTITY_ID", "CorridorEnv", "IdentityEnv", "register_testing_envs"),
}  # fmt: skip

__getattr__, __all__ = lazy_exports(
    __name__, {name: module for module, names in _MODULE_OF.items() for name in names}
)
