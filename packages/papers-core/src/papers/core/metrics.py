"""Metric logs: ``<name>.jsonl`` (one JSON object per row, the source of truth) and a ``<name>.csv`` view.

Every row is appended as it is logged, so a run killed at any point keeps its finished rows. When a
log is opened again, a last line torn by the kill is dropped and the CSV is regenerated from the
JSONL. Non-finite floats are stored as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` (the JSONL
stays strict JSON) and read back as floats.
"""

from __future__ import annotations

import csv
import io
import json
import os
import weakref
from pathlib import Path
from typing import Any, TextIO

from .io import NON_FINITE, _json_safe, atomic_write_text


class MetricLogger:
    """``logger.log({"loss": 0.3}, step=10)`` appends a row to ``<directory>/<name>.jsonl`` and ``.csv``.

    Rows may have different keys; the CSV header is the union of all keys in order of appearance.
    Files are read and opened on first use only, so a logger can be created on every process of a
    distributed run and used on one. Each row is flushed to the operating system as it is logged;
    the files stay open until :meth:`close` (or ``with MetricLogger(...) as logger``, or until the
    logger is garbage-collected).
    """

    def __init__(self, directory: str | os.PathLike, name: str = "metrics"):
        self.directory = Path(directory)
        self.jsonl_path = self.directory / f"{name}.jsonl"
        self.csv_path = self.directory / f"{name}.csv"
        self._rows: list[dict[str, Any]] | None = None
        self._columns: list[str] = []
        self._files: dict[Path, TextIO] = {}  # append handles
        weakref.finalize(self, _close_all, self._files)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Append ``{"step": step, **metrics}``; tensors and NumPy scalars become plain numbers."""
        if "step" in metrics:
            raise ValueError("pass the step as log(metrics, step=...), not inside metrics")
        rows = self._load()
        row = _json_safe({"step": int(step), **metrics})
        self._append(self.jsonl_path, json.dumps(row, allow_nan=False) + "\n")
        rows.append(_restore_floats(row))
        new_columns = [key for key in row if key not in self._columns]
        if new_columns and len(rows) == 1 and not self.csv_path.exists():
            self._columns += new_columns  # a new file: nothing to replace, so no atomic rewrite (fsync)
            self._append(self.csv_path, _csv_text(rows, self._columns, header=True))
        elif new_columns:
            self._columns += new_columns
            self._write_csv()
        else:
            self._append(self.csv_path, _csv_text([rows[-1]], self._columns, header=False))

    def rows(self) -> list[dict[str, Any]]:
        """Every row logged so far (including those of earlier processes), oldest first."""
        return [dict(row) for row in self._load()]

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after ``step`` (a resumed run logs them again)."""
        rows = self._load()
        kept = [row for row in rows if row["step"] <= step]
        if len(kept) < len(rows):
            self._rows = kept
            self._write_jsonl()
            self._write_csv()

    def close(self) -> None:
        _close_all(self._files)

    def __enter__(self) -> MetricLogger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _load(self) -> list[dict[str, Any]]:
        if self._rows is None:
            self._rows, torn = _read_jsonl(self.jsonl_path)
            self._columns = list(dict.fromkeys(key for row in self._rows for key in row))
            if torn:
                self._write_jsonl()
            if self._rows or self.csv_path.exists():
                self._write_csv()
        return self._rows

    def _append(self, path: Path, text: str) -> None:
        if path not in self._files:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._files[path] = open(path, "a", encoding="utf-8", newline="")
        self._files[path].write(text)
        self._files[path].flush()

    def _write_jsonl(self) -> None:
        self._replace(
            self.jsonl_path,
            "".join(json.dumps(_json_safe(row), allow_nan=False) + "\n" for row in self._rows),
        )

    def _write_csv(self) -> None:
        self._replace(self.csv_path, _csv_text(self._rows, self._columns, header=True))

    def _replace(self, path: Path, text: str) -> None:
        """Rewrite ``path`` atomically; an open append handle would write to the old file, so close it."""
        if path in self._files:
            self._files.pop(path).close()
        atomic_write_text(path, text)


def _csv_text(rows: list[dict[str, Any]], columns: list[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _close_all(files: dict[Path, TextIO]) -> None:
    while files:
        files.popitem()[1].close()


def _restore_floats(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: NON_FINITE.get(value, value) if isinstance(value, str) else value for key, value in row.items()
    }


def _read_jsonl(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The rows of a JSONL log, and whether its last line was torn (and left out)."""
    if not path.is_file():
        return [], False
    lines = path.read_text(encoding="utf-8").split("\n")
    complete, last = lines[:-1], lines[-1]  # ``last`` is empty unless a write was cut short
    rows = []
    for number, line in enumerate(complete, start=1):
        try:
            rows.append(_restore_floats(json.loads(line)))
        except json.JSONDecodeError:
            if number < len(complete):
                raise ValueError(f"{path}:{number}: not a JSON row") from None
            return rows, True
    return rows, last != ""
