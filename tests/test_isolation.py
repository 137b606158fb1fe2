"""Install isolation: each domain, installed alone from its built wheel, brings only what it declares.

The metadata tests read ``packages/*/pyproject.toml`` and run in milliseconds. The install tests build
every wheel once, then create one fresh virtual environment per case with ``uv`` and install
``papers-core`` plus one domain from those wheels, so the published requirements
(``papers-core>=0.1,<0.2``) are what is resolved, not workspace links. torch is constrained to the
exact build of the running interpreter, so a missing local build fails the install instead of
downloading another one; find-links come from ``UV_FIND_LINKS`` or pip's configuration.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest depends on tomli before 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))

# Import names that a domain (or one of its extras) brings and that no install outside those listed may
# bring (scikit-learn's bundled digits serve vision and language).
HEAVY = {
    "theory": (),
    "vision": ("sklearn",),
    "language": ("transformers", "tokenizers", "sklearn"),
    "rl": ("gymnasium", "minigrid"),
    "rl[atari]": ("ale_py", "cv2"),
    "chem": ("rdkit", "torch_geometric"),
}
DOMAINS = ("theory", "vision", "language", "rl", "chem")
CASES = ("core", *HEAVY)  # "core" is papers-core alone

INSTALL_TIMEOUT_S = 900
PROBE = """
import importlib, importlib.metadata as md, importlib.util, json, sys

def present(name):
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False

def import_error(name):
    try:
        importlib.import_module(name)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None

names, imports = json.loads(sys.argv[1])
print(json.dumps({
    "present": {name: present(name) for name in names},
    "import_errors": {name: import_error(name) for name in imports},
    "providers": md.packages_distributions(),
    "distributions": sorted(d.metadata["Name"].lower() for d in md.distributions()),
    "domains": sorted(ep.name for ep in md.entry_points(group="papers.domains")),
    "experiments": sorted(ep.name for ep in md.entry_points(group="papers.experiments")),
}))
"""


def _pyproject(package_dir: Path) -> dict:
    return tomllib.loads((package_dir / "pyproject.toml").read_text())


def _domain_of(case: str) -> str | None:
    return None if case == "core" else case.split("[")[0]


def _own_modules(case: str) -> set[str]:
    return {m for key, modules in HEAVY.items() if key in (case, _domain_of(case)) for m in modules}


def _declared_experiments() -> dict[str, set[str]]:
    """Experiment ids per domain, as declared in each package's entry points."""
    return {
        d: set(_pyproject(ROOT / "packages" / f"papers-{d}")["project"]
               .get("entry-points", {}).get("papers.experiments", {}))
        for d in DOMAINS
    }


def _requirements(project: dict) -> list[Requirement]:
    extras = project.get("optional-dependencies", {}).values()
    return [Requirement(r) for r in [*project.get("dependencies", []), *(r for e in extras for r in e)]]


def _compatible_range(version: str) -> str:
    """The bound a dependant declares on ``version``: same minor for 0.x, same major after."""
    v = Version(version)
    if v.major == 0:
        return f">=0.{v.minor},<0.{v.minor + 1}"
    return f">={v.major}.{v.minor},<{v.major + 1}"


# --- metadata (no install) ---------------------------------------------------------------------


def test_workspace_members_are_the_package_folders():
    members = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    assert sorted(members) == sorted(f"packages/{p.name}" for p in PACKAGE_DIRS)
    assert {p.name for p in PACKAGE_DIRS} == {"papers-core", *(f"papers-{d}" for d in DOMAINS)}, (
        "a package was added or removed: update DOMAINS and HEAVY in this file"
    )


@pytest.mark.parametrize("package_dir", PACKAGE_DIRS, ids=lambda p: p.name)
def test_package_metadata(package_dir: Path):
    project = _pyproject(package_dir)["project"]
    name = package_dir.name
    short = name.removeprefix("papers-")
    assert project["name"] == name
    assert "version" in project, f"{name}: no static version"
    Version(project["version"])  # raises on an invalid version
    assert project.get("requires-python"), f"{name}: no requires-python"
    assert project.get("readme") == "README.md" and (package_dir / "README.md").is_file(), f"{name}: README"
    assert (package_dir / "CHANGELOG.md").is_file(), f"{name}: no CHANGELOG.md"
    assert (package_dir / "src" / "papers" / short / "__init__.py").is_file(), f"{name}: no papers.{short}"
    assert not (package_dir / "src" / "papers" / "__init__.py").exists(), (
        f"{name}: src/papers/__init__.py breaks the PEP 420 namespace shared by all distributions"
    )

    requirements = _requirements(project)
    torch = [r for r in requirements if r.name == "torch"]
    assert torch, f"{name}: torch is not a declared dependency"
    for r in torch:
        operators = {s.operator for s in r.specifier}
        assert operators and operators <= {">="}, f"{name}: torch must stay permissive (torch>=X), got {r}"
    banned = [str(r) for r in requirements if r.name in ("torchvision", "timm")]
    assert not banned, f"{name}: {banned} need a CUDA torch and would replace the CPU build"

    entry_points = project.get("entry-points", {})
    if name == "papers-core":
        assert project.get("scripts", {}).get("papers") == "papers.core.cli:main"
        assert "papers.domains" not in entry_points, "the core must not declare a domain"
        return
    core_version = _pyproject(ROOT / "packages" / "papers-core")["project"]["version"]
    expected = _compatible_range(core_version)
    core = [r for r in requirements if r.name == "papers-core"]
    assert len(core) == 1 and core[0].specifier == Requirement(f"papers-core{expected}").specifier, (
        f"{name}: expected one requirement papers-core{expected}, got {[str(r) for r in core]}"
    )
    siblings = [str(r) for r in requirements if r.name.startswith("papers-") and r.name != "papers-core"]
    assert not siblings, f"{name}: domain packages never depend on each other: {siblings}"
    assert entry_points.get("papers.domains") == {short: f"papers.{short}"}, (
        f'{name}: needs [project.entry-points."papers.domains"] {short} = "papers.{short}"'
    )
    foreign = {k: v for k, v in entry_points.get("papers.experiments", {}).items()
               if not v.startswith(f"papers.{short}.")}
    assert not foreign, f"{name}: experiments must live in papers.{short}: {foreign}"


def test_experiment_ids_are_unique_across_domains():
    seen: dict[str, str] = {}
    for domain, ids in _declared_experiments().items():
        for i in ids:
            assert i not in seen, f"experiment {i!r} is declared by both {seen[i]} and {domain}"
            seen[i] = domain


# --- built wheels, installed alone -------------------------------------------------------------


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``cmd`` with nothing of this interpreter's environment leaking into a test venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")}
    env["COLUMNS"] = "300"  # rich wraps narrower tables, which would split experiment ids
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def uv() -> list[str]:
    """The uv command: this environment's, else the one on PATH, else ``python -m uv``."""
    found = shutil.which("uv", path=sysconfig.get_path("scripts")) or shutil.which("uv")
    if found:
        return [found]
    if importlib.util.find_spec("uv"):
        return [sys.executable, "-m", "uv"]
    reason = "uv not found (neither in this environment, on PATH, nor importable): `pip install uv`"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def wheels(uv, tmp_path_factory) -> dict[str, Path]:
    """Every distribution's wheel, built once: distribution name -> wheel path."""
    dist = tmp_path_factory.mktemp("dist")
    build = _run([*uv, "build", "--all-packages", "--wheel", "-o", str(dist)], ROOT, INSTALL_TIMEOUT_S)
    assert build.returncode == 0, f"uv build failed:\n{build.stderr[-4000:]}"
    return {w.name.split("-")[0].replace("_", "-"): w for w in dist.glob("*.whl")}


@pytest.fixture(scope="module")
def torch_constraint(tmp_path_factory) -> Path:
    """A constraints file pinning torch to the running interpreter's exact build (e.g. 2.13.0+cpu)."""
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    path.write_text(f"torch=={importlib.metadata.version('torch')}\n")
    return path


def _find_links() -> list[str]:
    """Find-links for the local torch build: none to add if uv has its own, else pip's configuration."""
    if os.environ.get("UV_FIND_LINKS"):
        return []  # uv reads it from the environment
    value = os.environ.get("PIP_FIND_LINKS", "")
    if not value:
        if importlib.util.find_spec("pip"):
            pip = [sys.executable, "-m", "pip"]
        else:
            pip = [exe] if (exe := shutil.which("pip3") or shutil.which("pip")) else []
        if pip:
            answer = subprocess.run([*pip, "config", "get", "global.find-links"],
                                    capture_output=True, text=True, timeout=60)
            value = answer.stdout if answer.returncode == 0 else ""
    return [arg for link in value.split() for arg in ("--find-links", link)]


def _install(uv: list[str], venv: Path, requirements: list[str], constraint: Path) -> Path:
    """A fresh venv holding ``requirements``; run from outside the repo, so no workspace setting applies."""
    created = _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], venv.parent)
    assert created.returncode == 0, f"uv venv failed:\n{created.stderr}"
    python = venv / "bin" / "python"
    # Symlinks from the uv cache: fast and small on any filesystem; the venv is thrown away, the cache kept.
    installed = _run([*uv, "pip", "install", "--python", str(python), "--link-mode", "symlink",
                      "--constraint", str(constraint), *_find_links(), *requirements],
                     venv.parent, INSTALL_TIMEOUT_S)
    assert installed.returncode == 0, (
        f"installing {requirements} failed (is the local torch build {constraint.read_text().strip()} "
        f"reachable through UV_FIND_LINKS or pip's find-links?):\n{installed.stderr[-4000:]}"
    )
    return python


def _pulled_in_by(uv: list[str], python: Path, distribution: str) -> str:
    tree = _run([*uv, "pip", "tree", "--python", str(python), "--invert", "--package", distribution],
                python.parents[2])
    return tree.stdout.strip() or tree.stderr.strip()


def test_wheels_hold_only_their_own_package(wheels):
    assert set(wheels) == {p.name for p in PACKAGE_DIRS}
    for name, wheel in wheels.items():
        short = name.removeprefix("papers-")
        files = [f for f in zipfile.ZipFile(wheel).namelist() if ".dist-info/" not in f]
        assert "papers/__init__.py" not in files, f"{wheel.name} ships papers/__init__.py (PEP 420 namespace)"
        strays = [f for f in files if not f.startswith(f"papers/{short}/")]
        assert not strays, f"{wheel.name} ships files outside papers/{short}/: {strays[:10]}"
        assert f"papers/{short}/__init__.py" in files


def _environment_problems(uv: list[str], python: Path, case: str) -> list[str]:
    """What is installed and importable in the venv of ``case`` that should not be, or is missing."""
    domain = _domain_of(case)
    own = _own_modules(case)
    forbidden = {m for modules in HEAVY.values() for m in modules} - own
    other_domains = [f"papers.{d}" for d in DOMAINS if d != domain]
    imports = ["papers.core", *([f"papers.{domain}"] if domain else [])]
    probe = _run([str(python), "-c", PROBE, json.dumps([[*own, *forbidden, *other_domains], imports])],
                 python.parents[2])
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)

    problems = []
    for module in sorted(m for m in forbidden if found["present"][m]):
        owner = next(k for k, modules in HEAVY.items() if module in modules)
        for dist in found["providers"].get(module, ["?"]):
            problems.append(f"{module} (of {owner}) is installed; {dist} is required by:\n"
                            f"{_pulled_in_by(uv, python, dist)}")
    problems += [f"own dependency {m} is missing" for m in sorted(own) if not found["present"][m]]
    problems += [f"{m} is importable" for m in other_domains if found["present"][m]]
    problems += [f"import {m} failed: {e}" for m, e in found["import_errors"].items() if e]
    papers_dists = {d for d in found["distributions"] if d.startswith("papers-")}
    expected_dists = {"papers-core", *([f"papers-{domain}"] if domain else [])}
    if papers_dists != expected_dists:
        problems.append(f"papers distributions {sorted(papers_dists)}, expected {sorted(expected_dists)}")
    if found["domains"] != ([domain] if domain else []):
        problems.append(f"papers.domains entry points: {found['domains']}")
    expected_ids = _declared_experiments().get(domain, set())
    if set(found["experiments"]) != expected_ids:
        problems.append(f"papers.experiments entry points: {found['experiments']}, "
                        f"expected {sorted(expected_ids)}")
    return problems


def _listing_problems(python: Path, domain: str | None) -> list[str]:
    """``papers list`` must name exactly this domain and show its experiments and no other's."""
    listed = _run([str(python.with_name("papers")), "list"], python.parents[2])
    if listed.returncode != 0:
        return [f"`papers list` failed:\n{listed.stdout}\n{listed.stderr}"]
    problems = []
    first = listed.stdout.splitlines()[:1]
    if first != [f"installed domains: {domain or 'none'}"]:
        problems.append(f"`papers list` says {first}, expected 'installed domains: {domain or 'none'}'")
    declared = _declared_experiments()
    shown = {i for ids in declared.values() for i in ids
             if re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", listed.stdout)}
    if shown != declared.get(domain, set()):
        problems.append(f"`papers list` shows experiments {sorted(shown)}, "
                        f"expected {sorted(declared.get(domain, set()))}")
    return problems + ([f"`papers list` printed:\n{listed.stdout}"] if problems else [])


@pytest.mark.parametrize("case", CASES)
def test_installed_alone(case, uv, wheels, torch_constraint, tmp_path):
    domain = _domain_of(case)
    requirements = [str(wheels["papers-core"])]
    if domain:
        extra = case[len(domain):]  # "" or "[atari]"
        requirements.append(f"{wheels[f'papers-{domain}']}{extra}")
    python = _install(uv, tmp_path / "venv", requirements, torch_constraint)
    problems = _environment_problems(uv, python, case) + _listing_problems(python, domain)
    if problems:
        installed = f"papers-core + {case}" if domain else "papers-core alone"
        pytest.fail(f"{installed}:\n" + "\n".join(problems), pytrace=False)
