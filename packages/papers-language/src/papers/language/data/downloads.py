"""Standard corpora a user downloads once: WikiText-2/103 (raw) and tiny Shakespeare.

    name               file                       splits
    wikitext-2         wikitext-2-raw-v1.zip      the archive's wiki.{train,valid,test}.raw (Merity et al.
    wikitext-103       wikitext-103-raw-v1.zip    2016, arXiv:1609.07843)
    tiny-shakespeare   input.txt (char-rnn)       contiguous character ranges, see ``split_text``

A file is downloaded into ``data_dir()`` (``$PAPERS_DATA/language``, else ``~/.cache/papers/language``)
and written, atomically, only after its SHA-256 is checked, so the cache never holds a partial or corrupt
file. No checksum is pinned yet (``sha256=None``): the first download prints the file's SHA-256, to be
passed as ``sha256=`` (or put in the spec) so later downloads and the cached copy are verified.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from papers.core.download import data_dir as core_data_dir
from papers.core.download import download as verified_download
from papers.core.errors import PapersError

from .corpora import TextSplit, split_text


@dataclass(frozen=True)
class DownloadSpec:
    """Where a corpus file is published and, once known, its SHA-256."""

    name: str
    url: str
    sha256: str | None = None  # None: not pinned; the first download prints the digest

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


DOWNLOADS = {
    spec.name: spec
    for spec in (
        DownloadSpec("wikitext-2", "https://wikitext.smerity.com/wikitext-2-raw-v1.zip"),
        DownloadSpec("wikitext-103", "https://wikitext.smerity.com/wikitext-103-raw-v1.zip"),
        DownloadSpec(
            "tiny-shakespeare",
            "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        ),
    )
}


def data_dir() -> Path:
    """Where downloads live: ``$PAPERS_DATA/language``, else ``~/.cache/papers/language``."""
    return core_data_dir("language")


def download(name: str, *, sha256: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """The path of corpus ``name``'s file (see :data:`DOWNLOADS`), downloading it on first use.

    ``sha256`` (default: the spec's) is the digest to verify; a mismatch raises :class:`PapersError` and
    leaves the cache as it was. ``root`` defaults to :func:`data_dir`.
    """
    if name not in DOWNLOADS:
        raise ValueError(f"unknown corpus {name!r}; choose from {', '.join(DOWNLOADS)}")
    spec = DOWNLOADS[name]
    folder = Path(root if root is not None else data_dir())
    return verified_download(name, spec.url, folder / spec.filename, sha256 or spec.sha256)


def load_wikitext(
    name: str = "wikitext-2", *, sha256: str | None = None, root: str | os.PathLike | None = None
) -> TextSplit:
    """WikiText's official splits from the raw archive, each ``{"wiki.<part>.raw": text}``."""
    if name not in ("wikitext-2", "wikitext-103"):
        raise ValueError(f"unknown WikiText corpus {name!r}; choose wikitext-2 or wikitext-103")
    path = download(name, sha256=sha256, root=root)
    with zipfile.ZipFile(io.BytesIO(path.read_bytes())) as archive:
        members = {Path(member).name: member for member in archive.namelist()}
        parts = []
        for part in ("train", "valid", "test"):
            filename = f"wiki.{part}.raw"
            if filename not in members:
                raise PapersError(f"{path} has no {filename}: delete it to download it again")
            parts.append({filename: archive.read(members[filename]).decode("utf-8")})
    return TextSplit(*parts)


def load_tiny_shakespeare(
    fractions: Sequence[float] = (0.9, 0.05, 0.05),
    *,
    sha256: str | None = None,
    root: str | os.PathLike | None = None,
) -> TextSplit:
    """Tiny Shakespeare (~1.1 M characters) cut into contiguous train/valid/test character ranges."""
    path = download("tiny-shakespeare", sha256=sha256, root=root)
    return split_text(path.read_text(encoding="utf-8"), fractions, name="input.txt")
