"""Implicit gradient regularisation: modified losses, their flows, and the SGD epoch mean."""

from __future__ import annotations

import math

import pytest
import torch

from papers.core.errors import PapersError
from papers.theory.implicit_regularisation import (
    EXPERIMENT,
    MLP,
    factorised_regression_loss,
    flow,
    gradient_descent,
    gradient_norm_squared,
    loss_gradient,
    modified_loss,
    sgd_modified_loss,
    shuffled_epoch_mean,
    top_hessian_eigenvalue,
)
from papers.theory.implicit_regularisation.experiment import Config, slope

F64 = torch.float64
A = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=F64)
B = torch.tensor([0.3, -1.0, 0.5], dtype=F64)
THETA0 = torch.tensor([1.0, -0.5, 2.0], dtype=F64)


def quadratic(theta: torch.Tensor) -> torch.Tensor:
    """C = ½ θᵀAθ − bᵀθ, ∇C = Aθ − b, ∇‖∇C‖² = 2A(Aθ − b)."""
    return 0.5 * (theta @ A * theta).sum(-1) - theta @ B


def test_gradient_norm_squared_and_its_gradient_match_the_analytic_quadratic():
    theta = torch.randn(5, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    residual = theta @ A - B  # A symmetric
    assert torch.allclose(loss_gradient(quadratic, theta), residual, atol=1e-14)
    assert torch.allclose(gradient_norm_squared(quadratic, theta), residual.square().sum(-1), atol=1e-13)
    h = 0.2
    assert torch.allclose(loss_gradient(modified_loss(quadratic, h), theta),
                          residual + (h / 2) * residual @ A, atol=1e-13)


def test_modified_flow_on_a_quadratic_matches_gd_to_third_order():
    """Per eigenvalue λ: GD multiplies by 1 − hλ, the flow on C̃ by exp(−hλ − h²λ²/2), the flow on C by
    exp(−hλ); the flows lead GD by (h³/3) A³(θ − θ*) + O(h⁴) and (h²/2) A²(θ − θ*) + O(h³)."""
    theta_star = torch.linalg.solve(A, B)
    start = THETA0 - theta_star
    for h in (0.01, 0.005):
        step = gradient_descent(quadratic, THETA0, h, 1)[1]
        times = torch.tensor([0.0, h], dtype=F64)
        exact_modified = theta_star + torch.linalg.matrix_exp(-h * A - h**2 * A @ A / 2) @ start
        solved = flow(modified_loss(quadratic, h), THETA0, times)[-1]
        assert (solved - exact_modified).abs().max() < 1e-11
        leading = h**3 / 3 * torch.linalg.matrix_power(A, 3) @ start
        assert ((solved - step) - leading).norm() < 0.05 * leading.norm()
        plain = flow(quadratic, THETA0, times)[-1]
        leading = h**2 / 2 * A @ A @ start
        assert ((plain - step) - leading).norm() < 0.05 * leading.norm()


def test_error_slopes_on_the_two_parameter_model():
    x = torch.linspace(-1.5, 1.5, 8, dtype=F64)
    loss = factorised_regression_loss(x, 0.8 * x + 0.1 * torch.cos(5 * x))
    theta0 = torch.tensor([1.5, 0.3], dtype=F64)
    hs = [0.04, 0.02, 0.01]
    local_plain, local_modified = [], []
    for h in hs:
        step = gradient_descent(loss, theta0, h, 1)[1]
        times = torch.tensor([0.0, h], dtype=F64)
        local_plain.append((step - flow(loss, theta0, times)[-1]).norm().item())
        local_modified.append((step - flow(modified_loss(loss, h), theta0, times)[-1]).norm().item())
    assert abs(slope(hs, local_plain) - 2) < 0.1
    assert abs(slope(hs, local_modified) - 3) < 0.1


def test_slope_fit_recovers_a_power_law():
    hs = [0.1, 0.05, 0.025]
    assert math.isclose(slope(hs, [7 * h**3 for h in hs]), 3.0, rel_tol=1e-12)


def test_sgd_modified_loss_adds_the_minibatch_variance():
    """C_SGD − C̃_GD = (h/4m) Σ_k ‖∇Ĉ_k − ∇C‖² with C = mean of the Ĉ_k."""
    x = torch.tensor([0.5, -1.0, 2.0, 0.3, 1.2, -0.7], dtype=F64)
    y = torch.tensor([0.2, -0.5, 1.5, 0.9, 0.4, -0.1], dtype=F64)
    batches = [factorised_regression_loss(x[k::3], y[k::3]) for k in range(3)]
    full = factorised_regression_loss(x, y)
    theta = torch.tensor([0.9, 1.4], dtype=F64)
    h = 0.3
    grads = [loss_gradient(b, theta) for b in batches]
    mean = loss_gradient(full, theta)
    assert torch.allclose(sum(grads) / 3, mean, atol=1e-14)
    variance = sum((g - mean).square().sum() for g in grads) / 3
    difference = sgd_modified_loss(batches, h)(theta) - modified_loss(full, h)(theta)
    assert math.isclose(difference.item(), (h / 4 * variance).item(), rel_tol=1e-10)


def test_shuffled_epoch_mean_averages_every_ordering():
    x = torch.tensor([0.5, -1.0, 2.0, 0.3], dtype=F64)
    y = torch.tensor([0.2, -0.5, 1.5, 0.9], dtype=F64)
    batches = [factorised_regression_loss(x[k:k + 2], y[k:k + 2]) for k in (0, 2)]
    theta0 = torch.tensor([0.9, 1.4], dtype=F64)
    h = 0.1

    def epoch(order):
        theta = theta0
        for k in order:
            theta = theta - h * loss_gradient(batches[k], theta)
        return theta

    expected = (epoch([0, 1]) + epoch([1, 0])) / 2
    assert torch.allclose(shuffled_epoch_mean(batches, theta0, h), expected, atol=1e-15)
    # with one batch the epoch is one GD step
    single = shuffled_epoch_mean(batches[:1], theta0, h)
    assert torch.allclose(single, gradient_descent(batches[0], theta0, h, 1)[1], atol=1e-15)


def test_mean_sgd_iterate_is_closer_to_the_sgd_flow():
    x = torch.tensor([0.5, -1.0, 2.0, 0.3, 1.2, -0.7], dtype=F64)
    y = torch.tensor([0.2, -0.5, 1.5, 0.9, 0.4, -0.1], dtype=F64)
    batches = [factorised_regression_loss(x[2 * k:2 * k + 2], y[2 * k:2 * k + 2]) for k in range(3)]
    full = factorised_regression_loss(x, y)
    theta0, eps = torch.tensor([1.8, 0.3], dtype=F64), 0.01
    mean = shuffled_epoch_mean(batches, theta0, eps)
    times = torch.tensor([0.0, 3 * eps], dtype=F64)
    to_sgd = (mean - flow(sgd_modified_loss(batches, eps), theta0, times)[-1]).norm()
    to_gd = (mean - flow(modified_loss(full, eps), theta0, times)[-1]).norm()
    assert to_sgd < to_gd / 3


def test_power_iteration_finds_the_top_eigenvalue():
    theta = THETA0.clone().requires_grad_()
    estimate = top_hessian_eigenvalue(lambda: quadratic(theta), [theta], iterations=100,
                                      generator=torch.Generator().manual_seed(0))
    assert math.isclose(estimate, torch.linalg.eigvalsh(A).max().item(), rel_tol=1e-8)


def test_gradient_descent_is_deterministic_and_descends():
    a = gradient_descent(quadratic, THETA0, 0.1, 50)
    b = gradient_descent(quadratic, THETA0, 0.1, 50)
    assert torch.equal(a, b) and a.shape == (51, 3)
    losses = quadratic(a)
    assert (losses[1:] <= losses[:-1]).all()


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="h > 0"):
        gradient_descent(quadratic, THETA0, 0.0, 5)
    with pytest.raises(ValueError, match="floating-point tensor"):
        loss_gradient(quadratic, torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="equal-length"):
        factorised_regression_loss(torch.zeros(3), torch.zeros(4))
    loss = factorised_regression_loss(torch.ones(3, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError, match="2 parameters"):
        loss(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="1 <= m <= 8"):
        shuffled_epoch_mean([loss] * 9, torch.zeros(2, dtype=F64), 0.1)
    with pytest.raises(ValueError, match=r"\[batch, 4\]"):
        MLP(4, 2)(torch.zeros(3, 5))


@pytest.mark.parametrize(("key", "value"), [
    ("n_batches", 1), ("n_batches", 9), ("theta0", (1.0,)), ("step_sizes", (0.1,)),
    ("sgd_learning_rates", (0.1, -0.1)), ("learning_rates", (0.1, 0.1)), ("train_time", 0.0),
    ("flip_fraction", 0.5), ("threads", -1), ("hidden", 0),
])
def test_config_validation(key, value):
    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_bad_overrides_give_clear_errors():
    with pytest.raises(PapersError, match="unknown preset"):
        EXPERIMENT.make_config("huge")
    with pytest.raises(PapersError, match="did you mean"):
        EXPERIMENT.make_config("smoke", {"step_size": "0.1"})


def test_smoke_run_is_deterministic(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert result.metrics == again.metrics
    metrics = result.metrics
    assert abs(metrics["slope_local_modified"] - 3) < 0.3 and abs(metrics["slope_local_plain"] - 2) < 0.3
    assert metrics["sgd_worst_distance_ratio"] < 1
    assert len(result.checks) == 10 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/flatness.png", "figures/modified_flow.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"modified_flow", "sgd", "flatness"}
