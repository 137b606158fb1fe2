import math

import numpy as np
import pytest
import torch
from papers_testing import untimed
from torch import nn

from papers.vision.mixmatch import (
    EMA,
    ConvNet,
    MixMatch,
    guess_labels,
    linear_rampup,
    mixup,
    sample_mixup_lambda,
    sharpen,
    soft_cross_entropy,
    squared_l2_loss,
)

F64 = torch.float64


def _probabilities(n=6, classes=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n, classes, generator=generator, dtype=F64), dim=1)


def test_sharpen_identity_at_t1_one_hot_as_t_goes_to_0_and_rows_sum_to_1():
    p = _probabilities()
    assert torch.allclose(sharpen(p, 1.0), p, rtol=0, atol=1e-12)
    one_hot = torch.nn.functional.one_hot(p.argmax(1), 5).to(F64)
    assert torch.allclose(sharpen(p, 1e-3), one_hot, atol=1e-9)
    for t in (0.1, 0.5, 2.0):
        s = sharpen(p, t)
        assert torch.allclose(s.sum(1), torch.ones(6, dtype=F64), atol=1e-12)
        assert torch.equal(s.argmax(1), p.argmax(1))  # the arg max is kept
        expected = p ** (1 / t) / (p ** (1 / t)).sum(1, keepdim=True)  # the paper's formula
        assert torch.allclose(s, expected, atol=1e-12)
    # T < 1 lowers the entropy, T > 1 raises it
    entropy = lambda q: -(q * q.log()).sum(1)  # noqa: E731
    assert (entropy(sharpen(p, 0.5)) < entropy(p)).all() and (entropy(sharpen(p, 2.0)) > entropy(p)).all()
    uniform = torch.full((2, 4), 0.25, dtype=F64)
    assert torch.allclose(sharpen(uniform, 0.5), uniform)  # nothing to sharpen in a uniform guess


def test_mixup_lambda_is_at_least_half_so_mixed_examples_stay_closer_to_their_first_input():
    lam = sample_mixup_lambda(10_000, 0.75, np.random.default_rng(0))
    assert lam.shape == (10_000,) and lam.min() >= 0.5 and lam.max() <= 1.0
    assert lam.std() > 0.1  # really random, not a constant
    generator = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(200, 1, 4, 4, generator=generator), torch.rand(200, 1, 4, 4, generator=generator)
    p1 = torch.softmax(torch.randn(200, 3, generator=generator), 1)
    p2 = torch.softmax(torch.randn(200, 3, generator=generator), 1)
    x, p = mixup(x1, p1, x2, p2, lam[:200])
    d1 = (x - x1).flatten(1).norm(dim=1)
    d2 = (x - x2).flatten(1).norm(dim=1)
    assert (d1 <= d2 + 1e-6).all()


def test_mixup_mixes_labels_with_the_same_convex_combination_as_inputs():
    generator = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(5, 1, 3, 3, generator=generator, dtype=F64), torch.rand(5, 1, 3, 3, dtype=F64)
    p1 = torch.nn.functional.one_hot(torch.arange(5) % 3, 3).to(F64)
    p2 = torch.softmax(torch.randn(5, 3, dtype=F64), 1)
    lam = torch.tensor([0.5, 0.6, 0.75, 0.9, 1.0], dtype=F64)
    x, p = mixup(x1, p1, x2, p2, lam)
    for i in range(5):
        assert torch.allclose(x[i], lam[i] * x1[i] + (1 - lam[i]) * x2[i])
        assert torch.allclose(p[i], lam[i] * p1[i] + (1 - lam[i]) * p2[i])
        # the mixed label is exactly the weight of each input: solve x = a x1 + (1 - a) x2 for a
        a = ((x[i] - x2[i]) * (x1[i] - x2[i])).sum() / ((x1[i] - x2[i]) ** 2).sum()
        assert torch.allclose(a, lam[i]) and torch.allclose(p[i], a * p1[i] + (1 - a) * p2[i])
    assert torch.allclose(p.sum(1), torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="lam must have shape"):
        mixup(x1, p1, x2, p2, lam[:3])
    with pytest.raises(ValueError, match="matching pairs"):
        mixup(x1, p1, x2[:4], p2, lam)


class _Lookup(nn.Module):
    """A model with known outputs: the logits are the first pixel of each image times a fixed vector,
    so softmax outputs of every view are computable by hand."""

    def __init__(self, classes=4):
        super().__init__()
        self.direction = torch.arange(classes, dtype=F64)

    def forward(self, images):
        return images[:, 0, 0, 0:1] * self.direction


def test_label_guess_is_the_exact_mean_over_the_k_views_then_sharpened():
    model = _Lookup()
    scale = torch.tensor([1.0, 2.0, 3.0], dtype=F64).view(3, 1, 1, 1)
    views = [torch.full((3, 1, 2, 2), v, dtype=F64) * scale for v in (0.0, 0.5, -1.0)]
    by_hand = sum(torch.softmax(model(v), 1) for v in views) / 3
    assert torch.allclose(guess_labels(model, views, None), by_hand, atol=1e-14)
    assert torch.allclose(guess_labels(model, views, 0.5), sharpen(by_hand, 0.5), atol=1e-14)
    # it is the mean of the K predictions, not the prediction of the mean view
    assert not torch.allclose(by_hand, torch.softmax(model(sum(views) / 3), 1), atol=1e-3)
    assert torch.allclose(guess_labels(model, views[:1], None), torch.softmax(model(views[0]), 1))
    assert not guess_labels(ConvNet(width=4), [torch.rand(2, 1, 8, 8)], 0.5).requires_grad  # no gradient


def test_mixmatch_batches_use_k_views_and_the_guess_in_every_mixing_mode():
    torch.manual_seed(0)
    model, x, y, u = ConvNet(width=4), torch.rand(6, 1, 8, 8), torch.arange(6) % 10, torch.rand(6, 1, 8, 8)
    identity = lambda images, generator: images  # noqa: E731  (no augmentation: views are the inputs)
    for mode in ("all", "labelled", "none"):
        batch = MixMatch(k=3, mixup=mode).mix(model, x, y, u, identity, torch.Generator().manual_seed(0),
                                              np.random.default_rng(0))  # fmt: skip
        assert batch["x_mixed"].shape == (6, 1, 8, 8) and batch["u_mixed"].shape == (18, 1, 8, 8)
        assert torch.allclose(batch["q"], sharpen(torch.softmax(model(u), 1), 0.5))
        assert torch.allclose(batch["p_mixed"].sum(1), torch.ones(6)) and batch["q_mixed"].shape == (18, 10)
        if mode == "none":
            assert torch.equal(batch["x_mixed"], x) and torch.equal(batch["u_mixed"], u.repeat(3, 1, 1, 1))
        if mode == "labelled":
            assert torch.equal(batch["u_mixed"], u.repeat(3, 1, 1, 1)) and not torch.equal(
                batch["x_mixed"], x
            )
        if mode == "all":
            assert not torch.equal(batch["u_mixed"], u.repeat(3, 1, 1, 1))
            # each labelled example keeps at least half of its own one-hot label
            assert (batch["p_mixed"][torch.arange(6), y] >= 0.5 - 1e-6).all()


def test_rampup_schedule_values():
    assert [linear_rampup(s, 4) for s in (0, 1, 2, 3, 4, 10)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert linear_rampup(0, 0) == 1.0 and linear_rampup(7, 0) == 1.0
    with pytest.raises(ValueError, match="ramp_steps"):
        linear_rampup(1, -1)


def test_losses_match_their_formulas():
    logits = torch.randn(4, 3, dtype=F64)
    targets = torch.softmax(torch.randn(4, 3, dtype=F64), 1)
    s = torch.softmax(logits, 1)
    assert torch.allclose(soft_cross_entropy(logits, targets), -(targets * s.log()).sum(1).mean())
    hard = torch.tensor([0, 2, 1, 1])
    one_hot = torch.nn.functional.one_hot(hard, 3).to(F64)
    assert torch.allclose(
        soft_cross_entropy(logits, one_hot), torch.nn.functional.cross_entropy(logits, hard)
    )
    assert torch.allclose(
        squared_l2_loss(logits, targets), ((s - targets) ** 2).sum(1).mean() / 3
    )  # 1/(L|U'|)
    assert squared_l2_loss(logits, s).item() == pytest.approx(0.0, abs=1e-15)


def test_ema_follows_the_documented_update():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)  # d_0 = min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 0.1 * 1 + 0.9 * 3))
    for _ in range(20):
        ema.update(model)
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 3.0), atol=1e-5)
    assert not ema.model.weight.requires_grad


def _tiny_run(labels, split=None, **overrides):
    from papers.vision.mixmatch.experiment import Config, labelled_split, train_arm

    config = Config(steps=4, eval_every=2, width=4, batch_size=8, **overrides)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(60, 1, 8, 8, generator=generator)
    test = (torch.rand(10, 1, 8, 8, generator=generator), torch.arange(10))
    labelled, unlabelled = split if split is not None else labelled_split(labels, 2, seed=0)
    part = train_arm("mixmatch", images, labels, labelled, unlabelled, test, config, seed=0)
    return part, labelled, unlabelled


def _same_weights(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_training_ignores_the_true_labels_of_unlabelled_images():
    labels = torch.arange(60) % 10
    part, labelled, unlabelled = _tiny_run(labels)
    scrambled = labels.clone()  # the split stays the same; only the hidden labels change
    scrambled[unlabelled] = (labels[unlabelled] + 1 + torch.arange(len(unlabelled)) % 9) % 10
    assert (scrambled[unlabelled] != labels[unlabelled]).all()
    assert torch.equal(scrambled[labelled], labels[labelled])
    again, _, _ = _tiny_run(scrambled, split=(labelled, unlabelled))
    assert (
        _same_weights(part["model"], again["model"]) and part["curve"]["loss_u"] == again["curve"]["loss_u"]
    )
    # while changing one labelled example's label does change training
    changed = labels.clone()
    changed[labelled[0]] = (labels[labelled[0]] + 1) % 10
    other, _, _ = _tiny_run(changed, split=(labelled, unlabelled))
    assert not _same_weights(part["model"], other["model"])


def test_training_is_deterministic_under_a_seed():
    labels = torch.arange(60) % 10
    a, _, _ = _tiny_run(labels)
    b, _, _ = _tiny_run(labels)
    assert a["curve"] == b["curve"]
    for p, q in zip(a["ema_model"].parameters(), b["ema_model"].parameters(), strict=True):
        assert torch.equal(p, q)


def test_bad_input_gives_clear_errors():
    with pytest.raises(ValueError, match="temperature"):
        sharpen(_probabilities(), 0.0)
    with pytest.raises(ValueError, match=r"shape \(N, L\)"):
        sharpen(torch.ones(3), 0.5)
    with pytest.raises(ValueError, match="alpha"):
        sample_mixup_lambda(3, 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="mixup"):
        MixMatch(mixup="unlabelled")
    with pytest.raises(ValueError, match="k must"):
        MixMatch(k=0)
    with pytest.raises(ValueError, match="at least one view"):
        guess_labels(ConvNet(width=2), [], 0.5)
    with pytest.raises(ValueError, match="one label per labelled image"):
        MixMatch().mix(
            ConvNet(width=2),
            torch.rand(3, 1, 8, 8),
            torch.zeros(2, dtype=torch.long),
            torch.rand(3, 1, 8, 8),
            lambda x, g: x,
            torch.Generator(),
            np.random.default_rng(0),
        )
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        ConvNet(width=2)(torch.rand(8, 8))
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(1, 1), decay=1.0)


@pytest.mark.parametrize(("key", "value"), [
    ("steps", 0), ("labels_per_class", 0), ("temperature", 0.0), ("alpha", -1.0), ("k", 0),
    ("lambda_u", -1.0), ("rampup_fraction", 1.5), ("ema_decay", 1.0), ("test_fraction", 1.0),
    ("arms", ("mixmatch", "supervised", "dropout")), ("arms", ("mixmatch",)), ("threads", -1),
])  # fmt: skip
def test_config_validation(key, value):
    from papers.vision.mixmatch.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.mixmatch import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    metrics = result.metrics
    assert metrics["labelled"] == 50 and metrics["no_ema_test_acc"] == metrics["mixmatch_test_acc_raw"]
    assert all(0.0 <= metrics[f"{a}_test_acc"] <= 1.0 for a in ("mixmatch", "supervised", "k1"))
    assert len(result.checks) == 2 and all(math.isfinite(c.measured) for c in result.checks)
    assert result.figures == ["figures/accuracy_curves.png", "figures/accuracy_bars.png"]
    assert len(list((run_dir / "stages").glob("*.json"))) == 3
