"""The inverted residual with linear bottleneck, and MobileNetV2 (Sandler et al. 2018, Sec. 3–4, Table 1–2).

An inverted residual block maps a ``(N, d, h, w)`` bottleneck to ``(N, d', h / s, w / s)``:

    expand      1×1 conv d → t·d,   BatchNorm, ReLU6          (left out when t = 1, as in the paper)
    depthwise   k×k conv, groups = t·d, stride s, BatchNorm, ReLU6
    project     1×1 conv t·d → d',  BatchNorm                 (linear: no non-linearity)
    output      x + project(...) if s = 1 and d = d', else project(...)

ReLU6(x) = min(max(x, 0), 6). Its cost for an input of h × w (stride 1) is

    MAdds = h·w·d·t·(d + k² + d')        vs  h·w·d·d'·k²  for a standard k×k convolution d → d'

and a stride s divides the depthwise and projection terms by s². Ablations of Sec. 6.3 / Fig. 6:
``bottleneck="relu"`` puts a ReLU6 after the projection (a non-linear bottleneck); ``shortcut=
"expansion"`` connects the expanded tensors instead of the bottlenecks (the classical residual
arrangement: the skip spans depthwise → project → next expand); ``shortcut="none"`` has no residual.

The width multiplier α scales every channel count (rounded to a multiple of ``divisor``, never down by
more than 10 %) except the last 1×1 layer, which is only scaled up (α > 1), as in the paper.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from papers.vision.data import check_images

BOTTLENECKS = ("linear", "relu")
SHORTCUTS = ("bottleneck", "expansion", "none")

# Table 2 of the paper, rows (t, c, n, s): expansion, output channels, repeats, stride of the first.
PAPER_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# A reduced network for small (16–32 px) images: the same shape of table, fewer and narrower stages.
TINY_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 8, 1, 1),
    (6, 12, 2, 2),
    (6, 16, 3, 2),
    (6, 24, 2, 1),
)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor`` (at least ``min_value``, default
    ``divisor``), bumped up one step if rounding lost more than 10 % (the reference implementation)."""
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """The bottleneck residual block of Table 1: ``(N, in, h, w)`` → ``(N, out, ceil(h/s), ceil(w/s))``.

    ``expand`` (Identity when ``expansion == 1``), ``depthwise`` and ``project`` are ``conv → BN (→
    ReLU6)`` stacks; ``use_residual`` is true exactly when ``stride == 1``, ``in == out`` and
    ``residual`` is asked for. ``bottleneck="relu"`` adds a ReLU6 after the projection (ablation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        expansion: int = 6,
        kernel_size: int = 3,
        bottleneck: str = "linear",
        residual: bool = True,
    ):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if in_channels < 1 or out_channels < 1 or expansion < 1:
            raise ValueError(
                f"channels and expansion must be >= 1, got {in_channels}, {out_channels}, {expansion}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size}")
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {bottleneck!r}")
        hidden = in_channels * expansion
        self.in_channels, self.out_channels, self.hidden_channels = in_channels, out_channels, hidden
        self.stride, self.expansion, self.kernel_size, self.bottleneck = (
            stride,
            expansion,
            kernel_size,
            bottleneck,
        )
        self.use_residual = residual and stride == 1 and in_channels == out_channels
        self.expand = _conv_bn(in_channels, hidden, 1) if expansion != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self.project = _conv_bn(hidden, out_channels, 1, act=bottleneck == "relu")

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, channels=self.in_channels, name="x")
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """Images ``(N, C, H, W)`` → logits ``(N, num_classes)``.

    stem 3×3 conv (stride ``stem_stride``) + BN + ReLU6 → the inverted residual blocks of ``settings``
    (rows ``(t, c, n, s)``) → 1×1 conv to ``last_channels`` + BN + ReLU6 → global average pool →
    dropout → linear. Channel counts are scaled by ``width_mult``. ``shortcut`` places the residual
    connections: between bottlenecks (MobileNetV2), between expansions, or nowhere.
    """

    def __init__(
        self,
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        width_mult: float = 1.0,
        settings: Sequence[tuple[int, int, int, int]] = PAPER_SETTINGS,
        stem_channels: int = 32,
        last_channels: int = 1280,
        stem_stride: int = 2,
        kernel_size: int = 3,
        bottleneck: str = "linear",
        shortcut: str = "bottleneck",
        divisor: int = 8,
        dropout: float = 0.2,
    ):
        super().__init__()
        if not width_mult > 0:
            raise ValueError(f"width_mult must be > 0, got {width_mult}")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if bottleneck not in BOTTLENECKS:
            raise ValueError(f"bottleneck must be one of {BOTTLENECKS}, got {bottleneck!r}")
        if not settings or any(len(row) != 4 or min(row) < 1 for row in settings):
            raise ValueError(f"settings must be non-empty rows (t, c, n, s) of ints >= 1, got {settings}")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.in_channels, self.shortcut, self.bottleneck = in_channels, shortcut, bottleneck
        channels = make_divisible(stem_channels * width_mult, divisor)
        self.stem = _conv_bn(in_channels, channels, 3, stride=stem_stride)
        blocks = []
        for t, c, n, s in settings:
            out = make_divisible(c * width_mult, divisor)
            for i in range(n):
                blocks.append(
                    InvertedResidual(
                        channels,
                        out,
                        stride=s if i == 0 else 1,
                        expansion=t,
                        kernel_size=kernel_size,
                        bottleneck=bottleneck,
                        residual=shortcut == "bottleneck",
                    )
                )
                channels = out
        self.blocks = nn.ModuleList(blocks)
        self.last_channels = make_divisible(last_channels * max(1.0, width_mult), divisor)
        self.head = _conv_bn(channels, self.last_channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.last_channels, num_classes)

    def features(self, images: Tensor) -> Tensor:
        """The ``(N, last_channels, h, w)`` feature map before pooling."""
        check_images(images, channels=self.in_channels, name="images")
        h = self.stem(images)
        carry: Tensor | None = None  # shortcut="expansion": the previous block's expanded tensor
        for i, block in enumerate(self.blocks):
            wide = block.expand(h)
            if carry is not None and carry.shape == wide.shape:
                wide = wide + carry
            out = block.project(block.depthwise(wide))
            h = h + out if block.use_residual else out
            # the skip between expansions spans depthwise → project → the next block's expand, where
            # the block itself would have had a residual (stride 1, equal channels)
            following = self.blocks[i + 1] if i + 1 < len(self.blocks) else None
            linked = (
                self.shortcut == "expansion"
                and following is not None
                and block.stride == 1
                and block.in_channels == block.out_channels
                and following.expansion == block.expansion
            )
            carry = wide if linked else None
        return self.head(h)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.features(images).mean(dim=(2, 3))))


# ---- cost: multiply-adds and parameters -------------------------------------------------------------


def _out_side(side: int, kernel_size: int, stride: int) -> int:
    return (side + 2 * (kernel_size // 2) - kernel_size) // stride + 1


def inverted_residual_madds(
    height: int,
    width: int,
    in_channels: int,
    out_channels: int,
    *,
    expansion: int = 6,
    kernel_size: int = 3,
    stride: int = 1,
) -> int:
    """Multiply-adds of the block's convolutions (BN, ReLU6 and the residual add not counted).

    Stride 1: ``h·w·d·t·(d + k² + d')`` (the paper's formula; without the ``h·w·d·t·d`` expansion term
    when t = 1); a stride s applies the depthwise and projection terms at the output resolution.
    """
    hidden = in_channels * expansion
    out_area = _out_side(height, kernel_size, stride) * _out_side(width, kernel_size, stride)
    expand = height * width * in_channels * hidden if expansion != 1 else 0
    return expand + out_area * hidden * kernel_size**2 + out_area * hidden * out_channels


def standard_conv_madds(
    height: int, width: int, in_channels: int, out_channels: int, *, kernel_size: int = 3, stride: int = 1
) -> int:
    """``h'·w'·d·d'·k²``: a standard k×k convolution d → d' (``h·w·d·d'·k²`` at stride 1)."""
    out_area = _out_side(height, kernel_size, stride) * _out_side(width, kernel_size, stride)
    return out_area * in_channels * out_channels * kernel_size**2


def inverted_residual_params(
    in_channels: int, out_channels: int, *, expansion: int = 6, kernel_size: int = 3
) -> int:
    """Weights of the block: convolutions (no bias) and BatchNorm scale and shift."""
    hidden = in_channels * expansion
    expand = in_channels * hidden + 2 * hidden if expansion != 1 else 0
    return expand + hidden * kernel_size**2 + 2 * hidden + hidden * out_channels + 2 * out_channels


def standard_conv_params(in_channels: int, out_channels: int, *, kernel_size: int = 3) -> int:
    """A k×k convolution d → d' (no bias) with BatchNorm: ``d·d'·k² + 2 d'``."""
    return in_channels * out_channels * kernel_size**2 + 2 * out_channels


def count_madds(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-adds of every ``Conv2d`` and ``Linear`` for one input of shape ``(C, H, W)``, read from
    the output shapes of a forward pass: ``h'·w'·c_out·(c_in / groups)·k_h·k_w`` and ``in·out``."""
    total = 0

    def conv_hook(module: nn.Conv2d, _inputs, output: Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, _inputs, output: Tensor) -> None:
        nonlocal total
        total += module.in_features * module.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    return total


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
