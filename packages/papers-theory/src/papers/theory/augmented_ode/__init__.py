"""Augmented neural ODEs and time-dependent dynamics: zero padding, t as input, and hypernetworks θ(t).

Papers and catalogue ids:

- David Ha, Andrew Dai, Quoc V. Le. *HyperNetworks*. ICLR 2017. arXiv:1609.09106. Catalogue id
  004:65:1 — a small network outputs the weights of another; here θ(t), the weights of an ODE's
  dynamics as a function of time, as Chen et al. (2018) use for their continuous normalizing flows.
- Emilien Dupont, Arnaud Doucet, Yee Whye Teh. *Augmented Neural ODEs*. NeurIPS 2019.
  arXiv:1904.01681 — an ODE flow is a homeomorphism of its own space, so in 1-D it cannot map
  x to −x; zero-padded extra dimensions remove the restriction.

Equations:

    ODE flow         φ(x) = h(T),  dh/dt = f(h(t), t),  h(0) = x ∈ R^d
    1-D ordering     x < x'  ⇒  h(t) < h'(t) for all t   (solutions cannot cross), so φ is increasing
    augmented flow   φ(x) = P h(T),  h(0) = [x, 0_p] ∈ R^{d+p},  P the projection on the first d coordinates
    autonomous       dh/dt = f(h)                         (1-D: every trajectory monotone in t)
    time as input    dh/dt = f([h, t])
    hypernetwork     dh/dt = f(h; θ(t)),  θ(t) = g(t) = [W₁(t), b₁(t), W₂(t), b₂(t)],
                     f(h; θ) = W₂ tanh(W₁ h + b₁) + b₂

    from papers.theory.augmented_ode import ODEFlow, make_field
    flow = ODEFlow(make_field("concat", dim=2), dim=1, augment=1)    # 1-D input, 2-D state
    y = flow(x);  flow.nfe                                            # x: [n, 1] -> y: [n, 1]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="augmented-ode",
    papers=(
        Paper("HyperNetworks", "David Ha, Andrew Dai, Quoc V. Le", 2017, venue="ICLR", arxiv="1609.09106",
              catalog_ids=("004:65:1",)),
        Paper("Augmented Neural ODEs", "Emilien Dupont, Arnaud Doucet, Yee Whye Teh", 2019, venue="NeurIPS",
              arxiv="1904.01681"),
    ),
    claim="A 1-D ODE flow cannot map x to -x but a zero-padded (augmented) one can; on a task that needs "
          "time-dependent dynamics, autonomous f(h) fails while f(h, t) and a hypernetwork θ(t) both succeed "
          "and behave alike.",
    module=f"{__name__}.experiment",
    summary="Toy 1-D tasks: x -> -x with a native vs an augmented ODE flow; rising-and-falling trajectories "
            "with autonomous, time-as-input and hypernetwork dynamics; MSE against the monotonicity bounds, "
            "and NFE.",
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {name: "model" for name in ("DYNAMICS", "AutonomousField", "ConcatTimeField", "HyperField", "ODEFlow",
                                "isotonic_regression", "make_field", "monotone_trajectory_bound")},
)
