"""MobileNetV2: inverted residuals and linear bottlenecks.

Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen. *MobileNetV2: Inverted
Residuals and Linear Bottlenecks*. CVPR 2018. arXiv:1801.04381. Catalogue id 001:9:1.

The bottleneck residual block (Table 1) takes a narrow tensor x of d channels (h × w) to d' channels:

    e = ReLU6(BN(W_expand * x))              1×1 conv, d → t·d       (expansion factor t = 6)
    z = ReLU6(BN(W_depthwise ⊛ e))           k×k depthwise conv (groups = t·d), stride s
    p = BN(W_project * z)                    1×1 conv, t·d → d'      linear: no non-linearity
    out = x + p   if s = 1 and d = d',   else p                     (shortcut between bottlenecks)

with ReLU6(u) = min(max(u, 0), 6). Cost for stride 1:

    MAdds = h·w·d·t·(d + k² + d')        (a standard k×k conv d → d' costs h·w·d·d'·k²)

A width multiplier α scales every layer's channels. The linear bottleneck is motivated by Figure 1:
a 2-D manifold x embedded by a random T into R^n, y = ReLU(T x), mapped back by T⁺ (pseudo-inverse),
collapses for small n (2, 3) and is preserved for large n (15, 30): ReLU keeps the information of a
manifold only where it lies in a low-dimensional subspace of a wide space, so the narrow bottleneck
itself should be linear.

    from papers.vision.mobilenet_v2 import InvertedResidual, MobileNetV2, relu_roundtrip
    block = InvertedResidual(24, 24, stride=1, expansion=6)       # residual: stride 1, equal widths
    net = MobileNetV2(num_classes=1000, width_mult=1.0)           # Table 2, 224 × 224 inputs
    y, x_hat = relu_roundtrip(spiral(1000), T)                    # the Figure 1 toy
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="mobilenet-v2",
    papers=Paper(
        "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        "Mark Sandler, Andrew Howard, Menglong Zhu, Andrey Zhmoginov, Liang-Chieh Chen",
        2018,
        venue="CVPR",
        arxiv="1801.04381",
        catalog_ids=("001:9:1",),
    ),
    claim=(
        "ReLU destroys a low-dimensional manifold unless it is embedded in a wide space, so inverted "
        "residual blocks with a linear bottleneck train at least as well as ones with a ReLU bottleneck, "
        "and are cheap: h*w*d*t*(d + k^2 + d') multiply-adds."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Figure 1 toy (spiral, random embedding into R^n, ReLU, pseudo-inverse: error vs n); a reduced "
        "MobileNetV2 on 16x16 upsampled digits with linear vs ReLU6 bottleneck and shortcut between "
        "bottlenecks vs between expansions at equal steps; per-block multiply-adds and parameters vs "
        "standard convolutions."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "BOTTLENECKS": "model",
        "PAPER_SETTINGS": "model",
        "SHORTCUTS": "model",
        "TINY_SETTINGS": "model",
        "InvertedResidual": "model",
        "MobileNetV2": "model",
        "count_madds": "model",
        "inverted_residual_madds": "model",
        "inverted_residual_params": "model",
        "make_divisible": "model",
        "n_params": "model",
        "standard_conv_madds": "model",
        "standard_conv_params": "model",
        "manifold_sweep": "manifold",
        "random_embedding": "manifold",
        "relu_roundtrip": "manifold",
        "roundtrip_errors": "manifold",
        "spiral": "manifold",
    },
)
