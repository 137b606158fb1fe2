"""Group Normalization: against torch's group/layer/instance norm, invariances, gradients, the experiment."""

from __future__ import annotations

import pytest
import torch
from papers_testing import untimed

from papers.vision.group_norm import GroupNorm, SmallCNN, group_norm, make_norm

F64 = torch.float64


@pytest.mark.parametrize(("shape", "groups"), [((4, 32, 5, 5), 8), ((2, 6, 3), 3), ((3, 12, 2, 3, 4), 4),
                                               ((1, 8, 7, 7), 1), ((5, 16), 16)])
def test_matches_torch_group_norm(shape, groups):
    g = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(shape, generator=g, dtype=F64) + 1.5
    weight = torch.randn(shape[1], generator=g, dtype=F64)
    bias = torch.randn(shape[1], generator=g, dtype=F64)
    ours = group_norm(x, groups, weight, bias, eps=1e-5)
    torch.testing.assert_close(ours, torch.nn.functional.group_norm(x, groups, weight, bias, 1e-5),
                               rtol=0, atol=1e-12)  # G = C = 16 on (5, 16): rounding of x − μ over √ε


def test_one_group_is_layer_norm_and_c_groups_is_instance_norm():
    x = torch.randn(3, 8, 4, 5, dtype=F64)
    torch.testing.assert_close(group_norm(x, 1), torch.nn.functional.layer_norm(x, x.shape[1:]),
                               rtol=0, atol=1e-13)
    torch.testing.assert_close(group_norm(x, 8), torch.nn.functional.instance_norm(x), rtol=0, atol=1e-13)
    assert isinstance(make_norm("layer", 8, 4), GroupNorm) and make_norm("layer", 8, 4).num_groups == 1
    assert make_norm("instance", 8, 4).num_groups == 8 and make_norm("group", 8, 4).num_groups == 4
    assert isinstance(make_norm("batch", 8, 4), torch.nn.BatchNorm2d)


def test_group_statistics_are_zero_mean_unit_variance():
    x = 5 * torch.randn(4, 12, 6, 6, dtype=F64) - 2
    y = group_norm(x, 3, eps=0.0).reshape(4, 3, -1)
    torch.testing.assert_close(y.mean(-1), torch.zeros(4, 3, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(4, 3, dtype=F64), rtol=0, atol=1e-12)


def test_invariant_to_per_sample_per_group_scale_and_shift():
    n, groups, per_group = 3, 4, 2
    x = torch.randn(n, groups * per_group, 5, 5, dtype=F64)
    scale = torch.rand(n, groups, dtype=F64) * 10 + 0.5
    shift = torch.randn(n, groups, dtype=F64) * 100
    expand = lambda t: t.repeat_interleave(per_group, dim=1)[:, :, None, None]  # noqa: E731
    moved = expand(scale) * x + expand(shift)
    torch.testing.assert_close(group_norm(moved, groups, eps=0.0), group_norm(x, groups, eps=0.0),
                               rtol=0, atol=1e-10)
    # with ε > 0 the invariance holds up to ε / σ²: exact for shifts, approximate for scales
    shifted = group_norm(x + expand(shift), groups)
    torch.testing.assert_close(shifted, group_norm(x, groups), rtol=0, atol=1e-9)
    difference = (group_norm(moved, groups, eps=1e-5) - group_norm(x, groups, eps=1e-5)).abs().max()
    assert 0 < difference < 1e-4
    # a scale shared by two groups but applied to one only is not undone: the grouping matters
    one_group = x.clone()
    one_group[:, :per_group] *= 3
    assert not torch.allclose(group_norm(one_group, 1), group_norm(x, 1))


def test_output_of_a_sample_does_not_depend_on_the_batch():
    layer = GroupNorm(4, 16).double()
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_()
    batch = torch.randn(6, 16, 4, 4, dtype=F64)
    others = torch.randn(6, 16, 4, 4, dtype=F64) * 7
    alone = torch.cat([layer(batch[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(layer(batch), alone, rtol=0, atol=0)
    mixed = torch.cat([batch[:2], others[2:]])
    torch.testing.assert_close(layer(mixed)[:2], layer(batch)[:2], rtol=0, atol=0)
    layer.eval()
    torch.testing.assert_close(layer(batch), alone, rtol=0, atol=0)  # no train/test difference
    bn = torch.nn.BatchNorm2d(16).double()  # the contrast: BN's output for a sample depends on the rest
    assert not torch.allclose(bn(mixed)[:2], bn(batch)[:2])


def test_gradcheck():
    x = torch.randn(2, 6, 3, 3, dtype=F64, requires_grad=True)
    weight = torch.randn(6, dtype=F64, requires_grad=True)
    bias = torch.randn(6, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, w, b: group_norm(a, 3, w, b), (x, weight, bias))


def test_bad_input_raises_clear_errors():
    with pytest.raises(ValueError, match=r"channels \(10\) must be divisible by num_groups \(4\)"):
        group_norm(torch.randn(2, 10, 3, 3), 4)
    with pytest.raises(ValueError, match="divisible"):
        GroupNorm(3, 8)
    with pytest.raises(ValueError, match=r"\(N, C, \*spatial\)"):
        group_norm(torch.randn(5), 1)
    with pytest.raises(ValueError, match=r"expected \(N, 8, ...\)"):
        GroupNorm(2, 8)(torch.randn(2, 6, 3, 3))
    with pytest.raises(ValueError, match="unknown norm 'weight'"):
        make_norm("weight", 8, 2)
    with pytest.raises(ValueError, match=r"images \(N, C, H, W\)"):
        SmallCNN("group")(torch.randn(2, 64))


def test_small_cnn_shapes_and_determinism():
    def make(norm):
        torch.manual_seed(0)
        return SmallCNN(norm, channels=(16, 32), groups=4)

    x = torch.rand(5, 1, 8, 8)
    for norm in ("batch", "group", "layer", "instance"):
        assert make(norm)(x).shape == (5, 10)
        assert torch.equal(make(norm)(x), make(norm)(x))
    assert torch.equal(make("group").features[0].weight, make("batch").features[0].weight)  # same init


@pytest.mark.parametrize(("key", "value"), [("epochs", 0), ("groups", 3), ("batch_sizes", (1, 8)),
                                            ("norms", ("group", "layer")), ("base_lr", 0.0),
                                            ("test_fraction", 1.0), ("threads", -1), ("decay_at", 0.0)])
def test_config_validation(key, value):
    from papers.vision.group_norm.experiment import Config

    with pytest.raises(ValueError, match=key if key not in {"groups"} else "divisible by groups"):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.group_norm import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    errors = [v for k, v in result.metrics.items() if "_error_b" in k]
    assert len(errors) == 2 * 4 * 2 and all(0 <= e <= 1 for e in errors)
    assert len(result.checks) == 6
    assert result.figures == ["figures/error_vs_batch.png"]
    assert len(list((run_dir / "stages").glob("train_*.json"))) == 4 * 2
