"""Neural tangent kernel and linearised wide networks.

- Arthur Jacot, Franck Gabriel, Clément Hongler. *Neural Tangent Kernel: Convergence and Generalization
  in Neural Networks*. NeurIPS 2018. arXiv:1806.07572. Catalogue id 003:367:1.
- Jaehoon Lee, Lechao Xiao, Samuel S. Schoenholz, Yasaman Bahri, Roman Novak, Jascha Sohl-Dickstein,
  Jeffrey Pennington. *Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient
  Descent*. NeurIPS 2019. arXiv:1902.06720. Catalogue id 003:279:1.

NTK parametrisation: weights and biases N(0, 1), scaled in the forward pass,

    z_1 = σ_w/√n_0 W_1 x + σ_b b_1,   z_{l+1} = σ_w/√n_l W_{l+1} relu(z_l) + σ_b b_{l+1},   f = z_{L+1}.

Neural tangent kernel Θ̂(x, x') = ⟨∂f(x)/∂θ, ∂f(x')/∂θ⟩ = J(x) J(x')ᵀ. As the widths n_l → ∞ it becomes
deterministic at initialisation and constant during training; for relu it is (arc-cosine kernels)

    Σ_1 = σ_w² x·x'/n_0 + σ_b²,  Θ_1 = Σ_1,
    Σ_{l+1} = σ_w² √(Σ(x,x)Σ(x',x'))/(2π) (sin φ + (π − φ) cos φ) + σ_b²,  Σ̇_{l+1} = σ_w² (π − φ)/(2π),
    Θ_{l+1} = Θ_l Σ̇_{l+1} + Σ_{l+1},   cos φ = Σ_l(x,x')/√(Σ_l(x,x)Σ_l(x',x')).

A wide network trained by gradient descent on L = 1/(2N) Σ_i (f(x_i) − y_i)² stays close to its
linearisation f_lin(θ) = f(θ_0) + J(θ_0)(θ − θ_0), whose outputs follow in closed form

    f_t(X) = f_0(X) + Θ(X, X_tr) Θ⁻¹ (I − e^{−ηΘt/N}) (Y − f_0(X_tr))     (gradient flow)

with (I − ηΘ/N)^t in place of the exponential for t discrete steps of size η.

    from papers.theory.ntk import NTKMLP, Linearized, analytic_ntk, empirical_ntk, ntk_predict
    net = NTKMLP(in_dim=2, width=4096, hidden_layers=1)
    kernel = empirical_ntk(net, x)                  # ≈ analytic_ntk(x, x, hidden_layers=1)
    linear = Linearized(net)                        # trained like net; linear(x) = f_lin(θ, x)
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="ntk",
    papers=(
        Paper("Neural Tangent Kernel: Convergence and Generalization in Neural Networks",
              "Arthur Jacot, Franck Gabriel, Clément Hongler", 2018, venue="NeurIPS", arxiv="1806.07572",
              catalog_ids=("003:367:1",)),
        Paper("Wide Neural Networks of Any Depth Evolve as Linear Models Under Gradient Descent",
              "Jaehoon Lee, Lechao Xiao, Samuel S. Schoenholz, Yasaman Bahri, Roman Novak, Jascha "
              "Sohl-Dickstein, Jeffrey Pennington", 2019, venue="NeurIPS", arxiv="1902.06720",
              catalog_ids=("003:279:1",)),
    ),
    claim=(
        "As width grows, the empirical NTK of a ReLU network converges to the analytic kernel at "
        "initialisation (error ∝ width^−1/2) and changes less in training, and the network trained by "
        "gradient descent approaches its linearisation and NTK kernel regression."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Regression of sin(2γ) on the unit circle with a 1-hidden-layer ReLU MLP of width 128–8192: "
        "empirical vs analytic NTK at init over seeds; GD on the network and its linearisation side by "
        "side, compared with closed-form kernel regression (empirical and analytic NTK)."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "Linearized": "model",
        "NTKMLP": "model",
        "analytic_ntk": "model",
        "empirical_ntk": "model",
        "jacobian": "model",
        "ntk_predict": "model",
    },
)
