"""Implicit gradient regularisation: gradient descent and SGD as discretisations of modified flows.

David G. T. Barrett, Benoit Dherin (2021). *Implicit Gradient Regularization*. ICLR 2021.
arXiv:2009.11162. Catalogue id 003:77:1.
Samuel L. Smith, Benoit Dherin, David G. T. Barrett, Soham De (2021). *On the Origin of Implicit
Regularization in Stochastic Gradient Descent*. ICLR 2021. arXiv:2101.12176. Catalogue id 003:73:1.

Backward error analysis of gradient descent θ_{n+1} = θ_n − h ∇C(θ_n) (Barrett & Dherin, Thm 3.1):
the iterates follow the modified flow

    dθ/dt = −∇C̃(θ),     C̃(θ) = C(θ) + (h/4) ‖∇C(θ)‖²,     ∇‖∇C‖² = 2 H ∇C,

with local error O(h³) per step (global O(h²) at a fixed time), whereas the gradient flow on C itself
is only O(h²) per step (global O(h)). The implicit regulariser (h/4)‖∇C‖² biases GD towards flat
regions, more so for larger h.

SGD with random shuffling over m minibatch losses Ĉ_k, C = (1/m) Σ_k Ĉ_k (Smith et al., Sec. 2):
the mean iterate after one epoch follows, to O(m³ε³),

    dθ/dt = −∇C_SGD(θ),   C_SGD = C + (ε/4m) Σ_k ‖∇Ĉ_k‖² = C̃ + (ε/4m) Σ_k ‖∇Ĉ_k − ∇C‖²,

an extra penalty on the variance of the minibatch gradients.

    from papers.theory.implicit_regularisation import modified_loss, flow, gradient_descent
    loss = factorised_regression_loss(x, y)                     # C(θ) for ŷ = θ1 θ2 x
    iterates = gradient_descent(loss, theta0, h=0.1, n_steps=10)
    path = flow(modified_loss(loss, 0.1), theta0, times)        # dopri5 on −∇C̃
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="implicit-regularisation",
    papers=(
        Paper("Implicit Gradient Regularization", "David G. T. Barrett, Benoit Dherin", 2021, venue="ICLR",
              arxiv="2009.11162", catalog_ids=("003:77:1",)),
        Paper("On the Origin of Implicit Regularization in Stochastic Gradient Descent",
              "Samuel L. Smith, Benoit Dherin, David G. T. Barrett, Soham De", 2021, venue="ICLR",
              arxiv="2101.12176", catalog_ids=("003:73:1",)),
    ),
    claim=(
        "Gradient descent with step h follows the flow on C + (h/4)‖∇C‖² to O(h³) per step (O(h²) at a "
        "fixed time) but the gradient flow on C only to O(h²) (O(h)); the mean SGD iterate follows the flow "
        "that adds the minibatch-gradient variance penalty; larger steps end in flatter solutions with "
        "smaller ‖∇C‖ and lower test error."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "(a) GD on the two-parameter model ŷ = θ1θ2x against dopri5 solutions of the gradient and modified "
        "flows, error slopes in h; (b) exact mean over orderings of one SGD epoch vs the C_SGD and C̃_GD "
        "flows; (c) tanh MLP classifier trained by GD at several learning rates for the same time, plus "
        "explicit regularisation: sharpness, ‖∇C‖², test error."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "MLP": "model",
        "factorised_regression_loss": "model",
        "flow": "model",
        "gradient_descent": "model",
        "gradient_norm_squared": "model",
        "loss_gradient": "model",
        "modified_loss": "model",
        "sgd_modified_loss": "model",
        "shuffled_epoch_mean": "model",
        "top_hessian_eigenvalue": "model",
    },
)
