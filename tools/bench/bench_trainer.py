"""Overhead of papers.core's Trainer over a plain PyTorch loop doing the same work.

    python tools/bench/bench_trainer.py [--repeats 11] [--epochs 3] [--threads N] [--device cpu] [--json F]

Both train the same MLP with SGD on 20,000 random samples held on the device, batch 128, a fresh
random order each epoch; the Trainer runs without a progress bar and logs to a MetricLogger at its
default interval. Runs alternate (plain, trainer, trainer, plain, ...) to spread machine noise over
both. Noise only ever adds time, so the best time of each is compared, as timeit does:
``ratio = trainer_s / plain_s``; ``median_ratio`` compares the medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from papers.core.metrics import MetricLogger
from papers.core.trainer import Trainer

SAMPLES, FEATURES, HIDDEN, BATCH_SIZE, LR = 20_000, 32, 256, 128, 0.01


def make_model(device: torch.device) -> nn.Module:
    torch.manual_seed(0)
    layers = [
        nn.Linear(FEATURES, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, HIDDEN),
        nn.ReLU(),
        nn.Linear(HIDDEN, 1),
    ]
    return nn.Sequential(*layers).to(device)


def plain_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    model = make_model(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for first in range(0, len(x), BATCH_SIZE):
            indices = order[first : first + BATCH_SIZE]
            loss = F.mse_loss(model(x[indices]), y[indices])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    loss.item()  # wait until the device has finished
    return time.perf_counter() - start


def trainer_loop(x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
    model = make_model(x.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def loss_fn(model, batch):
        inputs, targets = batch
        return F.mse_loss(model(inputs), targets)

    with tempfile.TemporaryDirectory() as folder:
        trainer = Trainer(
            model,
            optimizer,
            loss_fn,
            (x, y),
            batch_size=BATCH_SIZE,
            epochs=epochs,
            logger=MetricLogger(folder),
            progress=False,
            device=x.device,
        )
        start = time.perf_counter()
        trainer.fit()  # ends with the last log, which waits for the device
        return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(SAMPLES, FEATURES, generator=generator).to(args.device)
    y = torch.randn(SAMPLES, 1, generator=generator).to(args.device)
    plain_loop(x, y, 1)  # warm-up: first calls load kernels and allocate memory
    trainer_loop(x, y, 1)
    plain, trainer = [], []
    for repeat in range(args.repeats):
        runs = [(plain, plain_loop), (trainer, trainer_loop)]
        for times, loop in runs if repeat % 2 == 0 else reversed(runs):
            times.append(loop(x, y, args.epochs))
    result = {
        "plain_s": round(min(plain), 4),
        "trainer_s": round(min(trainer), 4),
        "ratio": round(min(trainer) / min(plain), 4),
        "median_ratio": round(statistics.median(trainer) / statistics.median(plain), 4),
        "repeats": args.repeats,
        "epochs": args.epochs,
        "device": args.device,
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
