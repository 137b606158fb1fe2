"""Batch size-invariance for policy optimization.

Jacob Hilton, Karl Cobbe, John Schulman. *Batch size-invariance for policy optimization*. 2021.
arXiv:2110.00641 (NeurIPS 2022). Catalogue id 002:257:1.

An algorithm is batch size-invariant if a change of the batch size can be compensated for by changes of
the other hyperparameters. PPO is not, because it controls the size of its updates relative to the
policy that collected the data (pi_old = pi_behav), whose age in samples is the iteration size. The fix
decouples the two roles: a behaviour policy pi_behav for the off-policy correction, and a proximal
policy pi_prox for the trust region,

    L^decoupled(theta) = E_{pi_behav}[ (pi_prox / pi_behav) * min( r_t(theta) A_t,
                                                               clip(r_t(theta), 1 - eps, 1 + eps) A_t ) ],
    r_t(theta) = pi_theta(a_t | s_t) / pi_prox(a_t | s_t),

and PPO-EWMA takes pi_prox to be the policy of an exponentially weighted moving average of past
parameters, updated after every optimiser step:

    theta_prox <- beta_prox * theta_prox + (1 - beta_prox) * theta.

With pi_prox = pi_behav this is PPO's L^CLIP. To change the batch size by a factor c, keep every
EWMA's age fixed in samples and scale the step size with the batch:

    Adam step size  alpha -> c * alpha,
    beta_prox -> beta_prox ** c        (1 - beta_prox scales by ~c),
    beta_adv  -> beta_adv ** c         (advantages normalised by an EWMA of their moments per iteration),
    Adam beta1, beta2 -> beta ** c     (optional, off by default: not among the paper's adjustments).

    from papers.rl.ppo_ewma import decoupled_ppo_loss, ewma_update_, scaled_hyperparameters, train_decoupled
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="ppo-ewma",
    papers=Paper(
        "Batch size-invariance for policy optimization",
        "Jacob Hilton, Karl Cobbe, John Schulman",
        2021,
        venue="NeurIPS 2022",
        arxiv="2110.00641",
        catalog_ids=("002:257:1",),
    ),
    claim=(
        "With the step size and the EWMA decay adjusted by the paper's rule, PPO-EWMA's learning curves at "
        "different batch sizes stay closer together than PPO's (whose proximal policy is the behaviour "
        "policy, so its trust region scales with the iteration size)."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "CartPole-v1, PPO vs PPO-EWMA at batch factors c = 1, 1/2, 1/4 (16, 8, 4 envs x 64 steps; lr x c, "
        "beta_prox and beta_adv ** c), 3 seeds, 24.6k env steps per run; gap of the learning curves to the "
        "c = 1 curve."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DecoupledSettings": "model",
        "binned_returns": "model",
        "center_of_mass_beta": "model",
        "decoupled_ppo_loss": "model",
        "ewma_update_": "model",
        "scaled_hyperparameters": "model",
        "train_decoupled": "model",
    },
)
