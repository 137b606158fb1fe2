"""PopArt: exact output preservation, moment tracking, the σ floor, per-task isolation, gradient
paths, config errors, a smoke run and determinism."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed

from papers.rl.popart import PopArt, preserve_outputs, scale_from_moments, update_moments

F64 = torch.float64


@pytest.mark.parametrize("seed", range(5))
def test_preserve_outputs_is_exact_for_random_changes(seed):
    g = torch.Generator().manual_seed(seed)
    tasks, hidden = 4, 7
    weight, bias = (
        torch.randn(tasks, hidden, generator=g, dtype=F64),
        torch.randn(tasks, generator=g, dtype=F64),
    )
    mu = torch.randn(tasks, generator=g, dtype=F64) * 100
    sigma = torch.rand(tasks, generator=g, dtype=F64) * 50 + 1e-3
    new_mu = mu + torch.randn(tasks, generator=g, dtype=F64) * 1000
    new_sigma = sigma * torch.exp(torch.randn(tasks, generator=g, dtype=F64) * 3)
    h = torch.randn(32, hidden, generator=g, dtype=F64)
    before = sigma * (h @ weight.T + bias) + mu
    w2, b2 = preserve_outputs(weight, bias, mu, sigma, new_mu, new_sigma)
    after = new_sigma * (h @ w2.T + b2) + new_mu
    assert torch.allclose(after, before, rtol=1e-12, atol=1e-9 * before.abs().max().item())


def test_head_update_preserves_outputs_and_art_does_not():
    torch.manual_seed(0)
    outputs = {}
    for mode in ("popart", "art"):
        torch.manual_seed(0)
        head = PopArt(5, 3, beta=0.3, mode=mode).double()
        h = torch.randn(20, 5, dtype=F64)
        task = torch.randint(0, 3, (20,))
        before = head.value(h, task)
        head.update(torch.randn(20, dtype=F64) * 1000 + 500, task)
        outputs[mode] = (before, head.value(h, task))
    before, after = outputs["popart"]
    assert torch.allclose(after, before, rtol=1e-12, atol=1e-9)
    before, after = outputs["art"]
    assert (after - before).abs().min() > 1.0


def test_moments_converge_to_stream_mean_and_std():
    head = PopArt(2, 1, beta=1e-2, mode="popart").double()
    g = torch.Generator().manual_seed(0)
    for _ in range(3000):
        head.update(torch.randn(64, generator=g, dtype=F64) * 7.0 + 300.0)
    assert abs(head.mu.item() - 300.0) < 0.3 and abs(head.sigma.item() - 7.0) < 0.3
    # the functional form: a constant stream y = c drives μ → c and ν → c²
    mu, nu = torch.tensor(0.0, dtype=F64), torch.tensor(1.0, dtype=F64)
    for _ in range(2000):
        mu, nu = update_moments(mu, nu, torch.tensor(3.0), torch.tensor(9.0), 0.01)
    assert abs(mu.item() - 3.0) < 1e-6 and abs(nu.item() - 9.0) < 1e-6


def test_debias_first_update_sets_batch_moments():
    head = PopArt(2, 1, beta=1e-3, debias=True).double()
    y = torch.tensor([1.0, 3.0, 5.0], dtype=F64)
    head.update(y)
    assert math.isclose(head.mu.item(), 3.0) and math.isclose(head.sigma.item(), y.std(unbiased=False).item())
    plain = PopArt(2, 1, beta=1e-3, debias=False).double()
    plain.update(y)
    assert math.isclose(plain.mu.item(), 3e-3)


def test_sigma_is_floored():
    # constant targets: ν − μ² = 0, σ falls to the floor 1e-4, never 0
    assert scale_from_moments(torch.tensor(2.0), torch.tensor(4.0)).item() == pytest.approx(1e-4)
    assert scale_from_moments(torch.tensor(0.0), torch.tensor(-1.0), sigma_min=0.5).item() == 0.5
    assert scale_from_moments(torch.tensor(0.0), torch.tensor(1e20)).item() == pytest.approx(1e6)
    head = PopArt(3, 1, beta=1.0, debias=False).double()
    head.update(torch.full((10,), 5.0, dtype=F64))
    assert head.sigma.item() == pytest.approx(1e-4)
    n = head.normalise(torch.tensor([5.0 + 1e-3], dtype=F64))
    assert torch.isfinite(n).all() and n.item() == pytest.approx(10.0)


def test_per_task_statistics_change_only_for_the_task_seen():
    torch.manual_seed(0)
    head = PopArt(4, 3, beta=0.5)
    state = {k: v.clone() for k, v in head.state_dict().items()}
    head.update(torch.tensor([10.0, 20.0, 30.0]), torch.tensor([1, 1, 1]))
    for name in ("mu", "nu", "weight", "bias", "count"):
        new, old = head.state_dict()[name], state[name]
        assert torch.equal(new[[0, 2]], old[[0, 2]]), name
        assert not torch.equal(new[1], old[1]), name


def test_gradients_go_through_the_normalised_head_only():
    """μ, σ are buffers: the normalised loss, and so every gradient, is the same for targets y with
    (μ, σ) = (0, 1) and for 1000 y + 7000 with (μ, σ) = (7000, 1000); the unnormalised loss is not."""
    torch.manual_seed(0)
    trunk = torch.nn.Linear(3, 4).double()
    x, task, y = torch.randn(16, 3, dtype=F64), torch.randint(0, 2, (16,)), torch.randn(16, dtype=F64)
    grads = {}
    for scale in (1.0, 1000.0):
        torch.manual_seed(1)
        head = PopArt(4, 2).double()
        assert {n for n, _ in head.named_parameters()} == {"weight", "bias"}
        head.mu.fill_(7 * scale if scale > 1 else 0.0)
        head.nu.copy_(head.mu**2 + scale**2)
        targets = scale * y + head.mu[task]
        features = trunk(x)
        normalised = 0.5 * (head.normalise(targets, task) - head(features, task)).pow(2).mean()
        raw = 0.5 * (targets - head.value(features, task)).pow(2).mean()
        params = [trunk.weight, head.weight, head.bias]
        grads[scale] = (
            torch.autograd.grad(normalised, params, retain_graph=True),
            torch.autograd.grad(raw, params),
        )
        assert not head.mu.requires_grad and not head.sigma.requires_grad
    for a, b in zip(grads[1.0][0], grads[1000.0][0], strict=True):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)
    for a, b in zip(grads[1.0][1], grads[1000.0][1], strict=True):  # raw loss: σ² larger via σ n
        assert torch.allclose(1000.0**2 * a, b, rtol=1e-9, atol=1e-9)


def test_clear_errors():
    with pytest.raises(ValueError, match="beta"):
        PopArt(4, 1, beta=0.0)
    with pytest.raises(ValueError, match="mode"):
        PopArt(4, 1, mode="pop")
    with pytest.raises(ValueError, match="sigma_min"):
        PopArt(4, 1, sigma_min=0.0)
    with pytest.raises(ValueError, match="num_tasks"):
        PopArt(4, 0)
    head = PopArt(4, 2)
    with pytest.raises(ValueError, match=r"features must be \[batch, 4\]"):
        head(torch.randn(3, 5))
    with pytest.raises(ValueError, match="task ids"):
        head(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="task must be"):
        head(torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="NaN or inf"):
        head.update(torch.tensor([1.0, float("nan")]), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("reward_scales", (1.0,)),
        ("reward_scales", (1.0, -1.0)),
        ("beta", 0.0),
        ("beta", 2.0),
        ("total_steps", 0),
        ("lr", 0.0),
        ("threads", -1),
        ("final_points", 99),
        ("hidden", ()),
    ],
)
def test_config_validation(key, value):
    from papers.rl.popart.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_multitask_env_scales_rewards_and_swaps_actions():
    from papers.rl.popart import MultiTaskCartPole

    envs = MultiTaskCartPole((0.01, 1.0, 100.0), envs_per_task=2, max_steps=5, seed=0)
    obs = envs.reset()
    assert obs.shape == (6, 7) and (obs[:, 4:].argmax(1) == [0, 0, 1, 1, 2, 2]).all()
    start = envs.state.copy()
    _, reward, *_ = envs.step([1] * 6)
    assert list(reward) == [0.01, 0.01, 1.0, 1.0, 100.0, 100.0]
    pushed = envs.state[:, 1] - start[:, 1]  # cart velocity change: right on tasks 0, 2, left on task 1
    assert (pushed[[0, 1, 4, 5]] > 0).all() and (pushed[[2, 3]] < 0).all()
    for _ in range(4):
        *_, truncated, _, lengths = envs.step([0, 1] * 3)
    assert truncated.any() and set(lengths[truncated].tolist()) == {5}


def test_regression_demo_runs():
    from papers.rl.popart.regression import bit_targets, train_regression

    assert bit_targets(torch.tensor([[1.0] + [0.0] * 15, [1.0] * 16])).tolist() == [1.0, 65535.0]
    curve = train_regression(
        "popart", 1e-3, steps=20, batch_size=4, p_rare=0.1, beta=0.1, eval_every=10, seed=0
    )
    assert len(curve["step"]) == 3 and all(math.isfinite(v) for v in curve["common"])


def test_smoke_run_is_deterministic(run_smoke):
    from papers.rl.popart import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert result.figures == ["figures/multitask_curves.png"]
    assert result.metrics["popart_max_output_change"] < 1e-4
    assert result.metrics["none_sigma"] == [1.0, 1.0, 1.0]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"multitask_popart", "multitask_none", "multitask_none_equal_scales"}
