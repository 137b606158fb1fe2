"""Atomic writes, safe checkpoint loading and random-state round trips."""

import json
import os
import pathlib
import random

import numpy as np
import pytest
import torch

from papers.core.io import (
    CheckpointError,
    atomic_write_bytes,
    atomic_write_json,
    load_checkpoint,
    save_checkpoint,
)
from papers.core.seeding import rng_state, seed_everything, set_rng_state


class TouchOnUnpickle:
    """Unpickling this object creates ``path``: proof that a loader ran pickled code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.path),)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    atomic_write_json(target, {"loss": 1.0})
    before = target.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new content")
    monkeypatch.undo()
    with pytest.raises(TypeError):
        atomic_write_bytes(target, "not bytes")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]  # no temporary files left


def test_json_writes_non_finite_floats_as_strings(tmp_path):
    path = atomic_write_json(
        tmp_path / "m.json", {"a": float("nan"), "b": [float("inf")], "c": torch.tensor(2.0)}
    )
    assert json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "a": "nan",
        "b": ["inf"],
        "c": 2.0,
    }


def test_checkpoint_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "step": 7, "name": "run", "hist": [1.5, float("inf")]}
    loaded = load_checkpoint(save_checkpoint(tmp_path / "c.pt", state))
    assert (
        torch.equal(loaded["w"], state["w"]) and loaded["step"] == 7 and loaded["hist"] == [1.5, float("inf")]
    )


def test_load_refuses_pickled_objects_without_running_them(tmp_path):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(2), "payload": TouchOnUnpickle(marker)}, path)
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_or_missing_checkpoint_is_a_checkpoint_error(tmp_path):
    path = save_checkpoint(tmp_path / "c.pt", {"w": torch.randn(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot load checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def draws():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_state_survives_a_checkpoint(tmp_path):
    seed_everything(3)
    draws()
    save_checkpoint(tmp_path / "rng.pt", {"rng": rng_state()})
    expected = draws()
    seed_everything(99)
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert draws() == expected


def test_seed_everything_repeats_and_validates():
    seed_everything(5)
    first = draws()
    seed_everything(5)
    assert draws() == first
    with pytest.raises(ValueError, match="non-negative integer"):
        seed_everything(-1)


def test_atomic_write_gives_the_permissions_of_a_plain_write(tmp_path):
    import os
    import stat

    from papers.core.io import atomic_write_text

    (tmp_path / "plain.txt").write_text("x")
    atomic_write_text(tmp_path / "atomic.txt", "x")
    mode = lambda name: stat.S_IMODE(os.stat(tmp_path / name).st_mode)  # noqa: E731
    assert mode("atomic.txt") == mode("plain.txt")


def test_download_keeps_only_verified_files(tmp_path, monkeypatch, capsys):
    import hashlib
    import urllib.error

    import pytest

    from papers.core import download as dl
    from papers.core.errors import PapersError

    monkeypatch.setattr(dl, "fetch", lambda url: b"data")
    target = tmp_path / "cache" / "file.csv"
    with pytest.raises(PapersError, match="expected 00"):
        dl.download("set", "https://example.org/file.csv", target, sha256="00")
    assert not target.exists()
    assert dl.download("set", "https://example.org/file.csv", target).read_bytes() == b"data"
    digest = hashlib.sha256(b"data").hexdigest()
    assert digest in capsys.readouterr().err and dl.file_sha256(target) == digest
    with pytest.raises(PapersError, match="delete it"):
        dl.download("set", "https://example.org/file.csv", target, sha256="00")

    def offline(url):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(dl, "fetch", offline)
    with pytest.raises(PapersError, match="put the file at"):
        dl.download("set", "https://example.org/other.csv", tmp_path / "other.csv")
    monkeypatch.setenv("PAPERS_DATA", str(tmp_path))
    assert dl.data_dir("chem") == tmp_path / "chem"
