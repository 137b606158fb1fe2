"""Multi-task Deep Reinforcement Learning with PopArt.

Matteo Hessel, Hubert Soyer, Lasse Espeholt, Wojciech Czarnecki, Simon Schmitt, Hado van Hasselt.
*Multi-task Deep Reinforcement Learning with PopArt*. AAAI 2019. arXiv:1809.04474. Catalogue id 001:125:1.
The mechanism is from Hado van Hasselt, Arthur Guez, Matteo Hessel, Volodymyr Mnih, David Silver.
*Learning values across many orders of magnitude*. NeurIPS 2016. arXiv:1602.07714.

A value head with normalised outputs n_k(h) = W_k h + b_k (one per task k) and the value
V_k(h) = σ_k n_k(h) + μ_k. After each batch of (unnormalised) targets y of task k:

    μ_k' = (1 − β) μ_k + β E[y],   ν_k' = (1 − β) ν_k + β E[y²],   σ_k' = sqrt(max(ν_k' − μ_k'², σ_min²))
    W_k' = σ_k W_k / σ_k',         b_k' = (σ_k b_k + μ_k − μ_k') / σ_k'      (outputs preserved exactly)

then SGD on the normalised loss ½ ((y − μ_k')/σ_k' − n_k(h))²; in the actor-critic the policy
advantage is normalised too, (R − V_k)/σ_k'. Only task k's statistics and head row change.
σ_min = 1e-4, σ ≤ 1e6; β here 3e-3 per update with bias correction β_t = β/(1 − (1 − β)^t).

    from papers.rl.popart import PopArt, preserve_outputs
    head = PopArt(64, num_tasks=3, beta=3e-3)       # mode="popart" | "art" (no preserve) | "none"
    head.update(returns, task); loss = 0.5 * (head.normalise(returns, task) - head(h, task)).pow(2).mean()
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="popart",
    papers=Paper(
        "Multi-task Deep Reinforcement Learning with PopArt",
        "Matteo Hessel, Hubert Soyer, Lasse Espeholt, Wojciech Czarnecki, Simon Schmitt, Hado van Hasselt",
        2019,
        venue="AAAI",
        arxiv="1809.04474",
        catalog_ids=("001:125:1",),
    ),
    claim=(
        "Per-task PopArt normalisation of value targets (with the output-preserving rescaling of the last "
        "layer) balances learning across tasks whose rewards differ by orders of magnitude: one shared "
        "actor-critic scores better (mean and worst task) than with plain value learning, where the "
        "large-reward task dominates."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy: three cart-pole tasks with rewards x0.01, x1, x100 (one with swapped actions), one shared A2C "
        "network with per-task value heads, PopArt vs plain value learning at equal steps and seed; "
        "preserve-step exactness measured in the run."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "MODES": "model",
        "PopArt": "model",
        "preserve_outputs": "model",
        "scale_from_moments": "model",
        "update_moments": "model",
        "A2CSettings": "agent",
        "MultiTaskCartPole": "agent",
        "MultiTaskNet": "agent",
        "train_multitask": "agent",
        "BitRegressor": "regression",
        "train_regression": "regression",
    },
)
