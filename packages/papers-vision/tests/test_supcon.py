"""SupCon: the loss against explicit loops, Jensen's L_in <= L_out, NT-Xent as a special case, the
paper's gradient, permutation invariance, errors, and a deterministic smoke run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from papers_testing import untimed

from papers.vision.supcon import (
    DigitEncoder,
    ProjectionHead,
    SupConNet,
    flatten_views,
    supcon_anchor_losses,
    supcon_loss,
)

F64 = torch.float64


def _views(n: int = 12, v: int = 2, d: int = 5, classes: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = F.normalize(torch.randn(n, v, d, generator=g, dtype=F64), dim=-1)
    return z, torch.randint(classes, (n,), generator=g)


def _explicit(z: torch.Tensor, labels: torch.Tensor, tau: float, variant: str) -> torch.Tensor:
    """Eqs. 2 and 3 as written: Σ_i over anchors, sums over A(i) and P(i) by plain loops."""
    m = len(z)
    total = torch.zeros((), dtype=z.dtype)
    for i in range(m):
        denominator = sum(math.exp(float(z[i] @ z[a]) / tau) for a in range(m) if a != i)
        positives = [p for p in range(m) if p != i and labels[p] == labels[i]]
        probs = [math.exp(float(z[i] @ z[p]) / tau) / denominator for p in positives]
        if variant == "out":
            total += -sum(math.log(q) for q in probs) / len(positives)
        else:
            total += -math.log(sum(probs) / len(positives))
    return total


@pytest.mark.parametrize("variant", ["out", "in"])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_loss_matches_explicit_double_loop(variant, tau):
    z, labels = _views(n=10, v=3, classes=4, seed=1)
    flat, flat_labels = flatten_views(z, labels)
    expected = _explicit(flat, flat_labels, tau, variant)
    got = supcon_loss(z, labels, temperature=tau, variant=variant, reduction="sum")
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)
    mean = supcon_loss(z, labels, temperature=tau, variant=variant)
    assert torch.allclose(mean * len(flat), expected, rtol=1e-10, atol=0)
    assert torch.allclose(
        supcon_loss(flat, flat_labels, temperature=tau, variant=variant, reduction="sum"),
        expected,
        rtol=1e-10,
        atol=0,
    )


def test_flatten_views_is_view_major():
    z, labels = _views(n=4, v=3)
    flat, flat_labels = flatten_views(z, labels)
    assert flat.shape == (12, 5) and torch.equal(flat[5], z[1, 1]) and torch.equal(flat_labels[5], labels[1])
    _, self_labels = flatten_views(z)
    assert self_labels.tolist() == [0, 1, 2, 3] * 3


def test_identical_embeddings_give_log_of_the_number_of_others():
    z = F.normalize(torch.ones(6, 2, 4, dtype=F64), dim=-1)
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    for variant in ("out", "in"):  # every softmax_i(p) = 1 / (2N - 1)
        losses = supcon_loss(z, labels, variant=variant, reduction="none")
        assert torch.allclose(losses, torch.full((12,), math.log(11), dtype=F64), atol=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_l_in_is_at_most_l_out_jensen(seed):
    g = torch.Generator().manual_seed(100 + seed)
    z = torch.randn(16, 2, 8, generator=g, dtype=F64)  # also without normalising: Jensen still holds
    labels = torch.randint(3, (16,), generator=g)
    tau = float(torch.rand((), generator=g)) + 0.05
    l_out = supcon_loss(z, labels, temperature=tau, variant="out", reduction="none")
    l_in = supcon_loss(z, labels, temperature=tau, variant="in", reduction="none")
    assert (l_in <= l_out + 1e-12).all() and (l_in < l_out - 1e-6).any()
    single = supcon_loss(z, torch.arange(16), temperature=tau, variant="out", reduction="none")
    assert torch.allclose(
        single, supcon_loss(z, torch.arange(16), temperature=tau, variant="in", reduction="none"), atol=1e-12
    )  # |P(i)| = 1: equal


def _nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float) -> torch.Tensor:
    """SimCLR (Chen et al. 2020, eq. 1) for views a, b (N, D): mean over the 2N of l(i, j) with cosine sim."""
    z = torch.cat([a, b])
    n = len(a)
    sim = F.cosine_similarity(z[:, None], z[None, :], dim=-1) / tau
    losses = []
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        others = torch.cat([sim[i, :i], sim[i, i + 1 :]])
        losses.append(-(sim[i, j] - torch.logsumexp(others, 0)))
    return torch.stack(losses).mean()


def test_one_positive_per_anchor_is_simclr_nt_xent():
    z, _ = _views(n=9, v=2, d=6, seed=3)
    expected = _nt_xent(z[:, 0], z[:, 1], 0.2)
    for variant in ("out", "in"):
        assert torch.allclose(supcon_loss(z, None, temperature=0.2, variant=variant), expected, atol=1e-12)
        distinct = torch.arange(100, 109)  # any labels that are all different
        assert torch.allclose(
            supcon_loss(z, distinct, temperature=0.2, variant=variant), expected, atol=1e-12
        )


def test_invariant_to_permuting_the_batch():
    z, labels = _views(n=11, v=2, classes=3, seed=4)
    perm = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    for variant in ("out", "in"):
        losses = supcon_loss(z, labels, variant=variant, reduction="none").view(2, 11)
        permuted = supcon_loss(z[perm], labels[perm], variant=variant, reduction="none").view(2, 11)
        assert torch.allclose(permuted, losses[:, perm], atol=1e-12)
        swapped = supcon_loss(z.flip(1), labels, variant=variant, reduction="none").view(2, 11)
        assert torch.allclose(swapped, losses.flip(0), atol=1e-12)  # the order of the views
        relabelled = supcon_loss(z, (labels + 1) % 3 + 7, variant=variant)  # only equality of labels counts
        assert torch.allclose(relabelled, losses.mean(), atol=1e-12)


def test_gradient_of_l_out_has_the_papers_form():
    z, labels = _views(n=8, v=2, d=4, classes=3, seed=5)
    flat, flat_labels = flatten_views(z, labels)
    tau = 0.3
    for i in range(len(flat)):
        zz = flat.clone().requires_grad_(True)
        supcon_anchor_losses(zz, flat_labels, temperature=tau, variant="out")[i].backward()
        others = [a for a in range(len(flat)) if a != i]
        weights = torch.softmax(torch.stack([flat[i] @ flat[a] for a in others]) / tau, 0)
        positives = [a for a in others if flat_labels[a] == flat_labels[i]]
        expected = torch.zeros(4, dtype=F64)
        for w, a in zip(weights, others, strict=True):
            target = 1 / len(positives) if a in positives else 0.0  # X_ip = 1/|P(i)|, 0 for negatives
            expected += flat[a] * (w - target) / tau
        assert torch.allclose(zz.grad[i], expected, atol=1e-12)


def test_gradcheck_both_variants():
    z, labels = _views(n=5, v=2, d=3, classes=2, seed=6)
    for variant in ("out", "in"):
        assert torch.autograd.gradcheck(
            lambda x, v=variant: supcon_loss(x, labels, temperature=0.4, variant=v),
            z.clone().requires_grad_(),
        )


def test_bad_input_gives_clear_errors():
    z, labels = _views(n=4)
    with pytest.raises(ValueError, match=r"\(N, V, D\) or \(M, D\)"):
        supcon_loss(torch.zeros(4), labels)
    with pytest.raises(ValueError, match="V >= 2 views"):
        supcon_loss(z[:, :1], labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        supcon_loss(z, labels[:3])
    with pytest.raises(ValueError, match="integers"):
        supcon_loss(z, labels.double())
    with pytest.raises(ValueError, match="labels are needed"):
        supcon_loss(z[:, 0])
    with pytest.raises(ValueError, match="needs a positive"):
        supcon_loss(z[:, 0], torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match="temperature"):
        supcon_loss(z, labels, temperature=0.0)
    with pytest.raises(ValueError, match="variant"):
        supcon_loss(z, labels, variant="mid")
    with pytest.raises(ValueError, match="reduction"):
        supcon_loss(z, labels, reduction="max")
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        DigitEncoder()(torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="8 x 8"):
        DigitEncoder()(torch.zeros(2, 1, 16, 16))


def test_network_shapes_and_unit_norm():
    torch.manual_seed(0)
    net = SupConNet(DigitEncoder(channels=(4, 8), dim=16), ProjectionHead(16, 16, 6))
    images = torch.rand(5, 1, 8, 8)
    assert net.encoder(images).shape == (5, 16)
    z = net(images)
    assert z.shape == (5, 6) and torch.allclose(z.norm(dim=1), torch.ones(5), atol=1e-6)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("epochs", 0),
        ("temperature", 0.0),
        ("batch_size", 1),
        ("crop_scale", 1.5),
        ("lr", -1.0),
        ("channels", (8,)),
        ("noise_stds", ()),
        ("threads", -1),
    ],
)
def test_config_validation(key, value):
    from papers.vision.supcon.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.supcon import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 3 and all(math.isfinite(c.measured) for c in result.checks)
    assert all(0 <= result.metrics[f"{m}_test_acc"] <= 1 for m in ("supcon_out", "supcon_in", "ce"))
    assert sorted(result.figures) == [
        "figures/accuracy_curves.png",
        "figures/embeddings_pca.png",
        "figures/robustness.png",
    ]
    assert len(list((run_dir / "stages").glob("*.json"))) == 3
