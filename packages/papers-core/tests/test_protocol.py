"""The experiment protocol: config parsing, claim checks, results and the runner."""

import json
import math
from dataclasses import dataclass
from typing import Literal

import pytest

from papers.core.errors import PapersError
from papers.core.experiment import Check, Experiment, Paper, Result, parse_value
from papers.core.runner import resume_run, run_experiment
from papers.core.testing import TOY_EXPERIMENT


def test_parse_value_by_annotation():
    assert parse_value("3", int, "k") == 3
    assert parse_value("0.5", float, "k") == 0.5
    assert parse_value("yes", bool, "k") is True and parse_value("off", bool, "k") is False
    assert parse_value("4, 8,16", tuple[int, ...], "k") == (4, 8, 16)
    assert parse_value("none", int | None, "k") is None
    assert parse_value("7", int | None, "k") == 7
    assert parse_value("adam", Literal["adam", "sgd"], "k") == "adam"


@pytest.mark.parametrize(
    "text, annotation, message",
    [
        ("abc", int, "expected int"),
        ("1.5", int, "expected int"),
        ("maybe", bool, "expected bool"),
        ("rmsprop", Literal["adam", "sgd"], "choose one of adam, sgd"),
    ],
)
def test_parse_value_errors_name_the_key(text, annotation, message):
    with pytest.raises(PapersError, match=message) as info:
        parse_value(text, annotation, "opt")
    assert "'opt'" in str(info.value)


def test_make_config_presets_overrides_and_errors():
    config = TOY_EXPERIMENT.make_config("smoke", {"lr": "0.2"})
    assert (config.steps, config.lr) == (20, 0.2)
    with pytest.raises(PapersError, match="unknown preset 'huge'.*smoke, default"):
        TOY_EXPERIMENT.make_config("huge")
    with pytest.raises(PapersError, match="did you mean 'steps'"):
        TOY_EXPERIMENT.make_config("default", {"step": "3"})
    with pytest.raises(PapersError, match="invalid config.*steps must be >= 1"):
        TOY_EXPERIMENT.make_config("default", {"steps": "0"})
    with pytest.raises(PapersError, match="lr must be a positive number"):
        TOY_EXPERIMENT.make_config("default", {"lr": "nan"})


def test_experiment_definition_is_validated():
    @dataclass
    class Config:
        n: int = 1

    def run(config, ctx):
        return Result(metrics={})

    paper = Paper("T", "A", 2020)
    with pytest.raises(ValueError, match="presets"):
        Experiment("x", paper, "c", config=Config, run=run, presets={"default": {}})
    with pytest.raises(PapersError, match="unknown config key 'm'"):
        Experiment("x", paper, "c", config=Config, run=run, presets={"smoke": {"m": 1}, "default": {}})
    with pytest.raises(TypeError, match="module="):
        Experiment("x", paper, "c", config=Config, run=run)
    experiment = Experiment("x", paper, "c", config=Config, run=run, presets={"smoke": {}, "default": {}})
    assert experiment.papers == (paper,)


def test_declared_experiment_loads_its_module_on_first_use(monkeypatch):
    """A declaration names its module; Config, PRESETS and run are imported only when needed."""
    import sys
    import types

    module = types.ModuleType("papers.toydomain.toypaper.experiment")

    @dataclass
    class Config:
        n: int = 1

    module.Config, module.PRESETS = Config, {"smoke": {"n": 2}, "default": {}}
    module.run = lambda config, ctx: Result(metrics={"n": config.n})
    experiment = Experiment("toy", Paper("T", "A", 2020), "c", module=module.__name__)
    assert experiment.domain == "toydomain" and experiment.package == "papers.toydomain.toypaper"
    monkeypatch.setitem(sys.modules, module.__name__, module)
    assert experiment.make_config("smoke").n == 2 and experiment.run is module.run
    broken = types.ModuleType("papers.toydomain.broken.experiment")
    monkeypatch.setitem(sys.modules, broken.__name__, broken)
    with pytest.raises(PapersError, match="defines no Config"):
        Experiment("broken", Paper("T", "A", 2020), "c", module=broken.__name__).make_config()


def test_check_compares_and_never_passes_on_nan():
    assert Check("a", 1.0, "<", 2.0).passed
    assert not Check("a", 3.0, "<", 2.0).passed
    assert Check("a", 2.0, ">=", 2.0).passed
    assert not Check("a", math.nan, ">", 0.0).passed
    assert not Check("a", math.inf, ">", 0.0).passed
    with pytest.raises(ValueError, match="comparison"):
        Check("a", 1.0, "==", 1.0)


def test_result_round_trip_and_verdicts():
    checks = [Check("a", 1.0, "<", 2.0, "baseline"), Check("b", 3.0, "<", 2.0)]
    result = Result(metrics={"x": 1.5}, checks=checks, figures=["figures/f.png"], experiment="e")
    again = Result.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.to_dict() == result.to_dict()
    assert result.verdict == "partly holds (1/2)"
    assert Result(metrics={}, checks=checks[:1]).verdict == "holds"
    assert Result(metrics={}, checks=checks[1:]).verdict == "does not hold"


def test_run_writes_a_complete_run_folder(tmp_path):
    result, run_dir = run_experiment(TOY_EXPERIMENT, preset="smoke", seed=3, device="cpu", out=tmp_path)
    assert run_dir.parent == tmp_path / "toy-regression"
    for name in (
        "run.json",
        "result.json",
        "metrics.jsonl",
        "metrics.csv",
        "stages/fit.json",
        "figures/loss.png",
    ):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "result.json").read_text())
    assert record["id"] == "toy-regression" and record["preset"] == "smoke" and record["seed"] == 3
    assert record["verdict"] == "holds" and record["checks"][0]["passed"]
    assert record["versions"]["torch"] and record["hardware"]["cpu_count"] >= 1
    assert record["config"]["steps"] == 20 and record["wall_time_s"] >= 0
    assert record["figures"] == ["figures/loss.png"]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 20


def test_same_seed_same_result(tmp_path):
    first, _ = run_experiment(TOY_EXPERIMENT, preset="smoke", seed=5, out=tmp_path, device="cpu")
    second, _ = run_experiment(TOY_EXPERIMENT, preset="smoke", seed=5, out=tmp_path, device="cpu")
    other, _ = run_experiment(TOY_EXPERIMENT, preset="smoke", seed=6, out=tmp_path, device="cpu")
    assert first.metrics == second.metrics
    assert first.metrics != other.metrics


def test_resume_reuses_finished_stages(tmp_path, monkeypatch):
    from papers.core import registry

    monkeypatch.setattr(registry, "get_experiment", lambda _id: TOY_EXPERIMENT)
    result, run_dir = run_experiment(TOY_EXPERIMENT, preset="smoke", out=tmp_path, device="cpu")
    stage = run_dir / "stages" / "fit.json"
    data = json.loads(stage.read_text())
    data["final_error"] = 123.0  # a marker: a resumed run must reuse the stage, not recompute it
    stage.write_text(json.dumps(data))
    (run_dir / "result.json").unlink()
    resumed, same_dir = resume_run(run_dir)
    assert same_dir == run_dir
    assert resumed.metrics["final_error"] == 123.0
    assert (run_dir / "result.json").is_file()


def test_a_stage_gives_back_non_finite_floats_fresh_and_resumed(tmp_path):
    from papers.core.runner import RunContext

    value = {"nan": float("nan"), "curve": [1.0, float("inf"), -math.inf], "label": "nan-free text"}
    fresh = RunContext(tmp_path).stage("part", lambda: value)
    resumed = RunContext(tmp_path, resuming=True).stage("part", lambda: pytest.fail("recomputed"))
    for got in (fresh, resumed):
        assert math.isnan(got["nan"]) and got["curve"] == [1.0, math.inf, -math.inf]
        assert got["label"] == "nan-free text"
    assert '"nan"' in (tmp_path / "stages" / "part.json").read_text()  # the file itself is standard JSON


def test_non_finite_loss_fails_without_writing_a_result(tmp_path):
    with pytest.raises(FloatingPointError, match="non-finite loss nan at step 3"):
        run_experiment(
            TOY_EXPERIMENT, preset="smoke", out=tmp_path, device="cpu", overrides={"fail_at_step": "3"}
        )
    (run_dir,) = (tmp_path / "toy-regression").iterdir()
    assert (run_dir / "run.json").is_file() and not (run_dir / "result.json").exists()


def test_bad_device_and_threads_are_clear_errors(tmp_path):
    with pytest.raises(PapersError, match="unknown device 'tpu'"):
        run_experiment(TOY_EXPERIMENT, preset="smoke", out=tmp_path, device="tpu")
    with pytest.raises(PapersError, match="threads must be at least 1"):
        run_experiment(TOY_EXPERIMENT, preset="smoke", out=tmp_path, device="cpu", threads=0)
    assert not (tmp_path / "toy-regression").exists()
