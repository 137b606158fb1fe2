"""Objective-Reinforced Generative Adversarial Networks (ORGAN) for Sequence Generation Models.

Gabriel Lima Guimaraes, Benjamin Sanchez-Lengeling, Carlos Outeiral, Pedro Luis Cunha Farias, Alán
Aspuru-Guzik. arXiv preprint 2017. arXiv:1705.10843. Catalogue id 001:51:1.

A SeqGAN whose reward mixes the discriminator with an objective. The generator G_θ (an RNN over SMILES
tokens) is pretrained by maximum likelihood; the discriminator D_φ (a CNN over token embeddings with
several filter widths, a highway layer and dropout) is pretrained on data (real) against G samples
(fake). Then G is trained by policy gradient, alternating with D updates:

    R(Y_1:T)        = λ · D_φ(Y_1:T) + (1 − λ) · O(Y_1:T)          O = QED here, 0 for invalid molecules
    R(Y) ← R(Y) / n(Y)                                             n = copies of Y in its batch (the
                                                                   paper's uniqueness penalty)
    Q(Y_1:t−1, y_t) = (1/N) Σ_n R(Y^n_1:T),  Y^n ~ MC^G(Y_1:t; N)   for t < T (rollouts complete the prefix)
                    = R(Y_1:T)                                      for t = T
    ∇_θ J(θ)        = Σ_t E_{y_t ~ G_θ}[ Q(Y_1:t−1, y_t) ∇_θ log G_θ(y_t | Y_1:t−1) ]
    D:  max_φ E_data[log D_φ(Y)] + E_G[log(1 − D_φ(Y))]

λ = 0 is naive RL (objective only), λ = 1 is SeqGAN. Here the toy version estimates Q by rollouts only
every few positions (the next rollout point's Q for the positions between), see experiment.py.

    from papers.chem.organ import Discriminator, organ_reward, q_values, policy_gradient_loss
    q, r = q_values(rollout_g, tokens, reward_fn, rollouts=4, every=8)
    loss = policy_gradient_loss(g, tokens, q)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="organ",
    papers=Paper(
        "Objective-Reinforced Generative Adversarial Networks (ORGAN) for Sequence Generation Models",
        "Gabriel Lima Guimaraes, Benjamin Sanchez-Lengeling, Carlos Outeiral, Pedro Luis Cunha Farias, "
        "Alán Aspuru-Guzik",
        2017,
        venue="arXiv preprint",
        arxiv="1705.10843",
        catalog_ids=("001:51:1",),
    ),
    claim=(
        "A SeqGAN-style SMILES generator trained with the reward λ·D + (1 − λ)·QED (and the uniqueness "
        "penalty) raises QED over likelihood-only training while staying more diverse than naive RL (λ = 0)."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy ORGAN on NCI SMILES: GRU generator pretrained by MLE, SeqGAN CNN discriminator, policy "
        "gradient with Monte-Carlo rollouts every few positions; MLE-only vs naive RL (λ = 0) vs ORGAN "
        "(λ = 0.5) on validity, uniqueness, QED, diversity and novelty of 500 samples."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Discriminator": "model",
        "Highway": "model",
        "QedObjective": "model",
        "discriminator_loss": "model",
        "fingerprints": "model",
        "lagged_update": "model",
        "mean_pairwise_distance": "model",
        "organ_reward": "model",
        "policy_gradient_loss": "model",
        "q_values": "model",
        "repeat_counts": "model",
        "rollout_points": "model",
        "sample_metrics": "model",
        "to_smiles": "model",
    },
)
