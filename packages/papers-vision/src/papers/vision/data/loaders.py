"""Readers for the standard image datasets a user downloads: MNIST / Fashion-MNIST, CIFAR-10, image folders.

Every reader checks what it reads and raises :class:`DataFileError` (one line: the file and what is
wrong) for missing, truncated or malformed files. Images come back as :class:`ImageDataset` floats in
[0, 1].

IDX (MNIST's format): two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
0x0D float32, 0x0E float64), the number of dimensions, each dimension as a big-endian uint32, then the
values, big-endian, row-major. Files may be gzip-compressed.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from papers.core.errors import PapersError
from papers.core.io import atomic_write_bytes

from .datasets import ImageDataset
from .images import resize, uint8_to_float

MNIST_CLASSES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_IDX_CODES = {torch.uint8: 0x08, torch.int8: 0x09, torch.int16: 0x0B, torch.int32: 0x0C,
              torch.float32: 0x0D, torch.float64: 0x0E}  # fmt: skip
_GZIP_MAGIC = b"\x1f\x8b"


class DataFileError(PapersError):
    """A data file is missing, truncated or not in the format its reader expects."""


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if it is gzip."""
    if not path.is_file():
        raise DataFileError(f"no file at {path}")
    data = path.read_bytes()
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFileError(f"{path}: corrupt or truncated gzip data ({exc})") from exc


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """The array stored in an IDX file (gzip or not), with its IDX dtype."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] not in _IDX_TYPES:
        raise DataFileError(f"{path}: not an IDX file (magic bytes {data[:4].hex() or 'missing'})")
    ndim, dtype = data[3], np.dtype(_IDX_TYPES[data[2]])
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{path}: truncated header ({len(data)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        problem = "truncated" if len(data) - header < expected else "has trailing bytes"
        raise DataFileError(
            f"{path}: {problem}: shape {shape} needs {expected} bytes of data, found {len(data) - header}"
        )
    values = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(values.astype(dtype.newbyteorder("="))).clone()


def write_idx(path: str | os.PathLike, array: torch.Tensor) -> Path:
    """Write ``array`` as an IDX file, atomically; gzip-compressed if ``path`` ends with ``.gz``."""
    if array.dtype not in _IDX_CODES:
        raise ValueError(f"IDX stores {', '.join(map(str, _IDX_CODES))}; got {array.dtype}")
    if array.dim() > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {array.dim()}")
    code = _IDX_CODES[array.dtype]
    header = bytes([0, 0, code, array.dim()]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.cpu().numpy().astype(_IDX_TYPES[code]).tobytes()
    return atomic_write_bytes(path, gzip.compress(data, mtime=0) if str(path).endswith(".gz") else data)


def _find(root: Path, name: str) -> Path:
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise DataFileError(f"no {name} or {name}.gz in {root}")


def load_mnist(
    root: str | os.PathLike, split: str = "train", *, classes: tuple[str, ...] = MNIST_CLASSES
) -> ImageDataset:
    """MNIST (or any set in its layout, e.g. Fashion-MNIST) from the four IDX files in ``root``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-...`` (each may end with ``.gz``).
    Images ``(N, 1, 28, 28)`` in [0, 1] (any ``H x W`` is accepted)."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images_path = _find(root, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(root, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3:
        found = f"{images.dtype} {tuple(images.shape)}"
        raise DataFileError(f"{images_path}: expected uint8 images (N, H, W), got {found}")
    if labels.dtype != torch.uint8 or labels.dim() != 1:
        found = f"{labels.dtype} {tuple(labels.shape)}"
        raise DataFileError(f"{labels_path}: expected uint8 labels (N,), got {found}")
    if len(images) != len(labels):
        raise DataFileError(f"{root}: {len(images)} images but {len(labels)} labels in the {split} split")
    if len(labels) and int(labels.max()) >= len(classes):
        raise DataFileError(f"{labels_path}: label {int(labels.max())} but only {len(classes)} classes")
    return ImageDataset(uint8_to_float(images.unsqueeze(-1)), labels.long(), classes)


def load_fashion_mnist(root: str | os.PathLike, split: str = "train") -> ImageDataset:
    """Fashion-MNIST (same files and layout as MNIST) with its class names."""
    return load_mnist(root, split, classes=FASHION_MNIST_CLASSES)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only; any other class is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }  # fmt: skip

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _unpickle(path: Path) -> object:
    if not path.is_file():
        raise DataFileError(f"no file at {path}")
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # truncated, not a pickle, or a refused class
        raise DataFileError(f"{path}: not a CIFAR batch ({type(exc).__name__}: {exc})") from exc


def _key(batch: dict, name: str, path: Path):
    for key in (name.encode(), name):
        if key in batch:
            return batch[key]
    raise DataFileError(f"{path}: no {name!r} entry (keys: {sorted(map(str, batch))})")


def load_cifar10_batch(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR-10 python batch: uint8 images ``(N, 3, 32, 32)`` and labels ``(N,)``.

    The batches are Python pickles, and unpickling can run code: load only files you downloaded from
    the dataset's site or made yourself. This reader accepts only dicts of lists, bytes and numpy arrays
    and refuses any other class, but it is still no sandbox.
    """
    path = Path(path)
    batch = _unpickle(path)
    if not isinstance(batch, dict):
        raise DataFileError(f"{path}: expected a dict, got {type(batch).__name__}")
    data, labels = _key(batch, "data", path), _key(batch, "labels", path)
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.shape[1:] == (3072,)):
        found = f"{type(data).__name__} {getattr(data, 'dtype', '')} {getattr(data, 'shape', '')}"
        raise DataFileError(f"{path}: 'data' must be a uint8 array (N, 3072), got {found}")
    labels = torch.as_tensor(list(labels), dtype=torch.long)
    if labels.shape != (len(data),):
        raise DataFileError(f"{path}: {len(data)} images but {len(labels)} labels")
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < 10:
        raise DataFileError(f"{path}: labels must lie in 0-9, got {int(labels.min())}..{int(labels.max())}")
    return torch.tensor(data).view(-1, 3, 32, 32), labels  # rows are R, G, B planes of 32 x 32


def load_cifar10(root: str | os.PathLike, split: str = "train") -> ImageDataset:
    """CIFAR-10 from the extracted ``cifar-10-batches-py`` folder (``data_batch_1``-``5``, ``test_batch``).

    Unpickles the batch files: see :func:`load_cifar10_batch`. Images ``(N, 3, 32, 32)`` in [0, 1]."""
    names = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}.get(split)
    if names is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    parts = [load_cifar10_batch(Path(root) / name) for name in names]
    images = torch.cat([images for images, _ in parts])
    labels = torch.cat([labels for _, labels in parts])
    return ImageDataset(images.float().div(255.0), labels, CIFAR10_CLASSES)


def load_image_folder(
    root: str | os.PathLike, *, size: int | tuple[int, int] | None = None, grayscale: bool = False
) -> ImageDataset:
    """Images in ``root/<class name>/<file>.png|.jpg|.jpeg``; classes are the sorted subfolder names.

    Decoded with Pillow, as RGB (or grey if ``grayscale``), and resized to ``size`` if given; without
    ``size`` all images must share one size.
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise DataFileError(f"no folder at {root}")
    classes = sorted(entry.name for entry in root.iterdir() if entry.is_dir())
    if not classes:
        raise DataFileError(f"{root}: no class subfolders")
    images, labels = [], []
    for label, name in enumerate(classes):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataFileError(f"{root / name}: no {'/'.join(IMAGE_SUFFIXES)} images")
        for file in files:
            try:
                with Image.open(file) as opened:
                    pixels = np.array(opened.convert("L" if grayscale else "RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                raise DataFileError(f"{file}: cannot decode image ({exc})") from exc
            image = uint8_to_float(torch.from_numpy(pixels.reshape(*pixels.shape[:2], -1))).unsqueeze(0)
            images.append(resize(image, size) if size is not None else image)
            labels.append(label)
    shapes = {tuple(image.shape[1:]) for image in images}
    if len(shapes) > 1:
        raise DataFileError(f"{root}: images of different sizes {sorted(shapes)}; pass size= to resize them")
    return ImageDataset(torch.cat(images), torch.tensor(labels), tuple(classes))
