"""Neural Ordinary Differential Equations.

Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud. *Neural Ordinary Differential
Equations*. NeurIPS 2018. arXiv:1806.07366. Catalogue id 004:27:1.

A residual network h_{k+1} = h_k + f(h_k, θ_k) is an Euler discretisation of a continuous hidden state

    dz/dt = f(z(t), t, θ),        z(t1) = z(t0) + ∫_{t0}^{t1} f(z(t), t, θ) dt = ODESolve(z(t0), f, t0, t1, θ)

evaluated by a black-box adaptive solver (here Dormand–Prince 5(4), `odeint`). Gradients of a loss
L(z(t1)) come from the adjoint a(t) = ∂L/∂z(t), solved backwards in time (`odeint_adjoint`):

    da/dt       = −a(t)ᵀ ∂f(z(t), t, θ)/∂z
    dL/dθ       = −∫_{t1}^{t0} a(t)ᵀ ∂f(z(t), t, θ)/∂θ dt
    dL/dt1      =  a(t1)ᵀ f(z(t1), t1, θ),      dL/dt0 = −a(t0)ᵀ f(z(t0), t0, θ)

with one call of the solver on the augmented state s = [z, a, a_θ] and augmented dynamics

    ds/dt = [f(z, t, θ),  −aᵀ ∂f/∂z,  −aᵀ ∂f/∂θ],     s(t1) = [z(t1), ∂L/∂z(t1), 0],

so memory does not grow with the number of solver steps. The tolerance of the solver is a knob that
trades accuracy for the number of function evaluations (NFE), also at test time.

    from papers.theory.neural_ode import odeint, odeint_adjoint, ODEBlock, ODEFunc, ODENet
    ys = odeint(func, y0, t, rtol=1e-7, atol=1e-9, method="dopri5")     # [len(t), *y0.shape]
    net = ODENet(dim_in=2, n_classes=3)                                 # encoder → ODE block → head
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="neural-ode",
    papers=Paper(
        "Neural Ordinary Differential Equations",
        "Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud",
        2018,
        venue="NeurIPS",
        arxiv="1806.07366",
        catalog_ids=("004:27:1",),
    ),
    claim=(
        "An ODE-Net matches a ResNet's accuracy with fewer parameters; its solver tolerance trades NFE for "
        "accuracy at test time, its NFE grows during training, and adjoint gradients take memory constant "
        "in the number of solver steps."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Spirals classification: encoder → one ODE block (dopri5, adjoint) → head vs the same with a "
        "6-block ResNet; tolerance sweep, NFE during training, adjoint vs backprop memory and gradients."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "odeint_adjoint": "adjoint",
        "ConcatLinear": "model",
        "ODEBlock": "model",
        "ODEFunc": "model",
        "ODENet": "model",
        "ResBlock": "model",
        "ResNet": "model",
        "METHODS": "solver",
        "NFECounter": "solver",
        "SolverStats": "solver",
        "odeint": "solver",
        "rms_norm": "solver",
    },
)
