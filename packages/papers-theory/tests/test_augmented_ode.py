"""Augmented ODE flows and time-dependent dynamics: ordering in 1-D, padding, hypernetwork weights."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from papers.theory.augmented_ode import (
    DYNAMICS,
    AutonomousField,
    ConcatTimeField,
    HyperField,
    ODEFlow,
    isotonic_regression,
    make_field,
    monotone_trajectory_bound,
)

F64 = torch.float64


def _random_flow(kind: str, seed: int, dim: int = 1, augment: int = 0, scale: float = 2.0) -> ODEFlow:
    """An ODE flow with a large random vector field (weights ~ N(0, scale²))."""
    torch.manual_seed(seed)
    field = make_field(kind, dim + augment, hidden=16, hyper_hidden=8).double()
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(scale * torch.randn_like(p))
    return ODEFlow(field, dim=1, augment=augment, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize(("kind", "seed"), list(itertools.product(DYNAMICS, range(3))))
def test_one_dimensional_flow_preserves_order_for_any_field(kind, seed):
    flow = _random_flow(kind, seed)
    x = torch.linspace(-2, 2, 400, dtype=F64)[:, None]
    y = flow(x)[:, 0]
    assert (y.diff() > 0).all()  # trajectories cannot cross: φ is increasing
    # ... so no 1-D flow does better on x -> -x than the best increasing map (the constant mean here)
    target = -x[:, 0]
    bound = (isotonic_regression(target) - target).pow(2).mean()
    assert (y - target).pow(2).mean() >= bound - 1e-12
    assert bound == pytest.approx(target.var(unbiased=False).item())


@pytest.mark.parametrize("seed", range(3))
def test_autonomous_trajectories_are_monotone_in_time(seed):
    flow = _random_flow("autonomous", seed)
    paths = flow.trajectory(torch.linspace(-2, 2, 50, dtype=F64)[:, None], torch.linspace(0, 1, 30))[:, :, 0]
    steps = paths.diff(dim=0)
    assert ((steps >= -1e-9).all(0) | (steps <= 1e-9).all(0)).all()
    concat = _random_flow("concat", seed).trajectory(torch.zeros(1, 1, dtype=F64), torch.linspace(0, 1, 30))
    assert concat.shape == (30, 1, 1)


class _Rotation(nn.Module):
    """f(h) = π [−h2, h1]: rotation by π over t ∈ [0, 1]."""

    def forward(self, t, h):
        return math.pi * torch.stack([-h[:, 1], h[:, 0]], dim=1)


def test_augmented_flow_can_reflect_exactly():
    """With one zero-padded dimension, a rotation by π maps [x, 0] to [−x, 0]: x -> −x."""
    flow = ODEFlow(_Rotation(), dim=1, augment=1, rtol=1e-10, atol=1e-12)
    x = torch.linspace(-1, 1, 11, dtype=F64)[:, None]
    assert torch.allclose(flow(x), -x, atol=1e-8)


def test_augmented_padding_and_output_shape():
    flow = ODEFlow(make_field("concat", 4), dim=2, augment=2)
    x = torch.randn(7, 2)
    state = flow.initial_state(x)
    assert state.shape == (7, 4) and torch.equal(state[:, :2], x) and (state[:, 2:] == 0).all()
    assert flow(x).shape == (7, 2)
    assert flow.nfe > 0
    flow.reset_nfe()
    assert flow.nfe == 0
    plain = ODEFlow(make_field("concat", 2), dim=2)
    assert torch.equal(plain.initial_state(x), x)


def test_hypernetwork_weights_have_the_dynamics_shapes_and_depend_on_t():
    torch.manual_seed(0)
    field = HyperField(dim=3, hidden=5, hyper_hidden=4)
    theta = field.weights(torch.tensor(0.3))
    shapes = {k: tuple(v.shape) for k, v in theta.items()}
    assert shapes == {"w1": (5, 3), "b1": (5,), "w2": (3, 5), "b2": (3,)}
    h = torch.randn(8, 3)
    at_0, at_1 = field(torch.tensor(0.0), h), field(torch.tensor(1.0), h)
    assert at_0.shape == (8, 3) and not torch.allclose(at_0, at_1)
    # f(h; θ(t)) is the small net with the generated weights
    expected = torch.tanh(h @ theta["w1"].T + theta["b1"]) @ theta["w2"].T + theta["b2"]
    assert torch.allclose(field(torch.tensor(0.3), h), expected)
    # gradients reach the hypernetwork's own parameters
    field(torch.tensor(0.5), h).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in field.parameters())


def test_time_dependence_of_each_field():
    torch.manual_seed(0)
    h = torch.randn(4, 2)
    auto, concat = AutonomousField(2), ConcatTimeField(2)
    assert torch.equal(auto(torch.tensor(0.0), h), auto(torch.tensor(0.7), h))
    assert not torch.allclose(concat(torch.tensor(0.0), h), concat(torch.tensor(0.7), h))


def test_isotonic_regression_matches_brute_force():
    y = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0, 4.0, 0.0], dtype=F64)
    fit = isotonic_regression(y)
    assert (fit.diff() >= 0).all()
    assert torch.allclose(fit, torch.tensor([2.0, 2.0, 2.0, 3.25, 3.25, 3.25, 3.25], dtype=F64))
    # the optimum among non-decreasing sequences: any non-decreasing perturbation is worse
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        other = (fit + 0.3 * torch.randn(7, generator=generator, dtype=F64)).cummax(0).values
        assert (other - y).pow(2).sum() >= (fit - y).pow(2).sum() - 1e-12
    assert torch.equal(isotonic_regression(torch.arange(5.0)), torch.arange(5.0))


def test_monotone_trajectory_bound():
    rising_then_falling = torch.tensor([[0.0, 1.0, 0.0]])
    assert monotone_trajectory_bound(rising_then_falling) == pytest.approx(1 / 6)  # best: [0, .5, .5]
    assert monotone_trajectory_bound(torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 2.0]])) == 0.0


def test_flow_is_deterministic_under_a_seed():
    x = torch.randn(5, 1)
    outputs = []
    for _ in range(2):
        torch.manual_seed(1)
        outputs.append(ODEFlow(make_field("hyper", 1), dim=1)(x))
    assert torch.equal(*outputs)


def test_bad_inputs_raise_clear_errors():
    flow = ODEFlow(make_field("concat", 2), dim=1, augment=1)
    with pytest.raises(ValueError, match=r"ODEFlow: expected a batch of shape \[n, 1\], got \(4, 2\)"):
        flow(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="unknown dynamics 'neural'"):
        make_field("neural", 2)
    with pytest.raises(ValueError, match="augment >= 0"):
        ODEFlow(make_field("concat", 1), dim=1, augment=-1)
    with pytest.raises(ValueError, match="acts on 1 coordinates but the state has dim \\+ augment = 2"):
        ODEFlow(make_field("concat", 1), dim=1, augment=1)
    with pytest.raises(ValueError, match="1-D sequence"):
        isotonic_regression(torch.zeros(2, 2))


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("augment", 0), ("amplitude", 1.0), ("lr", -1.0),
                                            ("eval_tol", 0.0), ("threads", -1)])
def test_config_validation(key, value):
    from papers.theory.augmented_ode.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_swinging_trajectories_solve_their_ode():
    from papers.theory.augmented_ode.experiment import swinging_trajectories
    from papers.theory.neural_ode import odeint

    x0, times, a = torch.linspace(-1, 1, 5, dtype=F64)[:, None], torch.linspace(0, 1, 6, dtype=F64), 0.5
    field = lambda t, x: 2 * math.pi * a * torch.cos(2 * math.pi * t) * (1 + x**2)  # noqa: E731
    solved = odeint(field, x0, times, rtol=1e-10, atol=1e-12)
    assert torch.allclose(solved, swinging_trajectories(x0, times, a), atol=1e-8)


def test_smoke_run_is_deterministic(run_smoke):
    from papers.theory.augmented_ode import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    untimed = lambda m: {k: v for k, v in m.items() if not k.endswith("time_s")}  # noqa: E731
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["reflection_node_order_violations"] == 0
    assert metrics["reflection_node_mse"] >= metrics["reflection_best_increasing_mse"]
    assert all(metrics[f"time_{k}_nfe"] > 0 for k in ("autonomous", "concat", "hyper"))
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/reflection.png", "figures/time_dependence.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"reflection", "time_dependence"}
