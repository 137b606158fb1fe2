"""DrQ's mechanism: the random-shift augmentation and the Q target / Q loss averaged over augmentations.

Random shift f(x, nu): pad the image by ``pad`` pixels on each side, repeating the border pixels, then
crop back to H x W at an offset nu = (dy, dx) drawn uniformly from {0, ..., 2 pad}^2, independently per
image. Equivalently, a translation by (dy - pad, dx - pad) with the border replicated:

    f(x, nu)[c, i, j] = x[c, clamp(i + dy - pad, 0, H - 1), clamp(j + dx - pad, 0, W - 1)]

The paper pads 84 x 84 frames by 4; :func:`scaled_pad` keeps that ratio for other sizes (2 for 32 x 32).

The DQN form of DrQ (the paper's Atari-100k agent is DrQ on top of DQN), for a replay sample
(s, a, r, s', terminated), with K fresh shifts of s' and M fresh shifts of s:

    y    = (1/K) sum_k [ r + gamma (1 - terminated) max_a' Q_target(f(s', nu'_k), a') ]      (target)
    L(theta) = (1/M) sum_m l( Q_theta(f(s, nu_m), a) - y )                                    (Q loss)

K = M = 1 is "augmentation only" (DrQ's [K=1, M=1] ablation); the paper's default is K = M = 2. With
``double_q`` the maximising action of each augmented s' comes from the online net (Double DQN).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from papers.rl.agents import layer_init
from papers.rl.dqn import td_loss, td_target

PAPER_PAD, PAPER_SIZE = 4, 84  # the paper: 84 x 84 frames, replicate-padded by 4 pixels


def scaled_pad(size: int) -> int:
    """The paper's pad 4 at 84 pixels, scaled to ``size`` pixels and rounded (at least 1)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return max(1, round(PAPER_PAD * size / PAPER_SIZE))


def draw_shifts(batch: int, pad: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(batch, 2) crop offsets (dy, dx), each uniform on {0, ..., 2 pad}."""
    return torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=device)


def random_shift(
    x: torch.Tensor,
    pad: int,
    generator: torch.Generator | None = None,
    offsets: torch.Tensor | None = None,
) -> torch.Tensor:
    """DrQ's random shift of a batch (B, C, H, W): replicate-pad by ``pad``, crop H x W at a random offset.

    Every image gets its own offset; ``offsets`` (B, 2) of (dy, dx) in [0, 2 pad] fixes them instead of
    drawing from ``generator``. The output has the input's shape and dtype; ``pad = 0`` is the identity.
    """
    if x.ndim != 4:
        raise ValueError(f"random_shift needs a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    batch, _, height, width = x.shape
    if offsets is None:
        offsets = draw_shifts(batch, pad, generator, device=x.device)
    elif offsets.shape != (batch, 2):
        raise ValueError(f"offsets must be ({batch}, 2), got {tuple(offsets.shape)}")
    elif pad and (offsets.min() < 0 or offsets.max() > 2 * pad):
        raise ValueError(f"offsets must lie in [0, {2 * pad}]")
    if pad == 0:
        return x
    offsets = offsets.to(x.device)
    # Gather from the unpadded image with clamped indices: the same as replicate-pad then crop.
    rows = (torch.arange(height, device=x.device)[None, :] + offsets[:, :1] - pad).clamp(0, height - 1)
    cols = (torch.arange(width, device=x.device)[None, :] + offsets[:, 1:] - pad).clamp(0, width - 1)
    b = torch.arange(batch, device=x.device)[:, None, None, None]
    c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    return x[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def augment_repeats(x: torch.Tensor, repeats: int, pad: int, generator: torch.Generator | None = None):
    """``repeats`` independent random shifts of every image, stacked as (repeats * B, C, H, W)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    return random_shift(x.repeat(repeats, 1, 1, 1), pad, generator)


class PixelQNetwork(nn.Module):
    """Q(s, .) from a small RGB image (uint8 0..255, scaled by 1/255 here): a reduced DQN encoder.

    conv(channels[0], 3x3, stride 2) -> ReLU -> conv(channels[1], 3x3, stride 2) -> ReLU -> ...
    -> fc ``hidden`` -> ReLU -> one Q per action. Orthogonal initialisation as in the DQN package.
    """

    def __init__(
        self,
        obs_shape: Sequence[int],
        n_actions: int,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
    ):
        super().__init__()
        if len(obs_shape) != 3:
            raise ValueError(f"obs_shape must be (C, H, W), got {tuple(obs_shape)}")
        self.obs_shape = tuple(int(s) for s in obs_shape)
        layers: list[nn.Module] = []
        fan_in = self.obs_shape[0]
        for width in channels:
            layers += [layer_init(nn.Conv2d(fan_in, width, 3, stride=2)), nn.ReLU()]
            fan_in = width
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            flat = self.convs(torch.zeros(1, *self.obs_shape)).shape[1]
        self.head = nn.Sequential(
            layer_init(nn.Linear(flat, hidden)), nn.ReLU(), layer_init(nn.Linear(hidden, n_actions), std=1.0)
        )

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if obs.ndim != 4 or tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"PixelQNetwork needs (B, {', '.join(map(str, self.obs_shape))}) images, "
                             f"got shape {tuple(obs.shape)}")  # fmt: skip
        return self.head(self.convs(obs.float() / 255.0))

    def greedy_action(self, obs: torch.Tensor) -> torch.Tensor:
        return self.forward(obs).argmax(-1)


def drq_target(
    rewards: torch.Tensor,
    terminated: torch.Tensor,
    next_obs: torch.Tensor,
    target_net: nn.Module,
    gamma: float,
    k: int = 2,
    pad: int = 4,
    generator: torch.Generator | None = None,
    online_net: nn.Module | None = None,
) -> torch.Tensor:
    """y = mean over K random shifts of s' of the DQN target (Double DQN when ``online_net`` is given).

    ``pad = 0`` means no augmentation: the K copies are then identical and y is the plain DQN target.
    """
    batch = rewards.shape[0]
    if next_obs.shape[0] != batch:
        raise ValueError(f"next_obs has {next_obs.shape[0]} rows, rewards {batch}")
    with torch.no_grad():
        views = augment_repeats(next_obs, k, pad, generator)
        next_q = target_net(views)
        next_online = online_net(views) if online_net is not None else None
        y = td_target(rewards.repeat(k), terminated.repeat(k), next_q, gamma, next_online)
        return y.reshape(k, batch).mean(0)


def drq_q_loss(
    online_net: nn.Module,
    obs: torch.Tensor,
    actions: torch.Tensor,
    target: torch.Tensor,
    m: int = 2,
    pad: int = 4,
    generator: torch.Generator | None = None,
    kind: str = "huber",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(1/M) sum_m l(Q(f(s, nu_m), a) - y) and the (M * B,) Q(f(s, nu_m), a) it was computed from.

    Every one of the M views of a sample regresses on the same (already averaged) target y.
    """
    batch = obs.shape[0]
    if target.shape != (batch,) or actions.shape[0] != batch:
        raise ValueError(f"target and actions must have {batch} rows, got {tuple(target.shape)}, "
                         f"{tuple(actions.shape)}")  # fmt: skip
    views = augment_repeats(obs, m, pad, generator)
    q_taken = online_net(views).gather(1, actions.long().reshape(-1, 1).repeat(m, 1)).squeeze(1)
    # The mean over all M * B rows equals (1/M) sum_m of the per-view batch means.
    return td_loss(q_taken, target.repeat(m), kind), q_taken


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
