"""Linear self-attention on in-context regression tokens, and gradient descent on the same context.

Tokens: e_i = (x_i, y_i) for the N context pairs and e_q = (x_q, 0) for the query, stacked as
E ∈ R^{(N+1)×(d+1)}. One linear self-attention (LSA) layer, no softmax, keys and values from the
context tokens only:

    e_j ← e_j + Σ_{i ≤ N} P W_V e_i (W_K e_i)ᵀ (W_Q e_j)

and the prediction is read from the query token as ŷ = −[e_q]_y (the token carries the residual
y − W x, which is −W x_q for y_q = 0).

Gradient descent from W_0 on L(W) = 1/(2N) Σ_i ‖W x_i − y_i‖² moves W by
ΔW = −η ∇L = −(η/N) Σ_i (W_0 x_i − y_i) x_iᵀ. The construction of von Oswald et al. (Prop. 1),

    W_K = W_Q = [[I_d, 0], [0, 0]],   W_V = [[0, 0], [W_0, −I]],   P = (η/N) I,

gives P W_V e_i (W_K e_i)ᵀ W_Q e_j = (0, (η/N) (W_0 x_i − y_i) x_iᵀ x_j), so the layer adds
(0, −ΔW x_j) to every token: with W_0 = 0 and e_q = (x_q, 0) the query ends at (x_q, −ΔW x_q), and
ŷ = ΔW x_q is exactly the prediction of one GD step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn


def make_tokens(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
    """Tokens [B, N+1, d+1]: rows (x_i, y_i) for the context, then (x_q, 0) for the query.

    ``x`` [B, N, d], ``y`` [B, N], ``x_query`` [B, d].
    """
    if x.dim() != 3 or y.shape != x.shape[:2] or x_query.shape != (x.shape[0], x.shape[2]):
        raise ValueError(f"expected x [B, N, d], y [B, N] and x_query [B, d]; got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}, x_query {tuple(x_query.shape)}")
    context = torch.cat([x, y[..., None]], dim=-1)
    query = torch.cat([x_query, torch.zeros_like(x_query[:, :1])], dim=-1)
    return torch.cat([context, query[:, None]], dim=1)


class LinearSelfAttention(nn.Module):
    """One LSA layer, e_j ← e_j + Σ_{i ≤ N} P W_V e_i (W_K e_i)ᵀ (W_Q e_j), on tokens [B, N+1, D].

    The last token is the query; it attends to the N context tokens but is not a key or value
    itself. Weights start N(0, init_std²).
    """

    def __init__(self, token_dim: int, init_std: float = 0.02):
        super().__init__()
        if token_dim < 2:
            raise ValueError(f"token_dim must be >= 2 (an input and a target coordinate), got {token_dim}")
        self.token_dim = token_dim
        self.key, self.query, self.value, self.projection = (
            nn.Parameter(init_std * torch.randn(token_dim, token_dim)) for _ in range(4))

    def _check(self, tokens: Tensor) -> None:
        if tokens.dim() != 3 or tokens.shape[-1] != self.token_dim or tokens.shape[1] < 2:
            raise ValueError(f"expected tokens [B, N+1, {self.token_dim}] with N >= 1, "
                             f"got {tuple(tokens.shape)}")

    def forward(self, tokens: Tensor) -> Tensor:
        self._check(tokens)
        context = tokens[:, :-1]
        keys = context @ self.key.T                       # [B, N, D]
        values = context @ (self.projection @ self.value).T
        queries = tokens @ self.query.T                   # [B, N+1, D]
        return tokens + (queries @ keys.transpose(1, 2)) @ values

    def predict(self, tokens: Tensor) -> Tensor:
        """ŷ = −(y-coordinate of the updated query token), [B]; only that coordinate is computed."""
        self._check(tokens)
        context, query = tokens[:, :-1], tokens[:, -1]
        scores = torch.einsum("bnd,bd->bn", context @ self.key.T, query @ self.query.T)
        values_y = context @ (self.projection[-1] @ self.value)   # y-coordinate of P W_V e_i, [B, N]
        return -(query[:, -1] + (scores * values_y).sum(-1))

    @classmethod
    def gd_construction(cls, input_dim: int, lr: float, n_context: int, w0: Tensor | None = None,
                        dtype: torch.dtype = torch.float64) -> LinearSelfAttention:
        """The weights of Prop. 1: the layer performs one GD step of size ``lr`` from W_0 = ``w0``."""
        layer = cls(input_dim + 1).to(dtype)
        keys = torch.zeros(input_dim + 1, input_dim + 1, dtype=dtype)
        keys[:input_dim, :input_dim] = torch.eye(input_dim, dtype=dtype)
        value = torch.zeros_like(keys)
        value[-1, :input_dim] = 0.0 if w0 is None else w0
        value[-1, -1] = -1.0
        with torch.no_grad():
            layer.key.copy_(keys)
            layer.query.copy_(keys)
            layer.value.copy_(value)
            layer.projection.copy_(lr / n_context * torch.eye(input_dim + 1, dtype=dtype))
        return layer


def gd_weights(x: Tensor, y: Tensor, lr: float | Tensor, steps: int = 1) -> Tensor:
    """W after ``steps`` of GD on L(W) = 1/(2N) Σ_i (W x_i − y_i)² from W = 0, per task: [B, d]."""
    w = torch.zeros_like(x[:, 0])
    for _ in range(steps):
        residual = torch.einsum("bnd,bd->bn", x, w) - y
        w = w - lr * torch.einsum("bn,bnd->bd", residual, x) / x.shape[1]
    return w


def gd_predict(x: Tensor, y: Tensor, x_query: Tensor, lr: float | Tensor, steps: int = 1) -> Tensor:
    """Prediction ŷ = W_T x_q of ``steps`` GD steps on the context, [B]."""
    return (gd_weights(x, y, lr, steps) * x_query).sum(-1)


def least_squares_predict(x: Tensor, y: Tensor, x_query: Tensor) -> Tensor:
    """Minimum-norm least-squares fit of the context (the limit of many GD steps from 0), [B]."""
    w = torch.linalg.lstsq(x, y[..., None], driver="gelsd" if x.device.type == "cpu" else None).solution
    return (w[..., 0] * x_query).sum(-1)


def line_search(loss: Callable[[float], float], low: float, high: float, grid: int = 48,
                iterations: int = 60) -> float:
    """argmin of ``loss`` over [low, high] in log scale: a grid, then golden section around its best point."""
    if not 0 < low < high:
        raise ValueError(f"need 0 < low < high, got {low}, {high}")
    points = torch.logspace(math.log10(low), math.log10(high), grid, dtype=torch.float64).tolist()
    values = [loss(p) for p in points]
    best = min(range(grid), key=values.__getitem__)
    a, b = math.log(points[max(best - 1, 0)]), math.log(points[min(best + 1, grid - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = loss(math.exp(c)), loss(math.exp(d))
    for _ in range(iterations):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = loss(math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = loss(math.exp(d))
    return math.exp((a + b) / 2)


def sensitivity(predict: Callable[[Tensor], Tensor], x_query: Tensor) -> Tensor:
    """∂ŷ/∂x_q for every task, [B, d] (each prediction depends on its own query only)."""
    x_query = x_query.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(predict(x_query).sum(), x_query)
    return grad


def compare(pred_a: Tensor, pred_b: Tensor, sens_a: Tensor, sens_b: Tensor) -> dict[str, float]:
    """The paper's alignment measures between two in-context learners on the same tasks.

    prediction_cosine: cosine of the two prediction vectors over tasks; preds_diff: RMSE between the
    predictions; model_cosine / model_diff: mean over tasks of the cosine / L2 distance of ∂ŷ/∂x_q.
    """
    cos = torch.nn.functional.cosine_similarity
    return {
        "prediction_cosine": cos(pred_a, pred_b, dim=0).item(),
        "preds_diff": (pred_a - pred_b).pow(2).mean().sqrt().item(),
        "model_cosine": cos(sens_a, sens_b, dim=1).mean().item(),
        "model_diff": (sens_a - sens_b).norm(dim=1).mean().item(),
    }
