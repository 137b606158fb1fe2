import math

import pytest
import torch
from papers_testing import untimed

from papers.vision.simclr import (
    Encoder,
    SimCLR,
    biased_nce,
    contrastive_loss,
    debiased_nce,
    debiased_negative_mass,
    debiased_nt_xent,
    nt_xent,
    pair_similarities,
)

F64 = torch.float64


def _views(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64)


def _slow_nt_xent(z1, z2, t):
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        p = (i + n2 // 2) % n2
        cos = [float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)]
        denominator = sum(math.exp(cos[k] / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(cos[p] / t) / denominator)
    return total / n2


def _slow_debiased(z1, z2, t, tau_plus):
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        p = (i + n2 // 2) % n2
        cos = [float(z[i] @ z[k] / (z[i].norm() * z[k].norm())) for k in range(n2)]
        neg = [math.exp(cos[k] / t) for k in range(n2) if k not in (i, p)]
        pos = math.exp(cos[p] / t)
        g = max((sum(neg) / len(neg) - tau_plus * pos) / (1 - tau_plus), math.exp(-1 / t))
        total += -math.log(pos / (pos + len(neg) * g))
    return total / n2


@pytest.mark.parametrize("t", [0.1, 0.5, 1.0])
def test_nt_xent_equals_a_slow_explicit_implementation(t):
    z1, z2 = _views()
    assert nt_xent(z1, z2, t).item() == pytest.approx(_slow_nt_xent(z1, z2, t), rel=1e-12)
    positives, negatives = pair_similarities(z1, z2)
    assert positives.shape == (12,) and negatives.shape == (12, 10)
    assert biased_nce(positives, negatives, t).mean().item() == pytest.approx(
        _slow_nt_xent(z1, z2, t), rel=1e-12
    )


@pytest.mark.parametrize(("t", "tau_plus"), [(0.5, 0.1), (0.2, 0.3), (1.0, 0.05)])
def test_debiased_loss_equals_a_slow_explicit_implementation(t, tau_plus):
    z1, z2 = _views(seed=1)
    got = debiased_nt_xent(z1, z2, tau_plus=tau_plus, temperature=t).item()
    assert got == pytest.approx(_slow_debiased(z1, z2, t, tau_plus), rel=1e-12)


@pytest.mark.parametrize("t", [0.1, 0.5, 2.0])
def test_debiased_with_zero_prior_is_the_biased_loss(t):
    z1, z2 = _views(n=9, seed=2)
    biased = nt_xent(z1, z2, t)
    assert debiased_nt_xent(z1, z2, tau_plus=0.0, temperature=t).item() == pytest.approx(
        biased.item(), rel=1e-12
    )
    positives, negatives = pair_similarities(z1, z2)
    per_anchor = debiased_nce(positives, negatives, tau_plus=0.0, temperature=t)
    assert torch.allclose(per_anchor, biased_nce(positives, negatives, t), rtol=1e-12, atol=0)
    assert contrastive_loss(
        z1, z2, objective="debiased", temperature=t, tau_plus=0.0
    ).item() == pytest.approx(
        contrastive_loss(z1, z2, objective="biased", temperature=t, tau_plus=0.3).item(), rel=1e-12
    )


def test_the_clamp_is_active_exactly_when_the_estimate_falls_below_its_floor():
    t, n = 0.5, 8
    floor = math.exp(-1 / t)
    positives = torch.ones(3, dtype=F64)
    # anchor 0: all negatives at the minimum similarity -1, so any tau+ > 0 pushes the estimate below e^{-1/t}
    negatives = torch.stack([torch.full((n,), -1.0, dtype=F64), torch.full((n,), -0.5, dtype=F64),
                             torch.full((n,), 0.9, dtype=F64)])  # fmt: skip
    g = debiased_negative_mass(positives, negatives, tau_plus=0.1, temperature=t)
    raw = ((negatives / t).exp().mean(1) - 0.1 * math.exp(1 / t)) / 0.9
    assert raw[0] < floor and raw[1] < floor and raw[2] > floor
    assert g[0].item() == pytest.approx(floor) and g[1].item() == pytest.approx(floor)
    assert g[2].item() == pytest.approx(raw[2].item(), rel=1e-12)
    loss = debiased_nce(positives, negatives, tau_plus=0.1, temperature=t)
    assert loss[0].item() == pytest.approx(
        -math.log(math.exp(1 / t) / (math.exp(1 / t) + n * floor)), rel=1e-12
    )
    # with tau+ = 0 the mean of e^{s/t} over negatives in [-1, 1] never falls below the floor
    sims = torch.rand(50, n, dtype=F64) * 2 - 1
    assert torch.allclose(
        debiased_negative_mass(torch.rand(50, dtype=F64), sims, tau_plus=0.0, temperature=t),
        (sims / t).exp().mean(1),
        rtol=1e-14,
        atol=0,
    )
    # more positives: the estimate uses their mean
    extra = torch.tensor([[1.0, 0.0]], dtype=F64)
    g_two = debiased_negative_mass(
        torch.ones(1, dtype=F64),
        torch.full((1, n), 0.9, dtype=F64),
        tau_plus=0.1,
        temperature=t,
        extra_positives=extra,
    )
    expected = (math.exp(0.9 / t) - 0.1 * (math.exp(1 / t) + 1.0) / 2) / 0.9
    assert g_two.item() == pytest.approx(expected, rel=1e-12)


def test_losses_are_symmetric_permutation_and_scale_invariant():
    z1, z2 = _views(n=7, seed=3)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(0))
    for loss in (
        lambda a, b: nt_xent(a, b, 0.3),
        lambda a, b: debiased_nt_xent(a, b, tau_plus=0.1, temperature=0.3),
    ):
        value = loss(z1, z2).item()
        assert loss(z2, z1).item() == pytest.approx(value, rel=1e-12)
        assert loss(z1[perm], z2[perm]).item() == pytest.approx(value, rel=1e-12)
        assert loss(3.0 * z1, 0.5 * z2).item() == pytest.approx(value, rel=1e-12)
        assert loss(z1[perm], z2).item() != pytest.approx(value, rel=1e-6)  # the pairing matters


def test_loss_gradient_matches_finite_differences():
    z1, z2 = _views(n=4, d=3, seed=4)
    z1.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: debiased_nt_xent(a, z2, tau_plus=0.1, temperature=0.5), (z1,))
    assert torch.autograd.gradcheck(lambda a: nt_xent(a, z2, 0.5), (z1,))


def test_networks_shapes_and_determinism():
    images = torch.rand(5, 1, 8, 8)

    def make():
        torch.manual_seed(0)
        return SimCLR(width=4, features=12, projection=6)

    h, z = make()(images)
    assert h.shape == (5, 12) and z.shape == (5, 6) and (h >= 0).all()
    assert torch.equal(make()(images)[1], z)


def test_bad_input_gives_clear_errors():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        nt_xent(torch.randn(4), torch.randn(4))
    with pytest.raises(ValueError, match="same shape"):
        nt_xent(z, torch.randn(5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        debiased_nt_xent(z[:1], z[:1], tau_plus=0.1)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z, 0.0)
    with pytest.raises(ValueError, match="tau_plus"):
        debiased_nt_xent(z, z, tau_plus=1.0)
    with pytest.raises(ValueError, match="objective"):
        contrastive_loss(z, z, objective="hard", temperature=0.5, tau_plus=0.1)
    with pytest.raises(ValueError, match="negatives"):
        debiased_nce(torch.ones(3), torch.ones(2, 4), tau_plus=0.1)
    with pytest.raises(ValueError, match="extra positives"):
        debiased_nce(torch.ones(3), torch.ones(3, 4), tau_plus=0.1, extra_positives=torch.ones(3, 0))
    with pytest.raises(ValueError, match="1 channel"):
        Encoder()(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="8x8"):
        Encoder()(torch.rand(2, 1, 16, 16))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tau_plus", 1.0),
        ("temperature", 0.0),
        ("batch_size", 1),
        ("epochs", 0),
        ("labels_per_class", (-1,)),
        ("test_fraction", 1.0),
        ("crop_scale", 0.0),
        ("seeds", 0),
        ("threads", -1),
        ("probe_c", 0.0),
    ],
)
def test_config_validation(key, value):
    from papers.vision.simclr.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_linear_probe_and_label_subsets():
    from papers.vision.simclr.experiment import label_subsets, linear_probe

    labels = torch.arange(10).repeat(6)
    subsets = label_subsets(labels, (2, 5, 0), seed=0)
    assert len(subsets[2]) == 20 and len(subsets[5]) == 50 and len(subsets[0]) == 60
    assert torch.equal(torch.bincount(labels[subsets[2]]), torch.full((10,), 2))
    assert set(subsets[2].tolist()) <= set(subsets[5].tolist())  # nested
    x = torch.nn.functional.one_hot(labels, 10).double() + 0.01 * torch.randn(60, 10, dtype=F64)
    assert linear_probe(x, labels, x, labels, c=1.0) == 1.0


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.simclr import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 7 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/loss_curves.png", "figures/probe_accuracy_vs_labels.png"]
    assert all(0.0 <= v <= 1.0 for k, v in result.metrics.items() if "acc" in k)
    assert (run_dir / "stages" / "debiased_seed0.json").exists()
