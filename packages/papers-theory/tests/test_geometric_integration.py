"""Geometric integration: orders, symplecticity, reversibility, modified energy, Hamiltonian fields."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from papers_testing import untimed

from papers.core.errors import PapersError
from papers.theory.geometric_integration import (
    EXPERIMENT,
    INTEGRATORS,
    ORDERS,
    SYSTEMS,
    HamiltonianField,
    MLPField,
    integrate,
    kepler_initial_state,
    leapfrog_step,
    oscillator_leapfrog_modified_energy,
    rollout,
    step,
    symplectic_matrix,
)
from papers.theory.geometric_integration.experiment import Config, energy_error_summary

F64 = torch.float64
PENDULUM_STATE = torch.tensor([1.3, -0.4], dtype=F64)
KEPLER_STATE = torch.tensor([0.7, 0.2, -0.3, 1.1], dtype=F64)


def one_step_jacobian(system_name: str, method: str, y: torch.Tensor, h: float) -> torch.Tensor:
    system = SYSTEMS[system_name]
    return torch.autograd.functional.jacobian(lambda x: step(system, method, x, h), y)


@pytest.mark.parametrize("method", INTEGRATORS)
def test_order_of_accuracy_on_the_harmonic_oscillator(method):
    """Global error at t = 1 against the exact rotation (q, p) = (cos t, −sin t): slopes 1, 4, 1, 2."""
    system, y0 = SYSTEMS["oscillator"], torch.tensor([[1.0, 0.0]], dtype=F64)
    exact = torch.tensor([math.cos(1.0), -math.sin(1.0)], dtype=F64)
    steps = (1 / 20, 1 / 40, 1 / 80, 1 / 160)
    errors = [(integrate(system, method, y0, h, round(1 / h), round(1 / h))[-1, 0] - exact).norm().item()
              for h in steps]
    slopes = [math.log2(a / b) for a, b in pairwise(errors)]
    assert all(abs(s - ORDERS[method]) < 0.15 for s in slopes), (method, slopes)


@pytest.mark.parametrize("method", INTEGRATORS)
@pytest.mark.parametrize("system_name", ["pendulum", "kepler"])
def test_fast_loop_equals_the_single_step_functions(method, system_name):
    system = SYSTEMS[system_name]
    y0 = (PENDULUM_STATE if system_name == "pendulum" else KEPLER_STATE)[None]
    states = integrate(system, method, y0, 0.05, 12, record_every=3)
    y = y0
    for n in range(1, 13):
        y = step(system, method, y, 0.05)
        if n % 3 == 0:
            assert torch.allclose(states[n // 3], y, rtol=0, atol=1e-14)
    assert states.shape == (5, 1, y0.shape[-1])


@pytest.mark.parametrize("system_name", ["pendulum", "kepler"])
def test_symplectic_methods_satisfy_mt_j_m_equals_j(system_name):
    y = PENDULUM_STATE if system_name == "pendulum" else KEPLER_STATE
    J = symplectic_matrix(len(y) // 2)
    for method in ("symplectic_euler", "leapfrog"):
        M = one_step_jacobian(system_name, method, y, 0.3)
        assert (M.T @ J @ M - J).abs().max() < 1e-14, method
    for method in ("euler", "rk4"):  # the check can fail: non-symplectic maps violate it
        M = one_step_jacobian(system_name, method, y, 0.3)
        assert (M.T @ J @ M - J).abs().max() > 1e-8, method  # RK4: O(h⁵) = 5e-7 here


@pytest.mark.parametrize("system_name", ["pendulum", "kepler"])
def test_leapfrog_is_time_reversible(system_name):
    """Φ_{−h} ∘ Φ_h = id, and equivalently flipping the momentum retraces the path."""
    force = SYSTEMS[system_name].force
    y = PENDULUM_STATE if system_name == "pendulum" else KEPLER_STATE
    d = len(y) // 2
    q, p = y[:d], y[d:]
    q1, p1 = q, p
    for _ in range(50):
        q1, p1 = leapfrog_step(force, q1, p1, 0.1)
    q2, p2 = q1, -p1
    for _ in range(50):
        q2, p2 = leapfrog_step(force, q2, p2, 0.1)
    assert torch.allclose(q2, q, atol=1e-12) and torch.allclose(-p2, p, atol=1e-12)
    back_q, back_p = leapfrog_step(force, *leapfrog_step(force, q, p, 0.1), -0.1)
    assert torch.allclose(back_q, q, atol=1e-15) and torch.allclose(back_p, p, atol=1e-15)
    # symplectic Euler is not symmetric: the same test fails for it
    system = SYSTEMS[system_name]
    y_se = step(system, "symplectic_euler", step(system, "symplectic_euler", y, 0.1), -0.1)
    assert (y_se - y).abs().max() > 1e-4


def test_leapfrog_conserves_the_oscillator_modified_energy_exactly():
    system, h = SYSTEMS["oscillator"], 0.3
    y0 = torch.tensor([[1.0, 0.5], [-0.2, 2.0]], dtype=F64)
    states = integrate(system, "leapfrog", y0, h, 20_000, record_every=7)
    modified = oscillator_leapfrog_modified_energy(states, h)
    assert (modified - modified[0]).abs().max() < 1e-12
    energy = system.energy(states)
    deviation = (energy - modified).abs()
    bound = (h**2 / 4) * modified[0] / (1 - h**2 / 4)
    assert (deviation <= bound + 1e-12).all()
    assert deviation.max() > 0.5 * bound.max()  # H itself does oscillate, at O(h²)


def test_energy_error_growth_long_run_small():
    """On the pendulum, 5000 steps: symplectic errors flat, RK4 drifts linearly, Euler grows."""
    system, y0 = SYSTEMS["pendulum"], torch.tensor([[1.0, 0.0]], dtype=F64)
    growth = {}
    for method in INTEGRATORS:
        states = integrate(system, method, y0, 0.1, 5000, record_every=10)
        rel = (system.energy(states[1:]) - system.energy(y0)).abs()[:, 0] / system.energy(y0)
        growth[method] = energy_error_summary(rel)["growth_exponent"]
    assert abs(growth["leapfrog"]) < 0.05 and abs(growth["symplectic_euler"]) < 0.05
    assert abs(growth["rk4"] - 1) < 0.1
    assert growth["euler"] > 0.5


def test_kepler_initial_state_has_unit_semimajor_axis():
    e = torch.tensor([0.0, 0.5, 0.9], dtype=F64)
    y0 = kepler_initial_state(e)
    assert torch.allclose(SYSTEMS["kepler"].energy(y0), torch.full((3,), -0.5, dtype=F64))
    angular_momentum = y0[:, 0] * y0[:, 3] - y0[:, 1] * y0[:, 2]
    assert torch.allclose(angular_momentum, (1 - e**2).sqrt())  # L² = a(1 − e²)


def test_hamiltonian_field_is_divergence_free_and_conserves_its_energy():
    torch.manual_seed(0)
    field = HamiltonianField(dim=2, hidden=32).double().eval()
    y = torch.randn(6, 4, dtype=F64)
    f = field(y)
    grad_h = torch.autograd.grad(field.hamiltonian(y.requires_grad_()).sum(), y)[0]
    dh_dt = (grad_h * f).sum(-1)  # ∇Hᵀ J ∇H
    assert dh_dt.abs().max() < 1e-14 * grad_h.square().sum(-1).max()
    for sample in y.detach()[:3]:
        jac = torch.autograd.functional.jacobian(field, sample)
        assert abs(torch.trace(jac).item()) < 1e-12
    # the unconstrained field has neither property
    mlp = MLPField(dim=2, hidden=32).double()
    assert abs(torch.trace(torch.autograd.functional.jacobian(mlp, y.detach()[0])).item()) > 1e-4


def test_hamiltonian_field_flow_conserves_its_energy_to_solver_accuracy():
    torch.manual_seed(1)
    field = HamiltonianField(dim=1, hidden=16).double().eval()
    with torch.no_grad():
        field.net[0].weight.mul_(3)  # a strongly nonlinear H_θ
    y0 = torch.randn(3, 2, dtype=F64)
    energies = [field.hamiltonian(rollout(field, y0, h, round(4 / h))).detach() for h in (0.4, 0.2)]
    drifts = [(e - e[0]).abs().max().item() for e in energies]
    assert 1e-12 < drifts[1] < drifts[0] / 10  # RK4 truncation only: shrinks as h⁴ with the step


def test_hamiltonian_field_trains_with_gradients_through_the_gradient():
    torch.manual_seed(0)
    field = HamiltonianField(dim=1, hidden=8)
    loss = field(torch.randn(5, 2)).square().mean()
    loss.backward()
    head = field.net[-1]
    assert field.net[0].weight.grad.abs().sum() > 0 and head.weight.grad.abs().sum() > 0
    assert head.bias.grad is None  # H_θ + const gives the same field: the bias never enters it


def test_bad_inputs_raise_clear_errors():
    system = SYSTEMS["pendulum"]
    with pytest.raises(ValueError, match=r"shape \[batch, 2\]"):
        integrate(system, "leapfrog", torch.zeros(3, 4, dtype=F64), 0.1, 10)
    with pytest.raises(ValueError, match="unknown integrator 'verlet'"):
        integrate(system, "verlet", torch.zeros(3, 2, dtype=F64), 0.1, 10)
    with pytest.raises(ValueError, match="h > 0"):
        integrate(system, "rk4", torch.zeros(3, 2, dtype=F64), -0.1, 10)
    with pytest.raises(ValueError, match="even last dimension"):
        step(system, "leapfrog", torch.zeros(3, 3, dtype=F64), 0.1)
    with pytest.raises(ValueError, match=r"\[\.\.\., 2\]"):
        HamiltonianField(dim=1)(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="eccentricity"):
        kepler_initial_state(torch.tensor([1.2]))


@pytest.mark.parametrize(("key", "value"), [
    ("n_steps", 0), ("record_every", 0), ("pendulum_step", 0.0), ("pendulum_amplitudes", (4.0,)),
    ("kepler_eccentricities", (1.0,)), ("radius_max", 0.1), ("noise_std", -1.0), ("threads", -1),
    ("rollout_steps", 5),
])
def test_config_validation(key, value):
    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_bad_overrides_give_clear_errors():
    with pytest.raises(PapersError, match="unknown preset"):
        EXPERIMENT.make_config("huge")
    with pytest.raises(PapersError, match="did you mean"):
        EXPERIMENT.make_config("smoke", {"n_step": "10"})


def test_smoke_run_is_deterministic(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    for name in ("pendulum", "kepler"):
        assert abs(metrics[f"{name}_leapfrog_growth_exponent"]) < 0.2
        assert metrics[f"{name}_euler_energy_error"] > metrics[f"{name}_leapfrog_energy_error"]
    assert metrics["hnn_learned_energy_drift"] < 1e-2
    assert len(result.checks) == 10 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/energy_error.png", "figures/learned_dynamics.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"integrators", "learned_dynamics"}
