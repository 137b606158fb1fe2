"""The `papers` command end to end on the toy experiment: errors are one line, runs are recorded."""

import json
from importlib.metadata import EntryPoint

import pytest

from papers.core import registry
from papers.core.cli import main


@pytest.fixture(autouse=True)
def toy_registry(monkeypatch):
    point = EntryPoint("toy-regression", "papers.core.testing:TOY_EXPERIMENT", "papers.experiments")
    monkeypatch.setattr(registry, "_experiment_entry_points", lambda: {"toy-regression": point})


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_and_show(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "toy-regression" in out and "installed domains" in out
    code, out, _ = run_cli(capsys, "show", "toy-regression")
    assert code == 0 and "claim: Gradient descent" in out and "steps: int = 200" in out and "smoke=20" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "toy-regresion"], "unknown experiment 'toy-regresion'; did you mean 'toy-regression'?"),
        (["run", "toy-regression", "--preset", "huge"], "unknown preset 'huge'"),
        (["run", "toy-regression", "--set", "steps=many"], "bad value 'many' for 'steps': expected int"),
        (["run", "toy-regression", "--set", "stepz=3"], "unknown config key 'stepz'"),
        (["run", "toy-regression", "--set", "steps"], "--set expects key=value"),
        (
            ["run", "toy-regression", "--preset", "smoke", "--record"],
            "--record keeps default-preset runs only",
        ),
        (["resume", "/nonexistent/run"], "is not a run folder"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(capsys, tmp_path, argv, message):
    code, _, err = (
        run_cli(capsys, *argv, "--out", str(tmp_path)) if argv[0] == "run" else run_cli(capsys, *argv)
    )
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("papers: error: ") and message in err, err
    assert "Traceback" not in err


def test_unwritable_output_directory(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, err = run_cli(
        capsys, "run", "toy-regression", "--preset", "smoke", "--out", str(blocker / "runs")
    )
    assert code == 2 and "cannot write to output directory" in err and err.count("\n") == 1


def test_failure_inside_a_run_is_one_line(capsys, tmp_path):
    code, _, err = run_cli(
        capsys,
        "run",
        "toy-regression",
        "--preset",
        "smoke",
        "--out",
        str(tmp_path),
        "--set",
        "fail_at_step=2",
    )
    assert code == 1 and "FloatingPointError: non-finite loss nan at step 2" in err and err.count("\n") == 1


def test_run_record_and_report(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "run", "toy-regression", "--record", "--set", "steps=30")
    assert code == 0 and "holds" in out and "recorded" in out
    ledger = tmp_path / "results" / "toy-regression.json"
    record = json.loads(ledger.read_text())
    assert record["preset"] == "default" and record["figures"] == ["docs/figures/toy-regression/loss.png"]
    assert (tmp_path / "docs/figures/toy-regression/loss.png").is_file()

    # A failing run afterwards leaves the ledger exactly as it was.
    before = ledger.read_bytes()
    code, _, _ = run_cli(capsys, "run", "toy-regression", "--record", "--set", "fail_at_step=1")
    assert code == 1 and ledger.read_bytes() == before

    code, out, _ = run_cli(capsys, "report")
    assert code == 0 and "from 1 results" in out
    page = (tmp_path / "docs/RESULTS.md").read_text()
    assert "Gradient descent moves least-squares weights towards the truth." in page
    assert "| weights approach the truth |" in page and "](../docs/figures/toy-regression/loss.png)" in page
