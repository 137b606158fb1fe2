"""A training process killed with SIGKILL half-way resumes to exactly the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from papers.core.io import load_checkpoint

SCRIPT = Path(__file__).with_name("_train_script.py")
RUN = ["--max-steps", "200", "--checkpoint-every", "25", "--dropout", "0.1"]


def last_logged_step(out: Path) -> int:
    """The highest step in the run's metric log (a line being written is skipped)."""
    step = 0
    if (out / "metrics.jsonl").is_file():
        for line in (out / "metrics.jsonl").read_text().splitlines():
            try:
                step = max(step, json.loads(line)["step"])
            except json.JSONDecodeError:
                pass
    return step


def test_sigkilled_run_resumes_to_the_uninterrupted_result(tmp_path, child_env):
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    uninterrupted = subprocess.Popen([sys.executable, SCRIPT, reference, *RUN], env=child_env)
    victim = subprocess.Popen([sys.executable, SCRIPT, killed, *RUN, "--step-seconds", "0.01"], env=child_env)
    try:
        deadline = time.monotonic() + 120
        while not ((killed / "checkpoints" / "last.pt").is_file() and last_logged_step(killed) >= 60):
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run made no progress"
            time.sleep(0.01)
        os.kill(victim.pid, signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
    finally:
        victim.kill()
    interrupted_at = load_checkpoint(killed / "checkpoints" / "last.pt")["step"]
    assert 25 <= interrupted_at < 200 and not (killed / "final.pt").exists()

    subprocess.run([sys.executable, SCRIPT, killed, *RUN], env=child_env, check=True, timeout=120)
    assert uninterrupted.wait(timeout=120) == 0

    expected, resumed = load_checkpoint(reference / "final.pt"), load_checkpoint(killed / "final.pt")
    assert resumed["metrics"] == expected["metrics"] and resumed["metrics"]["step"] == 200
    assert expected["model"].keys() == resumed["model"].keys()
    for name, weights in expected["model"].items():
        assert torch.equal(resumed["model"][name], weights), name
    for log in ("metrics.jsonl", "metrics.csv"):
        assert (killed / log).read_text() == (reference / log).read_text(), log
