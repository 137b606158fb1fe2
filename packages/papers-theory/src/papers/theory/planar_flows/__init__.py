"""Variational inference with normalizing flows: planar and radial flows on 2-D energies.

Danilo Jimenez Rezende, Shakir Mohamed. *Variational Inference with Normalizing Flows*. ICML 2015.
arXiv:1505.05770. Catalogue id 001:135:1.

A simple density q_0 is pushed through K invertible maps, z_K = f_K ∘ … ∘ f_1(z_0), and its density
follows by the change of variables (Eq. 7):

    log q_K(z_K) = log q_0(z_0) − Σ_k log|det ∂f_k/∂z_{k−1}|

Planar flow (Eqs. 10–12) and radial flow (Eqs. 13–14), h = tanh for the planar flow:

    f(z) = z + u h(wᵀz + b),          |det ∂f/∂z| = |1 + uᵀψ(z)|,   ψ(z) = h'(wᵀz + b) w
    f(z) = z + β h(α, r)(z − z0),     h(α, r) = 1/(α + r),  r = ‖z − z0‖,
                                      |det ∂f/∂z| = [1 + βh]^{d−1} [1 + βh + βh'(α, r) r]

Invertibility (Appendix A): wᵀu ≥ −1 through û = u + [m(wᵀu) − wᵀu] w/‖w‖², m(x) = −1 + log(1 + eˣ);
β ≥ −α through β = −α + log(1 + e^β̃) (and α = log(1 + e^α̃) > 0 here).

For an unnormalised target p(z) = e^{−U(z)}/Z the flow minimises the free energy (Eq. 15 with
−log p(x, z) = U(z))

    F = E_q0[ log q_0(z_0) − Σ_k log|det ∂f_k/∂z_{k−1}| + U(z_K) ] = KL(q_K ‖ p) − log Z

on the four energies of Table 1 (w1 = sin(2πz1/4), w2 = 3 e^{−½((z1−1)/0.6)²}, w3 = 3σ((z1−1)/0.3)):

    U1 = ½((‖z‖ − 2)/0.4)² − ln(e^{−½((z1−2)/0.6)²} + e^{−½((z1+2)/0.6)²})
    U2 = ½((z2 − w1)/0.4)²
    U3 = −ln(e^{−½((z2−w1)/0.35)²} + e^{−½((z2−w1+w2)/0.35)²})
    U4 = −ln(e^{−½((z2−w1)/0.4)²} + e^{−½((z2−w1+w3)/0.35)²})

    from papers.theory.planar_flows import NormalizingFlow, free_energy, u3
    flow = NormalizingFlow(dim=2, n_layers=32, kind="planar")        # or kind="radial"
    z, log_q = flow.sample(256);  loss = free_energy(flow, u3, 256).mean()
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="planar-flows",
    papers=Paper(
        "Variational Inference with Normalizing Flows",
        "Danilo Jimenez Rezende, Shakir Mohamed",
        2015,
        venue="ICML",
        arxiv="1505.05770",
        catalog_ids=("001:135:1",),
    ),
    claim="Longer planar and radial flows (K = 2, 8, 32) fit the paper's four unnormalised 2-D energies "
          "better: KL(q_K || p) falls as the flow length K grows.",
    module=f"{__name__}.experiment",
    summary="Planar and radial flows of length 2, 8, 32 fitted by minimising the free energy on U1-U4; "
            "true KL (log Z by grid integration) against K, and the fitted densities.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {name: "model" for name in ("ENERGIES", "FLOW_KINDS", "NormalizingFlow", "PlanarFlow", "RadialFlow",
                                "box_wall", "free_energy", "log_normaliser", "u1", "u2", "u3", "u4")},
)
