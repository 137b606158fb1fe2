import math

import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.vision.mobilenet_v2 import (
    PAPER_SETTINGS,
    TINY_SETTINGS,
    InvertedResidual,
    MobileNetV2,
    count_madds,
    inverted_residual_madds,
    inverted_residual_params,
    make_divisible,
    manifold_sweep,
    n_params,
    random_embedding,
    relu_roundtrip,
    roundtrip_errors,
    spiral,
    standard_conv_madds,
    standard_conv_params,
)

F64 = torch.float64


@pytest.mark.parametrize(
    ("side", "d", "d_out", "t", "k", "stride"),
    [(8, 4, 4, 6, 3, 1), (9, 6, 10, 6, 3, 2), (7, 8, 8, 1, 3, 1), (10, 3, 5, 4, 5, 2), (6, 5, 7, 2, 5, 1)],
)
def test_madds_and_params_formulas_match_the_layer_shapes(side, d, d_out, t, k, stride):
    block = InvertedResidual(d, d_out, stride=stride, expansion=t, kernel_size=k)
    formula = inverted_residual_madds(side, side, d, d_out, expansion=t, kernel_size=k, stride=stride)
    assert count_madds(block, (d, side, side)) == formula
    assert n_params(block) == inverted_residual_params(d, d_out, expansion=t, kernel_size=k)
    if stride == 1 and t != 1:  # the paper's expression
        assert formula == side * side * d * t * (d + k * k + d_out)
    conv = nn.Sequential(
        nn.Conv2d(d, d_out, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm2d(d_out)
    )
    assert count_madds(conv, (d, side, side)) == standard_conv_madds(
        side, side, d, d_out, kernel_size=k, stride=stride
    )
    assert n_params(conv) == standard_conv_params(d, d_out, kernel_size=k)
    if stride == 1:
        assert standard_conv_madds(side, side, d, d_out, kernel_size=k) == side * side * d * d_out * k * k


def test_block_layout_depthwise_groups_and_batchnorm():
    block = InvertedResidual(8, 12, stride=2, expansion=6)
    expand, depthwise, project = block.expand, block.depthwise, block.project
    assert [type(m) for m in expand] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU6]
    assert [type(m) for m in depthwise] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU6]
    assert [type(m) for m in project] == [nn.Conv2d, nn.BatchNorm2d]  # linear bottleneck
    assert expand[0].kernel_size == (1, 1) and expand[0].out_channels == 48
    dw = depthwise[0]
    assert dw.groups == dw.in_channels == dw.out_channels == 48 and dw.weight.shape == (48, 1, 3, 3)
    assert dw.stride == (2, 2) and dw.padding == (1, 1)
    assert project[0].kernel_size == (1, 1) and (project[0].in_channels, project[0].out_channels) == (48, 12)
    assert all(conv.bias is None for conv in (expand[0], dw, project[0]))
    assert isinstance(InvertedResidual(8, 8, expansion=1).expand, nn.Identity)  # t = 1: no expansion
    relu_block = InvertedResidual(8, 12, bottleneck="relu")
    assert isinstance(relu_block.project[-1], nn.ReLU6)
    assert block(torch.randn(2, 8, 9, 9)).shape == (2, 12, 5, 5)


@pytest.mark.parametrize(
    ("d", "d_out", "stride", "residual"),
    [(8, 8, 1, True), (8, 8, 2, False), (8, 12, 1, False), (8, 12, 2, False)],
)
def test_residual_only_with_stride_one_and_equal_channels(d, d_out, stride, residual):
    torch.manual_seed(0)
    block = InvertedResidual(d, d_out, stride=stride).double().eval()
    assert block.use_residual is residual
    with torch.no_grad():  # a zero projection: the block is then the identity or zero
        block.project[1].weight.zero_()
        block.project[1].bias.zero_()
    x = torch.randn(2, d, 6, 6, dtype=F64)
    out = block(x)
    assert torch.equal(out, x) if residual else torch.equal(out, torch.zeros_like(out))
    assert not InvertedResidual(8, 8, residual=False).use_residual


def test_projection_is_linear_so_the_bottleneck_can_be_negative():
    torch.manual_seed(0)
    x = torch.randn(4, 6, 8, 8)
    linear = InvertedResidual(6, 10, bottleneck="linear").eval()
    relu = InvertedResidual(6, 10, bottleneck="relu").eval()
    relu.load_state_dict(linear.state_dict())
    out_linear, out_relu = linear(x), relu(x)
    assert out_linear.min() < -0.1  # would fail with a ReLU (or ReLU6) after the projection
    assert out_relu.min() >= 0 and torch.equal(out_relu, out_linear.clamp(0, 6))
    # the projection is an affine map of the depthwise features: doubling them doubles p - BN shift
    z = linear.depthwise(linear.expand(x))
    shift = linear.project(torch.zeros_like(z))
    assert torch.allclose(linear.project(2 * z) - shift, 2 * (linear.project(z) - shift), atol=1e-5)


def test_shortcut_variants_share_layers_but_not_outputs():
    def make(**kw):
        torch.manual_seed(0)
        return MobileNetV2(
            num_classes=10,
            in_channels=1,
            settings=TINY_SETTINGS,
            stem_channels=16,
            last_channels=32,
            stem_stride=1,
            divisor=4,
            dropout=0.0,
            **kw,
        ).eval()

    x = torch.rand(3, 1, 16, 16)
    bottleneck, expansion, none = make(), make(shortcut="expansion"), make(shortcut="none")
    assert n_params(bottleneck) == n_params(expansion) == n_params(none)
    assert count_madds(bottleneck, (1, 16, 16)) == count_madds(expansion, (1, 16, 16))
    assert sum(b.use_residual for b in bottleneck.blocks) == 4  # 12→12, 16→16 twice, 24→24
    assert not any(b.use_residual for b in expansion.blocks + none.blocks)
    outputs = [m(x) for m in (bottleneck, expansion, none)]
    assert not torch.allclose(outputs[0], outputs[1]) and not torch.allclose(outputs[1], outputs[2])
    assert torch.equal(make()(x), outputs[0])  # seeded construction is deterministic


@pytest.mark.parametrize(
    ("width", "stem", "last_block", "head", "params"),
    [
        (0.35, 16, 112, 1280, 1_677_128),
        (0.5, 16, 160, 1280, 1_968_680),
        (1.0, 32, 320, 1280, 3_504_872),
        (1.4, 48, 448, 1792, 6_108_776),
    ],
)
def test_width_multiplier_shapes(width, stem, last_block, head, params):
    net = MobileNetV2(width_mult=width)
    assert net.stem[0].out_channels == stem and net.blocks[-1].out_channels == last_block
    assert net.last_channels == head and len(net.blocks) == sum(n for _, _, n, _ in PAPER_SETTINGS)
    assert n_params(net) == params  # 1.0: 3.5M, as torchvision's reference MobileNetV2 (paper: 3.4M)
    assert net.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 1000)
    assert net.features(torch.rand(1, 3, 64, 64)).shape == (1, head, 2, 2)  # output stride 32


def test_paper_network_costs_300m_madds():
    madds = count_madds(MobileNetV2(), (3, 224, 224))
    assert 295e6 < madds < 305e6  # Table 4: 300M multiply-adds


def test_make_divisible():
    assert make_divisible(32 * 0.35) == 16  # min value
    assert make_divisible(24 * 0.5) == 16  # 12 rounds to 16 (nearest multiple, ties up)
    assert make_divisible(32 * 1.4) == 48
    assert make_divisible(91) == 88 and make_divisible(100) == 104
    assert make_divisible(21, 8) == 24  # 16 would lose more than 10 %
    assert make_divisible(6, 4) == 8 and make_divisible(10, 1) == 10


def test_toy_roundtrip_exact_cases():
    x = spiral(400)
    assert x.shape == (400, 2) and torch.equal(x[0], torch.zeros(2, dtype=F64))
    assert torch.allclose(x.norm(dim=1), torch.linspace(0, 1, 400, dtype=F64))
    y, x_hat = relu_roundtrip(x, torch.eye(2, dtype=F64))  # T = I: x̂ = ReLU(x), the negative quadrant lost
    assert torch.equal(y, x.clamp_min(0)) and torch.equal(x_hat, x.clamp_min(0))
    both = torch.cat([torch.eye(2, dtype=F64), -torch.eye(2, dtype=F64)])  # [I; -I]: ReLU(u) - ReLU(-u) = u
    _, x_hat = relu_roundtrip(x, both)
    assert torch.allclose(2 * x_hat, x, atol=1e-12)  # T⁺ = [I, -I] / 2: exactly x / 2, like n → ∞
    errors = roundtrip_errors(x, both)
    assert math.isclose(errors["pinv_error"], 0.25, rel_tol=1e-9)
    assert errors["scaled_error"] < 1e-20 and errors["linear_error"] < 1e-20
    assert errors["lost_fraction"] == 1 / 400  # only the origin has fewer than two active units


def test_toy_error_decreases_with_n_on_a_fixed_seed():
    dims = (2, 3, 5, 15, 30)
    sweep = manifold_sweep(dims, trials=25, points=300, seed=0)
    med = {key: [torch.tensor(sweep[n][key]).median().item() for n in dims] for key in sweep[2]}
    for key in ("pinv_error", "scaled_error", "linear_error"):
        assert all(b < a for a, b in zip(med[key], med[key][1:], strict=False)), (key, med[key])
    lost = med["lost_fraction"]  # down to the origin alone (1 of 300 points), which no n recovers
    assert all(b <= a for a, b in zip(lost, lost[1:], strict=False)) and lost[0] > 0.5
    assert math.isclose(lost[-1], 1 / 300, rel_tol=1e-6)
    assert med["linear_error"][-1] < 1e-3 < 0.1 < med["linear_error"][0]
    assert sweep == manifold_sweep(dims, trials=25, points=300, seed=0)
    assert sweep != manifold_sweep(dims, trials=25, points=300, seed=1)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(4, 4, stride=3)
    with pytest.raises(ValueError, match="kernel_size"):
        InvertedResidual(4, 4, kernel_size=4)
    with pytest.raises(ValueError, match="bottleneck"):
        InvertedResidual(4, 4, bottleneck="gelu")
    with pytest.raises(ValueError, match="expansion"):
        InvertedResidual(4, 4, expansion=0)
    with pytest.raises(ValueError, match="4 channel"):
        InvertedResidual(4, 4)(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        InvertedResidual(4, 4)(torch.zeros(4, 8, 8))
    with pytest.raises(ValueError, match="shortcut"):
        MobileNetV2(shortcut="dense")
    with pytest.raises(ValueError, match="width_mult"):
        MobileNetV2(width_mult=0)
    with pytest.raises(ValueError, match="settings"):
        MobileNetV2(settings=((6, 24, 0, 1),))
    with pytest.raises(ValueError, match="3 channel"):
        MobileNetV2()(torch.zeros(1, 1, 32, 32))
    with pytest.raises(ValueError, match="divisor"):
        make_divisible(10, 0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        random_embedding(1, generator=torch.Generator())
    with pytest.raises(ValueError, match=r"x must have shape \(P, 2\)"):
        relu_roundtrip(torch.zeros(5, 3), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"T must have shape \(n, 2\)"):
        relu_roundtrip(torch.zeros(5, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="points"):
        spiral(1)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("dims", (3, 2)),
        ("dims", (1, 5)),
        ("trials", 0),
        ("steps", 0),
        ("lr", 0.0),
        ("variants", ("relu",)),
        ("variants", ("linear", "swish")),
        ("image_size", 4),
        ("width_mult", 0.0),
        ("test_fraction", 1.0),
        ("threads", -1),
        ("weight_decay", -1.0),
    ],
)
def test_config_validation(key, value):
    from papers.vision.mobilenet_v2.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.mobilenet_v2 import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["cost_ir_madds"] == metrics["cost_ir_madds_counted"]
    assert metrics["cost_ir_params"] == metrics["cost_ir_params_counted"]
    assert metrics["linear_params"] == metrics["relu_params"]
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        "figures/cost.png",
        "figures/manifold.png",
        "figures/manifold_errors.png",
        "figures/training.png",
    ]
    assert len(list((run_dir / "stages").glob("*.json"))) == 4
