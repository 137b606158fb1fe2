"""Batched augmentations: invariants, per-image randomness, seeding and input checks."""

from __future__ import annotations

import pytest
import torch

from papers.vision.data import (
    ColorJitter,
    Compose,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    hflip,
    rotate,
)

RANDOM_TRANSFORMS = [
    RandomHorizontalFlip(),
    RandomCrop(padding=3),
    RandomCrop(size=12, padding=2, padding_mode="reflect"),
    RandomResizedCrop(12),
    RandomRotation(30),
    ColorJitter(0.4, 0.4, 0.4, 0.1),
    RandomGrayscale(0.5),
    GaussianBlur((0.5, 2.0)),
    GaussianNoise(0.1),
    Cutout(6),
    RandomApply(ColorJitter(brightness=0.5), p=0.5),
]


def _generator(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def images():
    return torch.rand(8, 3, 16, 16, generator=_generator(42))


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS, ids=repr)
def test_same_seed_same_output_and_stays_in_range(transform, images):
    first = transform(images, _generator(1))
    assert torch.equal(first, transform(images, _generator(1)))
    assert not torch.equal(first, transform(images, _generator(2)))
    assert first.dtype == images.dtype and 0 <= first.min() and first.max() <= 1


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS, ids=repr)
def test_each_image_of_a_batch_gets_its_own_parameters(transform, images):
    same = images[:1].expand(16, -1, -1, -1).contiguous()
    out = transform(same, _generator(3))
    assert len({tuple(image.flatten().tolist()) for image in out}) > 1


def test_flip_twice_is_the_identity(images):
    assert torch.equal(hflip(hflip(images)), images)
    assert torch.equal(RandomHorizontalFlip(p=1.0)(images, _generator()), hflip(images))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(images, _generator()), images)


def test_rotation_by_0_is_the_identity_and_by_90_is_rot90(images):
    assert torch.allclose(rotate(images, 0.0), images, atol=1e-5)
    assert torch.allclose(RandomRotation(0)(images, _generator()), images, atol=1e-5)
    assert torch.allclose(rotate(images, 90.0), torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(rotate(images, -90.0), torch.rot90(images, -1, dims=(-2, -1)), atol=1e-5)
    wide = torch.rand(2, 1, 6, 10, generator=_generator())
    assert torch.allclose(rotate(wide, 180.0), wide.flip(-1, -2), atol=1e-5)
    angles = torch.tensor([0.0, 90.0])
    both = rotate(images[:2], angles)
    assert torch.allclose(both[1], torch.rot90(images[1], 1, dims=(-2, -1)), atol=1e-5)


def test_crops_have_the_requested_size_and_are_windows_of_the_padded_image(images):
    assert RandomCrop(size=(10, 12))(images, _generator()).shape == (8, 3, 10, 12)
    assert torch.equal(RandomCrop()(images, _generator()), images)
    shifted = RandomCrop(padding=2)(images, _generator())
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2))
    for image, out in zip(padded, shifted, strict=True):
        windows = [image[:, r : r + 16, c : c + 16] for r in range(5) for c in range(5)]
        assert any(torch.equal(out, window) for window in windows)
    assert RandomResizedCrop((8, 10))(images, _generator()).shape == (8, 3, 8, 10)
    whole = RandomResizedCrop(16, scale=(1.0, 1.0), ratio=(1.0, 1.0))(images, _generator())
    assert torch.allclose(whole, images, atol=1e-5)
    with pytest.raises(ValueError, match="larger than the padded images"):
        RandomCrop(size=20)(images, _generator())


def test_noise_with_std_0_is_the_identity(images):
    assert torch.equal(GaussianNoise(0.0)(images, _generator()), images)
    noisy = GaussianNoise(0.1, clip=False)(images, _generator())
    assert (noisy - images).std().item() == pytest.approx(0.1, rel=0.1)


def test_colour_jitter(images):
    assert torch.equal(ColorJitter()(images, _generator()), images)
    grey = images[:, :1].expand(-1, 3, -1, -1)
    assert torch.allclose(ColorJitter(saturation=0.5, hue=0.5)(grey, _generator()), grey, atol=1e-5)
    bright = ColorJitter(brightness=0.5)(images * 0.5, _generator())
    ratios = (bright / (images * 0.5)).flatten(1).median(dim=1).values
    assert ((ratios >= 0.5 - 1e-5) & (ratios <= 1.5 + 1e-5)).all() and ratios.std() > 0.05
    hue_turned = ColorJitter(hue=0.5)(images, _generator())
    mean_before, mean_after = images.mean(dim=1), hue_turned.mean(dim=1)
    assert (mean_after - mean_before).abs().mean() < 0.05  # a turn about the grey axis keeps the grey level
    digits = torch.rand(4, 1, 8, 8)
    assert ColorJitter(0.3, 0.3)(digits, _generator()).shape == digits.shape
    with pytest.raises(ValueError, match=r"3 channel\(s\), got shape \(4, 1, 8, 8\)"):
        ColorJitter(saturation=0.3)(digits, _generator())


def test_blur_keeps_constants_and_smooths(images):
    constant = torch.full((2, 3, 9, 9), 0.3)
    assert torch.allclose(GaussianBlur()(constant, _generator()), constant, atol=1e-6)
    blurred = GaussianBlur((1.5, 2.0))(images, _generator())
    assert blurred.shape == images.shape and blurred.var() < 0.5 * images.var()
    with pytest.raises(ValueError, match="odd"):
        GaussianBlur(kernel_size=4)


def test_cutout_clears_at_most_one_square(images):
    ones = torch.ones(16, 1, 16, 16)
    out = Cutout(size=5)(ones, _generator())
    cleared = (out == 0).sum(dim=(1, 2, 3))
    assert (cleared <= 25).all() and (cleared > 0).all()
    assert torch.equal(Cutout(size=5, p=0.0)(ones, _generator()), ones)


def test_random_apply_and_compose(images):
    jitter = ColorJitter(brightness=0.5)
    assert torch.equal(RandomApply(jitter, p=0.0)(images, _generator()), images)
    pipeline = Compose([RandomResizedCrop(12), RandomHorizontalFlip(), RandomApply(jitter, p=0.8)])
    generator = _generator(5)
    view_1, view_2 = pipeline(images, generator), pipeline(images, generator)
    assert view_1.shape == (8, 3, 12, 12) and not torch.equal(view_1, view_2)
    generator = _generator(5)
    assert torch.equal(pipeline(images, generator), view_1) and torch.equal(
        pipeline(images, generator), view_2
    )
    normalized = Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(images)
    assert torch.allclose(normalized * 0.25 + 0.5, images)


@pytest.mark.parametrize("transform", RANDOM_TRANSFORMS + [Normalize((0.5,) * 3, (0.2,) * 3)], ids=repr)
def test_bad_input_gets_a_clear_error(transform):
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(3, 16, 16\)"):
        transform(torch.rand(3, 16, 16), _generator())
    with pytest.raises(ValueError, match="floating"):
        transform(torch.zeros(2, 3, 16, 16, dtype=torch.uint8), _generator())


def test_grey_needs_rgb_and_parameters_are_checked():
    with pytest.raises(ValueError, match=r"3 channel\(s\), got shape \(2, 1, 8, 8\)"):
        RandomGrayscale(0.5)(torch.rand(2, 1, 8, 8), _generator())
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(p=1.5)
    with pytest.raises(ValueError, match="hue <= 0.5"):
        ColorJitter(hue=0.7)
    with pytest.raises(ValueError, match="scale must satisfy"):
        RandomResizedCrop(8, scale=(0.5, 0.2))
