"""Planar and radial flows: log-determinants, invertibility, the energies of Table 1 and the KL estimate."""

from __future__ import annotations

import math

import pytest
import torch

from papers.theory.planar_flows import (
    ENERGIES,
    NormalizingFlow,
    PlanarFlow,
    RadialFlow,
    box_wall,
    free_energy,
    log_normaliser,
    u1,
    u2,
    u3,
    u4,
)

F64 = torch.float64
CHAINS = {"planar": PlanarFlow, "radial": RadialFlow}


def _randomised(chain: type, dim: int, n_layers: int, seed: int, scale: float = 3.0):
    """A chain with large arbitrary raw parameters, far from the identity."""
    torch.manual_seed(seed)
    flow = chain(dim, n_layers).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(scale * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("kind", CHAINS)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_log_det_matches_autograd_jacobian(kind, dim):
    flow = _randomised(CHAINS[kind], dim, n_layers=3, seed=dim)
    z = torch.randn(6, dim, dtype=F64)
    _, log_det = flow(z)
    for point, expected in zip(z, log_det, strict=True):
        jacobian = torch.autograd.functional.jacobian(lambda p: flow(p[None])[0][0], point)
        sign, log_abs = torch.linalg.slogdet(jacobian)
        assert sign > 0  # orientation preserving: the determinant never crosses zero
        assert torch.allclose(log_abs, expected, atol=1e-10)


@pytest.mark.parametrize("seed", range(5))
def test_planar_reparametrisation_keeps_w_dot_u_above_minus_one(seed):
    flow = _randomised(PlanarFlow, 2, n_layers=20, seed=seed, scale=10.0)
    with torch.no_grad():
        flow.u[0] = -5 * flow.w[0]  # raw wᵀu far below −1
    w_dot_u_hat = (flow.w * flow.u_hat()).sum(-1)
    assert (w_dot_u_hat >= -1 - 1e-9).all()  # wᵀû ≥ −1 (m saturates at −1 for very negative wᵀu)
    raw = (flow.w * flow.u).sum(-1)
    assert torch.allclose(w_dot_u_hat, torch.nn.functional.softplus(raw) - 1)
    assert raw.min() < -1  # the constraint is needed here, and holds anyway


def test_radial_constraint_beta_above_minus_alpha():
    flow = _randomised(RadialFlow, 2, n_layers=50, seed=0, scale=10.0)
    alpha, beta = flow.alpha_beta()
    assert (alpha > 0).all() and (beta >= -alpha).all()
    assert (flow.beta_raw < 0).any() and (beta < 0).any()  # contracting layers are allowed


@pytest.mark.parametrize("kind", CHAINS)
@pytest.mark.parametrize("dim", [1, 2])
def test_maps_are_invertible_for_arbitrary_parameters(kind, dim):
    flow = _randomised(CHAINS[kind], dim, n_layers=4, seed=7)
    z = 3 * torch.randn(200, dim, dtype=F64)
    y, _ = flow(z)
    assert torch.allclose(flow.inverse(y), z, atol=1e-8)
    if dim == 1:  # a 1-D invertible continuous map is monotone
        order = z[:, 0].argsort()
        assert (y[order, 0].diff() > 0).all()


def test_flow_density_integrates_to_one():
    """q_K via the inverse maps and the log-determinants is a normalised density on the plane."""
    torch.manual_seed(0)
    flow = NormalizingFlow(2, n_layers=4, kind="planar").double()
    with torch.no_grad():
        for p in flow.chain.parameters():
            p.copy_(torch.randn_like(p))
        flow.log_std.fill_(math.log(0.7))
    centres = torch.linspace(-6, 6, 301, dtype=F64)[:-1] + 6 / 300
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="ij"), dim=-1).reshape(-1, 2)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum() * (12 / 300) ** 2
    assert abs(mass.item() - 1) < 1e-3


def test_energies_match_table_1_at_hand_computed_points():
    # U1 at (2, 0): ring term 0; −ln(e^0 + e^{−½(4/0.6)²})
    expected = -math.log(1 + math.exp(-0.5 * (4 / 0.6) ** 2))
    assert u1(torch.tensor([2.0, 0.0], dtype=F64)) == pytest.approx(expected)
    # U1 at (0, 0): ½(2/0.4)² − ln(2 e^{−½(2/0.6)²})
    expected = 0.5 * 25 - math.log(2) + 0.5 * (2 / 0.6) ** 2
    assert u1(torch.zeros(2, dtype=F64)) == pytest.approx(expected)
    # w1(1) = sin(π/2) = 1: U2 at (1, 1) is 0; at (1, 0) it is ½(1/0.4)²
    assert u2(torch.tensor([1.0, 1.0], dtype=F64)) == pytest.approx(0.0, abs=1e-14)
    assert u2(torch.tensor([1.0, 0.0], dtype=F64)) == pytest.approx(0.5 / 0.16)
    # U3 at z1 = 1: w1 = 1, w2 = 3; at z2 = 1 the first branch is 0, the second e^{−½(3/0.35)²}
    expected = -math.log(1 + math.exp(-0.5 * (3 / 0.35) ** 2))
    assert u3(torch.tensor([1.0, 1.0], dtype=F64)) == pytest.approx(expected)
    # U4 at z1 = 1: w3 = 3σ(0) = 1.5; at z2 = −0.5 the second branch is 0
    first = math.exp(-0.5 * (1.5 / 0.4) ** 2)
    assert u4(torch.tensor([1.0, -0.5], dtype=F64)) == pytest.approx(-math.log(first + 1))
    # batched shapes and the wall (zero inside the plotting box)
    z = torch.randn(3, 5, 2, dtype=F64)
    assert all(energy(z).shape == (3, 5) for energy in ENERGIES.values())
    wall = box_wall(torch.tensor([[3.9, -4.0], [5.0, 0.0]], dtype=F64))
    assert wall.tolist() == [0.0, 0.5 * (1 / 0.5) ** 2]


def test_log_normaliser_of_a_gaussian():
    energy = lambda z: 0.5 * (z**2).sum(-1) / 0.8**2  # noqa: E731  Z = 2π·0.8²
    expected = math.log(2 * math.pi * 0.64)
    assert log_normaliser(energy, limit=8, points=801) == pytest.approx(expected, abs=1e-8)


@pytest.mark.parametrize("kind", CHAINS)
def test_kl_estimate_is_exact_when_the_target_is_the_base(kind):
    """Identity flow, q_0 = N(0, I), U = ½‖z‖²: every sample of F + log Z is exactly 0."""
    flow = NormalizingFlow(2, n_layers=3, kind=kind).double()
    with torch.no_grad():
        if kind == "planar":  # u = w = 0 gives û = 0: f(z) = z
            flow.chain.u.zero_()
            flow.chain.w.zero_()
        else:  # β̃ = α̃ gives β = −α + softplus(α̃) = 0: f(z) = z
            flow.chain.beta_raw.copy_(flow.chain.alpha_raw)
    z = torch.randn(5, 2, dtype=F64)
    assert torch.equal(flow.chain(z)[0], z)
    log_z = math.log(2 * math.pi)
    energy = lambda z: 0.5 * (z**2).sum(-1)  # noqa: E731
    samples = free_energy(flow, energy, 1000, torch.Generator().manual_seed(0)) + log_z
    assert samples.abs().max() < 1e-12


def test_kl_is_positive_and_exact_for_a_shifted_gaussian():
    """q_0 = N(μ, I), p = N(0, I): KL = ½‖μ‖², estimated without a flow and with a flow at identity."""
    flow = NormalizingFlow(2, n_layers=0).double()
    with torch.no_grad():
        flow.mean.copy_(torch.tensor([1.0, -2.0]))
    kl = free_energy(flow, lambda z: 0.5 * (z**2).sum(-1), 200_000, torch.Generator().manual_seed(0))
    assert (kl.mean() + math.log(2 * math.pi)).item() == pytest.approx(2.5, abs=0.02)


def test_sampling_is_deterministic_under_a_seed():
    def draw():
        torch.manual_seed(3)
        flow = NormalizingFlow(2, n_layers=5, kind="radial")
        return flow.sample(10, torch.Generator().manual_seed(1))

    (z1, q1), (z2, q2) = draw(), draw()
    assert torch.equal(z1, z2) and torch.equal(q1, q2)


def test_bad_inputs_raise_clear_errors():
    flow = NormalizingFlow(2, n_layers=2)
    with pytest.raises(ValueError, match=r"shape \[n, 2\], got \(4, 3\)"):
        flow.chain(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"shape \[n, 2\]"):
        flow.log_prob(torch.zeros(2))
    with pytest.raises(ValueError, match=r"U3: expected points of shape \[\.\.\., 2\]"):
        u3(torch.zeros(5, 3))
    with pytest.raises(ValueError, match="unknown flow kind 'sylvester'"):
        NormalizingFlow(2, 2, kind="sylvester")
    with pytest.raises(ValueError, match="n_layers >= 0"):
        PlanarFlow(2, -1)


@pytest.mark.parametrize(("key", "value"), [("energies", ("U5",)), ("flow_kinds", ("nice",)),
                                            ("flow_lengths", (8, 2)), ("steps", 0), ("lr", 0.0),
                                            ("grid_limit", 3.0), ("threads", -1)])
def test_config_validation(key, value):
    from papers.theory.planar_flows.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.theory.planar_flows import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    untimed = lambda m: {k: v for k, v in m.items() if not k.endswith("time_s")}  # noqa: E731
    assert untimed(result.metrics) == untimed(again.metrics)
    kls = [v for k, v in result.metrics.items() if k.startswith("kl_") and not k.startswith("kl_se")]
    assert kls and all(math.isfinite(v) and v > -0.05 for v in kls)  # a KL is non-negative up to MC noise
    assert len(result.checks) == 2 * (1 + 2) and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/densities.png", "figures/kl_vs_length.png"]
    assert (run_dir / "stages" / "fit_U3_radial_K4.json").is_file()
