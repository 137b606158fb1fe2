"""Learning velocity instead of position: residual blocks, dynamics and the ODE limit of depth.

Papers and catalogue ids:

- Bronstein, Bruna, Cohen, Veličković (2021). *Geometric Deep Learning: Grids, Groups, Graphs,
  Geodesics, and Gauges*, arXiv:2104.13478, p. 73 — residual connections make a network model the
  velocity of a dynamical system rather than its position (000:7:1).
- He, Zhang, Ren, Sun (2016). *Deep Residual Learning for Image Recognition*, CVPR, arXiv:1512.03385
  — deeper plain networks have higher training error; identity skips fix it (000:7:2, 004:23:1).
- E (2017). *A Proposal on Machine Learning via Dynamical Systems*, Commun. Math. Stat. 5:1–11, and
  Haber & Ruthotto (2017). *Stable Architectures for Deep Neural Networks*, Inverse Problems 34,
  arXiv:1705.03341 — a residual block is a forward-Euler step of an ODE (004:25:1).

Equations:

    plain layer        h_{k+1} = φ_k(h_k),                 φ_k(h) = W_k relu(h) + b_k
    residual layer     h_{k+1} = h_k + α φ_k(h_k)          (α = (depth − 2)^(−1/2) here)
    weight-tied net    h_{k+1} = h_k + (1/N) f(h_k, k/N),  k = 0 … N−1
                       → h(1) of dh/dt = f(h, t), h(0) = h_0, with global error O(1/N)
    untied refinement  block k applied m times: h ← h + (s/m) f_k(h)
    next-state model   x̂_{t+Δt} = g(x_t)
    increment model    x̂_{t+Δt} = x_t + g(x_t)
    derivative model   x̂_{t+Δt} = RK4(v, x_t, Δt),  v(x) = g(x) ≈ dx/dt

    from papers.theory.velocity_learning import DeepMLP, TiedResNet, StepModel
    net = DeepMLP(in_dim=8, out_dim=4, width=64, depth=64, residual=True, residual_scale=62 ** -0.5)
    ode_net = TiedResNet(in_dim=8, dim=16, width=64, num_classes=2);  y = ode_net(x, steps=40)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="velocity-learning",
    papers=(
        Paper("Geometric Deep Learning: Grids, Groups, Graphs, Geodesics, and Gauges",
              "Michael M. Bronstein, Joan Bruna, Taco Cohen, Petar Veličković", 2021, arxiv="2104.13478",
              catalog_ids=("000:7:1",)),
        Paper("Deep Residual Learning for Image Recognition",
              "Kaiming He, Xiangyu Zhang, Shaoqing Ren, Jian Sun", 2016, venue="CVPR", arxiv="1512.03385",
              catalog_ids=("000:7:2", "004:23:1")),
        Paper("A Proposal on Machine Learning via Dynamical Systems", "Weinan E", 2017,
              venue="Communications in Mathematics and Statistics", doi="10.1007/s40304-017-0103-z",
              catalog_ids=("004:25:1",)),
        Paper("Stable Architectures for Deep Neural Networks", "Eldad Haber, Lars Ruthotto", 2017,
              venue="Inverse Problems 34 (2018)", arxiv="1705.03341"),
    ),
    claim="Residual blocks model a velocity, not a position: deep residual nets train where plain ones "
          "degrade, increment and derivative models learn dynamics better than next-state models (most at "
          "small Δt), and a weight-tied residual net is a forward-Euler ODE solver that converges at O(1/N).",
    module=f"{__name__}.experiment",
    summary="Three parts: (a) plain vs residual depth sweep, (b) next state vs increment vs derivative "
            "on pendulum / Van der Pol / Lotka–Volterra, (c) tied vs untied ResNets refined towards the "
            "ODE limit on a regression and a classification task.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "SYSTEMS": "data",
        "DynamicalSystem": "data",
        "simulate": "data",
        "spirals": "data",
        "PARAMETRISATIONS": "model",
        "DeepMLP": "model",
        "ResidualBlock": "model",
        "StepModel": "model",
        "TiedResNet": "model",
        "UntiedResNet": "model",
        "VelocityField": "model",
        "euler_step": "model",
        "rk4_step": "model",
    },
)
