import itertools
import math

import pytest
import torch

from papers.theory.deep_sets import (
    ConcatMLP,
    DeepSets,
    EquivariantNet,
    PermEquivariant,
    SetGRU,
    elementary_symmetric,
    pool,
    power_sums,
    set_from_power_sums,
)

F64 = torch.float64


def _permute(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    order = torch.randperm(x.shape[1], generator=generator)
    return x[:, order], order


# ---------- invariance and equivariance ----------


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_deepsets_is_permutation_invariant(pooling):
    torch.manual_seed(0)
    model = DeepSets(3, 2, latent_dim=8, phi_hidden=(16,), rho_hidden=(16,), pooling=pooling).double()
    x = torch.randn(6, 7, 3, dtype=F64)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        permuted, _ = _permute(x, generator)
        assert (model(permuted) - model(x)).abs().max() < 1e-12
    assert model(x).shape == (6, 2)


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_equivariant_layer_commutes_with_permutations(pooling):
    torch.manual_seed(0)
    layer = PermEquivariant(3, 5, pooling).double()
    net = EquivariantNet(3, (8, 8), pooling).double()
    x = torch.randn(4, 6, 3, dtype=F64)
    generator = torch.Generator().manual_seed(2)
    for _ in range(5):
        permuted, order = _permute(x, generator)
        assert (layer(permuted) - layer(x)[:, order]).abs().max() < 1e-12
        assert (net(permuted) - net(x)[:, order]).abs().max() < 1e-12


def test_one_channel_sum_layer_is_lambda_identity_plus_gamma_ones():
    layer = PermEquivariant(1, 1, "sum").double()
    lam, gamma = 0.7, -0.3
    with torch.no_grad():
        layer.lam.weight.fill_(lam)
        layer.lam.bias.zero_()
        layer.gamma.weight.fill_(gamma)
    x = torch.randn(2, 5, dtype=F64)
    theta = lam * torch.eye(5, dtype=F64) + gamma * torch.ones(5, 5, dtype=F64)
    assert torch.allclose(layer(x.unsqueeze(-1)).squeeze(-1), x @ theta.T, atol=1e-14)


def test_gru_and_concatenation_mlp_are_not_invariant():
    torch.manual_seed(0)
    x = torch.randn(8, 5, 3)
    permuted = x.flip(1)
    for model in (SetGRU(3, hidden=8), ConcatMLP(3, max_size=5, hidden=(16,))):
        assert (model(permuted) - model(x)).abs().max() > 1e-4


# ---------- masking ----------


@pytest.mark.parametrize("pooling", ["sum", "mean", "max"])
def test_padding_with_mask_gives_the_unpadded_output(pooling):
    torch.manual_seed(0)
    deepsets = DeepSets(3, latent_dim=8, phi_hidden=(16,), pooling=pooling).double()
    net = EquivariantNet(3, (8,), pooling).double()
    x = torch.randn(1, 4, 3, dtype=F64)
    padded = torch.cat([x, 100 * torch.randn(1, 3, 3, dtype=F64)], dim=1)  # garbage in the padding
    mask = torch.tensor([[True] * 4 + [False] * 3])
    assert torch.allclose(deepsets(padded, mask), deepsets(x), atol=1e-13)
    scores = net(padded, mask)
    assert torch.allclose(scores[:, :4], net(x), atol=1e-13)
    assert torch.isinf(scores[:, 4:]).all() and (scores[:, 4:] < 0).all()
    gru = SetGRU(3, hidden=8).double()
    assert torch.allclose(gru(torch.cat([x, torch.zeros(1, 3, 3, dtype=F64)], 1), mask), gru(x), atol=1e-13)


def test_pool_respects_the_mask():
    x = torch.tensor([[[1.0], [5.0], [-9.0]]])
    mask = torch.tensor([[True, True, False]])
    assert pool(x, mask, "sum").item() == 6.0
    assert pool(x, mask, "mean").item() == 3.0
    assert pool(x, mask, "max").item() == 5.0


# ---------- the constructive decomposition: power sums and Newton's identities ----------


def test_newton_identities_give_the_elementary_symmetric_polynomials():
    x = torch.randn(5, 6, dtype=F64)
    e = elementary_symmetric(power_sums(x, 6))
    for k in range(1, 7):
        brute = torch.tensor([sum(math.prod(row[i] for i in c) for c in itertools.combinations(range(6), k))
                              for row in x.tolist()], dtype=F64)
        assert torch.allclose(e[:, k - 1], brute, atol=1e-9, rtol=1e-9)


def test_power_sum_decomposition_represents_a_symmetric_polynomial_exactly():
    """f(X) = Σ_{i<j} x_i x_j + Π_i x_i + Σ x_i³ through ρ(Σ φ(x)), φ(x) = (x, …, x^M), M = 4."""
    x = torch.randn(7, 4, dtype=F64)
    p = power_sums(x, 4)
    e = elementary_symmetric(p)
    rho = e[:, 1] + e[:, 3] + p[:, 2]
    direct = torch.tensor([sum(a * b for a, b in itertools.combinations(row, 2)) + math.prod(row)
                           + sum(v**3 for v in row) for row in x.tolist()], dtype=F64)
    assert torch.allclose(rho, direct, atol=1e-10)


def test_n_equals_m_latent_determines_the_set_so_median_and_max_are_recovered():
    """Wagstaff et al.: M power sums are injective on sets of M reals; decoding gives median and max."""
    x = torch.rand(6, 5, dtype=F64)
    recovered = set_from_power_sums(power_sums(x, 5))
    assert torch.allclose(recovered, x.sort(1).values, atol=1e-7)
    assert torch.allclose(recovered[:, 2], x.median(1).values, atol=1e-7)
    permuted = x[:, torch.randperm(5)]
    assert torch.allclose(power_sums(permuted, 5), power_sums(x, 5), atol=1e-12)


def test_fewer_power_sums_than_elements_cannot_tell_sets_apart():
    """Two sets of M = 3 with equal p_1 and p_2 (N = 2 < M) but different medians."""
    a = torch.tensor([[0.0, 3.0, 3.0]], dtype=F64)  # p1 = 6, p2 = 18, median 3
    b = torch.tensor([[1.0, 1.0, 4.0]], dtype=F64)  # p1 = 6, p2 = 18, median 1
    assert torch.equal(power_sums(a, 2), power_sums(b, 2))
    assert not torch.equal(power_sums(a, 3), power_sums(b, 3))


# ---------- bad input ----------


def test_clear_errors_on_bad_input():
    model = DeepSets(3, latent_dim=4)
    with pytest.raises(ValueError, match=r"\[batch, set size, features\]"):
        model(torch.randn(5, 3))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(torch.randn(2, 4, 3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="mask must be a bool tensor of shape"):
        model(torch.randn(2, 4, 3), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        DeepSets(3, pooling="median")
    with pytest.raises(ValueError, match="unknown pooling"):
        PermEquivariant(3, 3, "min")
    with pytest.raises(ValueError, match="at most 5 elements"):
        ConcatMLP(3, max_size=5)(torch.randn(2, 6, 3))
    with pytest.raises(ValueError, match="sets of scalars"):
        power_sums(torch.randn(2, 3, 1), 3)


@pytest.mark.parametrize(("key", "value"), [("sum_steps", 0), ("test_sizes", (5, 10)),
                                            ("outlier_set_size", 2), ("outlier_pools", ("min",)),
                                            ("median_latent_dims", (4, 2)), ("median_lr", 0.0),
                                            ("threads", -1), ("digit_noise", -0.1)])
def test_config_validation(key, value):
    from papers.theory.deep_sets.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


# ---------- data and the experiment ----------


def test_generated_sets_are_seeded_and_well_formed():
    from papers.theory.deep_sets.experiment import digit_sets, odd_one_out_sets

    prototypes = torch.randn(10, 4, generator=torch.Generator().manual_seed(0))
    x, mask, digits = digit_sets(200, 2, 10, prototypes, 0.1, torch.Generator().manual_seed(1))
    x2, _, _ = digit_sets(200, 2, 10, prototypes, 0.1, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and x.shape == (200, 10, 4)
    sizes = mask.sum(1)
    assert sizes.min() >= 2 and sizes.max() == 10
    assert (digits[~mask] == -1).all() and (x[~mask] == 0).all() and digits[mask].max() <= 9
    x, where = odd_one_out_sets(100, 6, prototypes, 0.0, torch.Generator().manual_seed(2))
    for b in range(100):
        distances = (x[b] - x[b].median(0).values).norm(dim=1)  # noise-free: the odd one is far from the rest
        assert distances.argmax() == where[b] and (distances > 1e-6).sum() == 1


def test_smoke_run_is_deterministic(run_smoke):
    from papers.theory.deep_sets import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert result.metrics == again.metrics
    assert result.metrics["deepsets_permutation_error"] < 1e-10 < result.metrics["mlp_permutation_error"]
    assert result.metrics["odd_one_out_equivariance_error_max"] < 1e-5
    assert len(result.checks) == 6 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/median_latent_sweep.png",
                                      "figures/set_size_generalisation.png"]
    assert {p.stem for p in (run_dir / "stages").glob("*.json")} == {"sum_of_digits", "odd_one_out",
                                                                      "median_sweep"}
