"""Every installed experiment: complete metadata, a README, and a ledger entry that matches the code.

A ledger entry (``results/<id>.json``) must come from the ``default`` preset of the config as it is
now: if a default changes, the recorded numbers are stale and the run must be repeated.
"""

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from papers.core.experiment import Experiment
from papers.core.registry import experiment_ids, get_experiment

ROOT = Path(__file__).resolve().parents[1]
IDS = experiment_ids()
CATALOG_ID = re.compile(r"^\d{3}:\d+:\d+$")
# Reference agents that catalogue papers build on; they are not catalogue rows themselves.
REFERENCE_IMPLEMENTATIONS = {"ppo", "ppo-minigrid", "dqn"}


@pytest.mark.parametrize("experiment_id", IDS)
def test_metadata_is_complete(experiment_id):
    experiment = get_experiment(experiment_id)
    assert isinstance(experiment, Experiment) and experiment.id == experiment_id
    assert experiment.claim.strip() and experiment.papers
    for paper in experiment.papers:
        assert paper.title and paper.authors and paper.year > 1900
    assert experiment.catalog_ids or experiment_id in REFERENCE_IMPLEMENTATIONS
    assert all(CATALOG_ID.match(i) for i in experiment.catalog_ids)
    for preset in experiment.presets:
        experiment.make_config(preset)  # every preset builds a valid config
    package = sys.modules[experiment.package]
    readme = (Path(package.__file__).parent / "README.md").read_text()
    assert "<!-- results:start -->" in readme and "<!-- results:end -->" in readme
    doc = package.__doc__ or ""
    assert all(i in doc for i in experiment.catalog_ids), "the package docstring cites its catalogue ids"


@pytest.mark.parametrize("experiment_id", IDS)
def test_ledger_entry_matches_the_default_config(experiment_id):
    ledger = ROOT / "results" / f"{experiment_id}.json"
    assert ledger.is_file(), f"no recorded default run: papers run {experiment_id} --record"
    record = json.loads(ledger.read_text())
    experiment = get_experiment(experiment_id)
    assert record["preset"] == "default"
    assert record["config"] == json.loads(
        json.dumps(dataclasses.asdict(experiment.make_config("default")))
    ), f"results/{experiment_id}.json is stale: the default config changed since it was recorded"
    assert record["checks"], "a recorded result has claim checks"
    for figure in record["figures"]:
        assert (ROOT / figure).is_file(), figure


def test_listing_imports_no_experiment_module():
    """`papers list` reads each paper package's declaration; torch and the experiments stay unimported."""
    code = (
        "import sys; from papers.core.cli import main; main(['list']); "
        "heavy = sorted(m for m in sys.modules if m == 'torch' or "
        "(m.endswith('.experiment') and m != 'papers.core.experiment')); "
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out[-500:]


def test_cli_entry_point_lists_installed_domains():
    out = subprocess.run(
        [str(Path(sys.executable).parent / "papers"), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "installed domains:" in out
    for experiment_id in IDS:
        assert experiment_id in out
