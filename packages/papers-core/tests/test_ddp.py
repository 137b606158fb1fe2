"""DDP through torchrun (gloo on CPU): 2 processes sharing each global batch train like 1 process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from papers.core.io import load_checkpoint

SCRIPT = Path(__file__).with_name("_train_script.py")
# 250 samples in global batches of 16: every epoch ends with a batch of 10.
RUN = ["--samples", "250", "--max-steps", "40", "--checkpoint-every", "20", "--dropout", "0"]


def weights(out: Path) -> torch.Tensor:
    return torch.cat([w.flatten() for w in load_checkpoint(out / "final.pt")["model"].values()])


def logged(out: Path, key: str) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [row[key] for row in rows if key in row]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, child_env):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    runs = {
        "ddp": [*torchrun, SCRIPT, tmp_path / "ddp", "--batch-size", "4", "--accumulation-steps", "2", *RUN],
        "single": [sys.executable, SCRIPT, tmp_path / "single", "--batch-size", "16", *RUN],
        "half_batch": [sys.executable, SCRIPT, tmp_path / "half_batch", "--batch-size", "8", *RUN],
    }
    processes = {
        name: subprocess.Popen(
            command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in runs.items()
    }
    for name, process in processes.items():
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, f"{name} failed:\n{output}"

    ddp, single = weights(tmp_path / "ddp"), weights(tmp_path / "single")
    assert torch.allclose(ddp, single, rtol=0, atol=1e-6), (ddp - single).abs().max()
    assert not torch.allclose(ddp, weights(tmp_path / "half_batch"), rtol=0, atol=1e-3)  # the batch matters
    # Rank 0 alone logs, and logs the loss of the whole global batch.
    assert logged(tmp_path / "ddp", "step") == logged(tmp_path / "single", "step")
    assert logged(tmp_path / "ddp", "loss") == pytest.approx(logged(tmp_path / "single", "loss"), rel=1e-5)
    assert logged(tmp_path / "ddp", "val_loss") == pytest.approx(
        logged(tmp_path / "single", "val_loss"), rel=1e-5
    )
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["step"] == 40
