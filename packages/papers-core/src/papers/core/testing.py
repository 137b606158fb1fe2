"""A tiny experiment for testing the protocol, the runner and the CLI (not registered).

Least-squares regression by gradient descent on generated data: the claim is that the fitted
weights end closer to the true ones than the initial weights were. ``fail_at_step`` injects a
non-finite loss to exercise error handling.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .experiment import Check, Experiment, Paper, Result


@dataclass
class ToyConfig:
    steps: int = 200
    lr: float = 0.1
    dim: int = 3
    fail_at_step: int = -1

    def validate(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"lr must be a positive number, got {self.lr}")


def run(config: ToyConfig, ctx) -> Result:
    from .plots import figure, plot_lines

    def fit() -> dict:
        g = torch.Generator().manual_seed(ctx.seed)
        x = torch.randn(256, config.dim, generator=g)
        w_true = torch.randn(config.dim, generator=g)
        y = x @ w_true + 0.01 * torch.randn(256, generator=g)
        w = torch.zeros(config.dim, requires_grad=True)
        start_error = (w - w_true).norm().item()
        losses = []
        with ctx.progress_bar(config.steps, "toy") as bar:
            for step in range(config.steps):
                loss = ((x @ w - y) ** 2).mean()
                if step == config.fail_at_step:
                    loss = loss * float("nan")
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss {loss.item()} at step {step}")
                loss.backward()
                with torch.no_grad():
                    w -= config.lr * w.grad
                    w.grad = None
                losses.append(loss.item())
                ctx.log({"loss": losses[-1]}, step=step)
                bar.update(1, loss=losses[-1])
        return {"start_error": start_error, "final_error": (w - w_true).norm().item(), "losses": losses}

    part = ctx.stage("fit", fit)
    fig, (ax,) = figure()
    plot_lines(ax, range(len(part["losses"])), {"loss": part["losses"]}, xlabel="step", logy=True, marker="")
    ctx.save_figure(fig, "loss")
    return Result(
        metrics={"final_loss": part["losses"][-1], "final_error": part["final_error"]},
        checks=[
            Check(
                "weights approach the truth",
                part["final_error"],
                "<",
                part["start_error"],
                "distance at initialisation",
            )
        ],
    )


TOY_EXPERIMENT = Experiment(
    id="toy-regression",
    papers=Paper(
        "Least squares by gradient descent (test fixture)", "Nobody", 2024, catalog_ids=("test:0:0",)
    ),
    claim="Gradient descent moves least-squares weights towards the truth.",
    config=ToyConfig,
    run=run,
    presets={"smoke": {"steps": 20}, "default": {}},
)
