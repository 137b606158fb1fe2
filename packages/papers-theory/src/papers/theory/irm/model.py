"""The IRMv1 penalty, the paper's linear structural equation model, and linear IRM / ERM solvers."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

Loss = Callable[[Tensor, Tensor], Tensor]


def irm_penalty(features: Tensor, y: Tensor, loss: Loss, *, unbiased: bool = False) -> Tensor:
    """‖∇_{w | w=1} R(Φ w)‖², with R the risk ``loss(Φ w, y)`` of one environment.

    ``features`` is Φ(x) as [..., n, k] and ``y`` [..., n, 1]; leading axes are independent problems,
    each with its own dummy classifier, and ``loss`` reduces over the sample axis only (shape [...]).
    k = 1 is IRMv1's scalar dummy classifier w = 1.0 on the logits; k = d is a linear Φ ∈ R^{d×d}
    with the fixed classifier w = (1, …, 1) (the paper's linear experiments). ``unbiased=True``
    removes the bias of squaring a noisy gradient: ∇_w R(first half) · ∇_w R(second half) of the
    samples (the paper's Sec. 3.2; this estimate can be negative). Returns shape [...].
    """
    if features.dim() < 2 or y.shape != (*features.shape[:-1], 1):
        raise ValueError(f"irm_penalty needs features [..., n, k] and y [..., n, 1], got "
                         f"{tuple(features.shape)} and {tuple(y.shape)}")
    w = torch.ones(*features.shape[:-2], features.shape[-1], 1, dtype=features.dtype,
                   device=features.device, requires_grad=True)

    def gradient(rows: slice) -> Tensor:
        risk = loss(features[..., rows, :] @ w, y[..., rows, :])
        return torch.autograd.grad(risk.sum(), w, create_graph=True)[0]

    if not unbiased:
        return gradient(slice(None)).pow(2).sum((-2, -1))
    half = features.shape[-2] // 2
    if half < 1:
        raise ValueError("the unbiased penalty needs at least two samples")
    return (gradient(slice(0, half)) * gradient(slice(half, 2 * half))).sum((-2, -1))


def squared_error(prediction: Tensor, y: Tensor) -> Tensor:
    """Mean squared error over the sample axis: [..., n, 1] → [...]."""
    return (prediction - y).pow(2).mean((-2, -1))


def logistic_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Mean binary cross-entropy of logits over the sample axis: [..., n, 1] → [...]."""
    return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none").mean((-2, -1))


class ChainSEM:
    """The linear structural equation model of the paper's Sec. 5.1 (dimension d = 2q):

        H  ← N(0, e²)^q
        Z1 ← H W_{h→1} + N(0, e²)^q
        Y  ← Z1 W_{1→y} + H W_{h→y} + N(0, e²)^q     (heteroskedastic)   or + N(0, 1)^q  (homoskedastic)
        Z2 ← Y W_{y→2} + H W_{h→2} + N(0, 1)^q        (heteroskedastic)   or + N(0, e²)^q (homoskedastic)
        X  = (Z1, Z2) S,      target y = Σ_j Y_j

    W_{1→y} = W_{y→2} = I. Fully observed (``hidden=False``): W_{h→1} = I, W_{h→y} = W_{h→2} = 0, so H
    is only part of Z1's variance. Partially observed (``hidden=True``): the three W_{h→·} are
    random matrices with N(0, 1)/d entries, H confounds Z1, Y and Z2. S is I, or a random orthogonal matrix
    (``scramble=True``). Z1 causes Y and Y causes Z2; the environment e scales the noise. The invariant
    (causal) regression vector is S^T (1, …, 1, 0, …, 0).
    """

    def __init__(self, dim: int, *, hidden: bool = False, hetero: bool = True, scramble: bool = False,
                 generator: torch.Generator):
        if dim < 2 or dim % 2:
            raise ValueError(f"dim must be an even number >= 2, got {dim}")
        self.dim, self.q, self.hidden, self.hetero = dim, dim // 2, hidden, hetero
        q = self.q
        self.w_1y = torch.eye(q)
        self.w_y2 = torch.eye(q)
        if hidden:
            self.w_h1, self.w_hy, self.w_h2 = (torch.randn(q, q, generator=generator) / dim for _ in range(3))
        else:
            self.w_h1, self.w_hy, self.w_h2 = torch.eye(q), torch.zeros(q, q), torch.zeros(q, q)
        self.scramble = torch.linalg.qr(torch.randn(dim, dim, generator=generator))[0] if scramble \
            else torch.eye(dim)

    def solution(self) -> Tensor:
        """The causal coefficients S^T (W_{1→y} 1, 0): [d]."""
        return self.scramble.T @ torch.cat([self.w_1y.sum(1), torch.zeros(self.q)])

    def causal_mask(self) -> Tensor:
        """True on the coordinates of the unscrambled Z1 (the causes of Y)."""
        return torch.arange(self.dim) < self.q

    def sample(self, n: int, env: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """n samples of environment ``env`` (the noise scale e): X [n, d], y [n, 1]."""
        if n < 1 or not env > 0:
            raise ValueError(f"need n >= 1 and env > 0, got n={n}, env={env}")
        q = self.q

        def noise(scale: float) -> Tensor:
            return torch.randn(n, q, generator=generator) * scale

        h = noise(env)
        z1 = h @ self.w_h1 + noise(env)
        y_scale, z2_scale = (env, 1.0) if self.hetero else (1.0, env)
        y = z1 @ self.w_1y + h @ self.w_hy + noise(y_scale)
        z2 = y @ self.w_y2 + h @ self.w_h2 + noise(z2_scale)
        return torch.cat([z1, z2], 1) @ self.scramble, y.sum(1, keepdim=True)


def coefficient_errors(truth: Tensor, estimate: Tensor, causal: Tensor | None = None) -> tuple[float, float]:
    """Mean squared error of the estimate on the causal entries (``causal``, by default truth ≠ 0) and on
    the others."""
    truth, estimate = truth.flatten(), estimate.flatten()
    causal = truth != 0 if causal is None else causal
    errors = (truth - estimate).pow(2)
    return errors[causal].mean().item(), errors[~causal].mean().item()


def erm_linear(environments: Sequence[tuple[Tensor, Tensor]]) -> Tensor:
    """Least squares without intercept on the pooled environments: [d]."""
    x = torch.cat([x for x, _ in environments])
    y = torch.cat([y for _, y in environments])
    return torch.linalg.lstsq(x.double(), y.double()).solution.flatten().to(x.dtype)


def irm_linear(x: Tensor, y: Tensor, regs: Tensor, *, steps: int, lr: float,
               unbiased: bool = False) -> Tensor:
    """Linear IRM, as in the paper's synthetic experiments: Φ ∈ R^{d×d} from I, fixed w = (1, …, 1),
    Adam on the full batches of

        reg · Σ_e R^e(Φ w) + (1 − reg) · Σ_e ‖∇_w R^e(Φ w)‖² / d

    (squared loss; the penalty is averaged over the d components of w, as the paper's code does, so
    that its grid of ``reg`` values applies). ``x [K, E, n, d]``, ``y [K, E, n, 1]``: K independent
    problems of E training environments, solved together, each with its own ``regs[k]``.
    Returns the K predictors Φ w: [K, d].
    """
    if x.dim() != 4 or y.shape != (*x.shape[:-1], 1) or regs.shape != x.shape[:1]:
        raise ValueError(f"irm_linear needs x [K, E, n, d], y [K, E, n, 1] and regs [K], got "
                         f"{tuple(x.shape)}, {tuple(y.shape)}, {tuple(regs.shape)}")
    if not ((regs >= 0) & (regs <= 1)).all():
        raise ValueError(f"every reg must lie in [0, 1], got {regs.tolist()}")
    dim = x.shape[-1]
    phi = nn.Parameter(torch.eye(dim, dtype=x.dtype).repeat(len(x), 1, 1))
    optimizer = torch.optim.Adam([phi], lr=lr)
    regs = regs.to(x.dtype)
    for step in range(steps):
        features = x @ phi[:, None]  # [K, E, n, d]
        risk = squared_error(features.sum(-1, keepdim=True), y).sum(1)
        penalty = irm_penalty(features, y, squared_error, unbiased=unbiased).sum(1) / dim
        objective = (regs * risk + (1 - regs) * penalty).sum()
        if not torch.isfinite(objective):
            raise FloatingPointError(f"linear IRM: non-finite objective at step {step}")
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
    return phi.detach().sum(-1)


class ColoredMLP(nn.Module):
    """The paper's Colored-MNIST classifier: two hidden ReLU layers, Xavier-uniform weights, zero biases,
    one logit. ``grayscale=True`` sums the two colour channels first (the oracle, invariant by design)."""

    def __init__(self, channel_dim: int, hidden: int, grayscale: bool = False):
        super().__init__()
        self.channel_dim, self.grayscale = channel_dim, grayscale
        layers = [nn.Linear(channel_dim if grayscale else 2 * channel_dim, hidden), nn.Linear(hidden, hidden),
                  nn.Linear(hidden, 1)]
        for layer in layers:
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.net = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != 2 * self.channel_dim:
            raise ValueError(f"expected inputs [n, {2 * self.channel_dim}] (two colour channels), "
                             f"got {tuple(x.shape)}")
        if self.grayscale:
            x = x[:, : self.channel_dim] + x[:, self.channel_dim:]
        return self.net(x)
