"""Learning Robust Rewards with Adversarial Inverse Reinforcement Learning.

Justin Fu, Katie Luo, Sergey Levine. *Learning Robust Rewards with Adversarial Inverse Reinforcement
Learning*. ICLR 2018. arXiv:1710.11248. Catalogue id 001:85:1.

AIRL's discriminator compares a learned f with the current policy (Eq. 5 and Sec. 5):

    D(s, a, s') = exp f(s, a, s') / (exp f(s, a, s') + π(a|s)),    f(s, a, s') = g(s) + γ h(s') − h(s)

with a state-only reward approximator g and a shaping potential h. It is trained as a binary
classifier of expert (label 1) against policy transitions,

    L_D = −E_expert[log D] − E_π[log(1 − D)],

and the policy maximises the reward  log D − log(1 − D) = f(s, a, s') − log π(a|s),  i.e. f with an
entropy bonus of weight 1 (soft, entropy-regularised RL). At the optimum f* = log π_E = A*(s, a); with
deterministic dynamics (and decomposable, e.g. connected grid worlds with a stay action) the paper
proves g*(s) = r(s) + const and h*(s) = V*(s) + const: the reward is disentangled from the dynamics
and so transfers when they change. The baselines are the state-action ablation g(s, a) (which can
absorb the dynamics-dependent shaping) and GAIL, D(s, a) = σ(d(s, a)) with policy reward log D.

Here everything is tabular and exact: the policy step is soft value (or policy) iteration,

    Q(s, a) = r(s, a) + γ Σ_s' P(s'|s, a) V(s'),   V(s) = α log Σ_a exp(Q(s, a)/α),   π = exp((Q − V)/α),

and the discriminator's expectations use the exact discounted occupancies
ρ(s) = (1 − γ) p0ᵀ (I − γ P_π)⁻¹ instead of sampled trajectories.

    from papers.rl.airl import grid_transitions, soft_value_iteration, train_adversarial
    P = grid_transitions(7, 7, wall_with_gap(7, col=3, gap_row=1))[None]       # [1, S, A, S]
    expert = soft_value_iteration(reward, P, gamma=0.9)                       # Q, V, pi, log_pi
    out = train_adversarial("airl", P, p0, expert["pi"], 0.9)                 # out["disc"].g, .h
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="airl",
    papers=Paper(
        "Learning Robust Rewards with Adversarial Inverse Reinforcement Learning",
        "Justin Fu, Katie Luo, Sergey Levine",
        2018,
        venue="ICLR",
        arxiv="1710.11248",
        catalog_ids=("001:85:1",),
    ),
    claim=(
        "In tabular grid worlds, the state-only reward recovered by AIRL transfers when the walls move "
        "(re-optimised, it earns more true return than the state-action AIRL reward and the GAIL reward), "
        "and with deterministic dynamics g recovers the true reward and h the value up to constants."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Exact tabular AIRL (soft policy iteration, exact occupancies) on 8 random 7x7 grid worlds with a "
        "gapped wall; the gap moves for transfer. AIRL g(s) vs AIRL g(s,a) vs GAIL; slippery-dynamics "
        "ablation of the theorem's determinism premise."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ACTIONS": "model",
        "AIRLDiscriminator": "model",
        "GAILDiscriminator": "model",
        "discriminator_loss": "model",
        "expected_reward": "model",
        "grid_transitions": "model",
        "occupancy": "model",
        "policy_return": "model",
        "soft_value_iteration": "model",
        "state_transitions": "model",
        "train_adversarial": "model",
        "transition_weights": "model",
        "wall_with_gap": "model",
    },
)
