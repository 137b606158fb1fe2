"""Bundled images, datasets, splits, batching and the readers of papers.vision.data."""

from __future__ import annotations

import gzip
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

import papers.vision.data as data
from papers.vision.data import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    DataFileError,
    ImageDataset,
    batches,
    center_crop,
    load_cifar10,
    load_cifar10_batch,
    load_digits,
    load_fashion_mnist,
    load_image_folder,
    load_mnist,
    load_sample_photo,
    read_idx,
    resize,
    stratified_split,
    to_grayscale,
    write_idx,
)


def test_importing_the_package_loads_neither_torch_nor_sklearn():
    code = "import sys, papers.vision.data; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_every_public_name_resolves():
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute"):
        data.not_a_name  # noqa: B018


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_are_1797_images_in_unit_range_with_10_balanced_classes(digits):
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == torch.float32
    assert digits.images.min() == 0 and digits.images.max() == 1
    assert digits.classes == tuple("0123456789")
    counts = torch.bincount(digits.labels, minlength=10)
    assert counts.sum() == 1797 and counts.min() >= 170
    image, label = digits[0]
    assert image.shape == (1, 8, 8) and label == 0


@pytest.mark.parametrize("size, shape", [(16, (16, 16)), ((28, 28), (28, 28))])
def test_digits_upsample_bilinearly(digits, size, shape):
    large = load_digits(size=size)
    assert large.images.shape == (1797, 1, *shape)
    assert 0 <= large.images.min() and large.images.max() <= 1
    assert torch.equal(large.labels, digits.labels)
    shrunk = resize(large.images, 8)  # bilinear up then antialiased down roughly restores the digit
    assert torch.corrcoef(torch.stack([shrunk.flatten(), digits.images.flatten()]))[0, 1] > 0.9
    assert (large.images.mean() - digits.images.mean()).abs() < 0.02


def test_sample_photos_resize_crop_and_grey():
    china = load_sample_photo("china.jpg")
    assert china.shape == (3, 427, 640) and china.dtype == torch.float32
    assert 0 <= china.min() and china.max() <= 1 and china.std() > 0.1
    small = load_sample_photo("flower.jpg", size=64)
    assert small.shape == (3, 64, 96)  # shorter side 64, aspect kept
    assert load_sample_photo("flower.jpg", size=(32, 40)).shape == (3, 32, 40)
    cropped = load_sample_photo("flower.jpg", size=64, crop=48)
    assert torch.equal(cropped, center_crop(small[None], 48)[0])
    grey = load_sample_photo("flower.jpg", size=64, grayscale=True)
    assert grey.shape == (1, 64, 96)
    assert torch.allclose(grey, 0.299 * small[0] + 0.587 * small[1] + 0.114 * small[2], atol=1e-6)
    with pytest.raises(ValueError, match="unknown sample photo 'lena.png'"):
        load_sample_photo("lena.png")


def test_image_helpers_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(3, 8, 8\)"):
        resize(torch.rand(3, 8, 8), 4)
    with pytest.raises(ValueError, match=r"3 channel\(s\), got shape \(2, 1, 8, 8\)"):
        to_grayscale(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="larger than the images"):
        center_crop(torch.rand(1, 1, 8, 8), 9)
    with pytest.raises(ValueError, match="floating"):
        resize(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), 4)


def test_stratified_split_keeps_class_ratios_and_is_seeded(digits):
    train, test = stratified_split(digits.labels, 0.25, seed=3)
    assert len(train) + len(test) == 1797 and len(set(train.tolist()) | set(test.tolist())) == 1797
    counts = torch.bincount(digits.labels, minlength=10).float()
    test_counts = torch.bincount(digits.labels[test], minlength=10).float()
    assert ((test_counts - 0.25 * counts).abs() <= 0.5).all()
    again, _ = stratified_split(digits.labels, 0.25, seed=3)
    other, _ = stratified_split(digits.labels, 0.25, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)
    with pytest.raises(ValueError, match="test_fraction"):
        stratified_split(digits.labels, 1.0)
    train_set, test_set = digits.split(0.25, seed=3)
    assert torch.equal(test_set.images, digits.images[test]) and train_set.classes == digits.classes


def test_batches_cover_each_item_once_and_follow_the_generator(digits):
    seen = torch.cat([labels for _, labels in digits.batches(100, shuffle=False)])
    assert torch.equal(seen, digits.labels)
    first = [
        i for (i,) in batches(torch.arange(10), batch_size=4, generator=torch.Generator().manual_seed(0))
    ]
    second = [
        i for (i,) in batches(torch.arange(10), batch_size=4, generator=torch.Generator().manual_seed(0))
    ]
    assert [len(b) for b in first] == [4, 4, 2] and all(
        torch.equal(a, b) for a, b in zip(first, second, strict=True)
    )
    assert sorted(torch.cat(first).tolist()) == list(range(10))
    assert [len(b) for (b,) in batches(torch.arange(10), batch_size=4, drop_last=True)] == [4, 4]
    with pytest.raises(ValueError, match="share their first dimension"):
        next(batches(torch.arange(3), torch.arange(4), batch_size=2))
    loader = torch.utils.data.DataLoader(digits, batch_size=64)
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 8, 8) and labels.shape == (64,)


def test_image_dataset_checks_its_tensors():
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        ImageDataset(torch.rand(2, 1, 4, 4), torch.zeros(3), ("a",))
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        ImageDataset(torch.rand(2, 1, 4, 4), torch.tensor([0, 2]), ("a", "b"))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got \(2, 4, 4\)"):
        ImageDataset(torch.rand(2, 4, 4), torch.zeros(2), ("a",))


# --- IDX / MNIST --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["array.idx", "array.idx.gz"])
@pytest.mark.parametrize(
    "array",
    [
        torch.randint(0, 256, (5, 7, 3), dtype=torch.uint8),
        torch.arange(-6, 6, dtype=torch.int32).view(3, 4),
        torch.linspace(-1, 1, 9, dtype=torch.float32),
        torch.tensor([-3, 5], dtype=torch.int16),
        torch.rand(2, 2, dtype=torch.float64),
    ],
)
def test_idx_round_trip(tmp_path, name, array):
    path = write_idx(tmp_path / name, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    loaded = read_idx(path)
    assert loaded.dtype == array.dtype and torch.equal(loaded, array)


def test_idx_header_is_the_documented_layout(tmp_path):
    raw = write_idx(tmp_path / "labels", torch.tensor([1, 2, 3], dtype=torch.uint8)).read_bytes()
    assert raw == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 3])


def test_corrupt_idx_files_raise_clear_errors(tmp_path):
    raw = write_idx(tmp_path / "images", torch.zeros(4, 3, 3, dtype=torch.uint8)).read_bytes()
    cases = {
        "truncated: shape (4, 3, 3) needs 36 bytes of data, found 30": raw[:-6],
        "has trailing bytes": raw + b"\x00",
        "not an IDX file": b"\x12\x34" + raw[2:],
        "truncated header": raw[:9],
    }
    for message, content in cases.items():
        (tmp_path / "bad").write_bytes(content)
        with pytest.raises(DataFileError, match=re.escape(message)):
            read_idx(tmp_path / "bad")
    (tmp_path / "bad.gz").write_bytes(gzip.compress(raw)[:-10])
    with pytest.raises(DataFileError, match="corrupt or truncated gzip"):
        read_idx(tmp_path / "bad.gz")
    with pytest.raises(DataFileError, match="no file at"):
        read_idx(tmp_path / "missing")


def _write_mnist(folder, prefix, images, labels, suffix=""):
    write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", images)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels)


def test_mnist_loader_reads_gzip_and_plain_files(tmp_path):
    train_images = torch.randint(0, 256, (6, 28, 28), dtype=torch.uint8)
    train_labels = torch.tensor([0, 1, 2, 9, 9, 3], dtype=torch.uint8)
    _write_mnist(tmp_path, "train", train_images, train_labels, ".gz")
    _write_mnist(tmp_path, "t10k", train_images[:2], train_labels[:2])
    train = load_mnist(tmp_path)
    assert train.images.shape == (6, 1, 28, 28) and train.labels.tolist() == [0, 1, 2, 9, 9, 3]
    assert torch.allclose(train.images[:, 0] * 255, train_images.float())
    assert len(load_mnist(tmp_path, "test")) == 2
    assert load_fashion_mnist(tmp_path, "test").classes == FASHION_MNIST_CLASSES
    with pytest.raises(ValueError, match="split must be"):
        load_mnist(tmp_path, "valid")


def test_mnist_loader_rejects_inconsistent_files(tmp_path):
    _write_mnist(
        tmp_path, "train", torch.zeros(3, 4, 4, dtype=torch.uint8), torch.zeros(2, dtype=torch.uint8)
    )
    with pytest.raises(DataFileError, match="3 images but 2 labels"):
        load_mnist(tmp_path)
    _write_mnist(
        tmp_path, "train", torch.zeros(3, 4, 4, dtype=torch.int32), torch.zeros(3, dtype=torch.uint8)
    )
    with pytest.raises(DataFileError, match=r"expected uint8 images \(N, H, W\), got torch.int32"):
        load_mnist(tmp_path)
    with pytest.raises(DataFileError, match="no t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path, "test")


# --- CIFAR-10 -----------------------------------------------------------------------------------------


def _cifar_batch(count, seed):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"testing batch",
        b"labels": rng.integers(0, 10, count).tolist(),
        b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
        b"filenames": [f"{i}.png".encode() for i in range(count)],
    }


def _write_pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def test_cifar10_loader_reads_python_batches(tmp_path):
    batches_written = {f"data_batch_{i}": _cifar_batch(3, i) for i in range(1, 6)}
    batches_written["test_batch"] = _cifar_batch(4, 9)
    for name, batch in batches_written.items():
        _write_pickle(tmp_path / name, batch)
    images, labels = load_cifar10_batch(tmp_path / "test_batch")
    first = batches_written["test_batch"][b"data"][0]
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 32, 32)
    assert torch.equal(images[0, 1], torch.from_numpy(first[1024:2048].reshape(32, 32)))  # green plane
    train = load_cifar10(tmp_path)
    assert train.images.shape == (15, 3, 32, 32) and train.classes == CIFAR10_CLASSES
    assert train.labels.tolist() == sum(
        (batches_written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)), []
    )
    assert 0 <= train.images.min() and train.images.max() <= 1
    assert len(load_cifar10(tmp_path, "test")) == 4


class _Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_loader_rejects_bad_batches(tmp_path):
    bad = {
        "no 'labels' entry": {b"data": np.zeros((1, 3072), np.uint8)},
        r"'data' must be a uint8 array \(N, 3072\)": {b"data": np.zeros((1, 100), np.uint8), b"labels": [0]},
        "1 images but 2 labels": {b"data": np.zeros((1, 3072), np.uint8), b"labels": [0, 1]},
        "labels must lie in 0-9": {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]},
        "expected a dict": [1, 2, 3],
        "refusing to load .*getcwd": {b"data": _Payload(), b"labels": [0]},
    }
    for message, obj in bad.items():
        _write_pickle(tmp_path / "batch", obj)
        with pytest.raises(DataFileError, match=message):
            load_cifar10_batch(tmp_path / "batch")
    (tmp_path / "batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataFileError, match="not a CIFAR batch"):
        load_cifar10_batch(tmp_path / "batch")
    with pytest.raises(DataFileError, match="no file at"):
        load_cifar10(tmp_path / "missing")


# --- image folders ------------------------------------------------------------------------------------


def _save(path, pixels):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_image_folder_reads_png_and_jpeg_by_class(tmp_path):
    rng = np.random.default_rng(0)
    cat = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    _save(tmp_path / "cat" / "a.png", cat)
    _save(tmp_path / "dog" / "b.PNG", np.zeros((6, 5, 3), np.uint8))
    _save(tmp_path / "dog" / "c.jpg", np.full((6, 5, 3), 200, np.uint8))
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    folder = load_image_folder(tmp_path)
    assert folder.classes == ("cat", "dog") and folder.labels.tolist() == [0, 1, 1]
    assert folder.images.shape == (3, 3, 6, 5)
    assert torch.equal(folder.images[0], torch.from_numpy(cat).permute(2, 0, 1).float() / 255)
    assert (folder.images[2] - 200 / 255).abs().max() < 0.02  # JPEG is lossy
    grey = load_image_folder(tmp_path, size=8, grayscale=True)
    assert grey.images.shape == (3, 1, 8, 8)


def test_image_folder_errors(tmp_path):
    _save(tmp_path / "a" / "small.png", np.zeros((4, 4, 3), np.uint8))
    _save(tmp_path / "b" / "large.png", np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(DataFileError, match="different sizes.*pass size="):
        load_image_folder(tmp_path)
    assert load_image_folder(tmp_path, size=4).images.shape == (2, 3, 4, 4)
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataFileError, match="broken.png: cannot decode image"):
        load_image_folder(tmp_path, size=4)
    (tmp_path / "b" / "broken.png").unlink()
    (tmp_path / "c").mkdir()
    with pytest.raises(DataFileError, match="no .png/.jpg/.jpeg images"):
        load_image_folder(tmp_path, size=4)
    with pytest.raises(DataFileError, match="no folder at"):
        load_image_folder(tmp_path / "missing")
