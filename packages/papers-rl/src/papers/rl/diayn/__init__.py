"""Diversity is All You Need: Learning Skills without a Reward Function (DIAYN).

Benjamin Eysenbach, Abhishek Gupta, Julian Ibarz, Sergey Levine. ICLR 2019. arXiv:1802.06070.
Catalogue id 001:104:1.

Skills z ~ p(z) (uniform over K, fixed for an episode) and a skill-conditioned policy pi(a | s, z) are
learned without any reward by maximising

    F(theta) = I(S; Z) + H[A | S] - I(A; Z | S) = H[Z] - H[Z | S] + H[A | S, Z]
             >= E_{z ~ p(z), s ~ pi(z)} [ log q_phi(z | s) - log p(z) ] + H[A | S, Z]     (eq. 2-3)

with a learned discriminator q_phi(z | s) (the variational lower bound on I(S; Z)). The policy is a
maximum-entropy agent, soft actor-critic with temperature alpha = 0.1, trained on the pseudo-reward

    r_z(s, a) = log q_phi(z | s') - log p(z)

and q_phi is trained by maximum likelihood on (s', z) from the same replay. Each term: H[Z] is maximal
(p fixed uniform), H[Z | S] small means skills are told apart by the states they visit (not by actions),
H[A | S, Z] large means each skill acts as randomly as it can while staying distinguishable.
Hierarchical use (Sec. 4.2.2): a meta-controller picks a frozen skill every k steps to solve a task.

    from papers.rl.diayn import DIAYN, PointMassEnv, diayn_reward, train_diayn, Config
    record, agent = train_diayn(Config(total_steps=20_000), seed=0)   # record["accuracy"], ["coverage"]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="diayn",
    papers=Paper(
        "Diversity is All You Need: Learning Skills without a Reward Function",
        "Benjamin Eysenbach, Abhishek Gupta, Julian Ibarz, Sergey Levine",
        2019,
        venue="ICLR",
        arxiv="1802.06070",
        catalog_ids=("001:104:1",),
    ),
    claim=(
        "Without any reward, DIAYN (SAC on log q(z|s) - log p(z)) learns 8 skills that a discriminator tells "
        "apart on held-out rollouts far above chance and that cover more of a 2-D arena than a random policy "
        "or the same learner with one skill; a meta-controller over the frozen skills learns a sparse goal "
        "faster than SAC from scratch."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "2-D point mass (step 0.1 in [-1, 1]^2, 50-step episodes), SAC with alpha 0.1, 8 skills, 24k env "
        "steps; held-out discriminator accuracy vs chance, grid coverage vs random actions and K = 1; then "
        "a REINFORCE meta-controller over the frozen skills vs SAC from scratch on a sparse goal, "
        "16k steps each."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "DIAYN": "model",
        "SAC": "model",
        "Discriminator": "model",
        "MetaController": "model",
        "TanhGaussianActor": "model",
        "TwinQ": "model",
        "diayn_reward": "model",
        "skill_input": "model",
        "tanh_gaussian_log_prob": "model",
        "PointMassEnv": "env",
        "BatchPointMass": "env",
        "point_mass_step": "env",
        "Config": "experiment",
        "PRESETS": "experiment",
        "train_diayn": "experiment",
        "coverage": "experiment",
    },
)
