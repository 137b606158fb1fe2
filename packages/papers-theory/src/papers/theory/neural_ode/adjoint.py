"""The adjoint sensitivity method (Chen et al. 2018, Sec. 2 and Alg. 1): gradients in O(1) memory.

The forward solve keeps no graph, only the outputs z(t_i). For a loss L(z(t_1), ..., z(t_N)) the
adjoint a(t) = ∂L/∂z(t) obeys, backwards in time, together with z itself and the parameter gradient:

    dz/dt   =  f(z, t, θ)
    da/dt   = −a(t)ᵀ ∂f/∂z                   a(t_N) = ∂L/∂z(t_N)
    da_θ/dt = −a(t)ᵀ ∂f/∂θ                   a_θ(t_N) = 0

The augmented state [z, a, a_θ] is integrated from t_N down to t_0 by the same solver; the vector-Jacobian
products come from one reverse-mode call of autograd per evaluation. At every output time the incoming
gradient is added to a (a ← a + ∂L/∂z(t_i)) and z is reset to the stored z(t_i). At the end
∂L/∂z(t_0) = a(t_0) and ∂L/∂θ = a_θ(t_0).

Time gradients: ∂L/∂t_i = (∂L/∂z(t_i))ᵀ f(z(t_i), t_i) for i ≥ 1. Along the trajectory
d/dt [aᵀ f] = aᵀ ∂f/∂t, so Alg. 1's extra state a_t integrates to ∂L/∂t_0 = −a(t_0)ᵀ f(z(t_0), t_0),
which is evaluated directly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .solver import _check_inputs, odeint

__all__ = ["odeint_adjoint"]


def odeint_adjoint(
    func: nn.Module,
    y0: Tensor,
    t: Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str = "dopri5",
    options: dict | None = None,
    adjoint_rtol: float | None = None,
    adjoint_atol: float | None = None,
    adjoint_method: str | None = None,
    adjoint_options: dict | None = None,
    adjoint_params: tuple[Tensor, ...] | None = None,
) -> Tensor:
    """:func:`odeint` whose backward pass solves the adjoint ODE instead of storing the solver's graph.

    Same arguments and result as :func:`odeint`. Gradients reach ``y0``, ``t`` and ``adjoint_params``
    (default: the parameters of ``func`` that require grad). The backward solve uses ``adjoint_*``
    settings, defaulting to the forward ones; its error norm is the largest RMS of the z, a and a_θ parts.
    """
    if adjoint_params is None:
        if not isinstance(func, nn.Module):
            raise TypeError("odeint_adjoint: func must be an nn.Module, or pass adjoint_params=(...)")
        adjoint_params = tuple(p for p in func.parameters() if p.requires_grad)
    adjoint_params = tuple(adjoint_params)
    _check_inputs(func, y0, t, rtol, atol, method, options)
    t = torch.as_tensor(t, dtype=y0.dtype, device=y0.device)
    settings = dict(
        rtol=rtol,
        atol=atol,
        method=method,
        options=options,
        adjoint_rtol=rtol if adjoint_rtol is None else adjoint_rtol,
        adjoint_atol=atol if adjoint_atol is None else adjoint_atol,
        adjoint_method=method if adjoint_method is None else adjoint_method,
        adjoint_options=options if adjoint_options is None else adjoint_options,
    )
    _check_inputs(func, y0, t, settings["adjoint_rtol"], settings["adjoint_atol"], settings["adjoint_method"],
                  settings["adjoint_options"])
    return _OdeintAdjoint.apply(func, settings, y0, t, *adjoint_params)


class _OdeintAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, func, settings, y0, t, *params):
        with torch.no_grad():
            ys = odeint(func, y0, t, rtol=settings["rtol"], atol=settings["atol"], method=settings["method"],
                        options=settings["options"])
        ctx.func, ctx.settings = func, settings
        ctx.save_for_backward(t, ys, *params)
        return ys

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_ys):
        t, ys, *params = ctx.saved_tensors
        func, s = ctx.func, ctx.settings
        shape, n = ys.shape[1:], ys[0].numel()
        sizes = [p.numel() for p in params]
        need_t = ctx.needs_input_grad[3]

        def augmented(s_t: Tensor, state: Tensor) -> Tensor:
            """[dz/dt, da/dt, da_θ/dt] = [f, −aᵀ∂f/∂z, −aᵀ∂f/∂θ] on the flat augmented state."""
            z = state[:n].view(shape).detach().requires_grad_(True)
            a = state[n: 2 * n].view(shape)
            with torch.enable_grad():
                dz = func(s_t, z)
                if dz.requires_grad:
                    vjps = torch.autograd.grad(dz, (z, *params), -a, allow_unused=True)
                else:  # f depends neither on z nor on θ
                    vjps = (None,) * (1 + len(params))
            vjps = [torch.zeros_like(x) if g is None else g for g, x in zip(vjps, (z, *params), strict=True)]
            return torch.cat([dz.detach().reshape(-1)] + [g.reshape(-1) for g in vjps])

        def norm(x: Tensor) -> float:  # largest RMS over the parts z, a, a_θ
            parts = x.split([n, n, x.numel() - 2 * n])
            return max(p.pow(2).mean().sqrt().item() for p in parts if p.numel())

        adjoint_options = dict(s["adjoint_options"] or {})
        if s["adjoint_method"] == "dopri5":
            adjoint_options.setdefault("norm", norm)

        a = grad_ys[-1].clone()
        a_params = [torch.zeros_like(p) for p in params]
        grad_t = torch.zeros_like(t) if need_t else None
        with torch.no_grad():
            for i in range(len(t) - 1, 0, -1):
                if need_t:  # ∂L/∂t_i = g_iᵀ f(z(t_i), t_i)
                    grad_t[i] = (grad_ys[i] * func(t[i], ys[i])).sum()
                state = torch.cat([ys[i].reshape(-1), a.reshape(-1)] + [g.reshape(-1) for g in a_params])
                state = odeint(augmented, state, t[i - 1: i + 1].flip(0), rtol=s["adjoint_rtol"],
                               atol=s["adjoint_atol"], method=s["adjoint_method"],
                               options=adjoint_options)[-1]
                a = state[n: 2 * n].view(shape)
                a_params = [g.view_as(p) for g, p in zip(state[2 * n:].split(sizes), params, strict=True)]
                if need_t and i == 1:  # ∂L/∂t_0 = −a(t_0)ᵀ f(z(t_0), t_0), before adding ∂L/∂z(t_0)
                    grad_t[0] = -(a * func(t[0], ys[0])).sum()
                a = a + grad_ys[i - 1]
        return (None, None, a, grad_t, *a_params)
