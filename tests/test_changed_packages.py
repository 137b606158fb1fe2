"""``tools/changed_packages.py``: which packages a set of changed paths selects for CI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("changed_packages", ROOT / "tools" / "changed_packages.py")
changed_packages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(changed_packages)
affected = changed_packages.affected_packages

PACKAGES = ["papers-core", "papers-chem", "papers-language", "papers-rl", "papers-theory", "papers-vision"]


@pytest.mark.parametrize(("paths", "expected"), [
    (["packages/papers-rl/src/papers/rl/ppo/model.py"], ["papers-rl"]),
    (["packages/papers-chem/tests/test_mpnn.py", "packages/papers-theory/README.md"],
     ["papers-chem", "papers-theory"]),
    (["packages/papers-vision/pyproject.toml", "packages/papers-vision/CHANGELOG.md"], ["papers-vision"]),
    (["packages/papers-core/src/papers/core/cli.py"], PACKAGES),
    (["packages/papers-rl/src/papers/rl/a.py", "packages/papers-core/README.md"], PACKAGES),
], ids=["one-domain", "two-domains", "domain-metadata", "core", "core-and-domain"])
def test_package_changes(paths, expected):
    assert affected(paths, PACKAGES) == expected


@pytest.mark.parametrize("path", [
    "pyproject.toml", "shared/pytest_plugin.py", "tools/bench/run.py", "tests/test_cli.py",
    ".github/workflows/ci.yml", ".ci/run",
])
def test_shared_infrastructure_affects_every_package(path):
    assert affected(["packages/papers-rl/x.py", path], PACKAGES) == PACKAGES


@pytest.mark.parametrize("path", [
    ".gitignore", "Makefile", "catalog/papers.csv", "documentation/x.py", "packages/papers-unknown/x.py",
    "packages/notes.txt",
])
def test_unknown_paths_affect_every_package(path):
    assert affected([path], PACKAGES) == PACKAGES


@pytest.mark.parametrize("paths", [
    [], ["README.md"], ["LICENSE"], ["docs/RESULTS.md", "docs/img/loss.png"],
    ["results/neural-ode.json", "results/mpnn.json"], ["packages/README.md"],
])
def test_docs_and_results_affect_none(paths):
    assert affected(paths, PACKAGES) == []


def test_order_follows_the_package_list():
    paths = ["packages/papers-vision/a.py", "packages/papers-chem/b.py"]
    assert affected(paths, PACKAGES) == ["papers-chem", "papers-vision"]
    assert affected(paths, list(reversed(PACKAGES))) == ["papers-vision", "papers-chem"]


def test_repo_packages_lists_this_repository_core_first():
    packages = changed_packages.repo_packages()
    assert packages[0] == "papers-core"
    assert sorted(packages) == sorted(PACKAGES)
    assert affected(["packages/papers-rl/x.py"]) == ["papers-rl"]


def test_unknown_base_selects_every_package(tmp_path, capsys):
    assert changed_packages.git_changed_paths("no-such-ref", root=tmp_path) is None
    assert "selecting every package" in capsys.readouterr().err


def test_cli_all_prints_a_json_matrix_or_lines(capsys):
    assert changed_packages.main(["--all"]) == 0
    assert json.loads(capsys.readouterr().out) == changed_packages.repo_packages()
    assert changed_packages.main(["--all", "--format", "lines"]) == 0
    assert capsys.readouterr().out.split() == changed_packages.repo_packages()
