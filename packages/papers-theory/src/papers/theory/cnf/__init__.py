"""Continuous normalizing flows: the instantaneous change of variables.

Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud. *Neural Ordinary Differential
Equations*. NeurIPS 2018. arXiv:1806.07366, Sec. 4. Catalogue id 004:29:1. The Hutchinson trace
estimator follows Will Grathwohl, Ricky T. Q. Chen, Jesse Bettencourt, Ilya Sutskever, David Duvenaud.
*FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models*. ICLR 2019.
arXiv:1810.01367.

If z(t) follows dz/dt = f(z(t), t), its log-density changes by a trace instead of a log-determinant
(Theorem 1):

    d log p(z(t)) / dt = −tr(∂f/∂z(t))
    log p_1(z(t1)) = log p_0(z(t0)) − ∫_{t0}^{t1} tr(∂f/∂z(t)) dt
    ∫_{t0}^{t1} tr(∂f/∂z(t)) dt = log|det ∂z(t1)/∂z(t0)|          (Jacobi's formula)

f needs no invertibility or determinant constraint; the map is inverted by integrating backwards.
The paper's planar CNF uses M gated hidden units with weights given by a hypernetwork of t:

    f(z, t) = Σ_m σ(s_m(t)) u_m(t) tanh(w_m(t)ᵀ z + b_m(t))

The trace is computed exactly (D vector-Jacobian products, cheap in 2-D) or by Hutchinson's estimator
tr(A) = E[εᵀAε] with E[εεᵀ] = I and one ε per point held fixed during a solve (FFJORD). The baseline
is a planar flow (Rezende & Mohamed 2015) g(x) = x + û tanh(wᵀx + b), log|det| = log|1 + ûᵀw tanh'|.

    from papers.theory.cnf import CNF, HyperPlanarField, PlanarFlow
    cnf = CNF(HyperPlanarField(dim=2, width=16), rtol=1e-5, atol=1e-5)   # trace="exact" | "hutchinson"
    log_px = cnf.log_prob(x)                 # x [batch, 2]: integrate [x, 0] from t1 back to 0
    samples, log_p = cnf.sample(1000)        # integrate [z, log N(z)] forward from z ~ N(0, I)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="cnf",
    papers=(
        Paper(
            "Neural Ordinary Differential Equations",
            "Ricky T. Q. Chen, Yulia Rubanova, Jesse Bettencourt, David Duvenaud",
            2018,
            venue="NeurIPS",
            arxiv="1806.07366",
            catalog_ids=("004:29:1",),
        ),
        Paper(
            "FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative Models",
            "Will Grathwohl, Ricky T. Q. Chen, Jesse Bettencourt, Ilya Sutskever, David Duvenaud",
            2019,
            venue="ICLR",
            arxiv="1810.01367",
        ),
    ),
    claim=(
        "A continuous normalizing flow, whose log-density follows d log p/dt = −tr(∂f/∂z), fits multimodal "
        "2-D densities by maximum likelihood better than a planar flow with as many parameters, is "
        "normalised, and is exactly invertible; its integrated trace equals log|det| of the flow map to "
        "solver tolerance."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Moons, 8 Gaussians and rings by maximum likelihood: planar CNF (16 gated units, hypernetwork in t, "
        "dopri5, exact trace) vs a 176-layer planar flow with the same parameter count; grid integral of "
        "the density, integrated trace vs autograd log|det|, round-trip error and NFE vs tolerance, "
        "Hutchinson vs exact log-likelihood."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CNF": "model",
        "CNFDynamics": "model",
        "HyperPlanarField": "model",
        "PlanarFlow": "model",
        "TRACES": "model",
        "divergence_exact": "model",
        "divergence_hutchinson": "model",
        "standard_normal_log_prob": "model",
        "DATASETS": "data",
        "eight_gaussians": "data",
        "rings": "data",
        "two_moons": "data",
    },
)
