import dataclasses
import math

import pytest
import torch
from torch import nn

from papers.core.errors import PapersError
from papers.core.runner import RunContext, run_experiment
from papers.theory.velocity_learning import (
    EXPERIMENT,
    PARAMETRISATIONS,
    SYSTEMS,
    DeepMLP,
    ResidualBlock,
    StepModel,
    TiedResNet,
    UntiedResNet,
    simulate,
    spirals,
)
from papers.theory.velocity_learning.experiment import Config, depth_sweep, dynamics


def tiny_config(**overrides) -> Config:
    return dataclasses.replace(EXPERIMENT.make_config("smoke"), **overrides)


# --- residual blocks and depth ------------------------------------------------------------------------


def test_residual_block_with_zero_branch_is_identity():
    branch = nn.Linear(5, 5)
    nn.init.zeros_(branch.weight)
    nn.init.zeros_(branch.bias)
    h = torch.randn(7, 5)
    assert torch.equal(ResidualBlock(branch, step=0.3)(h), h)
    assert torch.allclose(ResidualBlock(nn.Identity(), step=0.5)(h), 1.5 * h)


def test_residual_mlp_with_zero_layers_passes_the_input_projection_through():
    net = DeepMLP(3, 2, width=8, depth=6, residual=True, residual_scale=0.5)
    for block in net.hidden:
        nn.init.zeros_(block.branch[1].weight)
        nn.init.zeros_(block.branch[1].bias)
    x = torch.randn(4, 3)
    assert torch.equal(net.hidden(net.input_layer(x)), net.input_layer(x))


def test_plain_and_residual_mlps_share_parameters_and_initial_weights():
    torch.manual_seed(0)
    plain = DeepMLP(3, 2, width=8, depth=5, residual=False)
    torch.manual_seed(0)
    residual = DeepMLP(3, 2, width=8, depth=5, residual=True, residual_scale=0.1)
    plain_params = list(plain.parameters())
    residual_params = list(residual.parameters())
    assert len(plain_params) == len(residual_params) == 2 * 5
    assert all(torch.equal(p, q) for p, q in zip(plain_params, residual_params, strict=True))
    linears = [m for m in plain.modules() if isinstance(m, nn.Linear)]
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in linears)
    x = torch.randn(4, 3)
    assert plain(x).shape == residual(x).shape == (4, 2)
    with pytest.raises(ValueError, match="depth"):
        DeepMLP(3, 2, width=8, depth=1, residual=False)


def test_tied_net_is_n_explicit_euler_steps_of_its_field():
    torch.manual_seed(0)
    net = TiedResNet(in_dim=3, dim=4, width=8, num_classes=2)
    x = torch.randn(5, 3)
    steps = 7
    h = net.lift(x)
    for k in range(steps):
        t = torch.full((5, 1), k / steps)
        h = h + (1 / steps) * net.field.net(torch.cat([h, t], dim=1))
    assert torch.allclose(net.hidden(x, steps), h, atol=1e-6)
    assert torch.allclose(net(x, steps), net.readout(h), atol=1e-6)
    with pytest.raises(ValueError, match="steps"):
        net.hidden(x, 0)


def test_untied_refinement_with_one_substep_is_the_network_and_m_substeps_split_each_block():
    torch.manual_seed(0)
    net = UntiedResNet(in_dim=3, dim=4, width=8, num_classes=2, blocks=3, step=0.7)
    x = torch.randn(5, 3)
    h = net.lift(x)
    for field in net.fields:
        h = h + 0.7 * field.net(h)
    assert torch.allclose(net.hidden(x, substeps=1), h, atol=1e-6)
    h = net.lift(x)
    for field in net.fields:
        for _ in range(2):
            h = h + 0.35 * field.net(h)
    assert torch.allclose(net.hidden(x, substeps=2), h, atol=1e-6)
    assert not torch.allclose(net.hidden(x, 1), net.hidden(x, 2))


# --- dynamical systems ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pendulum", "lotka_volterra"])
def test_simulator_conserves_the_invariant(name):
    system = SYSTEMS[name]
    x0 = system.sample_initial(16, torch.Generator().manual_seed(0))
    path = simulate(system, x0, dt=0.1, steps=200, substeps=10)
    assert path.shape == (16, 201, 2) and path.dtype == torch.float64
    drift = (system.invariant(path) - system.invariant(x0)[:, None]).abs().max().item()
    assert drift < 1e-9


def test_simulator_is_fourth_order_and_van_der_pol_reaches_its_limit_cycle():
    system = SYSTEMS["pendulum"]
    x0 = torch.tensor([[1.2, 0.3]], dtype=torch.float64)
    exact = simulate(system, x0, dt=2.0, steps=1, substeps=1000)[:, -1]
    errors = [(simulate(system, x0, dt=2.0, steps=1, substeps=n)[:, -1] - exact).norm().item()
              for n in (20, 40)]
    assert 13 < errors[0] / errors[1] < 19  # 2^4 = 16
    x0 = torch.tensor([[0.1, 0.0], [3.0, 3.0]])
    vdp = simulate(SYSTEMS["van_der_pol"], x0, dt=0.1, steps=400, substeps=5)
    amplitude = vdp[:, 200:, 0].abs().amax(dim=1)
    assert torch.allclose(amplitude, torch.full_like(amplitude, 2.0), atol=0.05)


def test_spirals_shapes_labels_and_embedding():
    x, y = spirals(300, 4, 6, noise=0.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (300, 6) and y.shape == (300,) and set(y.tolist()) == {0, 1, 2, 3}
    assert torch.linalg.matrix_rank(x).item() == 2  # a planar problem seen in 6 coordinates
    assert x.norm(dim=1).max() <= 1.0 + 1e-5


# --- the three dynamics parametrisations ---------------------------------------------------------------


def linear_step_model(parametrisation, weight, dt, integrator="rk4"):
    net = nn.Linear(2, 2, bias=False).double()
    net.weight.data = weight.clone()
    zeros, ones = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    return StepModel(net, parametrisation, dt, zeros, ones, zeros, ones, integrator=integrator)


def test_heads_integrate_a_known_linear_field():
    a = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=torch.float64)  # a damped rotation
    dt = 0.2
    flow = torch.linalg.matrix_exp(a * dt)
    x = torch.randn(9, 2, dtype=torch.float64)
    exact = x @ flow.T
    for parametrisation, weight in (("state", flow), ("increment", flow - torch.eye(2)), ("derivative", a)):
        model = linear_step_model(parametrisation, weight, dt)
        prediction = model(x)
        assert prediction.shape == x.shape
        tolerance = 1e-12 if parametrisation != "derivative" else (dt * 1.01) ** 5 / 120 * 10
        assert (prediction - exact).abs().max() < tolerance, parametrisation
        assert model.loss(x, exact) < 1e-8
    euler = linear_step_model("derivative", a, dt, integrator="euler")
    assert torch.allclose(euler(x), x + dt * x @ a.T)
    rollout = linear_step_model("derivative", a, dt).rollout(x, steps=10)
    assert rollout.shape == (9, 11, 2)
    assert torch.allclose(rollout[:, -1], x @ torch.linalg.matrix_exp(a * dt * 10).T, atol=1e-4)


def test_each_target_is_standardised_by_its_own_statistics():
    x = torch.randn(100, 2)
    x_next = x + 0.01 * torch.randn(100, 2) + 0.5
    targets = {"state": x_next, "increment": x_next - x, "derivative": (x_next - x) / 0.1}
    for parametrisation, target in targets.items():
        mean, std = StepModel.target_statistics(x, x_next, parametrisation, dt=0.1)
        assert torch.allclose(mean, target.mean(0)) and torch.allclose(std, target.std(0))
    with pytest.raises(ValueError, match="parametrisation"):
        StepModel(nn.Identity(), "position", 0.1, *(torch.zeros(2),) * 4)
    with pytest.raises(ValueError, match="dt"):
        StepModel(nn.Identity(), "state", 0.0, *(torch.zeros(2),) * 4)


# --- the experiment ------------------------------------------------------------------------------------


def test_parts_are_deterministic_given_the_seed(tmp_path):
    config = tiny_config(depths=(3, 5), learning_rates=(1e-3,), systems=("pendulum",),
                         sampling_steps=(0.1, 0.2))

    def parts(seed, folder):
        ctx = RunContext(tmp_path / folder, seed=seed, device="cpu", progress=False)
        return depth_sweep(config, ctx), dynamics(config, ctx)

    first, again, other = parts(0, "a"), parts(0, "b"), parts(1, "c")
    assert first == again
    assert first[0]["plain"]["loss"] != other[0]["plain"]["loss"]
    assert first[1]["systems"] != other[1]["systems"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"depths": (8,)}, "depths"),
        ({"depths": (8, 4)}, "depths"),
        ({"learning_rates": (0.0,)}, "learning_rates"),
        ({"systems": ("double_pendulum",)}, "systems"),
        ({"sampling_steps": (0.1, -0.1)}, "sampling_steps"),
        ({"ode_eval_depths": (5, 20)}, "ode_train_depth"),
        ({"ode_refinements": (2, 4)}, "ode_refinements"),
        ({"width": 0}, "width"),
        ({"ode_rtol": float("nan")}, "ode_rtol"),
        ({"threads": -1}, "threads"),
        ({"ode_tasks": ("teacher", "mnist")}, "ode_tasks"),
        ({"ode_tasks": ()}, "ode_tasks"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        Config(**overrides).validate()


def test_bad_overrides_give_clear_errors():
    with pytest.raises(PapersError, match="depths"):
        EXPERIMENT.make_config("smoke", {"depths": "16"})
    with pytest.raises(PapersError, match="did you mean"):
        EXPERIMENT.make_config("smoke", {"depth": "16"})
    with pytest.raises(PapersError, match="unknown preset"):
        EXPERIMENT.make_config("huge")


def test_smoke_run(tmp_path):
    result, run_dir = run_experiment(EXPERIMENT, preset="smoke", out=tmp_path, progress=False)
    config = EXPERIMENT.make_config("smoke")
    for d in config.depths:
        assert math.isfinite(result.metrics[f"plain_loss_depth{d}"])
        assert math.isfinite(result.metrics[f"residual_loss_depth{d}"])
    for p in PARAMETRISATIONS:
        for dt in config.sampling_steps:
            assert result.metrics[f"rollout_{p}_dt{dt:g}"] > 0
    for task in config.ode_tasks:
        assert result.metrics[f"{task}_tied_ode_nfe"] > 0
        assert abs(result.metrics[f"{task}_tied_order"] - 1) < 0.5
    assert len(result.checks) == 3 + 4 + 3 * len(config.ode_tasks)
    assert all(math.isfinite(c.measured) for c in result.checks)
    names = ("depth_sweep", "dynamics_errors", "dynamics_rollouts", "euler_convergence")
    assert sorted(result.figures) == [f"figures/{name}.png" for name in names]
    assert all((run_dir / f).stat().st_size > 10_000 for f in result.figures)
    stages = {"depth_sweep", "dynamics"} | {f"euler_limit_{task}" for task in config.ode_tasks}
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == stages
    assert (run_dir / "result.json").is_file()
