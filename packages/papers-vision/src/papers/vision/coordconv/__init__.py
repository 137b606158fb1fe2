"""CoordConv: convolutions that see their own coordinates.

Rosanne Liu, Joel Lehman, Piero Molino, Felipe Petroski Such, Eric Frank, Alex Sergeev, Jason Yosinski.
*An Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution*. NeurIPS 2018.
arXiv:1807.03247. Catalogue id 001:115:1.

A CoordConv layer appends fixed coordinate channels to its input ``x`` of shape (N, C, H, W) and
convolves the result:

    i[h, w] = 2 h / (H − 1) − 1,   j[h, w] = 2 w / (W − 1) − 1          (both in [−1, 1])
    r[h, w] = √(i² + j²) / √2                                            (optional, in [0, 1])
    CoordConv(x) = Conv2d([x, i, j (, r)])

With zero weights on the coordinate channels it is the plain, translation-equivariant convolution;
learned weights let it depend on position as much as the task needs. The experiment is a toy version
of the paper's supervised coordinate regression: images of one active pixel on a 32 × 32 canvas, (i, j)
regressed from the image, with a uniform and a held-out-quadrant split.

    from papers.vision.coordconv import CoordConv2d, CoordinateRegressor, add_coordinates
    layer = CoordConv2d(3, 16, kernel_size=3, padding=1)      # sees [x, i, j]
    net = CoordinateRegressor(coords=True)                    # (N, 1, 32, 32) → (N, 2) in [−1, 1]
"""

from papers.core.experiment import Experiment, Paper
from papers.core.lazy import lazy_exports

EXPERIMENT = Experiment(
    id="coordconv",
    papers=Paper(
        "An Intriguing Failing of Convolutional Neural Networks and the CoordConv Solution",
        "Rosanne Liu, Joel Lehman, Piero Molino, Felipe Petroski Such, Eric Frank, Alex Sergeev, "
        "Jason Yosinski",
        2018,
        venue="NeurIPS",
        arxiv="1807.03247",
        catalog_ids=("001:115:1",),
    ),
    claim=(
        "A small CoordConv net regresses the position of a single pixel accurately even in a held-out "
        "quadrant, where plain conv nets of similar size fail (even when they fit the training positions)."
    ),
    module=f"{__name__}.experiment",
    summary=(
        "Toy supervised coordinate regression on 32x32 one-hot pixel images, uniform and held-out-quadrant "
        "splits: fully convolutional CoordConv vs the same net without coordinates vs a conv net with a "
        "dense head; test RMSE in pixels, parameter counts, predicted vs true held-out positions."
    ),
)

__getattr__, __all__ = lazy_exports(
    __name__,
    {
        "CoordConv2d": "model",
        "CoordinateRegressor": "model",
        "add_coordinates": "model",
        "coordinate_channels": "model",
        "n_params": "model",
        "in_held_out_quadrant": "data",
        "one_hot_pixels": "data",
        "quadrant_split": "data",
        "uniform_split": "data",
    },
)
