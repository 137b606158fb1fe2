import math

import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.vision.coordconv import (
    CoordConv2d,
    CoordinateRegressor,
    add_coordinates,
    coordinate_channels,
    in_held_out_quadrant,
    one_hot_pixels,
    quadrant_split,
    uniform_split,
)

F64 = torch.float64


def test_coordinate_channels_values_and_shapes():
    coords = coordinate_channels(3, 5, with_r=True, dtype=F64)
    assert coords.shape == (3, 3, 5)
    i, j, r = coords
    assert torch.equal(i[:, 0], torch.tensor([-1.0, 0.0, 1.0], dtype=F64))
    assert torch.equal(j[0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0], dtype=F64))
    assert torch.equal(i, i[:, :1].expand(3, 5)) and torch.equal(j, j[:1].expand(3, 5))  # i rows, j columns
    assert r[1, 2] == 0.0 and r[0, 0] == 1.0 and r.min() >= 0 and r.max() <= 1
    assert torch.allclose(r, (i**2 + j**2).sqrt() / math.sqrt(2))
    assert torch.equal(coordinate_channels(1, 4)[0], torch.zeros(1, 4))  # a side of one is at 0
    x = torch.rand(2, 3, 4, 6)
    with_coords = add_coordinates(x)
    assert with_coords.shape == (2, 5, 4, 6)
    assert torch.equal(with_coords[:, :3], x)
    assert torch.equal(with_coords[1, 3:], coordinate_channels(4, 6))
    assert with_coords[:, 3:].min() == -1.0 and with_coords[:, 3:].max() == 1.0


def test_coordconv_with_zero_coordinate_weights_is_the_plain_conv():
    torch.manual_seed(0)
    layer = CoordConv2d(3, 4, 3, padding=1, with_r=True).double()
    with torch.no_grad():
        layer.conv.weight[:, 3:] = 0.0
    plain = nn.Conv2d(3, 4, 3, padding=1).double()
    with torch.no_grad():
        plain.weight.copy_(layer.conv.weight[:, :3])
        plain.bias.copy_(layer.conv.bias)
    x = torch.randn(2, 3, 7, 9, dtype=F64)
    assert layer.conv.in_channels == 6
    assert torch.allclose(layer(x), plain(x), rtol=0, atol=1e-13)
    with torch.no_grad():
        layer.conv.weight[:, 4] = 1.0  # a weight on j makes it position-dependent
    assert not torch.allclose(layer(x), plain(x), atol=1e-3)


def _shift(x, di, dj):
    return torch.roll(x, shifts=(di, dj), dims=(2, 3))


def test_plain_conv_is_translation_equivariant_but_coordconv_is_not():
    torch.manual_seed(0)
    plain = nn.Conv2d(1, 3, 3, padding=1).double()
    coord = CoordConv2d(1, 3, 3, padding=1).double()
    x = torch.zeros(1, 1, 16, 16, dtype=F64)
    x[0, 0, 4:8, 3:7] = torch.randn(4, 4, dtype=F64)  # support well inside, so shifts stay interior
    shifted = _shift(x, 3, 5)
    assert torch.equal(plain(shifted), _shift(plain(x), 3, 5))
    assert not torch.allclose(coord(shifted), _shift(coord(x), 3, 5), atol=1e-3)


def test_one_hot_pixels_and_quadrant_split():
    size = 8
    images, positions = one_hot_pixels(size)
    assert images.shape == (64, 1, 8, 8) and positions.shape == (64, 2)
    assert torch.equal(images.sum(dim=(1, 2, 3)), torch.ones(64))
    k = 8 * 5 + 3
    assert images[k, 0, 5, 3] == 1.0 and positions[k].tolist() == [5, 3]
    train, test = quadrant_split(positions, size)
    assert len(train) == 48 and len(test) == 16 and len(set(train.tolist()) | set(test.tolist())) == 64
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert ((positions[test] >= 4).all(dim=1)).all()  # test is exactly the lower-right quadrant
    assert not (positions[train] >= 4).all(dim=1).any()
    assert in_held_out_quadrant(positions, size).sum() == 16
    u_train, u_test = uniform_split(64, 0.25, seed=3)
    assert len(u_test) == 16 and set(u_train.tolist()).isdisjoint(u_test.tolist())
    assert torch.equal(u_test, uniform_split(64, 0.25, seed=3)[1])
    assert not torch.equal(u_test, uniform_split(64, 0.25, seed=4)[1])


def test_regressors_shapes_params_and_determinism():
    def make(**kw):
        torch.manual_seed(0)
        return CoordinateRegressor(channels=4, depth=2, image_size=8, **kw)

    images, _ = one_hot_pixels(8)
    coord, conv, dense = make(coords=True), make(coords=False), make(coords=False, head="dense")
    for model in (coord, conv, dense):
        assert model(images).shape == (64, 2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(coord) - count(conv) == 2 * 4 * 9  # only the coordinate weights of the first 3x3 layer
    assert torch.equal(make(coords=True)(images), coord(images))
    assert torch.equal(make(coords=True, with_r=True)(images), make(coords=True, with_r=True)(images))


def test_bad_input_gives_clear_errors():
    layer = CoordConv2d(1, 2)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        add_coordinates(torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        layer(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="1 channel"):
        layer(torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="head"):
        CoordinateRegressor(coords=True, head="mean")
    with pytest.raises(ValueError, match="size"):
        one_hot_pixels(1)
    with pytest.raises(ValueError, match="test_fraction"):
        uniform_split(10, 1.0, seed=0)


@pytest.mark.parametrize(("key", "value"), [("size", 7), ("epochs", 0), ("lr", 0.0), ("channels", 0),
                                            ("uniform_test_fraction", 0.0), ("threads", -1)])
def test_config_validation(key, value):
    from papers.vision.coordconv.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.coordconv import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["coordconv_params"] > metrics["conv_params"]
    assert len(result.checks) == 5 and all(math.isfinite(c.measured) for c in result.checks)
    assert result.figures == ["figures/quadrant_predictions.png"]
    assert len(list((run_dir / "stages").glob("*.json"))) == 6
