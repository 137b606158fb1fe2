"""Inverse Reward Design: exact planning against brute force, the posterior against an analytic case."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from papers_testing import untimed

from papers.rl.inverse_reward_design import (
    DIRT,
    GRASS,
    LAVA,
    MOVES,
    TARGET,
    GridMap,
    best_count,
    feature_expectations,
    ird_log_likelihood,
    ird_posterior,
    lava_free_path_exists,
    plan,
    random_map,
    reachable_counts,
    risk_averse_values,
    training_map,
    trajectory_for,
)

TINY = GridMap(np.array([[GRASS, LAVA, TARGET], [DIRT, DIRT, DIRT]]), (1, 0))


def _rollout(grid: GridMap, actions) -> tuple[tuple[int, ...], list]:
    """Features of one action sequence, simulated directly (the target is absorbing)."""
    rows, cols = grid.shape
    r, c = grid.start
    counts, path = [0, 0, 0, 0], [(r, c)]
    for a in actions:
        if grid.cells[r, c] != TARGET:
            nr, nc = r + MOVES[a][0], c + MOVES[a][1]
            if 0 <= nr < rows and 0 <= nc < cols:
                r, c = nr, nc
            path.append((r, c))
        counts[grid.cells[r, c]] += 1
    return tuple(counts), path


def _brute_counts(grid: GridMap, horizon: int) -> set:
    return {_rollout(grid, acts)[0] for acts in itertools.product(range(4), repeat=horizon)}


@pytest.mark.parametrize("horizon", [1, 3, 6])
def test_reachable_counts_match_brute_force(horizon):
    reach = reachable_counts(TINY, horizon)
    found = {tuple(int(x) for x in row) for row in reach.counts}
    assert found == _brute_counts(TINY, horizon)
    assert (reach.counts.sum(1) == horizon).all()  # every trajectory has horizon steps


def test_reachable_counts_on_random_map_match_brute_force():
    grid = random_map(np.random.default_rng(3), 4, n_roads=2, n_lava=1, lava_size=1)
    reach = reachable_counts(grid, 5)
    assert {tuple(int(x) for x in row) for row in reach.counts} == _brute_counts(grid, 5)


def test_planning_on_tiny_map():
    reach = reachable_counts(TINY, 6)
    # lava is free: right onto dirt, up into lava, right into the target (better than via grass)
    i = plan(reach, np.array([-0.1, -0.5, 0.0, 1.0]))
    assert reach.counts[i].tolist() == [1, 0, 1, 4]
    path = trajectory_for(reach, i)
    assert path[0] == (1, 0) and path[-1] == (0, 2) and TINY.cells[path[2]] == LAVA
    # lava is terrible: along the dirt, then up into the target
    i = plan(reach, np.array([-0.1, -0.5, -10.0, 1.0]))
    assert reach.counts[i].tolist() == [2, 0, 0, 4]
    assert trajectory_for(reach, i) == [(1, 0), (1, 1), (1, 2), (0, 2)]
    # the target is worthless and dirt pleasant: stay on dirt, never enter the target
    i = plan(reach, np.array([1.0, 0.0, 0.0, -1.0]))
    assert reach.counts[i].tolist() == [6, 0, 0, 0]


def test_trajectories_realise_their_counts():
    grid = random_map(np.random.default_rng(0), 7, n_lava=2)
    reach = reachable_counts(grid, 14)
    rng = np.random.default_rng(1)
    for i in rng.choice(len(reach.counts), 25, replace=False):
        path = trajectory_for(reach, int(i))
        assert path[0] == grid.start
        for a, b in itertools.pairwise(path):  # each step is a move or a bump into the border
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) <= 1
        counts = [0, 0, 0, 0]
        for cell in path[1:]:
            counts[grid.cells[cell]] += 1
        if reach.counts[i, TARGET]:
            counts[TARGET] = 14 - (len(path) - 2)
        assert counts == reach.counts[i].tolist()


def test_plan_is_shift_and_scale_invariant():
    reach = reachable_counts(training_map(8), 18)
    w = np.array([-0.1, -0.5, 0.3, 1.0])
    base = reach.counts[plan(reach, w)]
    assert (reach.counts[plan(reach, 3.0 * w + 7.0)] == base).all()
    phi = feature_expectations(reach, np.stack([w, 2 * w - 1.0]))
    assert (phi == base).all()


def test_risk_averse_values():
    counts = np.array([[2.0, 0, 0, 3], [0, 1, 1, 3]])
    samples = np.array([[0.0, -1.0, -5.0, 1.0], [0.0, -1.0, 2.0, 1.0]])
    base = np.array([2.0, 0, 0, 3])
    np.testing.assert_allclose(risk_averse_values(counts, samples, base), [0.0, -6.0])
    # a constant shift of one sample changes nothing when φ and c have the same length
    shifted = samples + np.array([[5.0], [0.0]])
    np.testing.assert_allclose(risk_averse_values(counts, shifted, base), [0.0, -6.0])
    np.testing.assert_allclose(
        risk_averse_values(counts, shifted, base, "timestep"),
        risk_averse_values(counts, samples, base, "timestep"),
    )
    # per step: c̄ = (0.4, 0, 0, 0.6), w·c̄ = 0.6, cell rewards min_i(w_ik − 0.6) = (-0.6, -1.6, -5.6, 0.4)
    np.testing.assert_allclose(risk_averse_values(counts, samples, base, "timestep"), [0.0, -6.0], atol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        risk_averse_values(counts, samples, base, "average")


def test_posterior_matches_analytic_two_trajectory_case():
    """Two trajectories with features e1 and e2, the proxy picks e1: with the exact Z̃(w) the posterior is
    P(w) ∝ N(w; 0, I) · exp(β w1) / (q exp(β w1) + (1 − q) exp(β w2)), q = P(a proxy picks e1) = 1/2."""
    grid = GridMap(np.array([[DIRT, DIRT, TARGET]]), (0, 0))
    reach = reachable_counts(grid, 2)  # (dirt, target) = (1, 1) or (2, 0); (0, 0, 0, 2) is unreachable
    assert {tuple(r) for r in reach.counts.astype(int).tolist()} == {(1, 0, 0, 1), (2, 0, 0, 0)}
    beta = 2.0
    post = ird_posterior(
        reach,
        np.array([0.0, 0.0, 0.0, 1.0]),
        beta=beta,
        prior_std=1.0,
        n_proxy_samples=4000,
        n_prior_samples=40000,
        n_posterior=10,
        rng=np.random.default_rng(0),
        prior="gaussian",
    )
    # analytic: the likelihood depends on d = w_target − w_dirt only; a proxy picks the target path iff d > 0
    grid_d = np.linspace(-6, 6, 4001)
    prior_d = np.exp(-(grid_d**2) / 4)  # d ~ N(0, 2)
    like = np.exp(beta * grid_d / 2) / (0.5 * np.exp(beta * grid_d / 2) + 0.5 * np.exp(-beta * grid_d / 2))
    dens = prior_d * like
    mean_d = (grid_d * dens).sum() / dens.sum()
    got = post.weights @ (post.prior_samples[:, TARGET] - post.prior_samples[:, DIRT])
    assert mean_d > 0.5 and abs(got - mean_d) < 0.05
    # features the training map cannot show (grass, lava) keep their prior
    np.testing.assert_allclose(post.mean[[GRASS, LAVA]], 0.0, atol=0.03)
    np.testing.assert_allclose(post.std[[GRASS, LAVA]], 1.0, atol=0.03)


def test_log_likelihood_is_normalised_over_proxies():
    """Σ over the distinct behaviours of P(φ̃ | w) weighted by how often proxies produce them is 1."""
    phis = np.array([[1.0, 0, 0, 3], [0, 2, 0, 2], [1.0, 0, 0, 3], [0, 0, 4, 0]])
    w = np.array([[0.3, -1.0, 0.5, 2.0]])
    total = sum(math.exp(ird_log_likelihood(w, phi, phis, 1.5)[0]) for phi in phis) / len(phis)
    assert abs(total - 1.0) < 1e-12


def test_posterior_is_seeded_and_sphere_prior_has_unit_norm():
    reach = reachable_counts(training_map(6), 12)
    proxy = np.array([-0.1, -0.5, 0.0, 1.0])

    def make(seed):
        return ird_posterior(
            reach,
            proxy,
            beta=1.0,
            prior_std=1.0,
            n_proxy_samples=50,
            n_prior_samples=200,
            n_posterior=5,
            rng=np.random.default_rng(seed),
        )

    a, b = make(0), make(0)
    assert np.array_equal(a.samples, b.samples) and not np.array_equal(a.samples, make(1).samples)
    np.testing.assert_allclose(np.linalg.norm(a.prior_samples, axis=1), 1.0)
    assert 1.0 <= a.effective_sample_size <= 200


def test_random_maps_are_seeded_and_keep_a_lava_free_path():
    for seed in range(20):
        grid = random_map(np.random.default_rng(seed), 8, n_lava=3)
        assert lava_free_path_exists(grid) and (grid.cells == TARGET).sum() == 1
        assert grid.cells[grid.start] == DIRT
    a = random_map(np.random.default_rng(5), 8, n_lava=2)
    assert np.array_equal(a.cells, random_map(np.random.default_rng(5), 8, n_lava=2).cells)
    walled = GridMap(np.array([[DIRT, LAVA, TARGET]]), (0, 0))
    assert not lava_free_path_exists(walled)


def test_clear_errors_on_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        GridMap(np.zeros(3, dtype=int), (0, 0))
    with pytest.raises(ValueError, match="only DIRT"):
        GridMap(np.array([[0, 7]]), (0, 0))
    with pytest.raises(ValueError, match="outside"):
        GridMap(np.zeros((2, 2), dtype=int), (2, 0))
    with pytest.raises(ValueError, match="start cell cannot be the target"):
        GridMap(np.array([[TARGET, DIRT]]), (0, 0))
    with pytest.raises(ValueError, match="horizon"):
        reachable_counts(TINY, 0)
    reach = reachable_counts(TINY, 3)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        plan(reach, np.ones(3))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        feature_expectations(reach, np.ones((2, 5)))
    with pytest.raises(ValueError, match="values must have shape"):
        best_count(reach, np.ones(len(reach.counts) + 1))
    with pytest.raises(ValueError, match="prior"):
        ird_posterior(
            reach,
            np.ones(4),
            beta=1.0,
            prior_std=1.0,
            n_proxy_samples=5,
            n_prior_samples=5,
            n_posterior=2,
            rng=np.random.default_rng(0),
            prior="laplace",
        )
    with pytest.raises(ValueError, match="n_posterior"):
        ird_posterior(
            reach,
            np.ones(4),
            beta=1.0,
            prior_std=1.0,
            n_proxy_samples=5,
            n_prior_samples=5,
            n_posterior=0,
            rng=np.random.default_rng(0),
        )


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("size", 3),
        ("horizon", 5),
        ("n_maps", 0),
        ("beta", 0.0),
        ("prior", "laplace"),
        ("proxy", (1.0, 2.0)),
        ("n_lava", -1),
        ("beta_sweep", (1.0, -2.0)),
        ("prior_std", float("nan")),
    ],
)
def test_config_validation(key, value):
    from papers.rl.inverse_reward_design.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.rl.inverse_reward_design import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 8 and all(math.isfinite(c.measured) for c in result.checks)
    assert result.metrics["oracle_lava_rate"] <= result.metrics["proxy_lava_rate"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"posterior", "evaluate"}
    assert "figures/agents.png" in result.figures and "figures/posterior.png" in result.figures
