"""Group Normalization.

Yuxin Wu, Kaiming He. *Group Normalization*. ECCV 2018. arXiv:1803.08494. Catalogue id 001:146:1.

A normalization layer computes x̂_i = (x_i − μ_i) / √(σ_i² + ε) over a set S_i of features and then
y_i = γ x̂_i + β with per-channel γ, β. For activations x of shape (N, C, H, W):

    BatchNorm     S_i = {k : k_C = i_C}                       (over the batch and positions, per channel)
    LayerNorm     S_i = {k : k_N = i_N}                       (all of one sample)
    InstanceNorm  S_i = {k : k_N = i_N, k_C = i_C}            (one sample, one channel)
    GroupNorm     S_i = {k : k_N = i_N, ⌊k_C / (C/G)⌋ = ⌊i_C / (C/G)⌋}

    μ_i = (1/m) Σ_{k∈S_i} x_k,    σ_i² = (1/m) Σ_{k∈S_i} (x_k − μ_i)²,    m = |S_i| = (C/G)·H·W

GN's statistics are per sample, so they do not depend on the batch size and are the same in training
and at test; G = 1 is LayerNorm and G = C is InstanceNorm. The paper's default is G = 32; the toy CNN
here has 32-channel layers and uses G = 8 (4 channels per group).

    from papers.vision.group_norm import GroupNorm, group_norm, SmallCNN
    y = group_norm(x, num_groups=8, weight=gamma, bias=beta)      # x: (N, C, *spatial)
    net = SmallCNN("group", channels=(32, 32), groups=8)          # or "batch", "layer", "instance"
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="group-norm",
    papers=Paper(
        "Group Normalization",
        "Yuxin Wu, Kaiming He",
        2018,
        venue="ECCV",
        arxiv="1803.08494",
        catalog_ids=("001:146:1",),
    ),
    claim=(
        "BatchNorm's test error grows as the per-batch size shrinks while GroupNorm's stays nearly flat, "
        "so GN beats BN at the smallest batch."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy: a small CNN on 8 x 8 digits with BN, GN (G = 8), LN and IN, trained at 32, 8, 4 and 2 images "
        "per batch for the same epochs (linear lr scaling); test error vs batch size."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {name: "model" for name in ("NORMS", "GroupNorm", "SmallCNN", "group_norm", "make_norm")},
)
