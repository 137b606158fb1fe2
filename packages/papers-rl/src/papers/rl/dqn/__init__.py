"""Deep Q-Networks (DQN).

Volodymyr Mnih, Koray Kavukcuoglu, David Silver, Andrei A. Rusu, Joel Veness, Marc G. Bellemare, Alex
Graves, Martin Riedmiller, Andreas K. Fidjeland, Georg Ostrovski, et al. *Human-level control through
deep reinforcement learning*. Nature 518, 2015. First as: Mnih, Kavukcuoglu, Silver, Graves, Antonoglou,
Wierstra, Riedmiller. *Playing Atari with Deep Reinforcement Learning*. 2013. arXiv:1312.5602.
Not a catalogue row (catalogue ids: none); the reference value-based agent later RL papers build on.

Q-learning with a neural network Q(s, a; theta), made stable by experience replay and a target network:

    a_t       = uniform random action with probability epsilon_t, else argmax_a Q(s_t, a; theta)
    epsilon_t = start + (end - start) * min(t / (fraction * T), 1)          (linear schedule)
    D        <- D + (s_t, a_t, r_t, s_{t+1}, terminated_t)                   (replay memory, capacity N)
    y_j       = r_j + gamma * (1 - terminated_j) * max_a' Q(s'_j, a'; theta^-)    (target net theta^-)
    L(theta)  = E_{j ~ U(D)} [ Huber(y_j - Q(s_j, a_j; theta)) ]             (error clipped to [-1, 1])
    theta^-  <- theta every C steps    (or Polyak: theta^- <- tau theta + (1 - tau) theta^-)

Double DQN (van Hasselt et al. 2016) takes the action from the online net and its value from the target:
y = r + gamma (1 - terminated) Q(s', argmax_a' Q(s', a'; theta); theta^-). A time-limit truncation is not
terminal: it bootstraps from the true last observation. Atari: 84x84 grey frames, max-pooled frame skip 4,
a stack of the last 4, up to 30 no-ops at reset, FIRE at reset, life loss terminal for the TD target,
rewards clipped to their sign; the NatureCNN (3 convolutions, 512 units).

    from papers.rl.dqn import NatureCNN, td_target, td_loss, update_target, train_dqn, Config
    part = train_dqn(Config(total_steps=20_000), seed=0)   # CartPole-v1; part["last_mean_return"]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="dqn",
    papers=Paper(
        "Human-level control through deep reinforcement learning",
        "Volodymyr Mnih, Koray Kavukcuoglu, David Silver, Andrei A. Rusu, Joel Veness, Marc G. Bellemare, "
        "et al.",
        2015,
        venue="Nature",
        arxiv="1312.5602",
        catalog_ids=(),
    ),
    claim=(
        "DQN (replay, target network, epsilon-greedy) learns CartPole-v1: its last greedy policy averages "
        "a return >= 475 over 20 episodes, and the target network helps at equal steps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "CartPole-v1, 50k env steps, one seed: DQN vs the same agent without a target network; greedy "
        "evaluation of the last policy (the claim) and of the best intermediate one (extra information). "
        "The full preset is Nature DQN on Breakout, 10M frames."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "NatureCNN": "model",
        "OneHotQNetwork": "model",
        "epsilon_greedy": "model",
        "make_q_network": "model",
        "td_loss": "model",
        "td_target": "model",
        "update_target": "model",
        "Config": "experiment",
        "PRESETS": "experiment",
        "train_dqn": "experiment",
    },
)
