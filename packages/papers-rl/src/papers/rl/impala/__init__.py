"""IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures.

Lasse Espeholt, Hubert Soyer, Remi Munos, Karen Simonyan, Volodymyr Mnih, Tom Ward, Yotam Doron,
Vlad Firoiu, Tim Harley, Iain Dunning, Shane Legg, Koray Kavukcuoglu. ICML 2018. arXiv:1802.01561.
Catalogue id 001:126:1.

Actors generate trajectories with a behaviour policy μ (a copy of the learner's policy, possibly several
updates old); the learner corrects for the lag with V-trace targets (Sec. 4.1, eq. 1):

    ρ_t = min(ρ̄, π(a_t|x_t)/μ(a_t|x_t)),   c_i = λ min(c̄, π(a_i|x_i)/μ(a_i|x_i))
    δ_t V = ρ_t (r_t + γ V(x_{t+1}) − V(x_t))
    v_s = V(x_s) + Σ_{t=s}^{s+n−1} γ^{t−s} (Π_{i=s}^{t−1} c_i) δ_t V
        = V(x_s) + δ_s V + γ c_s (v_{s+1} − V(x_{s+1}))          (the backward recursion, Remark 1)

ρ̄ fixes the policy whose value V-trace converges to (π_ρ̄, between μ and π); c̄ controls the speed of
contraction / variance. On-policy (π = μ, λ = 1, ρ̄ = c̄ = 1) v_s is the n-step Bellman target.
The actor-critic update (Sec. 4.2):

    policy gradient   ρ_s ∇_ω log π_ω(a_s|x_s) (r_s + γ v_{s+1} − V_θ(x_s))
    value             (v_s − V_θ(x_s)) ∇_θ V_θ(x_s)
    entropy bonus     −∇_ω Σ_a π_ω(a|x_s) log π_ω(a|x_s)

Episode ends: discount 0 at a termination (no bootstrap), a time-limit truncation bootstrapped from the
value of the true last observation; the trace never crosses into the next episode.

    from papers.rl.impala import vtrace, impala_loss, train_stale, LearnerSettings
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="impala",
    papers=Paper(
        "IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures",
        "Lasse Espeholt, Hubert Soyer, Remi Munos, Karen Simonyan, Volodymyr Mnih, Tom Ward, Yotam Doron, "
        "Vlad Firoiu, Tim Harley, Iain Dunning, Shane Legg, Koray Kavukcuoglu",
        2018,
        venue="ICML",
        arxiv="1802.01561",
        catalog_ids=("001:126:1",),
    ),
    claim=(
        "With actors acting on a stale copy of the learner's policy, V-trace learns more stably than no "
        "off-policy correction or 1-step importance sampling at equal env steps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "CartPole-v1, 8 envs x 20-step unrolls, 48k env steps per run, actors 32 updates behind the learner "
        "(a snapshot queue in one process): V-trace vs no correction vs 1-step IS, with lag 0 as reference, "
        "2 seeds."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CORRECTIONS": "model",
        "LearnerSettings": "model",
        "correction_log_rhos": "model",
        "evaluate_policy": "model",
        "impala_loss": "model",
        "train_stale": "model",
        "vtrace": "model",
        "vtrace_double_sum": "model",
    },
)
