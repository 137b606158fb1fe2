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

from .data import SYSTEMS, DynamicalSystem, simulate, spirals
from .model import (
    PARAMETRISATIONS,
    DeepMLP,
    ResidualBlock,
    StepModel,
    TiedResNet,
    UntiedResNet,
    VelocityField,
    euler_step,
    rk4_step,
)

__all__ = [
    "PARAMETRISATIONS",
    "SYSTEMS",
    "DeepMLP",
    "DynamicalSystem",
    "ResidualBlock",
    "StepModel",
    "TiedResNet",
    "UntiedResNet",
    "VelocityField",
    "euler_step",
    "rk4_step",
    "simulate",
    "spirals",
]
