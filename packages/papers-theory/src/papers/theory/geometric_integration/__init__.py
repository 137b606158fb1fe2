"""Geometric numerical integration: symplectic integrators keep energy errors bounded; Hamiltonian
neural networks carry the conservation law into learned dynamics.

Sergio Blanes, Fernando Casas (2016). *A Concise Introduction to Geometric Numerical Integration*.
CRC Press (Monographs and Research Notes in Mathematics). Catalogue id 004:138:1.
Sam Greydanus, Misko Dzamba, Jason Yosinski (2019). *Hamiltonian Neural Networks*. NeurIPS 2019.
arXiv:1906.01563 (the learned part).

A Hamiltonian system dy/dt = J ∇H(y), y = (q, p), J = [[0, I], [−I, 0]], here separable,
H = ½|p|² + V(q) with force F = −∇V:

    explicit Euler      q' = q + h p,            p' = p + h F(q)                      order 1
    RK4                 classical Runge–Kutta on dy/dt = (p, F(q))                    order 4
    symplectic Euler    p' = p + h F(q),         q' = q + h p'                        order 1, symplectic
    leapfrog            p½ = p + (h/2) F(q),     q' = q + h p½,   p' = p½ + (h/2) F(q')
                        (Störmer–Verlet)                                              order 2, symplectic,
                                                                                      time-reversible
A one-step map Φ_h is symplectic when its Jacobian M = ∂Φ_h/∂y satisfies Mᵀ J M = J. Backward error
analysis: a symplectic method is the exact flow of a modified Hamiltonian H̃ = H + O(h^p), so
|H(y_n) − H(y_0)| = O(h^p) for exponentially long times, whereas Euler's energy error grows and RK4's
drifts (slowly, linearly in t). For the harmonic oscillator H = ½p² + ½ω²q², leapfrog conserves
H̃ = ½p² + ½ω²q²(1 − h²ω²/4) exactly.

Hamiltonian neural network: H_θ(q, p) is an MLP and the learned field is f_θ = J ∇H_θ (∇ by autograd),
trained on (state, time derivative) pairs like the unconstrained baseline field g_θ(y). f_θ is
divergence-free and dH_θ/dt = ∇H_θᵀ J ∇H_θ = 0 along its exact flow.

    from papers.theory.geometric_integration import SYSTEMS, integrate, leapfrog_step, HamiltonianField
    states = integrate(SYSTEMS["pendulum"], "leapfrog", y0, h=0.1, n_steps=100_000, record_every=10)
    field = HamiltonianField(dim=1, hidden=200);  dydt = field(y)          # y: [batch, 2]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="geometric-integration",
    papers=(
        Paper("A Concise Introduction to Geometric Numerical Integration", "Sergio Blanes, Fernando Casas",
              2016, venue="CRC Press", catalog_ids=("004:138:1",)),
        Paper("Hamiltonian Neural Networks", "Sam Greydanus, Misko Dzamba, Jason Yosinski", 2019,
              venue="NeurIPS", arxiv="1906.01563"),
    ),
    claim=(
        "Over 10⁵ steps on the pendulum and the Kepler problem only the symplectic integrators (symplectic "
        "Euler, leapfrog) keep the energy error bounded, while Euler's grows and RK4's drifts; a "
        "Hamiltonian neural network carries the conservation law into learned pendulum dynamics and "
        "drifts less in energy than an unconstrained MLP field."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "(a) Euler / RK4 / symplectic Euler / leapfrog on pendulum and Kepler, 10⁵ steps: energy error "
        "vs time and its growth exponent; (b) MLP field vs Hamiltonian field J∇H_θ trained on noisy "
        "pendulum data, long RK4 rollouts: energy drift and trajectory error."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "INTEGRATORS": "model",
        "ORDERS": "model",
        "SYSTEMS": "model",
        "HamiltonianField": "model",
        "HamiltonianSystem": "model",
        "MLPField": "model",
        "euler_step": "model",
        "integrate": "model",
        "kepler_initial_state": "model",
        "leapfrog_step": "model",
        "oscillator_leapfrog_modified_energy": "model",
        "rk4_step": "model",
        "rollout": "model",
        "step": "model",
        "symplectic_euler_step": "model",
        "symplectic_matrix": "model",
    },
)
