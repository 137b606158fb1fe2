"""NTK: the empirical kernel three ways, the analytic recursion against Monte Carlo, the linearised model."""

from __future__ import annotations

import math

import pytest
import torch

from papers.core.errors import PapersError
from papers.theory.ntk import (
    EXPERIMENT,
    NTKMLP,
    Linearized,
    analytic_ntk,
    empirical_ntk,
    jacobian,
    ntk_predict,
)
from papers.theory.ntk.experiment import Config, circle, make_data, train_pair

F64 = torch.float64


def small_net(width=12, hidden_layers=2, in_dim=3, seed=0):
    torch.manual_seed(seed)
    return NTKMLP(in_dim, width, hidden_layers).double()


def inputs(n=6, in_dim=3, seed=1):
    return torch.randn(n, in_dim, dtype=F64, generator=torch.Generator().manual_seed(seed))


def test_empirical_ntk_is_jjt_computed_two_ways_and_symmetric_psd():
    net, x = small_net(), inputs()
    kernel = empirical_ntk(net, x)
    jac = jacobian(net, x)
    assert jac.shape == (6, sum(p.numel() for p in net.parameters()))
    assert torch.allclose(kernel, jac @ jac.T, atol=1e-12)
    rows = []  # a third way: one reverse pass per input
    for xi in x:
        grads = torch.autograd.grad(net(xi[None])[0], list(net.parameters()))
        rows.append(torch.cat([g.flatten() for g in grads]))
    assert torch.allclose(jac, torch.stack(rows), atol=1e-12)
    assert torch.allclose(kernel, kernel.T, atol=1e-13)
    assert torch.linalg.eigvalsh(kernel).min() > -1e-10
    cross = empirical_ntk(net, x[:2], x[2:])
    assert cross.shape == (2, 4) and torch.allclose(cross, kernel[:2, 2:], atol=1e-12)


def test_analytic_relu_ntk_matches_monte_carlo_of_a_one_hidden_layer_net():
    """Θ̂ of one hidden layer of width n is a Monte-Carlo average over n units of the analytic expectations."""
    x = inputs(n=5, in_dim=2, seed=2)
    analytic = analytic_ntk(x, x, hidden_layers=1)
    errors = []
    for width in (1_000, 100_000):
        estimate = empirical_ntk(small_net(width, hidden_layers=1, in_dim=2, seed=3), x)
        errors.append(((estimate - analytic).norm() / analytic.norm()).item())
    assert errors[1] < 0.02
    assert errors[1] < errors[0] / 3  # ~ 1/√n: 10× for 100× the width, leaving room for noise


def test_arc_cosine_expectations_and_the_diagonal():
    """On the diagonal φ = 0: Θ_2(x, x) = Σ_1 σ_w²/2 + σ_w² Σ_1/2 + σ_b² for one hidden layer."""
    x = inputs(n=4, in_dim=3)
    sw, sb = 1.3, 0.4
    sigma_1 = sw**2 * (x * x).sum(1) / 3 + sb**2
    diag = torch.diagonal(analytic_ntk(x, x, 1, sw, sb))
    assert torch.allclose(diag, sigma_1 * sw**2 / 2 + sw**2 * sigma_1 / 2 + sb**2, atol=1e-12)
    # orthogonal unit inputs, no bias: φ = π/2, E[relu relu] = Σ/(2π), E[step step] = 1/4
    e = torch.eye(2, dtype=F64)
    k = analytic_ntk(e, e, 1, sigma_w=1.0, sigma_b=0.0)
    assert abs(k[0, 1].item() - 1 / (2 * math.pi) * 0.5) < 1e-12  # Σ_1 = 1/2 on the diagonal, 0 off it


def test_deeper_analytic_ntk_is_the_wide_limit_of_the_empirical_one():
    """Three hidden layers: the seed-averaged empirical NTK approaches the recursion as the width grows."""
    x = inputs(n=4, in_dim=3, seed=4)
    analytic = analytic_ntk(x, x, hidden_layers=3)
    errors = []
    for width in (128, 2048):
        mean = torch.stack([empirical_ntk(small_net(width, 3, seed=10 + s), x) for s in range(4)]).mean(0)
        errors.append(((mean - analytic).norm() / analytic.norm()).item())
    assert errors[1] < 0.05 and errors[1] < errors[0] / 2


def test_linearised_model_is_exactly_linear_in_theta():
    net, x = small_net(), inputs()
    linear = Linearized(net)
    f0 = net(x).detach()
    assert torch.allclose(linear(x), f0, atol=1e-14)
    generator = torch.Generator().manual_seed(7)
    directions = [{k: torch.randn(p.shape, dtype=F64, generator=generator)
                   for k, p in linear.params.items()} for _ in range(2)]

    def at(a, b):
        with torch.no_grad():
            for k, p in linear.params.items():
                p.copy_(linear.origin[k.replace("_", ".")] + a * directions[0][k] + b * directions[1][k])
            return linear(x) - f0

    jac = jacobian(net, x)
    names = [name for name, _ in net.named_parameters()]
    delta = torch.cat([directions[0][k.replace(".", "_")].flatten() for k in names])
    assert torch.allclose(at(1, 0), jac @ delta, atol=1e-11)
    assert torch.allclose(at(2.5, -1.5), 2.5 * at(1, 0) - 1.5 * at(0, 1), atol=1e-11)
    # its gradient is J(θ_0)ᵀ wherever θ is, unlike the network's
    at(3, 1)
    grads = torch.autograd.grad(linear(x).sum(), [linear.params[k.replace(".", "_")] for k in names])
    assert torch.allclose(torch.cat([g.flatten() for g in grads]), jac.sum(0), atol=1e-11)


def test_kernel_formula_is_exact_for_the_linearised_model_trained_by_gd():
    net, lr, steps = small_net(width=16), 0.05, 40
    x_train, x_test = inputs(n=5, seed=8), inputs(n=7, seed=9)
    y = torch.sin(x_train.sum(1))
    linear = Linearized(net)
    optimiser = torch.optim.SGD(linear.params.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (0.5 * (linear(x_train) - y).pow(2).mean()).backward()
        optimiser.step()
    kernel = empirical_ntk(net, torch.cat([x_train, x_test]))
    with torch.no_grad():
        f0 = net(torch.cat([x_train, x_test]))
        trained = linear(torch.cat([x_train, x_test]))
    args = (kernel[:, :5], kernel[:5, :5], f0, f0[:5], y, lr)
    assert torch.allclose(ntk_predict(*args, steps), trained, atol=1e-10)
    flow = ntk_predict(*args, steps, discrete=False)
    assert 0 < (flow - trained).abs().max() < 0.05 * (trained - f0).abs().max()
    converged = ntk_predict(*args, 100_000)
    assert torch.allclose(converged[:5], y, atol=1e-6)  # a full-rank kernel interpolates the training data


def test_training_is_deterministic_given_the_seed():
    config = EXPERIMENT.make_config("smoke")
    data = make_data(config, 0)
    x = torch.cat([data["x_train"], data["x_test"]])
    analytic = analytic_ntk(x, x, config.hidden_layers)
    first, again, other = (train_pair(config, data, analytic, 32, seed, lr=0.5) for seed in (0, 0, 1))
    assert first == again
    assert first["curves"]["network"] != other["curves"]["network"]
    assert 0 < first["kernel_change"] and first["linear_vs_kernel_formula"] < 1e-4


def test_bad_input_gives_clear_errors():
    net = NTKMLP(2, 8)
    with pytest.raises(ValueError, match=r"inputs \[n, 2\]"):
        net(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"inputs \[n, 2\]"):
        empirical_ntk(net, torch.zeros(4))
    with pytest.raises(ValueError, match="width"):
        NTKMLP(2, 0)
    with pytest.raises(ValueError, match="expected inputs"):
        analytic_ntk(torch.zeros(3, 2), torch.zeros(3, 4))
    assert circle(torch.zeros(3)).shape == (3, 2)
    with pytest.raises(PapersError, match="unknown preset"):
        EXPERIMENT.make_config("huge")


@pytest.mark.parametrize(("key", "value"), [("widths", (64,)), ("widths", (64, 32)), ("steps", 0),
                                            ("kernel_seeds", 1), ("lr_fraction", 1.0), ("sigma_w", 0.0),
                                            ("hidden_layers", 0), ("threads", -1)])
def test_config_validation(key, value):
    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    config = EXPERIMENT.make_config("smoke")
    metrics = result.metrics
    for w in config.widths:
        assert 0 < metrics[f"init_error_w{w}"] < 1 and metrics[f"linear_vs_kernel_formula_w{w}"] < 1e-3
    assert len(result.checks) == 7 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("kernel_at_init", "trained_functions",
                                                                      "width_scaling")]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"kernels_at_init", "training"}
