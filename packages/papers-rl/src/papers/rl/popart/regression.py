"""The binary-regression demo (our reconstruction of van Hasselt et al. 2016, Sec. 4.1), a toy.

Input: 16 bits x; target: the integer they encode, y = Σ_i 2^i x_i. Most samples (1 − p_rare) have
only the 8 low bits random (y ≤ 255); a rare sample (p_rare) has all 16 random (y up to 65535), so the
scale of the targets jumps by two to three orders of magnitude whenever one arrives. A 16→10→10→10
ReLU MLP with a linear head (:class:`PopArt`, one task) is trained by minibatch SGD in three modes:

    "none"    plain SGD on ½ (y − f(x))²
    "art"     statistics updated from each batch, loss ½ ((y − μ)/σ − n(x))², no preserve step
    "popart"  the same with the preserve step

each at a few learning rates (the best per mode is reported, as the paper tuned each method's step).
Error: RMSE of the unnormalised prediction on the 256 common inputs and on 1024 uniform 16-bit inputs,
each divided by the std of its targets.
"""

from __future__ import annotations

import torch
from torch import nn

from .model import PopArt

__all__ = ["BitRegressor", "bit_targets", "sample_bits", "train_regression"]

BITS = 16
POWERS = 2.0 ** torch.arange(BITS, dtype=torch.float64)


def bit_targets(x: torch.Tensor) -> torch.Tensor:
    return (x.double() @ POWERS).float()


def sample_bits(n: int, p_rare: float, generator: torch.Generator) -> torch.Tensor:
    x = torch.randint(0, 2, (n, BITS), generator=generator).float()
    common = torch.rand(n, generator=generator) >= p_rare
    x[common, BITS // 2 :] = 0.0
    return x


class BitRegressor(nn.Module):
    def __init__(self, hidden: int = 10, layers: int = 3, mode: str = "popart", beta: float = 3e-3):
        super().__init__()
        sizes = [BITS] + [hidden] * layers
        blocks = []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            blocks += [nn.Linear(a, b), nn.ReLU()]
        self.trunk = nn.Sequential(*blocks)
        self.head = PopArt(hidden, 1, beta=beta, mode=mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unnormalised prediction σ n(x) + μ."""
        return self.head.value(self.trunk(x))


def train_regression(
    mode: str,
    lr: float,
    *,
    steps: int,
    batch_size: int,
    p_rare: float,
    beta: float,
    eval_every: int,
    seed: int,
) -> dict:
    torch.manual_seed(seed)
    model = BitRegressor(mode=mode, beta=beta)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    data = torch.Generator().manual_seed(seed + 1)
    common = torch.tensor([[(i >> b) & 1 for b in range(BITS)] for i in range(256)], dtype=torch.float32)
    uniform = torch.randint(0, 2, (1024, BITS), generator=torch.Generator().manual_seed(seed + 2)).float()
    tests = {"common": (common, bit_targets(common)), "full": (uniform, bit_targets(uniform))}
    curve = {"step": [], "common": [], "full": []}

    def evaluate(step: int) -> None:
        curve["step"].append(step)
        with torch.no_grad():
            for name, (x, y) in tests.items():
                error = (model(x) - y).pow(2).mean().sqrt() / y.std()
                curve[name].append(min(float(error), 1e6) if torch.isfinite(error) else 1e6)

    for step in range(steps):
        if step % eval_every == 0:
            evaluate(step)
        x = sample_bits(batch_size, p_rare, data)
        y = bit_targets(x)
        model.head.update(y)
        n = model.head(model.trunk(x))
        loss = 0.5 * (model.head.normalise(y) - n).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if not torch.isfinite(loss):  # plain SGD can diverge: record the blow-up and stop
            break
    evaluate(steps)
    return curve
