"""A small training run in its own process, for the kill-and-resume and DDP tests.

    python _train_script.py OUT [--batch-size 16] [--accumulation-steps 1] [--samples 256] [--max-steps 200]
                                [--checkpoint-every 25] [--dropout 0.1] [--step-seconds 0]
    python -m torch.distributed.run --standalone --nproc_per_node=2 _train_script.py OUT ...

Trains an MLP on a fixed regression problem with validation, early stopping (never triggered), a
scheduler and a metric log in OUT, checkpoints in OUT/checkpoints (resuming from there when a
checkpoint exists), and writes the final weights and metrics to OUT/final.pt from rank 0.
``--step-seconds`` paces the steps so that a test can interrupt the run half-way.
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from papers.core import distributed
from papers.core.io import save_checkpoint
from papers.core.metrics import MetricLogger
from papers.core.trainer import Callback, EarlyStopping, Trainer


class Pace(Callback):
    def __init__(self, seconds):
        self.seconds = seconds

    def on_step_end(self, trainer):
        time.sleep(self.seconds)


def regression(n, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = torch.sin(x[:, :1]) + x[:, 1:2] * x[:, 2:3] + 0.1 * torch.randn(n, 1, generator=generator)
    return x, y


def mse(model, batch):
    x, y = batch
    prediction = model(x)
    return F.mse_loss(prediction, y), {"mae": (prediction - y).abs().mean()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--accumulation-steps", type=int, default=1)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=25)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--step-seconds", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    distributed.init_distributed(backend="gloo")  # the model trains on CPU, even where CUDA exists
    try:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Dropout(args.dropout), nn.Linear(32, 1))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        trainer = Trainer(
            model,
            optimizer,
            mse,
            regression(args.samples, seed=1),
            batch_size=args.batch_size,
            accumulation_steps=args.accumulation_steps,
            max_steps=args.max_steps,
            val_data=regression(64, seed=2),
            early_stopping=EarlyStopping(patience=1000),
            scheduler=torch.optim.lr_scheduler.StepLR(optimizer, step_size=60, gamma=0.5),
            grad_clip=5.0,
            callbacks=[Pace(args.step_seconds)] if args.step_seconds else [],
            checkpoint_dir=args.out / "checkpoints",
            checkpoint_every=args.checkpoint_every,
            logger=MetricLogger(args.out),
            log_every=10,
            progress=False,
        )
        metrics = trainer.fit()
        if distributed.is_main_process():
            save_checkpoint(args.out / "final.pt", {"model": model.state_dict(), "metrics": metrics})
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main()
