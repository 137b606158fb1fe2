"""ODE solvers: adaptive Dormand–Prince 5(4) and fixed-step Euler, midpoint and RK4.

    odeint(func, y0, t) -> ys,   ys[i] ≈ y(t[i]),   dy/dt = func(t, y),   y(t[0]) = y0

Gradients flow through every operation of the solver (backprop through the solver); the step-size
decisions are plain floats, so they are treated as constants. For O(1)-memory gradients see
:func:`papers.theory.neural_ode.adjoint.odeint_adjoint`.

Dormand–Prince 5(4) (Dormand & Prince 1980; Hairer, Nørsett & Wanner, *Solving ODEs I*, II.4–II.6):

    k_i    = f(t + c_i h, y + h Σ_j a_ij k_j),        i = 1..7
    y_new  = y + h Σ b_i k_i                          (5th order; b = a_7j, so k_7 = f(t+h, y_new): FSAL)
    err    = h Σ (b_i − b*_i) k_i                     (difference to the embedded 4th-order solution)
    ratio  = RMS( err / (atol + rtol · max(|y|, |y_new|)) )       accept the step iff ratio ≤ 1
    h_new  = h · clip(safety · ratio^(−1/5), min_factor, max_factor)   (no growth right after a reject)

Between accepted steps the solution is read off the 4th-order continuous extension (Hairer's dense
output), so output times never shorten the steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch
from torch import Tensor

__all__ = ["odeint", "SolverStats", "NFECounter", "METHODS", "rms_norm"]

METHODS = ("dopri5", "rk4", "midpoint", "euler")
_ADAPTIVE_OPTIONS = {"first_step", "max_num_steps", "safety", "min_factor", "max_factor", "norm"}
_FIXED_OPTIONS = {"step_size"}

# Dormand–Prince 5(4) Butcher tableau.
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B = _A[6] + (0.0,)  # 5th-order weights (FSAL: the last stage is evaluated at y_new)
# b - b*: 5th-order minus embedded 4th-order weights (b* = 5179/57600, 0, 7571/16695, 393/640, ...).
_E = (71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40)
# Dense output coefficients of the 4th-order continuous extension (Hairer's DOPRI5).
_D = (-12715105075 / 11282082432, 0.0, 87487479700 / 32700410799, -10690763975 / 1880347072,
      701980252875 / 199316789632, -1453857185 / 822651844, 69997945 / 29380423)


@dataclass
class SolverStats:
    """Work done by one call: function evaluations, accepted and rejected steps."""

    nfe: int = 0
    n_steps: int = 0
    n_rejected: int = 0


class NFECounter(torch.nn.Module):
    """Wrap a vector field ``f(t, y)`` and count its evaluations in ``.nfe`` (forward and adjoint)."""

    def __init__(self, func: torch.nn.Module):
        super().__init__()
        self.func = func
        self.nfe = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        return self.func(t, y)


def rms_norm(x: Tensor) -> float:
    """Root mean square, the default error norm."""
    return x.pow(2).mean().sqrt().item()


def odeint(
    func: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    *,
    rtol: float = 1e-7,
    atol: float = 1e-9,
    method: str = "dopri5",
    options: dict | None = None,
    return_stats: bool = False,
) -> Tensor | tuple[Tensor, SolverStats]:
    """Solve ``dy/dt = func(t, y)``, ``y(t[0]) = y0``; return ``y`` at every time in ``t``.

    ``t`` is a strictly increasing or strictly decreasing 1-D sequence of times; the result has shape
    ``[len(t), *y0.shape]``. ``func`` receives ``t`` as a 0-dim tensor of ``y0``'s dtype.
    Methods: ``dopri5`` (adaptive; options ``first_step``, ``max_num_steps`` (100000), ``safety`` (0.9),
    ``min_factor`` (0.2), ``max_factor`` (10), ``norm`` (callable on the scaled error, default RMS)),
    ``rk4`` / ``midpoint`` / ``euler`` (fixed step; option ``step_size``, default one step per interval
    of ``t``; each interval is cut into ``ceil(length / step_size)`` equal steps).
    With ``return_stats=True`` returns ``(ys, SolverStats)``.
    """
    y0, times, reverse = _check_inputs(func, y0, t, rtol, atol, method, options)
    stats = SolverStats()
    if reverse:  # s = -t:  dy/ds = -f(-s, y)
        func, times = _time_reversed(func), [-s for s in times]
    if method == "dopri5":
        ys = _dopri5(func, y0, times, rtol, atol, dict(options or {}), stats)
    else:
        ys = _fixed_grid(func, y0, times, method, dict(options or {}), stats)
    ys = torch.stack(ys)
    return (ys, stats) if return_stats else ys


def _time_reversed(func):
    def reversed_func(s: Tensor, y: Tensor) -> Tensor:
        return -func(-s, y)

    return reversed_func


def _check_inputs(func, y0, t, rtol, atol, method, options) -> tuple[Tensor, list[float], bool]:
    if not callable(func):
        raise TypeError(f"odeint: func must be callable as func(t, y), got {type(func).__name__}")
    if not isinstance(y0, Tensor) or not torch.is_floating_point(y0):
        raise TypeError(f"odeint: y0 must be a floating-point tensor, got {_describe(y0)}")
    if method not in METHODS:
        raise ValueError(f"odeint: unknown method {method!r}; choose one of {', '.join(METHODS)}")
    allowed = _ADAPTIVE_OPTIONS if method == "dopri5" else _FIXED_OPTIONS
    unknown = set(options or {}) - allowed
    if unknown:
        raise ValueError(f"odeint: unknown options {sorted(unknown)} for {method}; allowed {sorted(allowed)}")
    if not (rtol >= 0 and atol >= 0 and rtol + atol > 0):
        raise ValueError(f"odeint: need rtol >= 0, atol >= 0 and not both zero, got rtol={rtol}, atol={atol}")
    t = torch.as_tensor(t)
    if t.dim() != 1 or t.numel() == 0:
        raise ValueError(f"odeint: t must be a non-empty 1-D sequence of times, got shape {tuple(t.shape)}")
    times = [float(s) for s in t.detach().cpu().double()]
    if not all(math.isfinite(s) for s in times):
        raise ValueError(f"odeint: t must be finite, got {times}")
    steps = [b - a for a, b in pairwise(times)]
    if not (all(d > 0 for d in steps) or all(d < 0 for d in steps)):
        raise ValueError(f"odeint: t must be strictly increasing or strictly decreasing, got {times}")
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("odeint: y0 contains NaN or infinite values")
    return y0, times, bool(steps) and steps[0] < 0


def _describe(x) -> str:
    return f"tensor of dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__


class _Evaluator:
    """Calls ``func(t, y)`` with ``t`` as a tensor, checks the output shape and counts evaluations."""

    def __init__(self, func, y0: Tensor, stats: SolverStats, method: str):
        self.func, self.stats, self.method = func, stats, method
        self.dtype, self.device, self.shape = y0.dtype, y0.device, y0.shape

    def __call__(self, t: float, y: Tensor) -> Tensor:
        self.stats.nfe += 1
        dy = self.func(torch.tensor(t, dtype=self.dtype, device=self.device), y)
        if not isinstance(dy, Tensor) or dy.shape != self.shape:
            got = tuple(dy.shape) if isinstance(dy, Tensor) else type(dy).__name__
            raise ValueError(
                f"{self.method}: func(t, y) must return the shape of y {tuple(self.shape)}, got {got}"
            )
        return dy


def _combine(y: Tensor, h: float, coeffs, ks) -> Tensor:
    """y + h Σ coeffs_i k_i (skipping zero coefficients)."""
    out = y
    for c, k in zip(coeffs, ks, strict=False):  # ks may be shorter
        if c != 0.0:
            out = out.add(k, alpha=h * c)
    return out


def _dopri5(func, y0: Tensor, times: list[float], rtol: float, atol: float, options: dict,
            stats: SolverStats) -> list[Tensor]:
    f = _Evaluator(func, y0, stats, "dopri5")
    norm = options.get("norm", rms_norm)
    safety = float(options.get("safety", 0.9))
    min_factor = float(options.get("min_factor", 0.2))
    max_factor = float(options.get("max_factor", 10.0))
    max_num_steps = int(options.get("max_num_steps", 100_000))
    t_start, t_end = times[0], times[-1]
    outputs = [y0]
    if len(times) == 1:
        return outputs
    t, y = t_start, y0
    k1 = f(t, y)
    _check_finite(k1, "dopri5", t, "func(t0, y0)")
    h = options.get("first_step")
    h = _initial_step(f, t, y, k1, rtol, atol, norm) if h is None else float(h)
    h = min(h, t_end - t_start)
    if not h > 0:
        raise ValueError(f"dopri5: first_step must be positive, got {options.get('first_step')}")
    next_out, rejected, last_ratio = 1, False, 0.0
    tiny = 4 * torch.finfo(torch.float64).eps * max(abs(t_start), abs(t_end), t_end - t_start)
    while next_out < len(times):
        if stats.n_steps + stats.n_rejected >= max_num_steps:
            raise RuntimeError(
                f"dopri5: max_num_steps={max_num_steps} exceeded at t={t:.6g} (step size {h:.3g})"
            )
        if h < tiny:
            raise RuntimeError(
                f"dopri5: step size {h:.3g} underflow at t={t:.6g} (last error ratio {last_ratio:.3g}; "
                "the dynamics may be stiff, blow up or return non-finite values)"
            )
        last = t + h >= t_end
        if last:
            h = t_end - t
        ks = [k1]
        for i in range(1, 6):
            ks.append(f(t + _C[i] * h, _combine(y, h, _A[i], ks)))
        y_new = _combine(y, h, _B, ks)
        ks.append(f(t + h, y_new))  # k7 = f(t + h, y_new) is k1 of the next step (FSAL)
        err = _combine(torch.zeros_like(y), h, _E, ks)
        scale = atol + rtol * torch.maximum(y.detach().abs(), y_new.detach().abs())
        ratio = float(norm(err.detach() / scale))
        last_ratio = ratio
        if ratio <= 1.0:  # accept (NaN fails this test and is rejected)
            stats.n_steps += 1
            t_new = t_end if last else t + h
            while next_out < len(times) and times[next_out] <= t_new:
                if times[next_out] == t_new:
                    outputs.append(y_new)
                else:
                    outputs.append(_dense(y, y_new, ks, h, (times[next_out] - t) / h))
                next_out += 1
            t, y, k1 = t_new, y_new, ks[6]
            factor = max_factor if ratio == 0.0 else min(max_factor, max(min_factor, safety * ratio**-0.2))
            if rejected:
                factor = min(factor, 1.0)
            rejected = False
        else:
            stats.n_rejected += 1
            factor = min_factor if not math.isfinite(ratio) else max(min_factor, safety * ratio**-0.2)
            rejected = True
        h = h * factor
    return outputs


def _dense(y0: Tensor, y1: Tensor, ks: list[Tensor], h: float, theta: float) -> Tensor:
    """4th-order continuous extension of DOPRI5 at ``t + theta h``.

    y(θ) = y0 + θ (Δ + (1−θ) (r3 + θ (r4 + (1−θ) r5))),   Δ = y1 − y0,  r3 = h k1 − Δ,
    r4 = Δ − h k7 − r3,  r5 = h Σ d_i k_i.
    """
    delta = y1 - y0
    r3 = ks[0] * h - delta
    r4 = delta - ks[6] * h - r3
    r5 = _combine(torch.zeros_like(y0), h, _D, ks)
    theta1 = 1.0 - theta
    return y0 + theta * (delta + theta1 * (r3 + theta * (r4 + theta1 * r5)))


def _initial_step(f, t0: float, y0: Tensor, f0: Tensor, rtol: float, atol: float, norm,
                  order: int = 5) -> float:
    """Hairer, Nørsett & Wanner's starting step size (Solving ODEs I, II.4)."""
    scale = atol + rtol * y0.detach().abs()
    d0 = float(norm(y0.detach() / scale))
    d1 = float(norm(f0.detach() / scale))
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    f1 = f(t0 + h0, y0.detach() + h0 * f0.detach())
    d2 = float(norm((f1.detach() - f0.detach()) / scale)) / h0
    if max(d1, d2) <= 1e-15:
        h1 = max(1e-6, h0 * 1e-3)
    else:
        h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _check_finite(x: Tensor, method: str, t: float, what: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise RuntimeError(f"{method}: non-finite value in {what} at t={t:.6g}")


_TABLEAUS = {  # explicit fixed-step methods: (c, a, b)
    "euler": ((0.0,), ((),), (1.0,)),
    "midpoint": ((0.0, 0.5), ((), (0.5,)), (0.0, 1.0)),
    "rk4": ((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)), (1 / 6, 1 / 3, 1 / 3, 1 / 6)),
}


def _fixed_grid(func, y0: Tensor, times: list[float], method: str, options: dict, stats) -> list[Tensor]:
    """Explicit Runge–Kutta with equal steps inside each interval of ``times`` (lands on every output)."""
    f = _Evaluator(func, y0, stats, method)
    c, a, b = _TABLEAUS[method]
    step_size = options.get("step_size")
    if step_size is not None and not float(step_size) > 0:
        raise ValueError(f"{method}: step_size must be positive, got {step_size}")
    outputs, y = [y0], y0
    for t0, t1 in pairwise(times):
        n = 1 if step_size is None else max(1, math.ceil((t1 - t0) / float(step_size) - 1e-9))
        h = (t1 - t0) / n
        for j in range(n):
            t = t0 + j * h
            ks = []
            for ci, ai in zip(c, a, strict=True):
                ks.append(f(t + ci * h, _combine(y, h, ai, ks)))
            y = _combine(y, h, b, ks)
            stats.n_steps += 1
        _check_finite(y, method, t1, "the state")
        outputs.append(y)
    return outputs
