"""CycleGAN: the losses on exact cases, the history buffer, the PatchGAN's patches, the unpaired
domains, the frozen judges, config errors and a deterministic smoke run."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from papers_testing import untimed
from torch import nn

from papers.vision.cyclegan import (
    CycleGAN,
    DigitClassifier,
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
    cycle_consistency_loss,
    freeze,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    make_domains,
    patch_output_size,
    style_y,
    to_signed,
)


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return self.factor * x


def _small(**kw) -> CycleGAN:
    torch.manual_seed(0)
    return CycleGAN(1, gen_width=4, gen_blocks=1, disc_width=4, **kw)


def test_cycle_loss_is_zero_for_exact_inverse_maps():
    x, y = torch.rand(3, 1, 16, 16) * 2 - 1, torch.rand(5, 1, 16, 16) * 2 - 1
    assert cycle_consistency_loss(x, x.clone(), y, y.clone()) == 0.0
    model = _small()
    for g, f in ((nn.Identity(), nn.Identity()), (Scale(2.0), Scale(0.5)), (Scale(-1.0), Scale(-1.0))):
        model.G, model.F = g, f
        _, parts, fake_y, fake_x = model.generator_step(x[:3], y[:3])
        assert parts["cycle"] == 0.0
        assert torch.equal(fake_y, g(x[:3])) and torch.equal(fake_x, f(y[:3]))
    model.G, model.F = Scale(2.0), Scale(2.0)  # not inverse: F(G(x)) = 4x
    _, parts, _, _ = model.generator_step(x[:3], y[:3])
    expected = (3 * x[:3]).abs().mean() + (3 * y[:3]).abs().mean()
    assert math.isclose(parts["cycle"], expected.item(), rel_tol=1e-6)


def test_cycle_loss_is_the_mean_absolute_error_and_checks_shapes():
    x, y = torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    x_rec = torch.full_like(x, 0.5)
    y_rec = y.clone()
    y_rec[0, 0, 0, 0] = 3.2  # one pixel of 32 off by 3.2
    assert math.isclose(cycle_consistency_loss(x, x_rec, y, y_rec).item(), 0.5 + 0.1, rel_tol=1e-6)
    with pytest.raises(ValueError, match="reconstructions must match"):
        cycle_consistency_loss(x, x_rec[:1], y, y_rec)


def test_lsgan_losses_on_known_inputs():
    ones, zeros = torch.ones(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)
    assert lsgan_discriminator_loss(ones, zeros) == 0.0  # a perfect discriminator
    assert lsgan_discriminator_loss(zeros, ones) == 1.0  # ½ (1 + 1)
    half = torch.full((3, 1, 2, 2), 0.5)
    assert lsgan_discriminator_loss(half, half) == 0.25  # ½ (0.25 + 0.25)
    assert lsgan_generator_loss(ones) == 0.0 and lsgan_generator_loss(zeros) == 1.0
    assert lsgan_generator_loss(torch.tensor([0.0, 2.0, 1.0, 3.0])) == 1.5  # (1 + 1 + 0 + 4) / 4
    real, fake = torch.tensor([1.5, 0.5]), torch.tensor([-1.0, 2.0])
    assert math.isclose(lsgan_discriminator_loss(real, fake).item(), 0.5 * (0.25 + 2.5), rel_tol=1e-6)


def test_gan_alone_objective_has_no_cycle_term_and_identity_loss_adds():
    x, y = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    for lam, lam_id in ((0.0, 0.0), (10.0, 0.0), (10.0, 5.0)):
        model = _small(lambda_cycle=lam, lambda_identity=lam_id)
        total, parts, fake_y, fake_x = model.generator_step(x, y)
        expected = (
            parts["adv_G"] + parts["adv_F"] + lam * parts["cycle"] + lam_id * parts.get("identity", 0.0)
        )
        assert math.isclose(total.item(), expected, rel_tol=1e-5) and parts["cycle"] > 0
        assert ("identity" in parts) == (lam_id > 0)
        assert fake_y.shape == x.shape and fake_x.shape == y.shape
    with pytest.raises(ValueError, match="lambda_cycle"):
        CycleGAN(lambda_cycle=-1.0)


def test_image_pool_returns_old_images_half_the_time_and_never_exceeds_its_size():
    pool = ImagePool(50, generator=torch.Generator().manual_seed(0))
    counter = 0

    def batch(n):  # every image constant and unique, so its origin can be read off
        nonlocal counter
        out = torch.arange(counter, counter + n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2)
        counter += n
        return out.clone()

    first = batch(30)
    assert torch.equal(pool.query(first), first) and len(pool) == 30  # filling: the new images come back
    second = batch(30)
    out = pool.query(second)
    assert len(pool) == 50 and torch.equal(out[:20], second[:20])  # 20 more fill it up
    old = total = 0
    for _ in range(200):
        new = batch(16)
        out = pool.query(new)
        assert out.shape == new.shape and len(pool) == 50
        returned_old = out[:, 0, 0, 0] != new[:, 0, 0, 0]  # not the image put in: one from the buffer
        assert (out[returned_old, 0, 0, 0] < new[returned_old, 0, 0, 0]).all()  # stored earlier
        old += int(returned_old.sum())
        total += len(new)
    assert abs(old / total - 0.5) < 0.05  # 3200 draws: 0.05 is over 5 standard deviations
    stored = {float(img[0, 0, 0]) for img in pool.images}
    assert len(stored) == 50  # each image is stored once, an old one leaves when it is returned
    assert torch.equal(ImagePool(0).query(first), first)
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1)


def test_image_pool_stores_detached_copies():
    pool = ImagePool(4)
    fake = torch.rand(2, 1, 4, 4, requires_grad=True) * 2
    out = pool.query(fake)
    assert not out.requires_grad and not pool.images[0].requires_grad


@pytest.mark.parametrize(("size", "downsamplings", "side"), [(16, 2, 2), (16, 1, 6), (32, 3, 2), (64, 3, 6)])
def test_patch_discriminator_output_shape(size, downsamplings, side):
    d = PatchDiscriminator(1, width=2, downsamplings=downsamplings)
    assert patch_output_size(size, downsamplings) == side
    assert d(torch.zeros(3, 1, size, size)).shape == (3, 1, side, side)
    assert patch_output_size(256, 3) == 30  # the paper's 70x70 PatchGAN scores 30x30 patches of 256x256


def test_patchgan_with_three_downsamplings_sees_70x70_patches():
    torch.manual_seed(0)
    d = PatchDiscriminator(1, width=2, downsamplings=3)
    for m in d.modules():  # instance norm mixes the whole image; strip it to read the conv receptive field
        if isinstance(m, nn.InstanceNorm2d):
            m.forward = lambda h: h
    x = torch.randn(1, 1, 160, 160, requires_grad=True)
    scores = d(x)
    scores[0, 0, scores.shape[-2] // 2, scores.shape[-1] // 2].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_generator_shapes_range_and_errors():
    g = ResnetGenerator(1, width=4, blocks=2)
    out = g(torch.rand(2, 1, 16, 16) * 2 - 1)
    assert out.shape == (2, 1, 16, 16) and out.abs().max() < 1
    small = ResnetGenerator(3, width=2, blocks=0, outer_kernel=3)
    assert small(torch.zeros(1, 3, 12, 8)).shape == (1, 3, 12, 8)
    with pytest.raises(ValueError, match="multiples of 4"):
        g(torch.zeros(1, 1, 10, 16))
    with pytest.raises(ValueError, match="1 channel"):
        g(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        g(torch.zeros(16, 16))
    with pytest.raises(ValueError, match="outer_kernel"):
        ResnetGenerator(1, outer_kernel=4)
    with pytest.raises(ValueError, match="too small"):
        PatchDiscriminator(1, downsamplings=3)(torch.zeros(1, 1, 8, 8))


@pytest.fixture(scope="module")
def domains():
    return make_domains(size=16, test_fraction=0.25, seed=0)


def test_the_two_domains_share_no_source_image(domains):
    from papers.vision.data import load_digits, resize

    x_sources = torch.cat([domains["x_train_source"], domains["x_test_source"]])
    y_sources = torch.cat([domains["y_train_source"], domains["y_test_source"]])
    assert set(x_sources.tolist()).isdisjoint(y_sources.tolist())
    assert len(set(x_sources.tolist()) | set(y_sources.tolist())) == 1797 == len(x_sources) + len(y_sources)
    digits = load_digits()
    images = resize(digits.images, 16)
    index = domains["y_train_source"]
    assert torch.allclose(domains["y_train"], to_signed(style_y(images[index])))
    assert torch.allclose(domains["x_test"], to_signed(images[domains["x_test_source"]]))
    assert torch.equal(domains["x_train_labels"], digits.labels[domains["x_train_source"]])
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert domains[key].shape[1:] == (1, 16, 16) and domains[key].min() >= -1 and domains[key].max() <= 1
        assert torch.bincount(domains[f"{key}_labels"], minlength=10).min() > 0  # every digit in every part
    again = make_domains(size=16, seed=0)
    assert torch.equal(again["y_test_source"], domains["y_test_source"])
    assert not torch.equal(make_domains(size=16, seed=1)["y_test_source"], domains["y_test_source"])
    with pytest.raises(ValueError, match="size"):
        make_domains(size=10)


def test_style_y_thickens_and_inverts():
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    y = style_y(x)
    assert y[0, 0, 0, 0] == 1.0  # background becomes white
    assert y[0, 0, 4, 4] < 0.5 and y[0, 0, 3, 3] < 1.0 and y[0, 0, 2, 4] < 1.0  # the dot grew and went dark
    assert (y < 1).sum() > (x > 0).sum()


def test_generator_gradients_do_not_reach_the_frozen_classifier():
    torch.manual_seed(0)
    judge = freeze(DigitClassifier(16))
    before = [p.clone() for p in judge.parameters()]
    g = ResnetGenerator(1, width=4, blocks=1)
    opt = torch.optim.Adam(g.parameters(), lr=1e-2)
    loss = F.cross_entropy(judge(g(torch.rand(4, 1, 16, 16) * 2 - 1)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    assert not judge.training
    assert all(p.grad is None and not p.requires_grad for p in judge.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, judge.parameters(), strict=True))
    assert all(p.grad is not None for p in g.parameters()) and any(
        p.grad.abs().sum() > 0 for p in g.parameters()
    )


def test_lr_schedule_is_constant_then_linear_to_zero():
    from papers.vision.cyclegan.experiment import lr_factor

    assert [lr_factor(s, 10, 0.5) for s in (0, 4, 5, 6, 9)] == pytest.approx([1.0, 1.0, 1.0, 0.8, 0.2])
    assert lr_factor(10, 10, 0.5) == 0.0 and lr_factor(3, 10, 1.0) == 1.0


@pytest.mark.parametrize(("key", "value"), [
    ("size", 10), ("steps", 0), ("batch_size", 0), ("gen_width", 0), ("gen_blocks", -1), ("outer_kernel", 6),
    ("disc_downsamplings", 4), ("lambda_cycle", 0.0), ("identity_weight", -0.5), ("pool_size", -1),
    ("lr", 0.0), ("beta1", 1.0), ("decay_start", 1.5), ("test_fraction", 1.0), ("threads", -1),
])  # fmt: skip
def test_config_validation(key, value):
    from papers.vision.cyclegan.experiment import Config

    with pytest.raises(ValueError, match=key):
        Config(**{key: value}).validate()


def test_smoke_run_is_deterministic(run_smoke):
    from papers.vision.cyclegan import EXPERIMENT

    result, run_dir = run_smoke(EXPERIMENT)
    again, _ = run_smoke(EXPERIMENT)
    assert untimed(result.metrics) == untimed(again.metrics)
    assert len(result.checks) == 3 and all(math.isfinite(c.measured) for c in result.checks)
    assert sorted(result.figures) == ["figures/curves.png", "figures/translations.png"]
    assert sorted(p.stem for p in (run_dir / "stages").glob("*.json")) == ["cyclegan", "gan_alone"]
    for arm in ("cyclegan", "gan_alone"):
        assert sum(result.metrics[f"{arm}_G_x_class_counts"]) == result.metrics["n_x_test"]
        assert sum(result.metrics[f"{arm}_F_y_class_counts"]) == result.metrics["n_y_test"]
