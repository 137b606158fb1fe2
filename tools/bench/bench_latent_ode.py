"""Benchmark the latent-ODE decoder solve: papers.theory.neural_ode.odeint against torchdiffeq (dopri5).

    python tools/bench/bench_latent_ode.py [--checkpoint runs/latent-ode/<stamp>/checkpoints/latent_ode.pt]
                                           [--json PATH] [--repeats 5] [--threads 1] [--batch 200]

Both solvers integrate the same latent dynamics dz/dt = f_z(z) of a :class:`LatentODE` (trained weights
from ``--checkpoint``, else a seeded initialisation) from the same batch of z_0 ~ N(0, I) over the same
grid of 100 times in [0, 10] (the default experiment's grid), and the decoder maps z(t) to x(t).
For each dtype and tolerance: NFE of both, the largest difference of the decoded trajectories between
the solvers and to a float64 reference (our dopri5 at rtol 1e-12), wall time (best of ``--repeats``)
and the ratios ours / torchdiffeq; then the same for one gradient (forward + backward through the solver)
of the mean squared decoded trajectory. torchdiffeq is a development dependency only; it is imported
here, never by the package.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial

import torch
import torchdiffeq

from papers.core.io import load_checkpoint
from papers.theory.latent_ode import LatentODE
from papers.theory.neural_ode import odeint

SETTINGS = ((torch.float32, 1e-3, 1e-4), (torch.float64, 1e-3, 1e-4), (torch.float64, 1e-5, 1e-7),
            (torch.float64, 1e-7, 1e-9))
SOLVERS = (("ours", odeint), ("torchdiffeq", torchdiffeq.odeint))


class Counted(torch.nn.Module):
    def __init__(self, func: torch.nn.Module):
        super().__init__()
        self.func, self.nfe = func, 0

    def forward(self, t, z):
        self.nfe += 1
        return self.func(t, z)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def decoded(model: LatentODE, solve, field, z0, t, rtol, atol):
    """Decoder applied to the solution, as ``[B, T, 2]``."""
    return model.decoder(solve(field, z0, t, rtol=rtol, atol=atol, method="dopri5")).transpose(0, 1)


def gradient_step(model: LatentODE, solve, z0, t, rtol, atol) -> None:
    model.zero_grad()
    decoded(model, solve, model.dynamics.func, z0, t, rtol, atol).pow(2).mean().backward()


def bench(model: LatentODE, batch: int, repeats: int) -> tuple[list[dict], list[dict]]:
    generator = torch.Generator().manual_seed(0)
    z0_64 = torch.randn(batch, model.latent_dim, generator=generator, dtype=torch.float64)
    t_64 = torch.linspace(0.0, 10.0, 100, dtype=torch.float64)
    model64 = model.double()
    with torch.no_grad():
        reference = decoded(model64, odeint, model64.dynamics.func, z0_64, t_64, 1e-12, 1e-12)
    forward_rows, gradient_rows = [], []
    for dtype, rtol, atol in SETTINGS:
        net = model.to(dtype)
        z0, t = z0_64.to(dtype), t_64.to(dtype)
        row = {"dtype": str(dtype).removeprefix("torch."), "rtol": rtol, "atol": atol}
        outputs = {}
        for label, solve in SOLVERS:
            field = Counted(net.dynamics.func)
            with torch.no_grad():
                outputs[label] = decoded(net, solve, field, z0, t, rtol, atol)
                row[f"{label}_nfe"] = field.nfe
                solve_once = partial(decoded, net, solve, field, z0, t, rtol, atol)
                row[f"{label}_wall_s"] = best_time(solve_once, repeats)
            row[f"{label}_err_vs_reference"] = (outputs[label].double() - reference).abs().max().item()
        row["max_abs_diff"] = (outputs["ours"] - outputs["torchdiffeq"]).abs().max().item()
        row["nfe_ratio"] = row["ours_nfe"] / row["torchdiffeq_nfe"]
        row["wall_ratio"] = row["ours_wall_s"] / row["torchdiffeq_wall_s"]
        forward_rows.append(row)

        grow = {"dtype": row["dtype"], "rtol": rtol, "atol": atol}
        grads = {}
        for label, solve in SOLVERS:
            step = partial(gradient_step, net, solve, z0, t, rtol, atol)
            step()
            grads[label] = torch.cat([p.grad.flatten() for p in net.dynamics.parameters()])
            grow[f"{label}_wall_s"] = best_time(step, repeats)
        difference = (grads["ours"] - grads["torchdiffeq"]).norm() / grads["torchdiffeq"].norm()
        grow["rel_grad_diff"] = difference.item()
        grow["wall_ratio"] = grow["ours_wall_s"] / grow["torchdiffeq_wall_s"]
        gradient_rows.append(grow)
    return forward_rows, gradient_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="latent_ode.pt of a latent-ode run (default: initial weights)")
    parser.add_argument("--json", help="write the tables to this JSON file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = LatentODE()
    if args.checkpoint:
        model.load_state_dict(load_checkpoint(args.checkpoint)["model"])
    forward_rows, gradient_rows = bench(model, args.batch, args.repeats)
    weights = "trained" if args.checkpoint else "initial"
    print(f"latent-ODE decoder solve, {weights} weights, batch {args.batch}, 100 times in [0, 10], dopri5")
    print(f"{'dtype':7} {'rtol':>7} | {'nfe ours':>8} {'nfe tdq':>7} {'ratio':>5} | {'max|ours-tdq|':>13} "
          f"{'err ours':>9} {'err tdq':>9} | {'ms ours':>8} {'ms tdq':>8} {'ratio':>5}")
    for r in forward_rows:
        print(f"{r['dtype']:7} {r['rtol']:7.0e} | {r['ours_nfe']:8d} {r['torchdiffeq_nfe']:7d} "
              f"{r['nfe_ratio']:5.2f} | {r['max_abs_diff']:13.2e} {r['ours_err_vs_reference']:9.2e} "
              f"{r['torchdiffeq_err_vs_reference']:9.2e} | "
              f"{1e3 * r['ours_wall_s']:8.2f} {1e3 * r['torchdiffeq_wall_s']:8.2f} {r['wall_ratio']:5.2f}")
    print("\none gradient (forward + backward through the solver) of the mean squared decoded trajectory")
    print(f"{'dtype':7} {'rtol':>7} | {'ms ours':>8} {'ms tdq':>8} {'ratio':>5} | {'rel grad diff':>13}")
    for r in gradient_rows:
        print(f"{r['dtype']:7} {r['rtol']:7.0e} | {1e3 * r['ours_wall_s']:8.2f} "
              f"{1e3 * r['torchdiffeq_wall_s']:8.2f} {r['wall_ratio']:5.2f} | {r['rel_grad_diff']:13.2e}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"forward": forward_rows, "gradient": gradient_rows, "weights": weights,
                       "batch": args.batch, "threads": args.threads, "torch": torch.__version__,
                       "torchdiffeq": torchdiffeq.__version__}, f, indent=2)
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
