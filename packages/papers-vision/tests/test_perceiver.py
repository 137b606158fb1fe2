"""Perceiver: Fourier features, permutation invariance, attention sums, masking, cost, the experiment."""

from __future__ import annotations

import math

import pytest
import torch

from papers.vision.perceiver import (
    Attention,
    ConvNet,
    FullSelfAttention,
    LatentCrossAttention,
    MLPClassifier,
    Perceiver,
    attention_flops,
    fourier_features,
    fourier_frequencies,
    grid_positions,
    image_inputs,
    inputs_to_grid,
    n_params,
)

F64 = torch.float64


def _perceiver(input_dim=19, **kw):
    torch.manual_seed(0)
    options = {"num_latents": 6, "latent_dim": 16, "repeats": 3, "self_per_cross": 2, "self_heads": 4}
    return Perceiver(input_dim, 10, **(options | kw)).double().eval()


def _inputs(batch=3, side=5, bands=4, seed=1):
    images = torch.rand(batch, 1, side, side, generator=torch.Generator().manual_seed(seed), dtype=F64)
    return image_inputs(images, num_bands=bands)


def test_fourier_frequencies_and_features_at_known_points():
    assert torch.equal(fourier_frequencies(4, 8), torch.tensor([1.0, 2.0, 3.0, 4.0]))  # up to Nyquist 8/2
    assert torch.equal(fourier_frequencies(1, 8), torch.tensor([1.0]))
    assert torch.allclose(fourier_frequencies(3, 10), torch.tensor([1.0, 3.0, 5.0]))
    positions = torch.tensor([[0.0, 0.0], [1.0, -1.0], [0.5, 0.25]], dtype=F64)
    ff = fourier_features(positions, num_bands=4, max_resolution=8)
    assert ff.shape == (3, 2 * (2 * 4 + 1))
    assert torch.equal(ff[:, :2], positions)  # the raw position comes first
    sin, cos = ff[:, 2:10], ff[:, 10:]
    assert torch.equal(sin[0], torch.zeros(8, dtype=F64)) and torch.equal(cos[0], torch.ones(8, dtype=F64))
    k = torch.arange(1, 5, dtype=F64)
    torch.testing.assert_close(sin[1], torch.zeros(8, dtype=F64), rtol=0, atol=1e-14)  # sin(k π) = 0
    torch.testing.assert_close(cos[1], torch.cat([(-1.0) ** k, (-1.0) ** k]), rtol=0, atol=1e-14)
    # order: dimension j, then band k: sin(f_k π p_j) at index j·K + k
    torch.testing.assert_close(sin[2, :4], torch.sin(k * math.pi * 0.5), rtol=0, atol=1e-14)
    torch.testing.assert_close(sin[2, 4:], torch.sin(k * math.pi * 0.25), rtol=0, atol=1e-14)
    assert sin[2, 0] == 1.0  # sin(π/2)
    batched = fourier_features(positions.expand(5, 3, 2), 4, 8)
    assert batched.shape == (5, 3, 18) and torch.equal(batched[4], ff)


def test_grid_positions_and_image_inputs():
    grid = grid_positions(3, 4, dtype=F64)
    assert grid.shape == (12, 2)
    assert grid[0].tolist() == [-1.0, -1.0] and grid[-1].tolist() == [1.0, 1.0]
    assert grid[1].tolist() == pytest.approx([-1.0, -1.0 / 3]) and grid[4].tolist() == [
        0.0,
        -1.0,
    ]  # row-major
    assert grid_positions(1, 2).tolist() == [[0.0, -1.0], [0.0, 1.0]]
    images = torch.rand(2, 1, 3, 4, dtype=F64)
    x = image_inputs(images, num_bands=3)
    assert x.shape == (2, 12, 1 + 2 * 7)
    assert torch.equal(x[:, :, 0], images.flatten(1))
    assert torch.equal(
        x[1, :, 1:], fourier_features(grid, 3, 4)
    )  # max_resolution defaults to the larger side
    assert torch.equal(inputs_to_grid(x, 3, 4)[:, :1], images)  # and back to the grid


@pytest.mark.parametrize("share", [True, False])
def test_permuting_inputs_with_their_positions_leaves_the_output_unchanged(share):
    model = _perceiver(share_weights=share)
    x = _inputs()
    perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(3))
    logits, maps = model(x, return_attention=True)
    logits_perm, maps_perm = model(x[:, perm], return_attention=True)
    torch.testing.assert_close(logits_perm, logits, rtol=0, atol=1e-12)
    assert len(maps) == 3
    for w, w_perm in zip(maps, maps_perm, strict=True):
        torch.testing.assert_close(w_perm, w[..., perm], rtol=0, atol=1e-12)  # the maps follow the pixels
    # moving pixel values but not their position features is a different input: the output changes
    shuffled = x.clone()
    shuffled[:, :, 0] = x[:, perm, 0]
    assert (model(shuffled) - logits).abs().max() > 1e-3


def test_convnet_is_not_permutation_invariant():
    torch.manual_seed(0)
    net = ConvNet(19, 10, width=4).double()
    x = _inputs(side=8)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    out, out_perm = net(inputs_to_grid(x, 8, 8)), net(inputs_to_grid(x[:, perm], 8, 8))
    assert out.shape == (3, 10) and (out - out_perm).abs().max() > 1e-4


def test_attention_weights_are_a_distribution_and_masked_keys_get_none():
    torch.manual_seed(0)
    attention = Attention(8, 5, heads=2).double()
    q, kv = torch.randn(2, 3, 8, dtype=F64), torch.randn(2, 7, 5, dtype=F64)
    out, w = attention(q, kv)
    assert out.shape == (2, 3, 8) and w.shape == (2, 2, 3, 7)
    assert (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 3, dtype=F64), rtol=0, atol=1e-14)
    mask = torch.ones(2, 7, dtype=torch.bool)
    mask[0, 4:] = False
    _, w_masked = attention(q, kv, mask)
    assert torch.equal(w_masked[0, ..., 4:], torch.zeros(2, 3, 3, dtype=F64))
    torch.testing.assert_close(w_masked.sum(-1), torch.ones(2, 2, 3, dtype=F64), rtol=0, atol=1e-14)
    _, maps = _perceiver()(_inputs(), return_attention=True)
    for w in maps:
        torch.testing.assert_close(w.sum(-1), torch.ones_like(w.sum(-1)), rtol=0, atol=1e-12)


def test_masked_padding_does_not_change_the_output():
    model = _perceiver()
    x = _inputs()
    padded = torch.cat([x, 100 * torch.randn(3, 11, x.shape[-1], dtype=F64)], dim=1)
    mask = torch.ones(3, padded.shape[1], dtype=torch.bool)
    mask[:, x.shape[1] :] = False
    torch.testing.assert_close(model(padded, mask), model(x), rtol=0, atol=1e-12)
    assert (model(padded) - model(x)).abs().max() > 1e-3  # unmasked padding is read


def test_any_number_of_inputs_and_weight_sharing():
    model = _perceiver()
    for side in (2, 5, 9):
        assert model(_inputs(side=side)).shape == (3, 10)  # the same weights take any M
    shared = [n_params(_perceiver(repeats=r)) for r in (1, 2, 3, 6)]
    assert shared[0] < shared[1] == shared[2] == shared[3]  # first cross-attention + one shared set
    unshared = [n_params(_perceiver(repeats=r, share_weights=False)) for r in (1, 2, 3)]
    assert unshared[0] == shared[0] and unshared[2] - unshared[1] == unshared[1] - unshared[0] > 0


def test_same_seed_same_model_and_output():
    x = _inputs()
    assert torch.equal(_perceiver()(x), _perceiver()(x))
    torch.manual_seed(1)
    other = Perceiver(19, 10, num_latents=6, latent_dim=16, repeats=3, self_heads=4).double().eval()
    assert not torch.allclose(other(x), _perceiver()(x))


def test_flops_formula_and_scaling():
    from torch.utils.flop_counter import FlopCounterMode

    from papers.vision.perceiver.experiment import loglog_slope

    torch.manual_seed(0)
    cross, full = LatentCrossAttention(19, 16, num_latents=4), FullSelfAttention(19, 16)
    counts = {"cross": [], "self": []}
    sizes = [16, 64, 256]
    for m in sizes:
        x = torch.randn(1, m, 19)
        for name, module in (("cross", cross), ("self", full)):
            with FlopCounterMode(display=False) as counter:
                module(x)
            counts[name].append(counter.get_total_flops())
        assert counts["cross"][-1] == attention_flops(4, m, 16, 19, 16, 16)
        assert counts["self"][-1] == 2 * m * 19 * 16 + attention_flops(m, m, 16, 16, 16, 16)
    c, s = counts["cross"], counts["self"]
    assert c[2] - c[1] == 4 * (c[1] - c[0])  # affine in M (sizes ×4): no M² term
    assert s[2] - 2 * 4 * s[1] + 16 * s[0] != 0 and (s[2] - s[1]) > 4 * (s[1] - s[0])  # a quadratic term
    assert loglog_slope([1, 2, 4, 8], [3, 12, 48, 192]) == pytest.approx(2.0)
    assert loglog_slope([1, 10], [5, 50]) == pytest.approx(1.0)


def test_baselines_shapes():
    assert MLPClassifier(64, 10, hidden=8)(torch.rand(5, 64)).shape == (5, 10)
    assert ConvNet(19, 10, width=4)(torch.rand(5, 19, 8, 8)).shape == (5, 10)


def test_bad_input_gives_clear_errors():
    model = _perceiver()
    with pytest.raises(ValueError, match=r"shape \(B, M, 19\)"):
        model(torch.zeros(3, 19, dtype=F64))
    with pytest.raises(ValueError, match=r"shape \(B, M, 19\)"):
        model(torch.zeros(3, 8, 18, dtype=F64))
    with pytest.raises(ValueError, match="M >= 1"):
        model(torch.zeros(3, 0, 19, dtype=F64))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        model(_inputs(), torch.ones(3, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one input"):
        model(_inputs(), torch.zeros(3, 25, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible"):
        Perceiver(19, 10, latent_dim=30, self_heads=4)
    with pytest.raises(ValueError, match="repeats"):
        Perceiver(19, 10, repeats=0)
    with pytest.raises(ValueError, match="num_bands"):
        fourier_features(torch.zeros(4, 2), 0, 8)
    with pytest.raises(ValueError, match="max_resolution"):
        fourier_features(torch.zeros(4, 2), 4, 1)
    with pytest.raises(ValueError, match="positions"):
        fourier_features(torch.zeros(4, 2, dtype=torch.long), 4, 8)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        image_inputs(torch.zeros(8, 8), num_bands=4)
    with pytest.raises(ValueError, match="channel"):
        ConvNet(19, 10)(torch.zeros(2, 3, 8, 8))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("test_fraction", 1.0),
        ("num_bands", 0),
        ("epochs", 0),
        ("lr", 0.0),
        ("baseline_lr", -1.0),
        ("self_heads", 3),
        ("cost_sides", (8,)),
        ("self_per_cross", -1),
        ("threads", -1),
    ],
)
def test_config_validation(key, value):
    from papers.vision.perceiver.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.perceiver import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)

    def learned(metrics):  # training is seeded; wall-clock timings and their slopes are not
        return {k: v for k, v in metrics.items() if "time" not in k}

    assert learned(result.metrics) == learned(again.metrics)
    metrics = result.metrics
    assert metrics["perceiver_trained_raw_on_permuted_agreement"] == 1.0
    assert metrics["perceiver_trained_raw_on_permuted_max_logit_diff"] < 1e-4
    assert metrics["flop_counter_matches_formula"] == 1.0
    assert len(result.checks) == 7 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == [
        "figures/accuracy.png",
        "figures/attention_maps.png",
        "figures/cost_vs_inputs.png",
    ]
    assert len(list((run_dir / "stages").glob("*.json"))) == 7
