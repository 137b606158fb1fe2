"""List the packages a git diff affects, for CI's test matrix.

    python tools/changed_packages.py --base origin/main            # ["papers-core", "papers-rl", ...]
    python tools/changed_packages.py --base HEAD~3 --format lines

A change under ``packages/papers-<d>/`` affects that package. A change to ``papers-core`` or to what
every package is built and tested with (root ``pyproject.toml``, ``shared/``, ``tools/``, ``tests/``,
``.github/``, ``.ci/``) affects every package. Documentation and results (``docs/``, ``results/``,
top-level ``*.md``, ``LICENSE``) affect none. Any other path affects every package: when in doubt,
test everything. An unknown base ref (a new branch, a shallow clone) also selects every package.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parents[1]
CORE = "papers-core"
DOCS_AND_RESULTS = ("docs", "results")


def repo_packages(root: Path = ROOT) -> list[str]:
    """The packages of the repository, core first."""
    names = sorted(p.parent.name for p in (root / "packages").glob("*/pyproject.toml"))
    return sorted(names, key=lambda name: name != CORE)


def affected_packages(changed_paths: Iterable[str], packages: Iterable[str] | None = None) -> list[str]:
    """The packages (in ``packages`` order, core first by default) that the changed paths affect."""
    packages = list(repo_packages() if packages is None else packages)
    hit: set[str] = set()
    for path in changed_paths:
        parts = PurePosixPath(path).parts
        if len(parts) > 2 and parts[0] == "packages" and parts[1] in packages:
            if parts[1] == CORE:
                return packages
            hit.add(parts[1])
        elif parts[0] in DOCS_AND_RESULTS or (parts[:-1] in ((), ("packages",)) and _is_docs(parts[-1])):
            continue
        else:  # the root pyproject, shared/, tools/, tests/, .github/, .ci/, or a path no rule knows
            return packages
    return [p for p in packages if p in hit]


def _is_docs(name: str) -> bool:
    return name.endswith((".md", ".rst")) or name.startswith("LICENSE")


def git_changed_paths(base: str, root: Path = ROOT) -> list[str] | None:
    """Paths changed between the merge base of ``base`` and HEAD; None when ``base`` is unknown."""
    try:
        diff = subprocess.run(["git", "diff", "--name-only", "--no-renames", "-z", f"{base}...HEAD"],
                              cwd=root, capture_output=True, text=True)
    except OSError as exc:  # no git
        diff = subprocess.CompletedProcess([], 1, "", str(exc))
    if diff.returncode != 0:
        reason = (diff.stderr.strip().splitlines() or [f"git exited with {diff.returncode}"])[0]
        print(f"changed_packages: cannot diff against {base!r} ({reason}); selecting every package",
              file=sys.stderr)
        return None
    return [path for path in diff.stdout.split("\0") if path]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="HEAD~1", help="git ref to compare HEAD with (default: HEAD~1)")
    parser.add_argument("--all", action="store_true", help="select every package, without looking at git")
    parser.add_argument("--format", choices=("json", "lines"), default="json",
                        help="a JSON list (for a CI matrix) or one name per line")
    args = parser.parse_args(argv)
    paths = None if args.all else git_changed_paths(args.base)
    packages = repo_packages() if paths is None else affected_packages(paths)
    print(json.dumps(packages) if args.format == "json" else "\n".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
