"""Benchmark the CNF solve (state and log-density) with papers.theory.neural_ode.odeint against torchdiffeq.

    python tools/bench/bench_cnf.py [--json PATH] [--repeats 3] [--threads 1] [--batch 512]

Both solvers integrate the same augmented field d[z, log p]/dt = [f(z, t), −tr(∂f/∂z)] (exact trace) of
the same planar CNF (seeded weights), from the same points, with dopri5 at the same tolerances: forward
(sampling, z(0) ~ N(0, I) → z(1), log p starting at log N(z(0))) and backward (density, data-like
points at t = 1 → t = 0). For each case: NFE of both, the largest difference between their solutions,
each one's error against a float64 reference at rtol = atol = 1e-10, wall time (best of ``--repeats``)
and the wall-time ratio ours / torchdiffeq. torchdiffeq is a development dependency only; it is
imported here, never by the package.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchdiffeq

from papers.theory.cnf import CNFDynamics, HyperPlanarField, standard_normal_log_prob
from papers.theory.neural_ode import odeint

TOLERANCES = (1e-3, 1e-5, 1e-7)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def counted(f):
    def g(t, y):
        g.nfe += 1
        return f(t, y)

    g.nfe = 0
    return g


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def problems(batch: int) -> dict:
    """name -> (initial state [batch, 3] in float64, time span)."""
    generator = torch.Generator().manual_seed(0)
    z0 = torch.randn(batch, 2, generator=generator, dtype=torch.float64)
    angle = 2 * torch.pi * torch.rand(batch, generator=generator, dtype=torch.float64)
    noise = torch.randn(batch, 2, generator=generator, dtype=torch.float64)
    x1 = 1.5 * torch.stack([angle.cos(), angle.sin()], dim=1) + 0.2 * noise
    return {
        "sample (0 -> 1)": (torch.cat([z0, standard_normal_log_prob(z0)[:, None]], dim=1), (0.0, 1.0)),
        "density (1 -> 0)": (torch.cat([x1, torch.zeros(batch, 1, dtype=torch.float64)], dim=1), (1.0, 0.0)),
    }


def make_dynamics(dtype: torch.dtype) -> CNFDynamics:
    torch.manual_seed(0)
    field = HyperPlanarField(2, width=16, hyper_hidden=8)
    for p in field.parameters():  # a field that moves the points visibly
        p.data.mul_(2.0)
    return CNFDynamics(field, 2, trace="exact").to(dtype)


def bench(batch: int, repeats: int) -> list[dict]:
    rows = []
    reference_dynamics = make_dynamics(torch.float64)
    for name, (state64, span) in problems(batch).items():
        t64 = torch.tensor(span, dtype=torch.float64)
        with torch.no_grad():
            reference = odeint(reference_dynamics, state64, t64, rtol=1e-10, atol=1e-10)[-1]
        for dtype_name, dtype in DTYPES.items():
            dynamics, state, t = make_dynamics(dtype), state64.to(dtype), t64.to(dtype)
            for tol in TOLERANCES:
                if dtype == torch.float32 and tol < 1e-6:
                    continue  # below float32 resolution
                row = {"problem": name, "dtype": dtype_name, "rtol": tol, "atol": tol, "batch": batch}
                ends = {}
                for label, solve in (("ours", odeint), ("torchdiffeq", torchdiffeq.odeint)):
                    f = counted(dynamics)
                    with torch.no_grad():
                        ends[label] = solve(f, state, t, rtol=tol, atol=tol, method="dopri5")[-1].double()
                        row[f"{label}_wall_s"] = best_time(
                            lambda: solve(dynamics, state, t, rtol=tol, atol=tol, method="dopri5"),  # noqa: B023
                            repeats)
                    row[f"{label}_nfe"] = f.nfe
                    row[f"{label}_z_err"] = (ends[label][:, :2] - reference[:, :2]).abs().max().item()
                    row[f"{label}_logp_err"] = (ends[label][:, 2] - reference[:, 2]).abs().max().item()
                row["z_diff"] = (ends["ours"][:, :2] - ends["torchdiffeq"][:, :2]).abs().max().item()
                row["logp_diff"] = (ends["ours"][:, 2] - ends["torchdiffeq"][:, 2]).abs().max().item()
                row["wall_ratio"] = row["ours_wall_s"] / row["torchdiffeq_wall_s"]
                row["nfe_ratio"] = row["ours_nfe"] / row["torchdiffeq_nfe"]
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the table to this JSON file")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench(args.batch, args.repeats)
    print(f"planar CNF (16 gated units), exact trace, batch {args.batch}, dopri5; "
          "reference: ours at 1e-10 in float64")
    print(f"{'problem':17} {'dtype':7} {'tol':>6} | {'nfe ours':>8} {'nfe tdq':>7} | {'|dz| o-t':>9} "
          f"{'|dlogp| o-t':>11} | {'logp err ours':>13} {'logp err tdq':>12} | {'ms ours':>8} {'ms tdq':>8} "
          f"{'ratio':>6}")
    for r in rows:
        print(f"{r['problem']:17} {r['dtype']:7} {r['rtol']:6.0e} | "
              f"{r['ours_nfe']:8d} {r['torchdiffeq_nfe']:7d} | "
              f"{r['z_diff']:9.2e} {r['logp_diff']:11.2e} | {r['ours_logp_err']:13.2e} "
              f"{r['torchdiffeq_logp_err']:12.2e} | {1e3 * r['ours_wall_s']:8.1f} "
              f"{1e3 * r['torchdiffeq_wall_s']:8.1f} {r['wall_ratio']:6.2f}")
    ratios = torch.tensor([r["wall_ratio"] for r in rows])
    nfe_ratios = torch.tensor([r["nfe_ratio"] for r in rows])
    print(f"wall ratio ours/torchdiffeq: median {ratios.median().item():.2f}, geometric mean "
          f"{ratios.log().mean().exp().item():.2f}; NFE ratio ours/torchdiffeq: geometric mean "
          f"{nfe_ratios.log().mean().exp().item():.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "threads": args.threads, "torch": torch.__version__,
                       "torchdiffeq": torchdiffeq.__version__}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
