"""Latent ODE: the ODE-RNN encoder, the latent ODE decoder, the ELBO's parts, the spirals and the baseline."""

from __future__ import annotations

import math

import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.theory.latent_ode import (
    EXPERIMENT,
    DeltaTGRU,
    LatentODE,
    ODERNNEncoder,
    gaussian_kl,
    gaussian_log_likelihood,
    observation_mask,
    observed_sequences,
    sample_posterior,
    spirals,
)

F64 = torch.float64
SPIRALS = dict(n_grid=60, t_end=6.0, pitch=0.1, phi_min=math.pi)


def _zero_dynamics(encoder: ODERNNEncoder) -> None:
    last = encoder.dynamics.net[-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def _batch(b=3, t=9, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(t, generator=generator, dtype=dtype) * 3).values
    values = torch.randn(b, t, 2, generator=generator, dtype=dtype)
    mask = torch.rand(b, t, generator=generator) < 0.6
    mask[:, -1] = True
    return times, values, mask


# ---------- the ODE-RNN encoder ----------


def test_odernn_with_zero_dynamics_is_a_gru_on_the_observations_backwards():
    torch.manual_seed(0)
    encoder = ODERNNEncoder(obs_dim=2, latent_dim=3, hidden=6, ode_hidden=5)
    _zero_dynamics(encoder)
    times, values, mask = _batch()
    mean, logvar = encoder(times, values, mask)
    for row in range(len(values)):
        h = torch.zeros(1, 6)
        for x in values[row][mask[row]].flip(0):  # the observations, last first
            h = encoder.gru(x[None], h)
        want_mean, want_logvar = encoder.to_posterior(h).chunk(2, dim=-1)
        assert torch.allclose(mean[row], want_mean[0], atol=1e-6)
        assert torch.allclose(logvar[row], want_logvar[0], atol=1e-6)


def test_odernn_hidden_state_follows_its_ode_between_observations():
    """One observation at the end: h(t_0) is the ODE solution from GRU(x_N, 0) back to t_0."""
    torch.manual_seed(0)
    encoder = ODERNNEncoder(latent_dim=2, hidden=4, ode_hidden=8, method="dopri5", rtol=1e-10, atol=1e-10)
    encoder = encoder.double()
    times = torch.tensor([0.0, 0.4, 1.0, 1.5], dtype=F64)
    values = torch.randn(2, 4, 2, dtype=F64)
    mask = torch.tensor([[False, False, False, True]] * 2)
    mean, _ = encoder(times, values, mask)
    from papers.theory.neural_ode import odeint

    h_end = encoder.gru(values[:, -1], torch.zeros(2, 4, dtype=F64))
    h0 = odeint(encoder.dynamics, h_end, torch.tensor([1.5, 0.0], dtype=F64), rtol=1e-10, atol=1e-10)[-1]
    assert torch.allclose(mean, encoder.to_posterior(h0)[:, :2], atol=1e-8)
    assert not torch.allclose(h0, h_end, atol=1e-3)  # the dynamics did something


def test_encoder_never_reads_unobserved_values():
    torch.manual_seed(0)
    encoder = ODERNNEncoder(hidden=6, ode_hidden=5)
    times, values, mask = _batch()
    garbage = values.masked_fill(~mask[..., None], float("nan"))
    mean, logvar = encoder(times, values, mask)
    mean2, logvar2 = encoder(times, garbage, mask)
    assert torch.equal(mean, mean2) and torch.equal(logvar, logvar2)
    changed = values.clone()
    changed[0, mask[0].nonzero()[0, 0]] += 1.0  # an observed value does matter
    assert not torch.allclose(encoder(times, changed, mask)[0][0], mean[0])


def test_encoder_is_invariant_to_inserted_unobserved_times_and_batches_on_a_union_grid():
    """Sequences with different times, encoded alone or together on the union grid with masks, agree."""
    torch.manual_seed(0)
    encoder = ODERNNEncoder(latent_dim=3, hidden=6, ode_hidden=8, method="dopri5", rtol=1e-10, atol=1e-10)
    encoder = encoder.double()
    generator = torch.Generator().manual_seed(1)
    grid = torch.linspace(0.0, 2.0, 11, dtype=F64)
    mask = torch.rand(3, 11, generator=generator) < 0.5
    mask[:, 0] = True  # every sequence starts at t_0 = 0 so that all are carried to the same t_0
    values = torch.randn(3, 11, 2, generator=generator, dtype=F64)
    together, _ = encoder(grid, values, mask)
    for row in range(3):
        alone, _ = encoder(grid[mask[row]], values[row, mask[row]][None])
        assert torch.allclose(together[row], alone[0], atol=1e-8)


def test_encoder_bad_input_gives_clear_errors():
    encoder = ODERNNEncoder(hidden=4, ode_hidden=4)
    times, values, mask = _batch()
    with pytest.raises(ValueError, match="strictly increasing"):
        encoder(times.flip(0), values, mask)
    with pytest.raises(ValueError, match="strictly increasing"):
        encoder(torch.tensor([0.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]), values, mask)
    with pytest.raises(ValueError, match=r"values must have shape \[batch, time, 2\]"):
        encoder(times, values[..., :1], mask)
    with pytest.raises(ValueError, match="time entries"):
        encoder(times[:-1], values, mask)
    with pytest.raises(ValueError, match="mask must have shape"):
        encoder(times, values, mask[:, :-1])
    with pytest.raises(ValueError, match="t0"):
        encoder(times, values, mask, t0=float(times[0]) + 0.1)


# ---------- the latent ODE decoder ----------


def test_latent_trajectory_matches_the_exact_solution_of_a_linear_field():
    model = LatentODE(latent_dim=2, rtol=1e-10, atol=1e-12).double()
    A = torch.tensor([[-0.1, 1.0], [-1.0, -0.1]], dtype=F64)

    class Linear(nn.Module):
        def forward(self, t, z):
            return z @ A.T

    model.dynamics.func = Linear()
    z0 = torch.tensor([[1.0, 0.0], [0.3, -2.0]], dtype=F64)
    times = torch.tensor([0.5, 1.2, 3.0], dtype=F64)  # not starting at t0 = 0
    zs = model.latent_trajectory(z0, times, t0=0.0)
    exact = torch.stack([z0 @ torch.linalg.matrix_exp(A * s).T for s in times], dim=1)
    assert zs.shape == (2, 3, 2)
    assert torch.allclose(zs, exact, atol=1e-8)


def test_decoder_at_arbitrary_times_has_the_right_shapes_and_agrees_across_grids():
    torch.manual_seed(0)
    model = LatentODE(latent_dim=4, rtol=1e-9, atol=1e-10).double()
    z0 = torch.randn(5, 4, dtype=F64)
    coarse = model.decode(z0, torch.tensor([0.3, 1.7, 4.0], dtype=F64))
    fine = model.decode(z0, torch.tensor([0.0, 0.3, 1.0, 1.7, 2.5, 4.0], dtype=F64))
    assert coarse.shape == (5, 3, 2) and fine.shape == (5, 6, 2)
    assert torch.allclose(coarse, fine[:, [1, 3, 5]], atol=1e-7)
    one = model.decode(z0[:1], torch.tensor([2.0], dtype=F64))
    assert one.shape == (1, 1, 2)


def test_decoder_bad_input_gives_clear_errors():
    model = LatentODE()
    z0 = torch.randn(3, 4)
    with pytest.raises(ValueError, match="strictly increasing"):
        model.decode(z0, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="start at or after t0"):
        model.decode(z0, torch.tensor([-1.0, 2.0]))
    with pytest.raises(ValueError, match=r"z0 must have shape \[batch, 4\]"):
        model.decode(torch.randn(3, 5), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="finite"):
        model.decode(z0, torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match="obs_std"):
        LatentODE(obs_std=0.0)


# ---------- the ELBO ----------


def test_closed_form_kl_matches_torch_and_the_reparametrised_monte_carlo_estimate():
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 4, generator=generator, dtype=F64)
    logvar = torch.randn(3, 4, generator=generator, dtype=F64)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    closed = gaussian_kl(mean, logvar)
    assert torch.allclose(closed, torch.distributions.kl_divergence(q, p).sum(-1), atol=1e-12)
    # E_q[log q(z) − log p(z)] with z = μ + σ ε
    z = sample_posterior(mean.expand(200_000, 3, 4), logvar.expand(200_000, 3, 4), generator)
    samples = (q.log_prob(z) - p.log_prob(z)).sum(-1)
    standard_error = samples.std(dim=0) / math.sqrt(len(samples))
    assert ((samples.mean(dim=0) - closed).abs() < 4 * standard_error).all()
    assert (closed > 0).all() and gaussian_kl(torch.zeros(4), torch.zeros(4)) == 0


def test_reparametrised_sample_is_differentiable_and_seeded():
    mean = torch.zeros(2, 3, requires_grad=True)
    logvar = torch.zeros(2, 3, requires_grad=True)
    z = sample_posterior(mean, logvar, torch.Generator().manual_seed(5))
    z.sum().backward()
    assert torch.equal(mean.grad, torch.ones(2, 3))
    noise = torch.randn(2, 3, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(logvar.grad, 0.5 * noise)
    assert torch.equal(z, sample_posterior(mean, logvar, torch.Generator().manual_seed(5)))


def test_gaussian_log_likelihood_sums_over_observed_points():
    generator = torch.Generator().manual_seed(0)
    x, mean = torch.randn(2, 5, 2, generator=generator), torch.randn(2, 5, 2, generator=generator)
    mask = torch.tensor([[True, False, True, True, False], [False] * 4 + [True]])
    got = gaussian_log_likelihood(x, mean, 0.3, mask)
    want = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    assert torch.allclose(got, (want * mask).sum(-1), atol=1e-5)


def test_elbo_parts_determinism_and_adjoint_gradients():
    torch.manual_seed(0)
    model = LatentODE(latent_dim=3, encoder_hidden=6, encoder_ode_hidden=6, dynamics_hidden=8,
                      decoder_hidden=8, rtol=1e-6, atol=1e-8).double()
    times, values, mask = _batch(dtype=F64)
    parts = model.elbo(times, values, mask, torch.Generator().manual_seed(3))
    again = model.elbo(times, values, mask, torch.Generator().manual_seed(3))
    assert torch.equal(parts["elbo"], again["elbo"])
    assert torch.allclose(parts["elbo"], parts["log_likelihood"] - parts["kl"])
    grads = []
    for adjoint in (False, True):
        model.adjoint = adjoint
        model.zero_grad()
        (-model.elbo(times, values, mask, torch.Generator().manual_seed(3))["elbo"].sum()).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert ((grads[0] - grads[1]).norm() / grads[0].norm()).item() < 1e-4


# ---------- spirals ----------


def test_spirals_turn_the_chosen_way_with_monotone_radius():
    data = spirals(40, noise=0.1, generator=torch.Generator().manual_seed(0), **SPIRALS)
    clean, direction = data["clean"], data["direction"]
    assert clean.shape == data["noisy"].shape == (40, 60, 2) and data["times"].shape == (60,)
    assert (direction == 1).sum() == (direction == -1).sum() == 20
    radius = clean.norm(dim=-1)
    growth = radius.diff(dim=1) * direction[:, None]
    assert (growth > 0).all()  # counter-clockwise: outwards; clockwise: inwards
    turn = clean[:, :-1, 0] * clean[:, 1:, 1] - clean[:, :-1, 1] * clean[:, 1:, 0]
    assert (turn * direction[:, None] > 0).all()  # sign of the cross product = sense of rotation
    phi_max = SPIRALS["phi_min"] + 2 * SPIRALS["t_end"]
    assert radius.min() >= 0.1 * SPIRALS["phi_min"] - 1e-5 and radius.max() <= 0.1 * phi_max + 1e-5
    starts = clean[:, 0]
    assert torch.cdist(starts, starts).add(torch.eye(40)).min() > 1e-4  # every spiral starts elsewhere
    assert abs((data["noisy"] - clean).std().item() - 0.1) < 0.01


def test_spirals_are_seeded():
    a = spirals(10, noise=0.1, generator=torch.Generator().manual_seed(4), **SPIRALS)
    b = spirals(10, noise=0.1, generator=torch.Generator().manual_seed(4), **SPIRALS)
    c = spirals(10, noise=0.1, generator=torch.Generator().manual_seed(5), **SPIRALS)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["noisy"], c["noisy"])
    with pytest.raises(ValueError, match="noise"):
        spirals(10, noise=-1.0, generator=torch.Generator(), **SPIRALS)


def test_observation_mask_and_sequences():
    mask = observation_mask(50, 20, 7, torch.Generator().manual_seed(0))
    assert mask.shape == (50, 20) and (mask.sum(1) == 7).all()
    assert len({tuple(row.tolist()) for row in mask}) > 40
    times = torch.linspace(0, 1, 20)
    values = torch.randn(50, 20, 2)
    obs_times, obs_values = observed_sequences(times, values, mask)
    assert obs_times.shape == (50, 7) and obs_values.shape == (50, 7, 2)
    assert (obs_times.diff(dim=1) > 0).all()
    assert torch.equal(obs_values[3], values[3][mask[3]])
    with pytest.raises(ValueError, match="n_obs"):
        observation_mask(5, 4, 5, torch.Generator())
    mask[0, ~mask[0]] = True
    with pytest.raises(ValueError, match="same number of observations"):
        observed_sequences(times, values, mask)


# ---------- the GRU-with-Δt baseline ----------


def test_delta_t_gru_interpolation_extrapolation_and_teacher_forcing_agree():
    torch.manual_seed(0)
    rnn = DeltaTGRU(hidden=7)
    times = torch.tensor([[0.0, 0.3, 0.5, 1.1], [0.1, 0.2, 0.9, 1.0]])
    values = torch.randn(2, 4, 2)
    teacher = rnn.next_observation_predictions(times, values)
    assert teacher.shape == (2, 3, 2)
    # a query at an observation time t_{j+1} is predicted from S_j with the gap t_{j+1} - t_j
    assert torch.allclose(rnn.interpolate(times, values, times[:, 1:]), teacher, atol=1e-6)
    inside = rnn.interpolate(times, values, torch.tensor([[0.05, 0.7], [0.0, 0.95]]))
    assert inside.shape == (2, 2, 2)
    assert inside[0, 0].isfinite().all() and inside[1, 0].isnan().all()  # nothing observed before t=0.0
    future = torch.tensor([1.3, 1.6, 2.0])
    rollout = rnn.extrapolate(times, values, future)
    assert rollout.shape == (2, 3, 2)
    first = rnn.interpolate(times, values, future[:1].expand(2, 1))
    assert torch.allclose(rollout[:, :1], first, atol=1e-6)
    with pytest.raises(ValueError, match="after the last observation"):
        rnn.extrapolate(times, values, torch.tensor([1.05, 2.0]))
    with pytest.raises(ValueError, match="strictly increasing"):
        rnn.states(times.flip(1), values)
    with pytest.raises(ValueError, match="query_times must have shape"):
        rnn.interpolate(times, values, torch.tensor([0.5]))


# ---------- the experiment ----------


@pytest.mark.parametrize(("key", "value"), [("steps", 0), ("window", 100), ("n_obs", 50), ("noise", 0.0),
                                            ("encoder_method", "rk45"), ("threads", -1), ("lr", 0.0)])
def test_config_validation(key, value):
    from papers.theory.latent_ode.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    for name in ("latent_ode_interp_rmse", "latent_ode_extrap_rmse", "rnn_interp_rmse", "rnn_extrap_rmse"):
        assert math.isfinite(metrics[name]) and metrics[name] > 0
    assert len(result.checks) == 2
    assert sorted(result.figures) == [f"figures/{n}.png" for n in ("examples", "rmse_by_time", "training")]
    stages = {p.stem for p in (run_dir / "stages").glob("*.json")}
    assert stages == {"train_latent_ode", "train_rnn", "evaluate"}
