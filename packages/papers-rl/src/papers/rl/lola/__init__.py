"""Learning with Opponent-Learning Awareness.

Jakob N. Foerster, Richard Y. Chen, Maruan Al-Shedivat, Shimon Whiteson, Pieter Abbeel, Igor Mordatch.
*Learning with Opponent-Learning Awareness*. AAMAS 2018. arXiv:1709.04326. Catalogue id 001:137:1.

Two agents play an infinitely iterated 2 × 2 game with memory-one policies: θ_i ∈ R⁵ are the
cooperation logits for the first move s0 and for the previous joint outcome CC, CD, DC, DD (own action
first). The joint outcomes form a Markov chain with first-step distribution p0 and transition matrix P
(both from σ(θ1), σ(θ2)), so the discounted return is exact:

    V_i(θ1, θ2) = Σ_t γ^t p_tᵀ r_i = p0ᵀ (I − γP)⁻¹ r_i,        γ = 0.96,
    IPD rewards (r1, r2): CC (−1, −1), CD (−3, 0), DC (0, −3), DD (−2, −2);  (1 − γ) V_i per step.

A naive learner (NL) ascends its own value; a LOLA learner also differentiates through the opponent's
anticipated naive step Δθ2 = η ∇θ2 V2, keeping the first-order Taylor term of V1(θ1, θ2 + Δθ2):

    NL:    θ1 ← θ1 + δ ∇θ1 V1
    LOLA:  θ1 ← θ1 + δ ∇θ1 V1 + δ η (∇θ2 V1)ᵀ ∇θ1∇θ2 V2

    from papers.rl.lola import IPD, exact_values, lola_correction, train_pair
    v1, v2 = exact_values(theta1, theta2, IPD, gamma=0.96)            # theta [..., 5]
    out = train_pair(theta1, theta2, ("lola", "lola"), steps=200)     # final θ, reward curves
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="lola",
    papers=Paper(
        "Learning with Opponent-Learning Awareness",
        "Jakob N. Foerster, Richard Y. Chen, Maruan Al-Shedivat, Shimon Whiteson, Pieter Abbeel, "
        "Igor Mordatch",
        2018,
        venue="AAMAS",
        arxiv="1709.04326",
        catalog_ids=("001:137:1",),
    ),
    claim=(
        "In the iterated prisoner's dilemma with exact values, LOLA agents learn tit-for-tat-like "
        "reciprocity and cooperate (about -1 per step) while naive learners defect (about -2); LOLA "
        "out-earns a naive opponent, and in matching pennies LOLA agents approach the Nash equilibrium."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Exact IPD and IMP with memory-one policies (5 logits per agent), closed-form discounted values and "
        "autograd second-order LOLA terms; 100 random initialisations for NL-NL, LOLA-LOLA and LOLA vs NL."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "GAMES": "model",
        "IMP": "model",
        "IPD": "model",
        "LEARNERS": "model",
        "MatrixGame": "model",
        "cooperation_probs": "model",
        "exact_values": "model",
        "lola_correction": "model",
        "monte_carlo_values": "model",
        "policy_step": "model",
        "train_pair": "model",
        "transition_matrix": "model",
    },
)
