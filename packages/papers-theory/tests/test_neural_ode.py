"""Neural ODE: the solvers against exact solutions and torchdiffeq, the adjoint against backprop."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.theory.neural_ode import (
    NFECounter,
    ODEBlock,
    ODEFunc,
    ODENet,
    ResNet,
    odeint,
    odeint_adjoint,
)

F64 = torch.float64


# Problems with exact solutions: (name, f(t, y), y0, t, exact(t) -> [len(t), *y0.shape]).
def _linear():
    A = torch.tensor([[-0.1, 2.0, 0.0], [-2.0, -0.1, 0.3], [0.0, -0.3, -0.5]], dtype=F64)
    y0 = torch.tensor([1.0, 0.5, -0.2], dtype=F64)
    return lambda t, y: A @ y, y0, lambda ts: torch.stack([torch.linalg.matrix_exp(A * s) @ y0 for s in ts])


def _decay():
    y0 = torch.tensor([[2.0, -1.0], [0.5, 3.0]], dtype=F64)
    return lambda t, y: -0.7 * y, y0, lambda ts: torch.exp(-0.7 * ts)[:, None, None] * y0


def _oscillator():  # x'' = -ω² x as [x, v]
    w, y0 = 3.0, torch.tensor([1.0, 0.0], dtype=F64)
    return (
        lambda t, y: torch.stack([y[1], -(w**2) * y[0]]),
        y0,
        lambda ts: torch.stack([torch.cos(w * ts), -w * torch.sin(w * ts)], dim=1),
    )


def _time_dependent():  # y' = cos(t) y  =>  y = y0 exp(sin t)
    y0 = torch.tensor([1.0, -2.0], dtype=F64)
    return lambda t, y: torch.cos(t) * y, y0, lambda ts: torch.exp(torch.sin(ts))[:, None] * y0


def _t_times_y():  # y' = t y  =>  y = y0 exp(t²/2)
    y0 = torch.tensor([0.3], dtype=F64)
    return lambda t, y: t * y, y0, lambda ts: torch.exp(ts**2 / 2)[:, None] * y0


PROBLEMS = {"linear": _linear, "decay": _decay, "oscillator": _oscillator, "cos": _time_dependent,
            "t_y": _t_times_y}
T = torch.linspace(0.0, 2.0, 9, dtype=F64)


@pytest.mark.parametrize("name", PROBLEMS)
def test_dopri5_matches_exact_solution(name):
    f, y0, exact = PROBLEMS[name]()
    ys = odeint(f, y0, T, rtol=1e-9, atol=1e-11)
    assert ys.shape == (len(T), *y0.shape)
    assert torch.equal(ys[0], y0)
    assert (ys - exact(T)).abs().max() < 1e-7


@pytest.mark.parametrize("name", ["linear", "cos"])
def test_dopri5_backwards_in_time(name):
    f, y0, exact = PROBLEMS[name]()
    t = torch.tensor([1.5, 0.7, 0.0], dtype=F64)
    y_start = exact(t[:1])[0]
    ys = odeint(f, y_start, t, rtol=1e-9, atol=1e-11)
    assert (ys - exact(t)).abs().max() < 1e-7


@pytest.mark.parametrize("name", ["linear", "oscillator", "cos"])
def test_dopri5_error_tracks_tolerance_and_nfe_grows(name):
    f, y0, exact = PROBLEMS[name]()
    errors, nfes = [], []
    for rtol in (1e-3, 1e-5, 1e-7, 1e-9):
        ys, stats = odeint(f, y0, T, rtol=rtol, atol=rtol * 1e-2, return_stats=True)
        errors.append((ys - exact(T)).abs().max().item())
        nfes.append(stats.nfe)
        assert errors[-1] < 50 * rtol  # global error within a small multiple of the local tolerance
    assert all(b < a / 10 for a, b in pairwise(errors)), errors
    assert all(b > a for a, b in pairwise(nfes)), nfes


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_convergence_order(method, order):
    f, y0, exact = PROBLEMS["oscillator"]()
    t = torch.tensor([0.0, 1.0], dtype=F64)
    errors = []
    for h in (1 / 20, 1 / 40, 1 / 80):
        ys, stats = odeint(f, y0, t, method=method, options={"step_size": h}, return_stats=True)
        errors.append((ys[-1] - exact(t)[-1]).abs().max().item())
        assert stats.n_steps == round(1 / h) and stats.nfe == stats.n_steps * {1: 1, 2: 2, 4: 4}[order]
    rates = [math.log2(a / b) for a, b in pairwise(errors)]
    assert all(abs(r - order) < 0.25 for r in rates), rates


def test_fixed_step_lands_on_every_output_time():
    f, y0, exact = PROBLEMS["cos"]()
    t = torch.tensor([0.0, 0.3, 1.0, 1.1], dtype=F64)
    ys, stats = odeint(f, y0, t, method="rk4", options={"step_size": 0.1}, return_stats=True)
    assert stats.n_steps == 3 + 7 + 1
    assert (ys - exact(t)).abs().max() < 1e-5


def test_dense_output_is_fourth_order():
    """One step of size h, read at h/2 by interpolation: the local error falls as h^5."""
    f, y0, exact = PROBLEMS["cos"]()
    errors = []
    for h in (0.4, 0.2, 0.1):
        t = torch.tensor([0.0, h / 2, h], dtype=F64)
        ys, stats = odeint(f, y0, t, rtol=1e3, atol=1e3, options={"first_step": h}, return_stats=True)
        assert stats.n_steps == 1
        errors.append((ys[1] - exact(t)[1]).abs().max().item())
    rates = [math.log2(a / b) for a, b in pairwise(errors)]
    assert all(4.6 < r < 5.4 for r in rates), rates


@pytest.mark.parametrize("name", PROBLEMS)
def test_agrees_with_torchdiffeq(name):
    torchdiffeq = pytest.importorskip("torchdiffeq")
    f, y0, exact = PROBLEMS[name]()
    for rtol in (1e-4, 1e-8):
        ours = odeint(f, y0, T, rtol=rtol, atol=rtol * 1e-2)
        ref = torchdiffeq.odeint(f, y0, T, rtol=rtol, atol=rtol * 1e-2, method="dopri5")
        err_ref = (ref - exact(T)).abs().max().item()
        assert (ours - ref).abs().max().item() < 20 * rtol
        assert (ours - exact(T)).abs().max().item() < 5 * err_ref + 1e-12


def test_float32_and_batched_shapes():
    f = ODEFunc(4, 8)
    y0 = torch.randn(5, 3, 4)
    ys = odeint(f, y0, torch.linspace(0, 1, 3), rtol=1e-4, atol=1e-6)
    assert ys.shape == (3, 5, 3, 4) and ys.dtype == torch.float32


# ---------- gradients ----------


class _Field(nn.Module):
    """A small time-dependent MLP vector field."""

    def __init__(self, dim=2, hidden=6):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, y):
        return self.net(torch.cat([y, t.expand(*y.shape[:-1], 1)], dim=-1))


def test_gradcheck_backprop_through_solver():
    torch.manual_seed(0)
    f = _Field().double()
    y0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64)
    weight = f.net[0].weight  # gradcheck perturbs it in place
    assert torch.autograd.gradcheck(lambda y, w: odeint(f, y, t, method="rk4", options={"step_size": 0.1}),
                                    (y0, weight))
    bias = f.net[2].bias
    assert torch.autograd.gradcheck(lambda y, b: odeint(f, y, t, rtol=1e-10, atol=1e-12), (y0, bias),
                                    atol=1e-6)


def test_gradcheck_adjoint():
    torch.manual_seed(0)
    f = _Field().double()
    y0 = torch.randn(2, 2, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.4, 1.0], dtype=F64, requires_grad=True)
    weight = f.net[2].weight
    assert torch.autograd.gradcheck(lambda y, s, w: odeint_adjoint(f, y, s, rtol=1e-9, atol=1e-11),
                                    (y0, t, weight), atol=1e-6)


def test_adjoint_gradients_match_backprop_on_mlp_field():
    torch.manual_seed(1)
    f = _Field(dim=3, hidden=16).double()
    y0 = torch.randn(8, 3, dtype=F64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 0.8, 1.5], dtype=F64)
    target = torch.randn(4, 8, 3, dtype=F64)
    inputs = (y0, *f.parameters())
    grads = []
    for solve in (odeint, odeint_adjoint):
        loss = (solve(f, y0, t, rtol=1e-8, atol=1e-10) - target).pow(2).sum()
        grads.append(torch.autograd.grad(loss, inputs))
    for direct, adjoint in zip(*grads, strict=True):
        assert (direct - adjoint).abs().max() < 1e-5 * (1 + direct.abs().max())
    # at a loose tolerance the two disagree by about the tolerance, not more
    loose = [torch.autograd.grad((solve(f, y0, t, rtol=1e-3, atol=1e-4) - target).pow(2).sum(), y0)[0]
             for solve in (odeint, odeint_adjoint)]
    rel = ((loose[0] - loose[1]).norm() / loose[0].norm()).item()
    assert 1e-9 < rel < 1e-1


def test_adjoint_backward_solve_is_counted_and_float32_works():
    f = NFECounter(_Field(dim=3, hidden=8))
    y0 = torch.randn(4, 3, requires_grad=True)
    ys = odeint_adjoint(f, y0, torch.tensor([0.0, 1.0]), rtol=1e-4, atol=1e-6)
    forward_nfe = f.nfe
    ys.sum().backward()
    assert forward_nfe > 0 and f.nfe > forward_nfe
    assert y0.grad is not None and all(p.grad is not None for p in f.parameters())


def _saved_bytes(fn) -> int:
    """Bytes of tensors autograd saves for backward while ``fn`` runs."""
    total = 0

    def pack(x):
        nonlocal total
        total += x.numel() * x.element_size()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        fn()
    return total


def test_adjoint_memory_does_not_grow_with_steps():
    f = _Field(dim=4, hidden=32)
    y0 = torch.randn(64, 4, requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    saved = {}
    for solve in (odeint, odeint_adjoint):
        for n in (10, 40):
            saved[solve.__name__, n] = _saved_bytes(
                lambda: solve(f, y0, t, method="rk4", options={"step_size": 1 / n}))  # noqa: B023
    assert saved["odeint_adjoint", 10] == saved["odeint_adjoint", 40]
    assert saved["odeint", 40] > 3.5 * saved["odeint", 10]
    assert saved["odeint_adjoint", 40] < saved["odeint", 10]


# ---------- errors ----------


def test_clear_errors_on_bad_input():
    f, y0, _ = PROBLEMS["decay"]()
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing"):
        odeint(f, y0, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="strictly"):
        odeint(f, y0, torch.tensor([0.0, 0.0]))
    with pytest.raises(ValueError, match="1-D"):
        odeint(f, y0, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        odeint(f, torch.tensor([float("nan")]), torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="floating-point"):
        odeint(f, torch.tensor([1, 2]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="unknown method 'rk45'"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), method="rk45")
    with pytest.raises(ValueError, match="unknown options"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), method="rk4", options={"first_step": 0.1})
    with pytest.raises(ValueError, match="rtol"):
        odeint(f, y0, torch.tensor([0.0, 1.0]), rtol=-1.0)
    with pytest.raises(ValueError, match="must return the shape of y"):
        odeint(lambda t, y: y[:1], y0, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="nn.Module"):
        odeint_adjoint(f, y0, torch.tensor([0.0, 1.0]))


def test_step_size_underflow_and_max_steps():
    blowup = lambda t, y: y**2  # noqa: E731  y = 1 / (1 - t) blows up at t = 1
    y0 = torch.tensor([1.0], dtype=F64)
    with pytest.raises(RuntimeError, match=r"dopri5: (step size .* underflow|max_num_steps)"):
        odeint(blowup, y0, torch.tensor([0.0, 2.0], dtype=F64))
    with pytest.raises(RuntimeError, match=r"dopri5: max_num_steps=5 exceeded at t="):
        odeint(blowup, y0, torch.tensor([0.0, 0.99], dtype=F64), options={"max_num_steps": 5})
    nan_after = lambda t, y: torch.where(t > 0.5, torch.full_like(y, float("nan")), -y)  # noqa: E731
    with pytest.raises(RuntimeError, match=r"dopri5: step size .* underflow at t=0\.5"):
        odeint(nan_after, y0, torch.tensor([0.0, 1.0], dtype=F64))
    with pytest.raises(RuntimeError, match="rk4: non-finite"):
        odeint(nan_after, y0, torch.tensor([0.0, 1.0], dtype=F64), method="rk4", options={"step_size": 0.1})


# ---------- ODE-Net modules ----------


def test_odenet_shapes_nfe_and_determinism():
    def make():
        torch.manual_seed(0)
        return ODENet(dim_in=2, n_classes=3, width=8, hidden=16)

    x = torch.randn(10, 2)
    net = make()
    logits = net(x)
    assert logits.shape == (10, 3)
    forward_nfe = net.block.nfe
    assert forward_nfe >= 8  # initial step selection + at least one 6-stage step
    logits.logsumexp(-1).sum().backward()
    assert net.block.nfe > forward_nfe and net.encoder.weight.grad is not None
    net.block.reset_nfe()
    assert net.block.nfe == 0
    assert torch.equal(make()(x), make()(x))
    resnet = ResNet(dim_in=2, n_classes=3, width=8, hidden=16, n_blocks=6)
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert resnet(x).shape == (10, 3) and n_params(net) < n_params(resnet)


def test_odeblock_backprop_and_adjoint_agree():
    torch.manual_seed(0)
    block = ODEBlock(ODEFunc(3, 8), rtol=1e-7, atol=1e-9)
    h = torch.randn(5, 3, dtype=F64)
    block.double()
    grads = []
    for adjoint in (False, True):
        block.adjoint = adjoint
        block.zero_grad()
        block(h).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in block.parameters()])
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


# ---------- the experiment ----------


def test_saved_tensor_meter_counts_distinct_storages_while_held():
    from papers.core.memory import SavedTensorMeter

    a = torch.randn(100, requires_grad=True)
    with SavedTensorMeter() as meter:
        loss = (a * a).sum() + (a.exp() * 2).sum()  # mul saves a (twice, one storage), exp saves its output
        assert meter.live == meter.peak == 2 * 100 * 4
        loss.backward()
    assert meter.live == 0 and meter.peak == 800


def test_spirals_are_seeded_and_balanced():
    from papers.theory.neural_ode.experiment import spirals

    x, y = spirals(3000, 3, 1.5, 0.04, torch.Generator().manual_seed(0))
    x2, _ = spirals(3000, 3, 1.5, 0.04, torch.Generator().manual_seed(0))
    assert x.shape == (3000, 2) and torch.equal(x, x2)
    assert set(y.tolist()) == {0, 1, 2} and y.bincount().min() > 900
    assert x.norm(dim=1).max() < 1.3


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("sweep_tols", (1e-3,)), ("memory_steps", (8,)),
                                            ("train_rtol", 0.0), ("threads", -1), ("n_classes", 1)])
def test_config_validation(key, value):
    from papers.theory.neural_ode.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic_and_resumable(run_smoke):
    from papers.core.runner import resume_run
    from papers.theory.neural_ode import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    metrics = result.metrics
    assert untimed(metrics) == untimed(again.metrics)
    assert metrics["odenet_params"] < metrics["resnet_params"]
    assert metrics["adjoint_memory_growth_ratio"] == 1.0 < metrics["backprop_memory_growth_ratio"]
    assert len(result.checks) == 8 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("memory", "tolerance", "training")]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"train_odenet", "train_resnet", "tolerance_sweep", "memory_and_gradients"}
    (run_dir / "stages" / "memory_and_gradients.json").unlink()  # as if killed during the last stage
    resumed, _ = resume_run(run_dir, progress=False)
    assert untimed(resumed.metrics) == untimed(metrics)
    assert resumed.metrics["odenet_train_time_s"] == metrics["odenet_train_time_s"]  # training was reused
