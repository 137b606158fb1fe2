"""Continuous normalizing flows: the instantaneous change of variables against exact cases and autograd."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.theory.cnf import (
    CNF,
    DATASETS,
    CNFDynamics,
    HyperPlanarField,
    PlanarFlow,
    divergence_exact,
    divergence_hutchinson,
    standard_normal_log_prob,
)

F64 = torch.float64


class LinearField(nn.Module):
    """f(z, t) = A z: the flow map is expm(A t), its log-determinant tr(A) t."""

    def __init__(self, A: torch.Tensor):
        super().__init__()
        self.A = nn.Parameter(A.clone())

    def forward(self, t, z):
        return z @ self.A.T


def random_cnf(seed: int = 0, width: int = 6, tol: float = 1e-9, **kwargs) -> CNF:
    torch.manual_seed(seed)
    field = HyperPlanarField(2, width, hyper_hidden=5)
    for p in field.parameters():  # a field strong enough to move the density visibly
        p.data.mul_(2.0)
    return CNF(field, rtol=tol, atol=tol, adjoint=False, **kwargs).double()


def grid(extent: float, size: int) -> tuple[torch.Tensor, float]:
    h = 2 * extent / size
    axis = -extent + h * (torch.arange(size, dtype=F64) + 0.5)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1), h * h


# ---------- the trace ----------


def test_exact_divergence_matches_autograd_jacobian():
    field = random_cnf().dynamics.func.field
    z = torch.randn(5, 2, dtype=F64, requires_grad=True)
    t = torch.tensor(0.3, dtype=F64)
    div = divergence_exact(field(t, z), z, create_graph=False)
    for b in range(5):
        jac = torch.autograd.functional.jacobian(lambda p: field(t, p[None])[0], z[b].detach())  # noqa: B023
        assert abs(div[b].item() - jac.trace().item()) < 1e-12
    A = torch.tensor([[0.5, 2.0], [-1.0, -1.5]], dtype=F64)
    z = torch.randn(4, 2, dtype=F64, requires_grad=True)
    assert torch.allclose(divergence_exact(z @ A.T, z, False), torch.full((4,), -1.0, dtype=F64))


def test_hutchinson_is_unbiased_and_exact_for_diagonal_jacobians():
    torch.manual_seed(0)
    A = torch.tensor([[0.7, 1.3], [-2.0, 0.4]], dtype=F64)
    n = 10_000
    z = torch.randn(n, 2, dtype=F64, requires_grad=True)
    for noise in (torch.randint(0, 2, (n, 2)).to(F64) * 2 - 1, torch.randn(n, 2, dtype=F64)):
        estimates = divergence_hutchinson(z @ A.T, z, noise, create_graph=False)
        standard_error = estimates.std() / math.sqrt(n)
        assert standard_error > 1e-3  # a single probe is noisy ...
        assert abs(estimates.mean().item() - 1.1) < 4 * standard_error  # ... but unbiased
    diagonal = torch.diag(torch.tensor([0.7, -0.2], dtype=F64))
    rademacher = torch.randint(0, 2, (10, 2)).to(F64) * 2 - 1
    z = torch.randn(10, 2, dtype=F64, requires_grad=True)
    exact = divergence_hutchinson(z @ diagonal, z, rademacher, create_graph=False)
    assert torch.allclose(exact, torch.full((10,), 0.5, dtype=F64))  # εᵢ² = 1: no variance


def test_hutchinson_log_likelihood_averages_to_the_exact_one():
    cnf = random_cnf(tol=1e-7)
    x = torch.randn(4, 2, dtype=F64)
    with torch.no_grad():
        exact = cnf.log_prob(x)
        cnf.trace = "hutchinson"
        probes = 2000
        cnf.sample_noise(x.repeat(probes, 1), torch.Generator().manual_seed(0))
        estimates = cnf.log_prob(x.repeat(probes, 1)).reshape(probes, 4)
    errors = estimates - exact
    assert errors.std() > 1e-2
    assert (errors.mean(0).abs() < 4 * errors.std(0) / math.sqrt(probes)).all()


# ---------- the change of variables ----------


def test_linear_field_log_density_is_analytic():
    """dz/dt = A z on [0, 1]: z(0) = expm(−A) x and log p(x) = log N(z(0)) − tr(A)."""
    A = torch.tensor([[-0.3, 1.2], [-0.8, 0.5]], dtype=F64)
    cnf = CNF(LinearField(A), rtol=1e-10, atol=1e-10, adjoint=False).double()
    x = torch.randn(6, 2, dtype=F64)
    z0 = x @ torch.linalg.matrix_exp(-A).T
    expected = standard_normal_log_prob(z0) - A.trace()
    with torch.no_grad():
        assert (cnf.log_prob(x) - expected).abs().max() < 1e-8


def test_integrated_trace_equals_log_det_of_the_flow_map():
    cnf = random_cnf()
    z0 = torch.randn(5, 2, dtype=F64)
    with torch.no_grad():
        z1, logp_change = cnf.flow(z0, torch.zeros(5, dtype=F64), 0.0, 1.0)
    assert (z1 - z0).abs().max() > 0.1  # the flow does something
    for b in range(5):
        jac = torch.autograd.functional.jacobian(
            lambda p: cnf.flow(p[None], torch.zeros(1, dtype=F64), 0.0, 1.0)[0][0], z0[b])  # noqa: B023
        logdet = torch.linalg.slogdet(jac)[1]
        assert abs(logdet.item()) > 1e-2
        assert abs(-logp_change[b].item() - logdet.item()) < 1e-7


def test_density_integrates_to_one_on_a_grid():
    cnf = random_cnf(tol=1e-6)
    points, area = grid(6.0, 100)
    with torch.no_grad():
        z0, delta = cnf.flow(points, torch.zeros(len(points), dtype=F64), 1.0, 0.0)
        p = (standard_normal_log_prob(z0) - delta).exp()
        no_trace = standard_normal_log_prob(z0).exp()
    assert abs(p.sum().item() * area - 1) < 1e-4
    assert abs(no_trace.sum().item() * area - 1) > 1e-2  # the trace term is what normalises it


def test_integrating_back_inverts_the_flow_and_sampling_agrees_with_log_prob():
    cnf = random_cnf()
    with torch.no_grad():
        x, log_p = cnf.sample(50, torch.Generator().manual_seed(0))
        z0, _ = cnf.flow(x, torch.zeros(50, dtype=F64), 1.0, 0.0)
        z0_again = torch.randn(50, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
        assert (z0 - z0_again).abs().max() < 1e-7
        assert (cnf.log_prob(x) - log_p).abs().max() < 1e-7
        tight_err = (cnf.flow(z0, log_p, 0.0, 1.0)[0] - x).abs().max()
    loose = random_cnf(tol=1e-3)
    with torch.no_grad():
        loose_err = (loose.flow(loose.flow(x, log_p, 1.0, 0.0)[0], log_p, 0.0, 1.0)[0] - x).abs().max()
    assert tight_err < 1e-7 and 1e3 * tight_err < loose_err < 0.1  # the solver's error, not the method's


def test_adjoint_and_backprop_gradients_of_the_log_likelihood_agree():
    cnf = random_cnf(tol=1e-8, width=4)
    x = torch.randn(8, 2, dtype=F64)
    grads = []
    for adjoint in (False, True):
        cnf.adjoint = adjoint
        cnf.zero_grad()
        cnf.log_prob(x).mean().backward()
        grads.append(torch.cat([p.grad.flatten() for p in cnf.parameters()]))
    assert grads[0].norm() > 1e-3
    assert (grads[0] - grads[1]).abs().max() < 1e-6 * grads[0].abs().max()


def test_cnf_is_deterministic_under_a_seed_and_counts_nfe():
    x = torch.randn(10, 2, dtype=F64)
    a, b = random_cnf(seed=3, tol=1e-5), random_cnf(seed=3, tol=1e-5)
    with torch.no_grad():
        assert torch.equal(a.log_prob(x), b.log_prob(x))
    assert a.nfe >= 8
    a.reset_nfe()
    assert a.nfe == 0


# ---------- the planar flow baseline ----------


def test_planar_flow_log_det_matches_autograd_and_density_integrates_to_one():
    torch.manual_seed(0)
    flow = PlanarFlow(2, n_layers=12, init_scale=1.5).double()
    assert ((flow.u_hat() * flow.w).sum(-1) > -1).all()  # invertibility condition ûᵀw > −1
    x = torch.randn(4, 2, dtype=F64)
    _, logdet = flow(x)
    for b in range(4):
        jac = torch.autograd.functional.jacobian(lambda p: flow(p[None])[0][0], x[b])  # noqa: B023
        assert abs(torch.linalg.slogdet(jac)[1].item() - logdet[b].item()) < 1e-10
    points, area = grid(8.0, 200)
    with torch.no_grad():
        assert abs(flow.log_prob(points).exp().sum().item() * area - 1) < 1e-3
    near_identity = PlanarFlow(2, n_layers=5, init_scale=0.0)
    assert torch.allclose(near_identity(x.float())[0], x.float(), atol=1e-6)


# ---------- data and bad input ----------


def test_datasets_are_seeded_and_shaped():
    for name, sample in DATASETS.items():
        x = sample(500, torch.Generator().manual_seed(1))
        assert x.shape == (500, 2) and torch.equal(x, sample(500, torch.Generator().manual_seed(1))), name
        assert x.abs().max() < 4.0, name
    x = DATASETS["8gaussians"](4000, torch.Generator().manual_seed(0))
    assert abs(x.norm(dim=1).mean().item() - 2.0) < 0.05


def test_clear_errors_on_bad_input():
    cnf = random_cnf()
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        cnf.log_prob(torch.randn(5, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        cnf.log_prob(torch.randn(5, dtype=F64))
    with pytest.raises(ValueError, match="NaN or infinite"):
        PlanarFlow(2, 3).log_prob(torch.tensor([[float("nan"), 0.0]]))
    with pytest.raises(ValueError, match="trace must be one of"):
        CNF(HyperPlanarField(), trace="stochastic")
    with pytest.raises(ValueError, match="noise must be"):
        CNF(HyperPlanarField(), noise="uniform")
    with pytest.raises(ValueError, match="t1 must be > 0"):
        CNF(HyperPlanarField(), t1=0.0)
    dynamics = CNFDynamics(HyperPlanarField(), 2, trace="hutchinson")
    with pytest.raises(ValueError, match="needs .noise"):
        dynamics(torch.tensor(0.0), torch.randn(3, 3))


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("datasets", ("spirals",)), ("trace", "none"),
                                            ("identity_tols", (1e-3,)), ("eval_tol", 0.0), ("grid_size", 1),
                                            ("threads", -1)])
def test_config_validation(key, value):
    from papers.theory.cnf.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


# ---------- the experiment ----------


def test_smoke_run_is_deterministic(run_smoke):
    from papers.theory.cnf import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["planar_params"] >= metrics["cnf_params"]
    assert abs(metrics["8gaussians_cnf_grid_integral"] - 1) < 0.05
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("densities", "tolerance", "training")]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"8gaussians"}
