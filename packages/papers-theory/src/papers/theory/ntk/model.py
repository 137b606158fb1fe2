"""A ReLU MLP in NTK parametrisation, its empirical and analytic neural tangent kernels, its linearisation.

NTK parametrisation (Jacot et al. 2018): weights W_l and biases b_l are N(0, 1) and scaled in the
forward pass,

    z_1 = σ_w/√n_0 W_1 x + σ_b b_1,   z_{l+1} = σ_w/√n_l W_{l+1} relu(z_l) + σ_b b_{l+1},   f(x) = z_{L+1}.

Empirical NTK: Θ̂(x, x') = ⟨∂f(x)/∂θ, ∂f(x')/∂θ⟩ = J(x) J(x')ᵀ. For one layer ∂f/∂W_l = (σ_w/√n_{l−1})
δ_l a_{l−1}ᵀ with δ_l = ∂f/∂z_l and a_{l−1} the layer's input, so without forming J

    Θ̂(x, x') = Σ_l (δ_l(x)·δ_l(x')) (σ_w²/n_{l−1} a_{l−1}(x)·a_{l−1}(x') + σ_b²).

Analytic NTK at infinite width (arc-cosine kernels for relu; (u, v) centred Gaussian with covariance
[[Σ(x,x), Σ(x,x')], [Σ(x,x'), Σ(x',x')]]):

    Σ_1 = σ_w² x·x'/n_0 + σ_b²,                 Θ_1 = Σ_1
    Σ_{l+1} = σ_w² E[relu(u) relu(v)] + σ_b² = σ_w² √(Σ(x,x)Σ(x',x'))/(2π) (sin φ + (π − φ) cos φ) + σ_b²
    Σ̇_{l+1} = σ_w² E[relu'(u) relu'(v)] = σ_w² (π − φ)/(2π),        cos φ = Σ(x,x')/√(Σ(x,x)Σ(x',x'))
    Θ_{l+1} = Θ_l Σ̇_{l+1} + Σ_{l+1}.

Linearisation (Lee et al. 2019): f_lin(θ, x) = f(θ_0, x) + J(θ_0, x)(θ − θ_0), evaluated with one
Jacobian-vector product.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, jvp, vmap


class NTKMLP(nn.Module):
    """A scalar-output ReLU MLP in NTK parametrisation: ``hidden_layers`` hidden layers of ``width``."""

    def __init__(self, in_dim: int, width: int, hidden_layers: int = 2, sigma_w: float = math.sqrt(2),
                 sigma_b: float = 0.1):
        super().__init__()
        if min(in_dim, width, hidden_layers) < 1:
            raise ValueError(f"in_dim, width and hidden_layers must be >= 1, got {in_dim}, {width}, "
                             f"{hidden_layers}")
        self.in_dim, self.sigma_w, self.sigma_b = in_dim, sigma_w, sigma_b
        sizes = [in_dim] + [width] * hidden_layers + [1]
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(n_out, n_in))
                                        for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(n_out)) for n_out in sizes[1:])

    def layers(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """The input a_{l−1} and pre-activation z_l of every layer, for x [n, in_dim]."""
        if x.dim() != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"expected inputs [n, {self.in_dim}], got {tuple(x.shape)}")
        inputs, pre = [], []
        a = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if i:
                a = torch.relu(pre[-1])
            inputs.append(a)
            pre.append(self.sigma_w / math.sqrt(w.shape[1]) * a @ w.T + self.sigma_b * b)
        return inputs, pre

    def forward(self, x: Tensor) -> Tensor:
        """f(x), [n]."""
        return self.layers(x)[1][-1][:, 0]


def empirical_ntk(model: NTKMLP, x1: Tensor, x2: Tensor | None = None) -> Tensor:
    """Θ̂(x1, x2) = J(x1) J(x2)ᵀ, [n1, n2], layer by layer from δ_l and a_{l−1} (no Jacobian is formed)."""
    x = x1 if x2 is None else torch.cat([x1, x2])
    with torch.enable_grad():
        inputs, pre = model.layers(x)
        deltas = torch.autograd.grad(pre[-1].sum(), pre)  # rows are per-sample: f(x_i) needs only x_i
    kernel = 0.0
    for a, delta in zip(inputs, deltas, strict=True):
        kernel = kernel + (delta @ delta.T) * (model.sigma_w**2 / a.shape[1] * a @ a.T + model.sigma_b**2)
    kernel = kernel.detach()
    n1 = len(x1)
    return kernel if x2 is None else kernel[:n1, n1:]


def jacobian(model: nn.Module, x: Tensor) -> Tensor:
    """J = ∂f(x_i)/∂θ, [n, number of parameters], with ``torch.func`` (vmap of reverse mode)."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def f(p, xi):
        return functional_call(model, p, (xi[None],))[0]

    rows = vmap(jacrev(f), in_dims=(None, 0))(params, x)
    return torch.cat([rows[k].reshape(len(x), -1) for k in params], dim=1)


def _relu_expectations(cov: Tensor, var1: Tensor, var2: Tensor) -> tuple[Tensor, Tensor]:
    """E[relu(u) relu(v)] and E[relu'(u) relu'(v)] for centred Gaussians with these (co)variances."""
    norms = (var1[:, None] * var2[None, :]).sqrt()
    cos = (cov / norms).clamp(-1.0, 1.0)
    angle = torch.arccos(cos)
    value = norms / (2 * math.pi) * (torch.sin(angle) + (math.pi - angle) * cos)
    derivative = (math.pi - angle) / (2 * math.pi)
    return value, derivative


def analytic_ntk(x1: Tensor, x2: Tensor, hidden_layers: int = 2, sigma_w: float = math.sqrt(2),
                 sigma_b: float = 0.1) -> Tensor:
    """The infinite-width NTK Θ(x1, x2) of :class:`NTKMLP`, [n1, n2], by the arc-cosine recursion, float64."""
    if x1.dim() != 2 or x2.dim() != 2 or x1.shape[1] != x2.shape[1]:
        raise ValueError(f"expected inputs [n1, d] and [n2, d], got {tuple(x1.shape)} and {tuple(x2.shape)}")
    x1, x2 = x1.double(), x2.double()
    sw2, sb2 = sigma_w**2, sigma_b**2
    cov = sw2 * x1 @ x2.T / x1.shape[1] + sb2
    var1 = sw2 * (x1 * x1).sum(1) / x1.shape[1] + sb2
    var2 = sw2 * (x2 * x2).sum(1) / x1.shape[1] + sb2
    ntk = cov
    for _ in range(hidden_layers):
        value, derivative = _relu_expectations(cov, var1, var2)
        # E[relu(u)²] = var/2 on the diagonal
        cov, var1, var2 = sw2 * value + sb2, sw2 * var1 / 2 + sb2, sw2 * var2 / 2 + sb2
        ntk = ntk * sw2 * derivative + cov
    return ntk


class Linearized(nn.Module):
    """f_lin(θ, x) = f(θ_0, x) + J(θ_0, x)(θ − θ_0): the first-order Taylor model of ``model`` at its
    current parameters θ_0. Its own parameters θ start at θ_0 and are trained like the network's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.origin = {k: v.detach().clone() for k, v in model.named_parameters()}
        self.params = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(v.clone())
                                        for k, v in self.origin.items()})

    def displacement(self) -> dict[str, Tensor]:
        return {k: self.params[k.replace(".", "_")] - v for k, v in self.origin.items()}

    def forward(self, x: Tensor) -> Tensor:
        def f(p):
            return functional_call(self.model, p, (x,))

        value, tangent = jvp(f, (self.origin,), (self.displacement(),))
        return value + tangent


def ntk_predict(kernel_test_train: Tensor, kernel_train: Tensor, f0_test: Tensor, f0_train: Tensor,
                y_train: Tensor, lr: float, steps: int, discrete: bool = True) -> Tensor:
    """Outputs after ``steps`` of GD with step ``lr`` on L = 1/(2N) Σ (f(x_i) − y_i)² for the model
    linear in θ with kernel Θ:

        f_t(X) = f_0(X) + Θ(X, X_tr) Θ⁻¹ (I − E_t) (Y − f_0(X_tr)),
        E_t = (I − η Θ/N)^t (GD, exact for the linearised model)  or  e^{−η Θ t/N} (gradient flow).

    Θ⁻¹(I − E_t) is applied in Θ's eigenbasis, so a singular Θ is fine (its null space is not moved).
    """
    n = len(y_train)
    eigenvalues, vectors = torch.linalg.eigh(kernel_train.double())
    rates = (lr / n * eigenvalues).clamp(min=0)
    decay = (1 - rates) ** steps if discrete else torch.exp(-rates * steps)
    scale = torch.where(rates > 1e-12, (1 - decay) / eigenvalues.clamp(min=1e-300), lr / n * steps)
    residual = (y_train - f0_train).double()
    step = vectors @ (scale * (vectors.T @ residual))
    return (f0_test.double() + kernel_test_train.double() @ step).to(f0_test.dtype)
