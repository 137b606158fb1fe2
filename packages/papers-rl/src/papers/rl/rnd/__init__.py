"""Exploration by Random Network Distillation. Yuri Burda, Harrison Edwards, Amos Storkey, Oleg Klimov
(ICLR 2019). arXiv:1810.12894. Catalogue id 001:105:1.

With the baseline of *Large-Scale Study of Curiosity-Driven Learning*. Yuri Burda, Harri Edwards,
Deepak Pathak, Amos Storkey, Trevor Darrell, Alexei A. Efros (ICLR 2019). arXiv:1808.04355.
Catalogue id 001:124:1.

RND. A target network f: O -> R^k is fixed at its random initialisation; a predictor f_hat: O -> R^k
is trained by gradient descent to minimise the expected MSE ||f_hat(x; theta) - f(x)||^2. The
exploration bonus of a transition into s' is its prediction error

    i_t = ||f_hat(s_{t+1}) - f(s_{t+1})||^2,

low on observations like many already trained on, high on novel ones. Both networks see
x = clip((s - mu) / sigma, -5, 5) with running mean and std of the observations (initialised from
random-action steps). The bonus is divided by a running std of the intrinsic return
R_I,t = gamma_I R_I,t-1 + i_t. The agent has two value heads: V_E on the episodic extrinsic
reward (gamma_E = 0.999) and V_I on the non-episodic intrinsic reward (gamma_I = 0.99, no episode
cuts); the PPO advantage is A = 2 A_E + 1 A_I. Each minibatch trains the predictor on a random
fraction (here 0.25) of its samples.

Curiosity baseline ("random features", RF): phi is a fixed random embedding, a forward model g is
trained on (phi(s_t), a_t) -> phi(s_{t+1}) and the bonus is ||g(phi(s_t), a_t) - phi(s_{t+1})||^2.
When s_{t+1} holds unpredictable noise (a "noisy TV") this error stays high however long g trains;
RND's target is a deterministic function of s_{t+1}, so its error on a finite noise source decays.

    from papers.rl.rnd import MultiRoomGrid, RNDBonus, ForwardCuriosity, train_explorer
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

RND_PAPER = Paper(
    "Exploration by Random Network Distillation",
    "Yuri Burda, Harrison Edwards, Amos Storkey, Oleg Klimov",
    2019,
    venue="ICLR",
    arxiv="1810.12894",
    catalog_ids=("001:105:1",),
)
CURIOSITY_PAPER = Paper(
    "Large-Scale Study of Curiosity-Driven Learning",
    "Yuri Burda, Harri Edwards, Deepak Pathak, Amos Storkey, Trevor Darrell, Alexei A. Efros",
    2019,
    venue="ICLR",
    arxiv="1808.04355",
    catalog_ids=("001:124:1",),
)

EXPERIMENT = Experiment(
    id="rnd",
    papers=(RND_PAPER, CURIOSITY_PAPER),
    claim=(
        "The RND bonus drives exploration of a sparse-reward multi-room maze beyond PPO without a bonus "
        "(more cells reached, the goal found more often), falls with a state's visit count, and, unlike "
        "forward-model curiosity in random features, is not captured by a noisy TV."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Generated 3x3-room maze (89 cells, goal 8 doorways away), plain and noisy-TV variants; PPO vs "
        "PPO + random-feature forward-model curiosity vs PPO + RND, same two-head PPO, 2 seeds x 41k steps."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "ENV_ID": "env",
        "MultiRoomGrid": "env",
        "MultiRoomVectorEnv": "env",
        "make_vector_env": "env",
        "register_env": "env",
        "ExplorerSettings": "agent",
        "train_explorer": "agent",
        "ForwardCuriosity": "model",
        "IntrinsicRewardNormaliser": "model",
        "ObservationNormaliser": "model",
        "RNDBonus": "model",
        "RunningMeanStd": "model",
        "TwoHeadActorCritic": "model",
    },
)
