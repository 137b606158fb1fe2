import math

import pytest
import torch
from papers_testing import untimed

from papers.vision.siren import (
    PositionalEncoding,
    ReluMLP,
    SineLayer,
    Siren,
    discrete_laplacian,
    gradient,
    laplacian,
    make_network,
    match_offset,
    nyquist_frequencies,
    pixel_grid,
    psnr,
    siren_bound,
    sobel_gradient,
)

F64 = torch.float64


def test_initialisation_bounds_and_uniform_spread():
    torch.manual_seed(0)
    first = SineLayer(2, 256, first=True)
    assert first.bound == 0.5  # 1 / n
    hidden = SineLayer(256, 256, omega0=30.0)
    bound = math.sqrt(6 / 256) / 30
    assert hidden.bound == pytest.approx(bound) == siren_bound(256, 30.0, first=False)
    for layer in (first, hidden):
        for p in (layer.linear.weight, layer.linear.bias):
            assert p.abs().max() <= layer.bound
    w = hidden.linear.weight
    assert w.abs().max() > 0.99 * bound  # fills the interval ...
    assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.03)  # ... uniformly: var = a² / 3
    assert w.mean().abs() < 0.01 * bound
    net = Siren(2, 3, hidden=32, hidden_layers=2, hidden_omega0=10.0)
    assert net.last.weight.abs().max() <= math.sqrt(6 / 32) / 10
    assert net.layers[0].linear.weight.abs().max() <= 0.5


def _preactivation_std(scale: float) -> list[float]:
    torch.manual_seed(0)
    net = Siren(2, 1, hidden=256, hidden_layers=5).double()  # six sine layers
    with torch.no_grad():
        for layer in net.layers[1:]:
            layer.linear.weight.mul_(scale)
        x = torch.rand(4096, 2, generator=torch.Generator().manual_seed(1), dtype=F64) * 2 - 1
        return net.preactivations(x)


def test_preactivations_stay_standard_normal_across_depth_only_with_the_paper_init():
    zs = _preactivation_std(1.0)
    assert len(zs) == 6
    assert zs[0].std() > 5  # the first layer spreads the input over many periods: sin(z_1) is arcsine
    assert torch.sin(zs[0]).var().item() == pytest.approx(0.5, abs=0.03)
    for z in zs[1:]:  # every hidden sine sees ≈ N(0, 1), at any depth
        assert 0.8 < z.std().item() < 1.2
        assert abs(z.mean().item()) < 0.1
        kurtosis = ((z - z.mean()) / z.std()).pow(4).mean().item()
        assert 2.7 < kurtosis < 3.3  # Gaussian-shaped, not just the right variance
    shrunk = [z.std().item() for z in _preactivation_std(0.5)[1:]]  # too small: the signal dies out
    assert all(b < a for a, b in zip(shrunk, shrunk[1:], strict=False)) and shrunk[-1] < 0.3
    no_omega = [z.std().item() for z in _preactivation_std(30.0)[1:]]  # without the 1/ω0: std ≈ ω0
    assert min(no_omega) > 10


def test_autograd_derivatives_match_finite_differences():
    torch.manual_seed(0)
    net = Siren(2, 1, hidden=32, hidden_layers=2, first_omega0=5.0, hidden_omega0=5.0).double()
    x = (torch.rand(7, 2, dtype=F64) * 2 - 1).requires_grad_()
    y = net(x)
    grad, lap = gradient(y, x), laplacian(y, x)
    assert grad.shape == (7, 2) and lap.shape == (7, 1)
    h, fd_grad, fd_lap = 1e-5, torch.zeros(7, 2, dtype=F64), torch.zeros(7, 1, dtype=F64)
    with torch.no_grad():
        for k in range(2):
            e = torch.zeros(2, dtype=F64)
            e[k] = h
            fd_grad[:, k] = ((net(x + e) - net(x - e)) / (2 * h))[:, 0]
            e[k] = 1e-3
            fd_lap += (net(x + e) - 2 * net(x) + net(x - e)) / 1e-6
    assert torch.allclose(grad, fd_grad, rtol=1e-6, atol=1e-8)
    assert torch.allclose(lap, fd_lap, rtol=1e-4, atol=1e-4)
    assert lap.abs().max() > 1e-2  # a SIREN has curvature
    assert torch.autograd.gradcheck(lambda p: gradient(net(p), p), (x.detach().clone().requires_grad_(),))


def test_relu_network_has_piecewise_constant_gradient_and_zero_laplacian():
    torch.manual_seed(0)
    net = ReluMLP(2, 1, hidden=32, hidden_layers=2).double()
    x = (torch.rand(50, 2, dtype=F64) * 2 - 1).requires_grad_()
    y = net(x)
    assert torch.equal(laplacian(y, x), torch.zeros(50, 1, dtype=F64))
    nearby = (x.detach() + 1e-9).requires_grad_()  # same linear region (almost surely)
    assert torch.allclose(gradient(net(nearby), nearby), gradient(y, x), rtol=0, atol=1e-12)
    pe = make_network("relu_pe", hidden=16, hidden_layers=1, pe_frequencies=3).double()
    z = x.detach().clone().requires_grad_()
    assert laplacian(pe(z), z).abs().max() > 0  # the encoding's sines bring curvature back


def test_positional_encoding_and_nyquist_rule():
    enc = PositionalEncoding(2, 3)
    x = torch.tensor([[0.5, -0.25]], dtype=F64)
    out = enc(x)
    assert out.shape == (1, 2 * 7) and enc.out_features == 14
    assert torch.equal(out[0, :2], x[0])
    angles = torch.tensor([math.pi * 2**k * c for k in range(3) for c in (0.5, -0.25)], dtype=F64)
    assert torch.allclose(out[0, 2:8], angles.sin()) and torch.allclose(out[0, 8:], angles.cos())
    assert [nyquist_frequencies(n) for n in (16, 64, 256)] == [2, 4, 6]  # the paper code: 256 → 6
    relu, relu_pe = make_network("relu", hidden=8), make_network("relu_pe", hidden=8, pe_frequencies=2)
    assert relu_pe.net[0].in_features == 10 and relu.net[0].in_features == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in relu.net) == len(Siren(hidden=8).layers) + 1


def test_signal_operators_are_exact_on_polynomials():
    grid = pixel_grid(5, 7)
    assert grid.shape == (35, 2)
    assert (
        grid[0].tolist() == [-1.0, -1.0]
        and grid[-1].tolist() == [1.0, 1.0]
        and grid[1, 1].item() == pytest.approx(-2 / 3)
    )
    y, x = grid[:, 0].reshape(5, 7).double(), grid[:, 1].reshape(5, 7).double()
    g = sobel_gradient(3 * y - 2 * x + 1)
    assert torch.allclose(g[1:-1, 1:-1, 0], torch.full((3, 5), 3.0, dtype=F64))  # per unit coordinate
    assert torch.allclose(g[1:-1, 1:-1, 1], torch.full((3, 5), -2.0, dtype=F64))
    sq = pixel_grid(6, 6).double()
    quad = (sq[:, 0] ** 2 + sq[:, 1] ** 2).reshape(6, 6)
    assert torch.allclose(discrete_laplacian(quad)[1:-1, 1:-1], torch.full((4, 4), 4.0, dtype=F64))
    image = torch.rand(8, 8)
    assert psnr(image, image) == math.inf
    assert psnr(torch.full((4, 4), 0.1), torch.zeros(4, 4)) == pytest.approx(20.0)
    assert psnr(torch.full((4, 4), 2.0), torch.ones(4, 4)) == math.inf  # clipped to [0, 1]
    assert torch.allclose(match_offset(image + 5.0, image), image, atol=1e-5)


def test_networks_shapes_and_seeded_determinism():
    x = torch.rand(3, 4, 2)
    for activation in ("sine", "relu", "relu_pe"):
        torch.manual_seed(3)
        a = make_network(activation, hidden=16, hidden_layers=2, pe_frequencies=2, out_features=3)
        torch.manual_seed(3)
        b = make_network(activation, hidden=16, hidden_layers=2, pe_frequencies=2, out_features=3)
        assert a(x).shape == (3, 4, 3)
        assert torch.equal(a(x), b(x))
    torch.manual_seed(4)
    assert not torch.equal(make_network("sine", hidden=16)(x), a(x)[..., :1])


def test_bad_input_gives_clear_errors():
    net = Siren(2, 1, hidden=8, hidden_layers=1)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 2\)"):
        net(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="floating"):
        net(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="requires_grad"):
        gradient(net(torch.zeros(4, 2)), torch.zeros(4, 2))
    x = torch.zeros(4, 2, requires_grad=True)
    with pytest.raises(ValueError, match="outputs must have shape"):
        gradient(net(x).expand(4, 2), x)
    with pytest.raises(ValueError, match="unknown activation"):
        make_network("tanh")
    with pytest.raises(ValueError, match="pe_frequencies"):
        make_network("relu_pe", pe_frequencies=0)
    with pytest.raises(ValueError, match="omega0"):
        SineLayer(2, 2, omega0=0.0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        sobel_gradient(torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(3, 3), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="samples"):
        nyquist_frequencies(2)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("size", 4),
        ("hidden", 0),
        ("fit_steps", 0),
        ("lr", 0.0),
        ("omega0", -1.0),
        ("photo", "lena.png"),
        ("threads", -1),
        ("pe_frequencies", -1),
        ("eval_every", 0),
    ],
)
def test_config_validation(key, value):
    from papers.vision.siren.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.siren import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["relu_fit_laplacian_max_abs"] == 0.0
    assert metrics["sine_params"] == metrics["relu_params"] < metrics["relu_pe_params"]
    assert len(result.checks) == 5 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        "figures/image_fit.png",
        "figures/poisson.png",
        "figures/psnr_curves.png",
    ]
    assert len(list((run_dir / "stages").glob("*.json"))) == 6
