"""Proximal Policy Optimization Algorithms.

John Schulman, Filip Wolski, Prafulla Dhariwal, Alec Radford, Oleg Klimov. *Proximal Policy
Optimization Algorithms*. 2017. arXiv:1707.06347. Not a catalogue row (catalogue ids: none): the
reference on-policy agent later RL papers build on.

With the probability ratio r_t(θ) = π_θ(a_t|s_t) / π_θold(a_t|s_t) and an advantage estimate Â_t,
the clipped surrogate objective (eq. 7) is

    L^CLIP(θ) = Ê_t[ min( r_t(θ) Â_t,  clip(r_t(θ), 1 − ε, 1 + ε) Â_t ) ]

and with a value function sharing the optimisation and an entropy bonus (eq. 9)

    L^{CLIP+VF+S}(θ) = Ê_t[ L^CLIP_t(θ) − c1 L^VF_t(θ) + c2 S[π_θ](s_t) ],
    L^VF_t = (V_θ(s_t) − V_t^targ)²   (here clipped as in the reference code:
             ½ max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²)).

Advantages are truncated generalised advantage estimates over T-step rollouts of N actors (eq. 11–12):

    δ_t = r_t + γ V(s_{t+1}) − V(s_t),      Â_t = δ_t + (γλ) δ_{t+1} + … + (γλ)^{T−t−1} δ_{T−1},

cut at episode ends; a time-limit truncation adds γ V(s_final) to the last reward instead of ending
the return. Each iteration collects N·T steps and runs K epochs of minibatch Adam on −L (advantages
normalised per minibatch, gradient norm clipped to 0.5, learning rate annealed linearly to 0).

    from papers.rl.ppo import ppo_loss, train_ppo, PPOSettings, make_agent
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

PAPER = Paper(
    "Proximal Policy Optimization Algorithms",
    "John Schulman, Filip Wolski, Prafulla Dhariwal, Alec Radford, Oleg Klimov",
    2017,
    venue="arXiv",
    arxiv="1707.06347",
    catalog_ids=(),
)

EXPERIMENT = Experiment(
    id="ppo",
    papers=PAPER,
    claim=(
        "PPO with the clipped surrogate objective solves CartPole-v1 (average evaluation return >= 475; "
        "the single-file reference reports 490 +- 6 at 500k steps), and clipping does at least as well as "
        "the unclipped surrogate at equal steps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "CartPole-v1, 8 envs, 164k steps, CleanRL hyperparameters: clipped PPO vs the unclipped surrogate "
        "(same seed), greedy evaluations every 16k steps; full preset: Pong with NatureCNN, 10M steps."
    ),
)

MINIGRID_EXPERIMENT = Experiment(
    id="ppo-minigrid",
    papers=PAPER,
    claim="PPO reaches a high evaluation success rate (>= 0.9) on MiniGrid DoorKey-5x5.",
    module=f"{__name__}.minigrid",
    summary=(
        "MiniGrid-DoorKey-5x5, one-hot egocentric view into tanh MLPs, 8 envs, 82k steps; success rate of "
        "sampled-action evaluations against the untrained policy."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "NatureCNNActorCritic": "model",
        "PPOSettings": "model",
        "act": "model",
        "bootstrap_truncated": "model",
        "lr_at": "model",
        "make_agent": "model",
        "observation_encoder": "model",
        "policy_function": "model",
        "ppo_loss": "model",
        "train_ppo": "model",
    },
)
