"""Generated shape images: factors and images agree, grids enumerate, sampling is seeded."""

from __future__ import annotations

import math

import pytest
import torch

from papers.vision.data import FACTOR_NAMES, SHAPES, ShapeFactors, render_shapes, sample_shapes, shape_grid
from papers.vision.data.shapes import hue_to_rgb


def _factors(shape, scale=0.2, rotation=0.0, x=0.5, y=0.5, hue=0.0, count=1):
    values = [SHAPES.index(shape), scale, rotation, x, y, hue]
    return ShapeFactors(*(torch.full((count,), float(v)) for v in values))


def _centroid(masks):
    """Intensity-weighted centre ``(x, y)`` of ``(N, 1, S, S)`` masks, as fractions of the side."""
    size = masks.shape[-1]
    centres = (torch.arange(size, dtype=torch.float64) + 0.5) / size
    weights = masks[:, 0].double()
    total = weights.sum(dim=(1, 2))
    return (weights * centres).sum(dim=(1, 2)) / total, (weights * centres[:, None]).sum(dim=(1, 2)) / total


@pytest.mark.parametrize("antialias", [True, False])
def test_centroid_of_the_rendered_shape_is_the_position_factor(antialias):
    images, factors = sample_shapes(200, size=64, seed=1, rgb=False, antialias=antialias)
    x, y = _centroid(images)
    assert (x - factors.x).abs().max() * 64 < 1 and (y - factors.y).abs().max() * 64 < 1


def test_area_grows_as_the_square_of_the_scale():
    for shape in SHAPES:
        scales = torch.tensor([0.1, 0.15, 0.2, 0.25])
        images, _ = shape_grid(size=64, shapes=[shape], scales=scales.tolist(), rgb=False, xs=[0.5], ys=[0.5])
        area = images.sum(dim=(1, 2, 3))
        assert (area.diff() > 0).all(), shape
        assert torch.allclose(area / area[-1], (scales / scales[-1]) ** 2, rtol=0.05), shape


def test_antialiased_circle_has_the_area_of_a_disc():
    image = render_shapes(_factors("circle", scale=0.3), size=64, rgb=False)
    assert float(image.sum()) == pytest.approx(math.pi * (0.3 * 64) ** 2, rel=0.005)
    hard = render_shapes(_factors("circle", scale=0.3), size=64, rgb=False, antialias=False)
    assert set(hard.unique().tolist()) == {0.0, 1.0}
    assert float(hard.sum()) == pytest.approx(float(image.sum()), rel=0.02)


def test_every_shape_fits_its_circumscribed_circle():
    size, scale = 64, 0.25
    centres = (torch.arange(size) + 0.5) / size
    distance = torch.hypot(centres - 0.5, centres[:, None] - 0.5) * size  # pixels from the centre
    for shape in SHAPES:
        image = render_shapes(_factors(shape, scale=scale, rotation=0.3), size=size, rgb=False)[0, 0]
        assert image[distance > scale * size + 1].sum() == 0, shape
        assert image[distance < scale * size - 1].sum() > 0, shape


def _extent(profile):
    """Pixels covered before and after the middle of a row or column profile."""
    covered = torch.nonzero(profile > 0.5).flatten()
    return 32 - int(covered.min()), int(covered.max()) + 1 - 32


def test_rotation_is_counterclockwise_and_respects_symmetry():
    upright = render_shapes(_factors("triangle"), size=64, rgb=False)[0, 0]
    turned = render_shapes(_factors("triangle", rotation=math.pi / 2), size=64, rgb=False)[0, 0]
    above, below = _extent(upright.amax(dim=1))
    assert above > below + 3  # apex up: it lies at the circumradius above the centroid, the base below
    left, right = _extent(turned.amax(dim=0))
    assert left > right + 3  # turned counterclockwise: the apex now points left
    square = render_shapes(_factors("square", rotation=math.pi / 2, count=2), size=64, rgb=False)
    assert torch.allclose(square, render_shapes(_factors("square"), size=64, rgb=False), atol=1e-4)
    heart = render_shapes(_factors("heart"), size=64, rgb=False)
    upside_down = render_shapes(_factors("heart", rotation=math.pi), size=64, rgb=False)
    assert torch.allclose(upside_down, heart.flip(-2), atol=1e-4)


def test_colour_is_the_hue_factor():
    images, factors = sample_shapes(20, size=32, seed=0, scale=(0.25, 0.3), x=(0.5, 0.5), y=(0.5, 0.5))
    assert images.shape == (20, 3, 32, 32)
    assert torch.allclose(images[:, :, 16, 16], hue_to_rgb(factors.hue).float(), atol=1e-6)
    assert torch.allclose(hue_to_rgb(torch.tensor([0.0, 1 / 3, 2 / 3])), torch.eye(3), atol=1e-6)
    assert images[:, :, 0, 0].abs().max() == 0  # black background


def test_grid_enumerates_the_product_of_factor_values_last_fastest():
    values = dict(shapes=["square", "heart"], scales=[0.1, 0.2], rotations=[0.0, 1.0, 2.0], xs=[0.4, 0.6],
                  ys=[0.5], hues=[0.0, 0.5])  # fmt: skip
    images, factors = shape_grid(size=32, **values)
    assert len(factors) == 2 * 2 * 3 * 2 * 1 * 2 and images.shape == (48, 3, 32, 32)
    table = factors.as_tensor()
    assert table.shape == (48, len(FACTOR_NAMES)) and len({tuple(row.tolist()) for row in table}) == 48
    assert factors.hue[:4].tolist() == [0.0, 0.5, 0.0, 0.5] and factors.x[:4].tolist() == [0.4, 0.4, 0.6, 0.6]
    assert factors.shape.tolist() == [0] * 24 + [SHAPES.index("heart")] * 24
    assert torch.equal(images[5:6], render_shapes(factors[5], size=32))


def test_sampling_is_seeded_and_stays_in_the_ranges():
    first, factors = sample_shapes(30, size=32, seed=7, shapes=["ellipse", "heart"], scale=(0.1, 0.12))
    again, factors_again = sample_shapes(30, size=32, seed=7, shapes=["ellipse", "heart"], scale=(0.1, 0.12))
    other, _ = sample_shapes(30, size=32, seed=8, shapes=["ellipse", "heart"], scale=(0.1, 0.12))
    assert torch.equal(first, again) and torch.equal(factors.as_tensor(), factors_again.as_tensor())
    assert not torch.equal(first, other)
    assert set(factors.shape.tolist()) == {SHAPES.index("ellipse"), SHAPES.index("heart")}
    assert 0.1 <= factors.scale.min() and factors.scale.max() <= 0.12
    assert 0 <= first.min() and first.max() <= 1


def test_bad_factors_and_arguments_are_refused():
    with pytest.raises(ValueError, match="one length"):
        ShapeFactors(
            torch.zeros(2), torch.ones(3), torch.zeros(2), torch.zeros(2), torch.zeros(2), torch.zeros(2)
        )
    with pytest.raises(ValueError, match="shape indices"):
        ShapeFactors(torch.tensor([9]), *(torch.ones(1) for _ in range(5)))
    with pytest.raises(ValueError, match="non-empty subset"):
        sample_shapes(3, shapes=["star"])
    with pytest.raises(ValueError, match="size must be an int"):
        render_shapes(_factors("square"), size=2)
