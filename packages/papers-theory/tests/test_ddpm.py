"""DDPM: forward moments, the posterior against Gaussian conditioning, exact parameterisation round trips,
loss weightings, and the ancestral sampler driven by the exact ε of a Gaussian mixture."""

from __future__ import annotations

import math
from itertools import product

import pytest
import torch

from papers.core.errors import PapersError
from papers.theory.ddpm import (
    PARAMETERISATIONS,
    Denoiser,
    Diffusion,
    GaussianMixture,
    eight_gaussians,
    linear_betas,
    mmd2,
    sliced_wasserstein,
)

F64 = torch.float64


@pytest.fixture(scope="module")
def diffusion():
    return Diffusion(linear_betas(100))


def _steps(n: int, T: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, T + 1, (n,), generator=torch.Generator().manual_seed(seed))


# ---------- schedule and forward process ----------


def test_linear_schedule_is_the_papers_and_stretches_with_T():
    paper = linear_betas(1000)
    assert paper[0].item() == pytest.approx(1e-4) and paper[-1].item() == pytest.approx(0.02)
    short = linear_betas(100)
    assert short[0].item() == pytest.approx(1e-3) and short[-1].item() == pytest.approx(0.2)
    bar_paper, bar_short = torch.prod(1 - paper).item(), torch.prod(1 - short).item()
    assert 1e-5 < bar_paper < 1e-4 and 1e-5 < bar_short < 1e-4  # x_T is pure noise either way
    with pytest.raises(ValueError, match="more timesteps"):
        linear_betas(10)  # β_T would be 2


def test_q_moments_match_closed_form_and_the_one_step_chain(diffusion):
    """Mean √ᾱ_t x0 and variance 1 − ᾱ_t, against the chain m_t = √α_t m_{t−1}, v_t = α_t v_{t−1} + β_t."""
    x0 = torch.tensor([[1.5, -0.7]], dtype=F64)
    mean, var = x0.clone(), torch.zeros(1, 1, dtype=F64)
    alpha_bar = 1.0
    for step in range(1, diffusion.T + 1):
        beta = diffusion.betas[step].item()
        mean, var = math.sqrt(1 - beta) * mean, (1 - beta) * var + beta
        alpha_bar *= 1 - beta
        q_mean, q_var = diffusion.q_mean_var(x0, torch.tensor([step]))
        assert torch.allclose(q_mean, mean, rtol=1e-12) and torch.allclose(q_var, var, rtol=1e-12)
        assert q_var.item() == pytest.approx(1 - alpha_bar, rel=1e-12)
        assert torch.allclose(q_mean, math.sqrt(alpha_bar) * x0, rtol=1e-12)


@pytest.mark.parametrize("step", [1, 10, 60, 100])
def test_q_sample_moments_empirically(diffusion, step):
    n, x0 = 200_000, torch.tensor([[1.5, -0.7]])
    g = torch.Generator().manual_seed(step)
    x_t = diffusion.q_sample(x0.expand(n, 2), torch.full((n,), step), torch.randn(n, 2, generator=g))
    alpha_bar = diffusion.alpha_bars[step].item()
    se = math.sqrt((1 - alpha_bar) / n)
    assert torch.allclose(x_t.mean(0), math.sqrt(alpha_bar) * x0[0], atol=5 * se)
    assert torch.allclose(x_t.var(0), torch.full((2,), 1 - alpha_bar), rtol=0.02)


def test_q_sample_has_the_law_of_the_simulated_chain(diffusion):
    n, step, x0 = 50_000, 30, torch.tensor([0.8, -1.2])
    g = torch.Generator().manual_seed(0)
    x = x0.expand(n, 2).clone()
    for s in range(1, step + 1):
        beta = diffusion.betas[s].float()
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(n, 2, generator=g)
    direct = diffusion.q_sample(x0.expand(n, 2), torch.full((n,), step), torch.randn(n, 2, generator=g))
    assert torch.allclose(x.mean(0), direct.mean(0), atol=0.02)
    assert torch.allclose(x.var(0), direct.var(0), rtol=0.03)


# ---------- posterior ----------


@pytest.mark.parametrize("step", [1, 2, 17, 99, 100])
def test_posterior_matches_gaussian_conditioning_in_1d(diffusion, step):
    """(x_{t−1}, x_t) | x_0 is jointly Gaussian; condition on x_t by the Schur complement."""
    x0, x_t = torch.tensor([[0.9]], dtype=F64), torch.tensor([[-0.4]], dtype=F64)
    a_prev = diffusion.alpha_bars[step - 1].item()
    alpha, beta = diffusion.alphas[step].item(), diffusion.betas[step].item()
    m_prev, v_prev = math.sqrt(a_prev) * 0.9, 1 - a_prev              # x_{t−1} | x_0
    m_t, v_t, cov = math.sqrt(alpha) * m_prev, alpha * v_prev + beta, math.sqrt(alpha) * v_prev
    expected_mean = m_prev + cov / v_t * (-0.4 - m_t)
    expected_var = v_prev - cov**2 / v_t
    mean, var = diffusion.posterior_mean_var(x0, x_t, torch.tensor([step]))
    assert mean.item() == pytest.approx(expected_mean, rel=1e-10, abs=1e-12)
    assert var.item() == pytest.approx(expected_var, rel=1e-10, abs=1e-14)
    if step == 1:
        assert mean.item() == pytest.approx(0.9) and var.item() == 0.0  # μ̃_1 = x_0


def test_posterior_matches_monte_carlo(diffusion):
    """Sample (x_{t−1}, x_t) from the chain, keep x_t near a value, compare the conditional moments."""
    step, n = 40, 1_000_000
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((n, 1), 0.9, dtype=F64)
    x_prev = diffusion.q_sample(x0, torch.full((n,), step - 1), torch.randn(n, 1, generator=g, dtype=F64))
    beta = diffusion.betas[step]
    x_t = (1 - beta).sqrt() * x_prev + beta.sqrt() * torch.randn(n, 1, generator=g, dtype=F64)
    near = (x_t[:, 0] - 0.3).abs() < 0.01
    mean, var = diffusion.posterior_mean_var(x0[:1], torch.tensor([[0.3]], dtype=F64), torch.tensor([step]))
    assert x_prev[near].mean().item() == pytest.approx(mean.item(), abs=0.01)
    assert x_prev[near].var().item() == pytest.approx(var.item(), rel=0.05)


# ---------- parameterisations ----------


@pytest.mark.parametrize(("source", "target"), list(product(PARAMETERISATIONS, repeat=2)))
def test_conversions_round_trip_exactly(diffusion, source, target):
    g = torch.Generator().manual_seed(0)
    x_t, value = torch.randn(64, 2, generator=g, dtype=F64), torch.randn(64, 2, generator=g, dtype=F64)
    t = _steps(64, diffusion.T)
    there = diffusion.convert(value, x_t, t, source, target)
    back = diffusion.convert(there, x_t, t, target, source)
    assert torch.allclose(back, value, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", PARAMETERISATIONS)
def test_targets_encode_the_true_x0_and_noise(diffusion, kind):
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(64, 2, generator=g, dtype=F64), torch.randn(64, 2, generator=g, dtype=F64)
    t = _steps(64, diffusion.T, 1)
    x_t = diffusion.q_sample(x0, t, eps)
    target = diffusion.from_x0_eps(kind, x0, eps, x_t, t)
    x0_back, eps_back = diffusion.to_x0_eps(kind, target, x_t, t)
    assert torch.allclose(x0_back, x0, atol=1e-9) and torch.allclose(eps_back, eps, atol=1e-9)
    # the mean of the reverse step given the true target is the true posterior mean
    assert torch.allclose(diffusion.p_mean(kind, target, x_t, t), diffusion.posterior_mean_var(x0, x_t, t)[0],
                          atol=1e-9)


def test_eps_mean_is_paper_eq_11_and_v_is_defined_as_in_salimans_ho(diffusion):
    g = torch.Generator().manual_seed(2)
    x_t, eps_hat = torch.randn(32, 2, generator=g, dtype=F64), torch.randn(32, 2, generator=g, dtype=F64)
    t = _steps(32, diffusion.T, 2)
    beta, alpha, alpha_bar = (diffusion.at(v, t, x_t) for v in (diffusion.betas, diffusion.alphas,
                                                                diffusion.alpha_bars))
    eq11 = (x_t - beta / (1 - alpha_bar).sqrt() * eps_hat) / alpha.sqrt()
    assert torch.allclose(diffusion.p_mean("eps", eps_hat, x_t, t), eq11, atol=1e-10)
    x0_hat = diffusion.convert(eps_hat, x_t, t, "eps", "x0")
    v = diffusion.convert(eps_hat, x_t, t, "eps", "v")
    assert torch.allclose(v, alpha_bar.sqrt() * eps_hat - (1 - alpha_bar).sqrt() * x0_hat, atol=1e-10)


@pytest.mark.parametrize("kind", PARAMETERISATIONS)
def test_error_scale_is_the_derivative_with_respect_to_eps(diffusion, kind):
    g = torch.Generator().manual_seed(3)
    x_t, eps, delta = (torch.randn(16, 2, generator=g, dtype=F64) for _ in range(3))
    t = _steps(16, diffusion.T, 3)
    change = diffusion.convert(eps + delta, x_t, t, "eps", kind) - diffusion.convert(eps, x_t, t, "eps", kind)
    assert torch.allclose(change, diffusion.error_scale(kind, t, x_t) * delta, atol=1e-9)


def test_eps_weighting_is_l_simple_and_vlb_is_the_same_bound_for_every_output(diffusion):
    """A network that outputs the conversion of one ε-predictor into each space has, with weighting 'eps',
    exactly L_simple, and with 'vlb' exactly the same bound, whatever the space."""
    torch.manual_seed(0)
    eps_model = Denoiser(hidden=16, layers=2).double()
    x0 = torch.randn(128, 2, dtype=F64)

    def as_kind(kind):
        return lambda x, t: diffusion.convert(eps_model(x, t), x, t, "eps", kind)

    def loss(kind, weighting):
        return diffusion.loss(as_kind(kind), x0, kind, weighting, generator=torch.Generator().manual_seed(5))

    l_simple = loss("eps", "simple")
    bound = loss("mu", "vlb")
    for kind in PARAMETERISATIONS:
        assert loss(kind, "eps").item() == pytest.approx(l_simple.item(), rel=1e-9)
        assert loss(kind, "vlb").item() == pytest.approx(bound.item(), rel=1e-9)
    assert loss("x0", "simple").item() != pytest.approx(l_simple.item(), rel=1e-3)


# ---------- the sampler with an exact noise predictor ----------


def _mixture():
    means = torch.tensor([[-1.2, 0.0], [1.0, 0.8], [0.6, -1.1]], dtype=F64)
    return GaussianMixture(means, torch.tensor([0.15, 0.2, 0.1]), torch.tensor([0.5, 0.3, 0.2]))


def test_exact_eps_is_minus_scaled_score_of_the_noised_mixture(diffusion):
    mixture, t = _mixture(), _steps(50, diffusion.T, 4)
    x_t = torch.randn(50, 2, dtype=F64, requires_grad=True)
    means, variances = mixture.noised(diffusion.at(diffusion.alpha_bars, t, x_t).flatten())
    log_components = (-0.5 * (x_t[:, None] - means).pow(2).sum(-1) / variances
                      - torch.log(2 * math.pi * variances) + mixture.weights.log())
    torch.logsumexp(log_components, 1).sum().backward()
    expected = -(1 - diffusion.at(diffusion.alpha_bars, t, x_t)).sqrt() * x_t.grad
    assert torch.allclose(mixture.eps(x_t.detach(), t, diffusion), expected, atol=1e-10)


def _exact_samples(reverse_variance: str, n: int):
    diffusion, mixture = Diffusion(linear_betas(100), reverse_variance), _mixture()
    samples = diffusion.sample(lambda x, t: mixture.eps(x, t, diffusion), n, "eps",
                               generator=torch.Generator().manual_seed(0))
    nearest = torch.cdist(samples.double(), mixture.means).argmin(1)
    weights = torch.bincount(nearest, minlength=3).double() / n
    spreads = torch.stack([(samples[nearest == k].double() - mixture.means[k]).pow(2).mean().sqrt()
                           for k in range(3)])  # per-axis standard deviation of each mode
    return samples, weights, spreads


def test_sampler_with_exact_eps_reproduces_the_mixture():
    mixture, n = _mixture(), 4000
    samples, weights, spreads = _exact_samples("beta", n)
    truth, _ = mixture.sample(n, torch.Generator().manual_seed(1))
    truth2, _ = mixture.sample(n, torch.Generator().manual_seed(2))
    assert torch.allclose(weights, mixture.weights, atol=0.03), weights
    assert torch.allclose(spreads, mixture.stds, rtol=0.15), spreads  # modes neither collapsed nor blurred
    m = 1500  # MMD² on a subset: its kernel matrices are m × m
    floor = abs(mmd2(truth2[:m], truth[:m]))
    assert mmd2(samples[:m], truth[:m]) < max(5 * floor, 2e-3)
    equal_weights = GaussianMixture(mixture.means, mixture.stds, torch.ones(3))
    wrong, _ = equal_weights.sample(m, torch.Generator().manual_seed(3))
    assert mmd2(samples[:m], truth[:m]) < mmd2(wrong, truth[:m]) / 3


def test_posterior_variance_sampler_keeps_weights_and_is_less_dispersed():
    """σ_t² = β̃_t is the lower of the paper's two choices: right mode weights, tighter modes than β_t."""
    _, weights, spreads = _exact_samples("posterior", 4000)
    _, _, spreads_beta = _exact_samples("beta", 4000)
    assert torch.allclose(weights, _mixture().weights, atol=0.03), weights
    assert bool((spreads < spreads_beta).all()) and bool((spreads > 0.7 * _mixture().stds).all())


def test_sampler_in_any_parameterisation_gives_the_same_samples(diffusion):
    mixture = eight_gaussians()

    def model(kind):
        return lambda x, t: diffusion.convert(mixture.eps(x, t, diffusion), x, t, "eps", kind)

    runs = {kind: diffusion.sample(model(kind), 300, kind, generator=torch.Generator().manual_seed(0),
                                   dtype=F64) for kind in PARAMETERISATIONS}
    for kind in PARAMETERISATIONS:
        assert torch.allclose(runs[kind], runs["eps"], atol=1e-6)


def test_sampler_is_deterministic_under_a_seed(diffusion):
    torch.manual_seed(0)
    model = Denoiser(hidden=8, layers=1)
    a = diffusion.sample(model, 50, "eps", generator=torch.Generator().manual_seed(7))
    b = diffusion.sample(model, 50, "eps", generator=torch.Generator().manual_seed(7))
    c = diffusion.sample(model, 50, "eps", generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---------- metrics and data ----------


def test_sliced_wasserstein_of_a_shift_and_mmd():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1000, 2, generator=g)
    shift = torch.tensor([0.6, -0.8])  # ‖c‖ = 1: SW₂² = E_u (uᵀc)² = ‖c‖²/2 in 2-D
    sw = sliced_wasserstein(x, x + shift, projections=2000, generator=torch.Generator().manual_seed(1))
    assert sw == pytest.approx(math.sqrt(0.5), rel=0.03)
    assert sliced_wasserstein(x, x, generator=torch.Generator().manual_seed(1)) == 0.0
    y = torch.randn(1000, 2, generator=g)
    assert abs(mmd2(x, y)) < 5e-3 < mmd2(x, y + 0.5)


def test_datasets_have_unit_scale_and_are_seeded():
    from papers.theory.ddpm import DATASETS

    for name, make in DATASETS.items():
        x = make(20_000, torch.Generator().manual_seed(0))
        assert torch.equal(x, make(20_000, torch.Generator().manual_seed(0))), name
        assert x.shape == (20_000, 2) and x.mean(0).abs().max() < 0.05, name
        assert 0.8 < x.var(0).mean().item() < 1.2, name


# ---------- bad input ----------


def test_clear_errors_on_bad_input(diffusion):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="1..100"):
        diffusion.q_mean_var(x, torch.tensor([0, 1, 2, 3]))
    with pytest.raises(ValueError, match="1..100"):
        diffusion.q_mean_var(x, torch.tensor([1, 2, 3, 101]))
    with pytest.raises(ValueError, match="integer"):
        diffusion.q_mean_var(x, torch.ones(4))
    with pytest.raises(ValueError, match="noise shape"):
        diffusion.q_sample(x, torch.ones(4, dtype=torch.long), torch.randn(4, 3))
    with pytest.raises(ValueError, match="unknown parameterisation"):
        diffusion.convert(x, x, torch.ones(4, dtype=torch.long), "eps", "score")
    with pytest.raises(ValueError, match="unknown weighting"):
        diffusion.loss(lambda a, t: a, x, "eps", "l1")
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        Denoiser()(torch.randn(4, 3), torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="equal sample sizes"):
        sliced_wasserstein(torch.randn(5, 2), torch.randn(6, 2))
    with pytest.raises(ValueError, match="same D"):
        mmd2(torch.randn(5, 2), torch.randn(5, 3))
    with pytest.raises(ValueError, match="reverse_variance"):
        Diffusion(linear_betas(100), "learned")
    with pytest.raises(PapersError, match="diverged"):
        diffusion.sample(lambda a, t: torch.full_like(a, math.inf), 4, "mu")


def test_non_finite_loss_names_the_arm():
    from papers.core.runner import RunContext
    from papers.theory.ddpm.experiment import PRESETS, Config, make_diffusion, train_arm

    config = Config(**PRESETS["smoke"])
    x_train = torch.randn(256, 2)
    x_train[3] = math.nan
    with pytest.raises(PapersError, match="arm x0/simple"):
        train_arm(make_diffusion(config), x_train, "x0/simple", 0, config, RunContext("unused", device="cpu"))


@pytest.mark.parametrize(("key", "value"), [
    ("steps", 0), ("timesteps", 10), ("arms", ("eps/simple", "x0/l1")), ("arms", ("x0/simple", "mu/vlb")),
    ("datasets", ("spirals",)), ("lr", 0.0), ("time_dim", 7), ("threads", -1), ("n_eval", 1),
])
def test_config_validation(key, value):
    from papers.theory.ddpm.experiment import Config

    message = {"timesteps": "more timesteps", "arms": "arm", "time_dim": "time_dim"}.get(key, key)
    with pytest.raises(ValueError, match=message):
        Config(**{key: value}).validate()


# ---------- training and the experiment ----------


def test_training_is_deterministic_under_a_seed():
    from papers.core.runner import RunContext
    from papers.theory.ddpm.experiment import PRESETS, Config, make_diffusion, train_arm

    config = Config(**PRESETS["smoke"])
    x_train = torch.randn(256, 2, generator=torch.Generator().manual_seed(0))
    ctx = RunContext("unused", device="cpu")
    runs = [train_arm(make_diffusion(config), x_train, "eps/simple", seed, config, ctx) for seed in (3, 3, 4)]
    (a, loss_a), (b, loss_b), (c, _) = runs
    assert loss_a == loss_b
    for pa, pb, pc in zip(a.parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_smoke_run_and_resume(run_smoke):
    from papers.core.runner import resume_run
    from papers.theory.ddpm import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    metrics = result.metrics
    arms = ("eps_simple", "x0_simple", "mu_vlb", "v_eps")
    assert all(math.isfinite(metrics[f"{m}_{a}"]) for m in ("sw", "mmd") for a in arms)
    assert metrics["sw_exact_eps_8gaussians"] < metrics["sw_eps_simple"]  # an untrained net is no oracle
    assert len(result.checks) == 4 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("eps_error", "sample_quality", "samples")]
    (run_dir / "stages" / "dataset_moons.json").unlink()  # as if killed during the last data set
    resumed, _ = resume_run(run_dir, progress=False)
    assert resumed.metrics["by_dataset"] == metrics["by_dataset"]
