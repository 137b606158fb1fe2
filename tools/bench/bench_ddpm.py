"""DDPM training throughput: the ddpm experiment's training loop against a plain PyTorch loop.

    python tools/bench/bench_ddpm.py [--repeats 5] [--steps 300] [--threads N] [--device cpu] [--json F]

Both train the experiment's default denoiser (``make_denoiser``) with L_simple on the same 8-Gaussians
training set, batch 256, Adam with cosine decay, for ``--steps`` steps. "ours" is
``papers.theory.ddpm.experiment.train_arm`` (papers-core's Trainer around ``Diffusion.loss``, with its
shape and range checks); "plain" is a hand-written loop: a random minibatch, t ~ U{1..T}, ε ~ N(0, I),
x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε from a precomputed table, MSE, backward, step. Runs alternate to spread
machine noise over both, and the best time of each is compared, as timeit does:
``ratio = ours_s / plain_s`` (above 1: ours is slower); ``steps_per_s`` of each is reported too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from papers.core.runner import RunContext
from papers.theory.ddpm import DATASETS
from papers.theory.ddpm.experiment import Config, make_denoiser, make_diffusion, train_arm


def plain_loop(x: torch.Tensor, config: Config) -> float:
    diffusion = make_diffusion(config)
    sqrt_bar = diffusion.alpha_bars.float().sqrt().to(x.device)
    sqrt_one_minus_bar = (1 - diffusion.alpha_bars).float().sqrt().to(x.device)
    torch.manual_seed(0)
    model = make_denoiser(config).to(x.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, fused=x.device.type in ("cpu", "cuda"))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.steps)
    start = time.perf_counter()
    for _ in range(config.steps):
        x0 = x[torch.randint(len(x), (config.batch_size,), device=x.device)]
        t = torch.randint(1, diffusion.T + 1, (len(x0),), device=x.device)
        noise = torch.randn_like(x0)
        x_t = sqrt_bar[t, None] * x0 + sqrt_one_minus_bar[t, None] * noise
        loss = (model(x_t, t) - noise).pow(2).sum(1).mean()
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    loss.item()  # wait until the device has finished
    return time.perf_counter() - start


def our_loop(x: torch.Tensor, config: Config, ctx: RunContext) -> float:
    start = time.perf_counter()
    train_arm(make_diffusion(config), x, "eps/simple", 0, config, ctx)  # ends with a log: device synced
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    config = Config(steps=args.steps)
    ctx = RunContext("unused", device=args.device)
    x = DATASETS["8gaussians"](config.n_train, torch.Generator().manual_seed(0)).to(ctx.device)
    warm = Config(steps=10)
    plain_loop(x, warm)  # warm-up: first calls load kernels and allocate memory
    our_loop(x, warm, ctx)
    plain, ours = [], []
    for repeat in range(args.repeats):
        runs = [(plain, lambda: plain_loop(x, config)), (ours, lambda: our_loop(x, config, ctx))]
        for times, loop in runs if repeat % 2 == 0 else reversed(runs):
            times.append(loop())
    result = {
        "plain_s": round(min(plain), 4),
        "ours_s": round(min(ours), 4),
        "plain_steps_per_s": round(args.steps / min(plain), 1),
        "ours_steps_per_s": round(args.steps / min(ours), 1),
        "ratio": round(min(ours) / min(plain), 4),
        "median_ratio": round(statistics.median(ours) / statistics.median(plain), 4),
        "repeats": args.repeats,
        "steps": args.steps,
        "batch_size": config.batch_size,
        "hidden": config.hidden,
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
