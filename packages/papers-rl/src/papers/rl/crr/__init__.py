"""Critic Regularized Regression (CRR).

Ziyu Wang, Alexander Novikov, Konrad Żołna, Jost Tobias Springenberg, Scott Reed, Bobak Shahriari, Noah
Siegel, Josh Merel, Caglar Gulcehre, Nicolas Heess, Nando de Freitas. *Critic Regularized Regression*.
NeurIPS 2020. arXiv:2006.15134. Catalogue id 001:22:1.

Offline RL from a fixed dataset D of (s, a, r, s') with no further interaction. A critic Q_phi is learned
by TD with the policy's own next-action distribution, and the policy by behaviour cloning filtered by
the critic:

    y        = r + gamma (1 - terminated) E_{a' ~ pi_theta'(.|s')} Q_phi'(s', a')     (target nets ', copied
    L(phi)   = E_D[ l(y - Q_phi(s, a)) ]                                            every N updates)
    A(s, a)  = Q_phi(s, a) - (1/m) sum_{j=1..m} Q_phi(s, a_j),   a_j ~ pi_theta(.|s)  (m = 4)
    J(theta) = E_D[ f(Q_phi, pi_theta, s, a) log pi_theta(a|s) ]                      (maximised)
    f        = 1[A(s, a) > 0]                       (CRR-binary)
             = min(exp(A(s, a) / beta), 20)          (CRR-exp, beta = 1)
             = 1                                     (plain behaviour cloning)

The paper's critic is distributional; here it is a scalar critic with a Huber loss l. With discrete
actions the mean over pi can be exact, A = Q(s, a) - sum_a' pi(a'|s) Q(s, a') (``advantage="exact"``, the
default here); ``advantage="mean"`` samples m = 4 actions as the paper does. Naive offline DQN
(y = r + gamma max_a' Q'(s', a'), acting greedily on Q) is the unregularised baseline.

    from papers.rl.crr import CategoricalPolicy, crr_advantage, crr_weights, weighted_bc_loss
    adv = crr_advantage(q_net(s), torch.softmax(pi(s), -1), a, "mean", m=4)
    loss = weighted_bc_loss(pi(s), a, crr_weights(adv, "binary"))
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="crr",
    papers=Paper(
        "Critic Regularized Regression",
        "Ziyu Wang, Alexander Novikov, Konrad Żołna, Jost Tobias Springenberg, Scott Reed, Bobak Shahriari, "
        "Noah Siegel, Josh Merel, Caglar Gulcehre, Nicolas Heess, Nando de Freitas",
        2020,
        venue="NeurIPS",
        arxiv="2006.15134",
        catalog_ids=("001:22:1",),
    ),
    claim=(
        "On mixed-quality offline data, critic-filtered behaviour cloning (CRR, binary or exp weights) beats "
        "plain BC and naive offline DQN and is more stable than naive Q-learning; binary weighting is at "
        "least as good as exp on an easy task."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "CartPole-v1, a fixed 20k-transition dataset from a uniform random policy and a half-trained DQN; "
        "BC, CRR-binary, CRR-exp and naive offline DQN for the same 2k updates on the same data, 2 learner "
        "seeds, online evaluation during training and on 50 held-out episodes."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CategoricalPolicy": "model",
        "crr_advantage": "model",
        "crr_weights": "model",
        "policy_td_target": "model",
        "weighted_bc_loss": "model",
        "Config": "experiment",
        "PRESETS": "experiment",
        "build_dataset": "experiment",
        "evaluate_batched": "experiment",
        "train_offline": "experiment",
    },
)
