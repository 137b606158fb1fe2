"""Fixtures for the tests that start Python processes (DDP through torchrun, kill and resume)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def child_env(tmp_path_factory):
    """Environment for child Python processes: they share compiled bytecode in a session folder.

    Where bytecode is not written next to the sources (PYTHONDONTWRITEBYTECODE), every child would
    compile torch again, which takes seconds; one short warm-up run fills the shared cache instead.
    """
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path_factory.getbasetemp() / "pycache")
    warm_up = [
        sys.executable,
        Path(__file__).with_name("_train_script.py"),
        tmp_path_factory.mktemp("warm-up"),
        "--max-steps",
        "1",
    ]
    subprocess.run(warm_up, env=env, check=True, timeout=300)
    return env
