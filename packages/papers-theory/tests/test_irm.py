import math

import pytest
import torch

from papers.theory.irm import (
    ChainSEM,
    ColoredMLP,
    coefficient_errors,
    erm_linear,
    irm_linear,
    irm_penalty,
    logistic_loss,
    squared_error,
)

F64 = torch.float64


def _sem(setup: str = "FEU", seed: int = 0) -> ChainSEM:
    from papers.theory.irm.experiment import make_sem

    return make_sem(setup, 10, torch.Generator().manual_seed(seed))


def _population_moments(sem: ChainSEM, env: float) -> tuple[torch.Tensor, torch.Tensor]:
    """E[X Xᵀ] and E[X y] of the SEM in closed form, from its linear equations on unit Gaussians.

    Every variable is a linear map of the noise vector u = (h, n1, ny, n2) ~ N(0, I):
    Z1 = u A1, Y = u Ay, Z2 = u A2 with the matrices below, so E[X Xᵀ] = Aᵀ A.
    """
    q = sem.q
    y_scale, z2_scale = (env, 1.0) if sem.hetero else (1.0, env)
    eye, zero = torch.eye(q, dtype=F64), torch.zeros(q, q, dtype=F64)
    w_h1, w_hy, w_h2 = sem.w_h1.double(), sem.w_hy.double(), sem.w_h2.double()
    a_h = torch.cat([env * eye, zero, zero, zero])                     # h
    a_1 = a_h @ w_h1 + torch.cat([zero, env * eye, zero, zero])        # Z1
    a_y = a_1 + a_h @ w_hy + torch.cat([zero, zero, y_scale * eye, zero])
    a_2 = a_y + a_h @ w_h2 + torch.cat([zero, zero, zero, z2_scale * eye])
    a_x = torch.cat([a_1, a_2], 1) @ sem.scramble.double()
    a_target = a_y.sum(1, keepdim=True)
    return a_x.T @ a_x, (a_x.T @ a_target).flatten()


# ---------- the penalty ----------


def test_penalty_matches_the_closed_form_for_squared_loss():
    """‖∇_w mean((Φ w − y)²)|_{w=1}‖² = ‖(2/n) Φᵀ(Φ 1 − y)‖², for a vector and a scalar dummy w."""
    generator = torch.Generator().manual_seed(0)
    for k in (1, 4):
        features = torch.randn(50, k, dtype=F64, generator=generator)
        y = torch.randn(50, 1, dtype=F64, generator=generator)
        closed = (2 / 50 * features.T @ (features.sum(1, keepdim=True) - y)).pow(2).sum()
        assert torch.allclose(irm_penalty(features, y, squared_error), closed, rtol=1e-12)
        first, second = features[:25], features[25:]
        g1 = 2 / 25 * first.T @ (first.sum(1, keepdim=True) - y[:25])
        g2 = 2 / 25 * second.T @ (second.sum(1, keepdim=True) - y[25:])
        assert torch.allclose(irm_penalty(features, y, squared_error, unbiased=True), (g1 * g2).sum(),
                              rtol=1e-12)


def test_penalty_for_the_logistic_loss_matches_its_derivative():
    """d/dw BCE(w·f, y) at w = 1 is mean((σ(f) − y) f)."""
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(40, 1, dtype=F64, generator=generator)
    y = (torch.rand(40, 1, generator=generator) < 0.5).to(F64)
    derivative = ((torch.sigmoid(logits) - y) * logits).mean()
    assert torch.allclose(irm_penalty(logits, y, logistic_loss), derivative**2, rtol=1e-12)


def test_batched_penalties_are_independent_problems():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(3, 2, 30, 4, dtype=F64, generator=generator)
    y = torch.randn(3, 2, 30, 1, dtype=F64, generator=generator)
    batched = irm_penalty(features, y, squared_error)
    assert batched.shape == (3, 2)
    for i in range(3):
        for e in range(2):
            assert torch.allclose(batched[i, e], irm_penalty(features[i, e], y[i, e], squared_error))


def test_unbiased_estimate_has_the_mean_of_the_squared_population_gradient():
    """Averaged over many batches the two-half estimate approaches (E ∇)², the plain one exceeds it."""
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(20_000, 4, 1, dtype=F64, generator=generator)  # 20,000 batches of 4
    y = 0.9 * features + 0.1 * torch.randn(20_000, 4, 1, dtype=F64, generator=generator)
    # ∇_w R at w = 1 is 2 E[f (f − y)] = 0.2 in the population; a batch of 4 estimates it noisily
    population = 0.2**2
    unbiased = irm_penalty(features, y, squared_error, unbiased=True).mean().item()
    biased = irm_penalty(features, y, squared_error).mean().item()
    assert abs(unbiased - population) < 0.1 * population
    assert biased > 1.4 * population  # E[ĝ²] = (E ĝ)² + Var ĝ ≈ 0.04 + 0.03


# ---------- the SEM ----------


@pytest.mark.parametrize("setup", ["FOU", "FOS", "FEU", "FES"])
def test_penalty_vanishes_at_the_invariant_representation_in_the_population(setup):
    """Φ = Sᵀ diag(causal mask): the features x Φ are the causes Z1 and Φ 1 the causal coefficients; the
    population gradient 2 Φᵀ E[x (xᵀ Φ1 − y)] is zero in every environment. ERM's pooled solution is
    not invariant when the noise of Y changes with the environment."""
    sem = _sem(setup)
    truth = sem.solution().double()
    phi = sem.scramble.double().T @ torch.diag(sem.causal_mask().double())
    assert torch.allclose(phi.sum(1), truth, atol=1e-12)
    erm_moments = [_population_moments(sem, e) for e in (0.2, 2.0, 5.0)]
    beta_erm = torch.linalg.solve(sum(m[0] for m in erm_moments), sum(m[1] for m in erm_moments))
    for env in (0.2, 2.0, 5.0):
        xx, xy = erm_moments[[0.2, 2.0, 5.0].index(env)]
        grad_invariant = 2 * phi.T @ (xx @ truth - xy)
        assert grad_invariant.abs().max() < 1e-6 * xx.abs().max()  # S is orthogonal to float32 precision
        grad_erm = 2 * (xx @ beta_erm - xy)  # the gradient for Φ = I
        if sem.hetero:
            assert grad_erm.abs().max() > 1e-2


def test_a_hidden_confounder_breaks_the_invariance_of_the_causal_coefficients():
    """Partially observed: H drives Z1 and Y, so E[Z1 (Y − Z1 1)] = e² W_{h→1}ᵀ W_{h→y} 1 ≠ 0."""
    sem = _sem("POU")
    phi = torch.diag(sem.causal_mask().double())
    for env in (0.2, 2.0):
        xx, xy = _population_moments(sem, env)
        gradient = 2 * phi.T @ (xx @ sem.solution().double() - xy)
        expected = -2 * env**2 * (sem.w_h1.double().T @ sem.w_hy.double()).sum(1)
        assert torch.allclose(gradient[:5], expected, atol=1e-12) and gradient.abs().max() > 1e-4


def test_sem_samples_match_the_specified_moments():
    sem = _sem("PEU", seed=4)
    generator = torch.Generator().manual_seed(5)
    for env in (0.2, 5.0):
        x, y = sem.sample(200_000, env, generator)
        xx, xy = _population_moments(sem, env)
        scale = xx.abs().max()
        assert ((x.T.double() @ x.double() / len(x)) - xx).abs().max() < 0.02 * scale
        assert ((x.T.double() @ y.double()).flatten() / len(x) - xy).abs().max() < 0.02 * scale


def test_fully_observed_sem_structure():
    sem = _sem("FEU")
    x, y = sem.sample(100_000, 2.0, torch.Generator().manual_seed(6))
    z1, z2 = x[:, :5], x[:, 5:]
    residual = y.squeeze(1) - z1.sum(1)  # Σ noise of Y, std 2 per coordinate (heteroskedastic)
    assert abs(residual.var().item() - 5 * 4.0) < 0.5
    assert abs(torch.corrcoef(torch.stack([z1[:, 0], residual]))[0, 1].item()) < 0.02  # Z1 is a cause
    assert torch.corrcoef(torch.stack([z2[:, 0], residual]))[0, 1].item() > 0.2     # Z2 is an effect
    assert torch.equal(sem.solution(), torch.tensor([1.0] * 5 + [0.0] * 5))
    errors = coefficient_errors(sem.solution(), torch.tensor([1.0] * 5 + [0.5] * 5))
    assert errors == (0.0, 0.25)


def test_scrambled_sem_is_an_orthogonal_mix():
    sem = _sem("FES")
    assert torch.allclose(sem.scramble @ sem.scramble.T, torch.eye(10), atol=1e-5)
    x, y = sem.sample(20_000, 2.0, torch.Generator().manual_seed(7))
    residual = y - x @ sem.solution()[:, None]
    # the unscrambled causes are uncorrelated with the residual of the causal predictor
    z = x @ sem.scramble.T
    assert ((z[:, :5] * residual).mean(0)).abs().max() < 0.15


def test_linear_irm_recovers_the_causal_coefficients_where_erm_does_not():
    """Heteroskedastic fully observed SEM: ERM puts weight on the effect Z2; IRM (reg 0.1) much less."""
    sem = _sem("FEU", seed=8)
    generator = torch.Generator().manual_seed(9)
    train = [sem.sample(1000, e, generator) for e in (0.2, 2.0)]
    erm = erm_linear(train)
    x = torch.stack([t[0] for t in train])[None]
    y = torch.stack([t[1] for t in train])[None]
    irm = irm_linear(x, y, torch.tensor([0.1]), steps=300, lr=1e-2)[0]
    erm_errors, irm_errors = coefficient_errors(sem.solution(), erm), coefficient_errors(sem.solution(), irm)
    assert erm_errors[1] > 0.3 and irm_errors[1] < 0.2 * erm_errors[1]


# ---------- bad input and determinism ----------


def test_clear_errors_on_bad_input():
    with pytest.raises(ValueError, match=r"features \[..., n, k\]"):
        irm_penalty(torch.randn(5), torch.randn(5, 1), squared_error)
    with pytest.raises(ValueError, match=r"y \[..., n, 1\]"):
        irm_penalty(torch.randn(5, 2), torch.randn(4, 1), squared_error)
    with pytest.raises(ValueError, match="at least two samples"):
        irm_penalty(torch.randn(1, 1), torch.randn(1, 1), squared_error, unbiased=True)
    with pytest.raises(ValueError, match="even number"):
        ChainSEM(5, generator=torch.Generator())
    with pytest.raises(ValueError, match="env > 0"):
        _sem().sample(10, 0.0, torch.Generator())
    with pytest.raises(ValueError, match="every reg must lie in"):
        irm_linear(torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 1), torch.tensor([1.5]), steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"x \[K, E, n, d\]"):
        irm_linear(torch.randn(2, 5, 4), torch.randn(2, 5, 1), torch.tensor([0.1]), steps=1, lr=0.1)
    with pytest.raises(ValueError, match="two colour channels"):
        ColoredMLP(4, 8)(torch.randn(3, 4))


@pytest.mark.parametrize(("key", "value"), [("dim", 7), ("regs", (2.0,)), ("setups", ("XYZ",)),
                                            ("train_color_flips", (0.1,)), ("test_color_flip", 1.5),
                                            ("anneal_steps", 1000), ("lr", 0.0), ("threads", -1)])
def test_config_validation(key, value):
    from papers.theory.irm.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_coloured_digits_have_the_specified_correlations():
    from papers.theory.irm.experiment import Config, colored_digits

    config = Config()
    prototypes = torch.randn(10, config.channel_dim, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    n = 40_000
    for flip in (0.1, 0.2, 0.9):
        env = colored_digits(n, flip, prototypes, config, generator)
        label, color = env["y"].squeeze(1), env["color"]
        assert abs((label != color).float().mean().item() - flip) < 0.01
        in_channel_one = env["x"][:, config.channel_dim:].abs().sum(1) > 0
        assert torch.equal(in_channel_one, color == 1)
        assert (env["x"][:, : config.channel_dim].abs().sum(1) > 0).logical_xor(in_channel_one).all()
    shape = env["x"][:, : config.channel_dim] + env["x"][:, config.channel_dim:]
    digit = ((shape[:, None, :] - prototypes[None]).norm(dim=2)).argmin(1)
    agree = ((digit < 5).float() == label).float().mean().item()
    assert abs(agree - 0.75) < 0.02  # label noise 0.25: the shape predicts the label 75% of the time


def test_smoke_run_is_deterministic(run_smoke):
    from papers.theory.irm import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert result.metrics == again.metrics
    assert len(result.checks) == 2 * 2 + 3 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/coloured_digits.png", "figures/linear_sem.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"linear_sem", "coloured_digits"}
    assert 0 <= result.metrics["irm_test_accuracy"] <= 1
