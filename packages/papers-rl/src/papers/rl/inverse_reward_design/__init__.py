"""Inverse Reward Design.

Dylan Hadfield-Menell, Smitha Milli, Pieter Abbeel, Stuart Russell, Anca D. Dragan. *Inverse Reward
Design*. NeurIPS 2017. arXiv:1711.02827. Catalogue id 001:143:1.

Rewards are linear in trajectory features, r_w(ξ) = wᵀφ(ξ); here φ counts the cells of each terrain a
trajectory enters in a grid world, φ = [#dirt, #grass, #lava, #target]. The designer's proxy w̃ is an
observation about the true w*, made in the training MDP M̃ (which has no lava):

    P(w̃ | w*, M̃) ∝ exp(β · w*ᵀ φ̃(w̃)),        φ̃(w) = E[φ(ξ) | ξ ~ π(ξ | w, M̃)]
    P(w* | w̃, M̃) ∝ P(w*) · exp(β w*ᵀ φ̃(w̃)) / Z̃(w*),      Z̃(w*) = ∫ exp(β w*ᵀ φ̃(w)) dw
    Z̃(w*) ≈ (1/N) Σ_j exp(β w*ᵀ φ̃(w_j)),   w_j ~ P(w)                     (sampled proxies)

The posterior is sampled by importance sampling from the prior. In a test MDP the agent plans
risk-aversely over posterior samples w_1..w_K, each measured relative to the training features c:

    trajectory:  ξ* = argmax_ξ min_i w_iᵀ(φ(ξ) − c)
    time step:   ξ* = argmax_ξ Σ_t min_i w_iᵀ(φ(s_t) − c / |ξ̃|)

Features absent from M̃ (lava) do not change the likelihood, so their posterior stays the prior and the
worst case over it keeps the agent away from them. Planning is exact: every feature-count vector a
trajectory of bounded length can realise is enumerated by dynamic programming.

    from papers.rl.inverse_reward_design import training_map, random_map, reachable_counts, ird_posterior
    reach = reachable_counts(training_map(10), horizon=28)
    post = ird_posterior(reach, proxy, beta=1.0, prior_std=1.0, n_proxy_samples=1000,
                         n_prior_samples=10000, n_posterior=50, rng=np.random.default_rng(0))
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="inverse-reward-design",
    papers=Paper(
        "Inverse Reward Design",
        "Dylan Hadfield-Menell, Smitha Milli, Pieter Abbeel, Stuart Russell, Anca D. Dragan",
        2017,
        venue="NeurIPS",
        arxiv="1711.02827",
        catalog_ids=("001:143:1",),
    ),
    claim=(
        "An agent that treats the proxy reward as evidence about the true reward given the training map and "
        "plans risk-aversely over the IRD posterior avoids lava, a terrain never seen in training, while the "
        "proxy-optimising agent walks through it."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Lavaland grid worlds: IRD posterior (sampled Z, importance sampling) from one training map, exact "
        "planning on 100 random test maps with lava; lava-visit rate and true return of the proxy, IRD-mean "
        "and IRD risk-averse agents."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        name: "model"
        for name in (
            "DIRT",
            "FEATURES",
            "GRASS",
            "LAVA",
            "MOVES",
            "TARGET",
            "GridMap",
            "Posterior",
            "best_count",
            "feature_expectations",
            "ird_log_likelihood",
            "ird_posterior",
            "lava_free_path_exists",
            "plan",
            "random_map",
            "reachable_counts",
            "risk_averse_values",
            "trajectory_for",
            "training_map",
        )
    },
)
