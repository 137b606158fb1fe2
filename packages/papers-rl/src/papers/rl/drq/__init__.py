"""Image Augmentation Is All You Need: Regularizing Deep Reinforcement Learning from Pixels (DrQ).

Ilya Kostrikov, Denis Yarats, Rob Fergus. ICLR 2021. arXiv:2004.13649. Catalogue id 001:41:1.

Data-regularized Q: augment the replay observations of an off-policy agent with random shifts and
average the Q target and the Q loss over several augmentations. Random shift f(x, nu): replicate-pad
the H x W image by p pixels (p = 4 at 84 x 84), crop H x W at an offset nu = (dy, dx) uniform on
{0..2p}^2, drawn independently for every s and s' of every replay sample:

    f(x, nu)[c, i, j] = x[c, clamp(i + dy - p, 0, H - 1), clamp(j + dx - p, 0, W - 1)]

With K augmentations nu'_k of s' and M augmentations nu_m of s (the paper: K = M = 2), in the DQN form
(the paper's Atari-100k agent is DrQ on DQN; its continuous-control agent is SAC):

    y        = (1/K) sum_k [ r + gamma (1 - terminated) max_a' Q_target(f(s', nu'_k), a') ]
    L(theta) = (1/M) sum_m Huber( Q_theta(f(s, nu_m), a) - y )

K = M = 1 is random shifts alone; no augmentation is plain (Double) DQN from pixels.

    from papers.rl.drq import random_shift, drq_target, drq_q_loss, PixelQNetwork, PixelGridWorld
    x_aug = random_shift(obs_batch, pad=2, generator=g)            # (B, C, H, W) -> same shape
    y = drq_target(r, term, next_obs, target_net, 0.9, k=2, pad=2)
    loss, q = drq_q_loss(online_net, obs, actions, y, m=2, pad=2)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="drq",
    papers=Paper(
        "Image Augmentation Is All You Need: Regularizing Deep Reinforcement Learning from Pixels",
        "Ilya Kostrikov, Denis Yarats, Rob Fergus",
        2021,
        venue="ICLR",
        arxiv="2004.13649",
        catalog_ids=("001:41:1",),
    ),
    claim=(
        "Random-shift augmentation of replay observations raises the return of a pixel-based DQN at a "
        "fixed small step budget, and averaging the target and the loss over K = M = 2 augmentations adds "
        "to it."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy pixel grid world (3 x 18 x 18, agent and goal placed anew every episode), Double DQN, 4k env "
        "steps, 3 seeds: no augmentation vs random shift (K = M = 1) vs DrQ (K = M = 2); greedy return on "
        "held-out layouts."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "PixelGridWorld": "env",
        "PixelQNetwork": "model",
        "augment_repeats": "model",
        "draw_shifts": "model",
        "drq_q_loss": "model",
        "drq_target": "model",
        "random_shift": "model",
        "scaled_pad": "model",
        "Config": "experiment",
        "PRESETS": "experiment",
        "train_agent": "experiment",
    },
)
