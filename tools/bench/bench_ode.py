"""Benchmark papers.theory.neural_ode against torchdiffeq (dopri5) on problems with exact solutions.

    python tools/bench/bench_ode.py [--json PATH] [--repeats 5] [--threads 1]

For each problem and tolerance: max error against the exact solution, NFE, wall time (best of
``--repeats``) of both solvers and the wall-time ratio ours / torchdiffeq. Then the wall time of one
gradient of an MLP vector field by the adjoint method (both libraries) and by backprop through our solver.
torchdiffeq is a development dependency only; it is imported here, never by the package.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchdiffeq
from torch import nn

from papers.theory.neural_ode import odeint, odeint_adjoint

F64 = torch.float64
TOLERANCES = (1e-3, 1e-5, 1e-7, 1e-9)


def problems():
    """name -> (f(t, y), y0, t, exact ys)."""
    t = torch.linspace(0.0, 5.0, 11, dtype=F64)
    A = torch.tensor([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.5]], dtype=F64)
    y_lin = torch.tensor([1.0, 0.5, -0.2], dtype=F64)
    y_dec = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=F64)
    y_cos = torch.tensor([1.0, -2.0], dtype=F64)
    t2 = torch.linspace(0.0, 2.0, 11, dtype=F64)
    w, y_osc = 3.0, torch.tensor([1.0, 0.0], dtype=F64)
    return {
        "linear (expm)": (lambda s, y: A @ y, y_lin, t,
                          torch.stack([torch.linalg.matrix_exp(A * s) @ y_lin for s in t])),
        "decay": (lambda s, y: -0.7 * y, y_dec, t, torch.exp(-0.7 * t)[:, None, None] * y_dec),
        "oscillator": (lambda s, y: torch.stack([y[1], -(w**2) * y[0]]), y_osc, t,
                       torch.stack([torch.cos(w * t), -w * torch.sin(w * t)], dim=1)),
        "y'=cos(t)y": (lambda s, y: torch.cos(s) * y, y_cos, t, torch.exp(torch.sin(t))[:, None] * y_cos),
        "y'=t*y": (lambda s, y: s * y, torch.tensor([0.3], dtype=F64), t2,
                   torch.exp(t2**2 / 2)[:, None] * 0.3),
    }


def counted(f):
    def g(s, y):
        g.nfe += 1
        return f(s, y)

    g.nfe = 0
    return g


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_solvers(repeats: int) -> list[dict]:
    rows = []
    for name, (f, y0, t, exact) in problems().items():
        for rtol in TOLERANCES:
            atol = rtol * 1e-2
            row = {"problem": name, "rtol": rtol, "atol": atol}
            for label, solve in (("ours", odeint), ("torchdiffeq", torchdiffeq.odeint)):
                g = counted(f)
                ys = solve(g, y0, t, rtol=rtol, atol=atol, method="dopri5")
                row[f"{label}_error"] = (ys - exact).abs().max().item()
                row[f"{label}_nfe"] = g.nfe
                row[f"{label}_wall_s"] = best_time(lambda: solve(f, y0, t, rtol=rtol, atol=atol,  # noqa: B023
                                                                 method="dopri5"), repeats)
            row["wall_ratio"] = row["ours_wall_s"] / row["torchdiffeq_wall_s"]
            rows.append(row)
    return rows


class Field(nn.Module):
    def __init__(self, dim: int = 4, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, y):
        return self.net(torch.cat([y, t.expand(*y.shape[:-1], 1)], dim=-1))


def bench_gradients(repeats: int) -> list[dict]:
    torch.manual_seed(0)
    f = Field()
    y0 = torch.randn(256, 4)
    t = torch.tensor([0.0, 1.0])
    rows = []
    for rtol in (1e-3, 1e-5):
        row = {"rtol": rtol, "atol": rtol}
        grads = {}
        solvers = (("ours_adjoint", odeint_adjoint), ("torchdiffeq_adjoint", torchdiffeq.odeint_adjoint),
                   ("ours_backprop", odeint))
        for label, solve in solvers:
            def step():
                f.zero_grad()
                solve(f, y0, t, rtol=rtol, atol=rtol, method="dopri5")[-1].pow(2).mean().backward()  # noqa: B023

            step()
            grads[label] = torch.cat([p.grad.flatten() for p in f.parameters()])
            row[f"{label}_wall_s"] = best_time(step, repeats)
        ref = grads["ours_backprop"]
        for label in ("ours_adjoint", "torchdiffeq_adjoint"):
            row[f"{label}_rel_grad_err"] = ((grads[label] - ref).norm() / ref.norm()).item()
        row["adjoint_wall_ratio"] = row["ours_adjoint_wall_s"] / row["torchdiffeq_adjoint_wall_s"]
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the tables to this JSON file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    solvers = bench_solvers(args.repeats)
    print(f"{'problem':14} {'rtol':>7} | {'err ours':>9} {'err tdq':>9} | {'nfe ours':>8} {'nfe tdq':>7} | "
          f"{'ms ours':>8} {'ms tdq':>8} {'ratio':>6}")
    for r in solvers:
        print(f"{r['problem']:14} {r['rtol']:7.0e} | {r['ours_error']:9.2e} {r['torchdiffeq_error']:9.2e} | "
              f"{r['ours_nfe']:8d} {r['torchdiffeq_nfe']:7d} | {1e3 * r['ours_wall_s']:8.2f} "
              f"{1e3 * r['torchdiffeq_wall_s']:8.2f} {r['wall_ratio']:6.2f}")
    ratios = torch.tensor([r["wall_ratio"] for r in solvers])
    print(f"wall ratio ours/torchdiffeq: median {ratios.median().item():.2f}, "
          f"geometric mean {ratios.log().mean().exp().item():.2f}")
    gradients = bench_gradients(args.repeats)
    print("\ngradient of an MLP field (batch 256, dim 4, hidden 64), t in [0, 1], dopri5")
    print(f"{'rtol':>7} | {'ms adj ours':>11} {'ms adj tdq':>10} {'ratio':>6} {'ms backprop':>11} | "
          f"{'rel err adj ours':>16} {'rel err adj tdq':>15}")
    for r in gradients:
        print(f"{r['rtol']:7.0e} | {1e3 * r['ours_adjoint_wall_s']:11.1f} "
              f"{1e3 * r['torchdiffeq_adjoint_wall_s']:10.1f} "
              f"{r['adjoint_wall_ratio']:6.2f} {1e3 * r['ours_backprop_wall_s']:11.1f} | "
              f"{r['ours_adjoint_rel_grad_err']:16.2e} {r['torchdiffeq_adjoint_rel_grad_err']:15.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"solvers": solvers, "gradients": gradients, "threads": args.threads,
                       "torch": torch.__version__, "torchdiffeq": torchdiffeq.__version__}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
