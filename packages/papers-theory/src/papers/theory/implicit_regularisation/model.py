"""Gradient descent, SGD with random shuffling, and the flows of their modified losses.

A loss is a function ``loss(theta) -> scalar`` of a parameter vector ``theta`` [P] (batched losses
accept [..., P] and return [...]). Backward error analysis of gradient descent θ' = θ − h∇C(θ):

    gradient flow          dθ/dt = −∇C(θ)                                  one GD step is O(h²) from it
    modified flow (GD)     dθ/dt = −∇C̃(θ),  C̃ = C + (h/4)‖∇C‖²            one GD step is O(h³) from it
    modified flow (SGD)    dθ/dt = −∇C_SGD, C_SGD = C + (h/4m) Σ_k ‖∇Ĉ_k‖²   (m minibatch losses Ĉ_k,
                                                                         C = (1/m) Σ_k Ĉ_k)

with ∇(‖∇C‖²) = 2 H∇C, a Hessian–vector product by double backward. The SGD version matches the mean
iterate over random orderings of one epoch; (1/m) Σ_k ‖∇Ĉ_k‖² = ‖∇C‖² + (1/m) Σ_k ‖∇Ĉ_k − ∇C‖², so
C_SGD = C̃ + (h/4m) Σ_k ‖∇Ĉ_k − ∇C‖²: an extra penalty on the minibatch-gradient variance.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

Loss = Callable[[Tensor], Tensor]


def _check_theta(theta: Tensor) -> None:
    if not isinstance(theta, Tensor) or not torch.is_floating_point(theta) or theta.dim() < 1:
        raise ValueError(f"theta must be a floating-point tensor [..., P], got {type(theta).__name__} "
                         f"of shape {tuple(getattr(theta, 'shape', ()))}")


def loss_gradient(loss: Loss, theta: Tensor, create_graph: bool = False) -> Tensor:
    """∇C(θ) by autograd; ``theta`` may be batched [..., P] (the loss summed over the batch)."""
    _check_theta(theta)
    with torch.enable_grad():
        x = theta if theta.requires_grad else theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(loss(x).sum(), x, create_graph=create_graph)
    return grad


def gradient_norm_squared(loss: Loss, theta: Tensor) -> Tensor:
    """‖∇C(θ)‖², differentiable in θ (its gradient is 2 H∇C)."""
    return loss_gradient(loss, theta, create_graph=True).square().sum(-1)


def modified_loss(loss: Loss, h: float) -> Loss:
    """C̃_h(θ) = C(θ) + (h/4)‖∇C(θ)‖² (Barrett & Dherin 2021, Theorem 3.1)."""
    return lambda theta: loss(theta) + (h / 4) * gradient_norm_squared(loss, theta)


def sgd_modified_loss(batch_losses: Sequence[Loss], h: float) -> Loss:
    """C_SGD(θ) = C(θ) + (h/4m) Σ_k ‖∇Ĉ_k(θ)‖², C = (1/m) Σ_k Ĉ_k (Smith et al. 2021, Eq. 2)."""
    m = len(batch_losses)
    if m < 1:
        raise ValueError("sgd_modified_loss needs at least one minibatch loss")

    def loss(theta: Tensor) -> Tensor:
        total = sum(c(theta) for c in batch_losses) / m
        return total + (h / (4 * m)) * sum(gradient_norm_squared(c, theta) for c in batch_losses)

    return loss


def flow(loss: Loss, theta0: Tensor, times: Tensor, *, rtol: float = 1e-12, atol: float = 1e-14) -> Tensor:
    """Gradient flow dθ/dt = −∇loss(θ) from θ0 by dopri5 at tight tolerance: [len(times), *θ0.shape]."""
    from papers.theory.neural_ode import odeint

    _check_theta(theta0)
    return odeint(lambda t, theta: -loss_gradient(loss, theta), theta0.detach(), times, rtol=rtol, atol=atol)


def gradient_descent(loss: Loss, theta0: Tensor, h: float, n_steps: int) -> Tensor:
    """Iterates θ_{n+1} = θ_n − h∇C(θ_n): [n_steps + 1, *θ0.shape]."""
    _check_theta(theta0)
    if not (h > 0 and math.isfinite(h)) or n_steps < 0:
        raise ValueError(f"need a step h > 0 and n_steps >= 0, got h={h}, n_steps={n_steps}")
    iterates = [theta0.detach()]
    for _ in range(n_steps):
        iterates.append(iterates[-1] - h * loss_gradient(loss, iterates[-1]))
    return torch.stack(iterates)


def shuffled_epoch_mean(batch_losses: Sequence[Loss], theta0: Tensor, h: float) -> Tensor:
    """Mean of θ_m after one epoch of SGD over every ordering of the m minibatches (random shuffling).

    Each ordering σ runs θ_{j+1} = θ_j − h∇Ĉ_{σ(j)}(θ_j), j = 0 … m−1; all m! orderings are run at
    once as a batch of parameter vectors (exact expectation, so m is kept small).
    """
    _check_theta(theta0)
    m = len(batch_losses)
    if not 1 <= m <= 8:
        raise ValueError(f"exact averaging over orderings needs 1 <= m <= 8 minibatches, got {m}")
    orders = torch.tensor(list(itertools.permutations(range(m))))  # [m!, m]
    theta = theta0.detach().expand(len(orders), *theta0.shape).clone()
    for j in range(m):
        grad = torch.zeros_like(theta)
        for k, batch_loss in enumerate(batch_losses):
            rows = orders[:, j] == k
            grad[rows] = loss_gradient(batch_loss, theta[rows])
        theta = theta - h * grad
    return theta.mean(0)


def top_hessian_eigenvalue(loss: Callable[[], Tensor], params: Sequence[Tensor], iterations: int = 50,
                           generator: torch.Generator | None = None) -> float:
    """Largest Hessian eigenvalue (sharpness) of ``loss()`` in ``params`` by power iteration on H v.

    H v comes from double backward. Power iteration converges to the eigenvalue of largest magnitude,
    which at a (near) minimum is the top one.
    """
    params = list(params)
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    v = [torch.randn(p.shape, generator=generator, dtype=p.dtype) for p in params]
    eigenvalue = 0.0
    for _ in range(iterations):
        norm = torch.sqrt(sum((u * u).sum() for u in v))
        v = [u / norm for u in v]
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        eigenvalue = sum((a * b).sum() for a, b in zip(hv, v, strict=True)).item()
        v = [x.detach() for x in hv]
    return eigenvalue


# ----------------------------------------------------------------------------------------------------
# The two-parameter model of Barrett & Dherin (Sec. 3): ŷ = θ1 θ2 x
# ----------------------------------------------------------------------------------------------------


def factorised_regression_loss(x: Tensor, y: Tensor) -> Loss:
    """C(θ) = (1/n) Σ_i ½ (θ1 θ2 x_i − y_i)²: minima on the hyperbola θ1θ2 = Σxy/Σx², non-convex.

    ‖∇C‖² = (θ1² + θ2²) ((1/n) Σ_i r_i x_i)², r_i = θ1θ2 x_i − y_i: the flattest minima are balanced.
    """
    if x.shape != y.shape or x.dim() != 1 or len(x) == 0:
        raise ValueError(f"x and y must be equal-length non-empty vectors, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")

    def loss(theta: Tensor) -> Tensor:
        if theta.shape[-1] != 2:
            raise ValueError(f"the factorised model has 2 parameters, got theta of shape "
                             f"{tuple(theta.shape)}")
        product = (theta[..., 0] * theta[..., 1])[..., None]
        return 0.5 * (product * x - y).square().mean(-1)

    return loss


class MLP(nn.Module):
    """A small tanh MLP classifier for the flatness / generalisation part."""

    def __init__(self, n_in: int, n_out: int, hidden: int = 64, layers: int = 2):
        super().__init__()
        modules: list[nn.Module] = []
        for i in range(layers):
            modules += [nn.Linear(n_in if i == 0 else hidden, hidden), nn.Tanh()]
        modules.append(nn.Linear(hidden, n_out))
        self.net = nn.Sequential(*modules)
        self.n_in = n_in

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[-1] != self.n_in:
            raise ValueError(f"expected inputs [batch, {self.n_in}], got {tuple(x.shape)}")
        return self.net(x)
