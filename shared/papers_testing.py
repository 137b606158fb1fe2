"""Pytest plugin shared by every package's tests (loaded with ``-p papers_testing``).

- one torch thread per test process (small models train faster so on 2 cores, and xdist workers
  do not fight over cores) and no progress bars;
- torch's thread count restored after every test (experiments set their own);
- ``run_smoke``: run an experiment's ``smoke`` preset into a temporary folder and check that the
  run folder and the result are complete;
- ``untimed(metrics)``: metrics without timings (``*time_s`` and ``*_per_s`` keys), to compare two runs.
"""

from __future__ import annotations

import json
import os

import pytest


def pytest_configure(config):
    os.environ.setdefault("PAPERS_PROGRESS", "0")
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def untimed(value):
    """``value`` without the entries whose key ends in ``time_s`` or ``_per_s``, recursively."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith(("time_s", "_per_s"))}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


@pytest.fixture
def run_smoke(tmp_path):
    """``result, run_dir = run_smoke(EXPERIMENT, key="value")``: a checked smoke run."""
    from papers.core.runner import run_experiment

    def run(experiment, seed: int = 0, **overrides):
        result, run_dir = run_experiment(
            experiment,
            preset="smoke",
            seed=seed,
            device="cpu",
            overrides={k: str(v) for k, v in overrides.items()},
            out=tmp_path,
            progress=False,
        )
        record = json.loads((run_dir / "result.json").read_text())
        assert record["id"] == experiment.id and record["preset"] == "smoke"
        assert result.checks, "an experiment reports at least one claim check"
        for figure in result.figures:
            assert (run_dir / figure).stat().st_size > 0, figure
        return result, run_dir

    return run
