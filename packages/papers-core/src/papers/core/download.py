"""Files a user downloads once: one cache folder per domain, and downloads verified before they are kept.

``data_dir("chem")`` is ``$PAPERS_DATA/chem``, else ``$XDG_CACHE_HOME/papers/chem`` or
``~/.cache/papers/chem``. :func:`download` writes a file (atomically) only after its SHA-256 matches,
so the cache never holds a partial or corrupt file. With ``sha256=None`` (no digest pinned yet) the
first download prints the file's digest, to be pinned so that later downloads and the cached copy
are verified.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .errors import PapersError
from .io import atomic_write_bytes


def data_dir(domain: str) -> Path:
    """Where a domain's downloads and caches live."""
    if os.environ.get("PAPERS_DATA"):
        return Path(os.environ["PAPERS_DATA"]).expanduser() / domain
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "papers" / domain


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, timeout: float = 300) -> bytes:
    """The bytes at ``url`` (tests replace this function to serve local bytes)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download(name: str, url: str, path: str | os.PathLike, sha256: str | None = None) -> Path:
    """``path``, downloading ``url`` there first if it is missing.

    A cached file or a download whose SHA-256 differs from ``sha256`` raises :class:`PapersError`, and the
    cache is left as it was; an unreachable ``url`` raises one that says where to put the file by hand.
    """
    path = Path(path)
    if path.is_file():
        if sha256 and file_sha256(path) != sha256:
            raise PapersError(f"{path} does not have the SHA-256 {sha256}: delete it to download it again")
        return path
    try:
        content = fetch(url)
    except (urllib.error.URLError, OSError) as error:
        raise PapersError(
            f"cannot download {name} from {url} ({error}); without internet, put the file at {path}"
        ) from error
    digest = hashlib.sha256(content).hexdigest()
    if sha256 and digest != sha256:
        raise PapersError(f"download of {url} has SHA-256 {digest}, expected {sha256}: not saved")
    atomic_write_bytes(path, content)
    if not sha256:
        print(f"downloaded {name} to {path}, SHA-256 {digest} (pass sha256= to verify)", file=sys.stderr)
    return path
