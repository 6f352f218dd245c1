"""Sacred records of train and test runs (FileStorageObserver)."""

import json

import pytest

from metalearning import commands
from metalearning.runs import recorded_run

from .conftest import REPO

TINY = ["MetaTrainer.meta_iterations = 4", "MetaTrainer.log_every = 2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    commands.train([REPO / "configs" / "experiments" / "metasgd_sine_5shot.gin"], TINY, seed=3,
                   out_dir=tmp / "model", runs_dir=tmp / "runs", progress=False)
    return tmp / "runs" / "1"


def _json(path):
    return json.loads(path.read_text())


def test_config_holds_seed_and_gin_bindings(trained):
    config = _json(trained / "config.json")
    assert config["seed"] == 3
    assert config["gin"]["MetaTrainer"]["meta_iterations"] == 4
    assert config["gin"]["macros"]["shots"] == 5
    assert config["gin"]["MetaSGD"]["inner_lr_init"] == [0.005, 0.1]
    assert config["gin_bindings"] == TINY


def test_run_records_git_commit_and_dirty_flag(trained):
    repos = _json(trained / "run.json")["experiment"]["repositories"]
    assert repos and len(repos[0]["commit"]) == 40 and isinstance(repos[0]["dirty"], bool)


def test_metrics_are_per_iteration_floats(trained):
    metrics = _json(trained / "metrics.json")
    assert metrics["meta_val.mse"]["steps"] == [2, 4]
    assert all(isinstance(v, float) for v in metrics["meta_train.loss"]["values"])


def test_result_and_artifacts(trained):
    run = _json(trained / "run.json")
    assert run["status"] == "COMPLETED"
    assert isinstance(run["result"]["final_meta_val_mse"], float)
    assert {"config.gin", "operative_config.gin", "checkpoint.pt", "learning_curve.csv"} <= set(run["artifacts"])
    assert "MetaSGD.inner_steps = %inner_steps" in (trained / "operative_config.gin").read_text()


def test_failed_run_is_recorded_as_failed(tmp_path):
    def body(run):
        run.log_scalar("x", 1.0, 1)
        raise FloatingPointError("meta-loss became nan at meta-iteration 7")

    with pytest.raises(FloatingPointError):
        recorded_run("boom", body, config={"seed": 0}, runs_dir=tmp_path)
    run = _json(tmp_path / "1" / "run.json")
    assert run["status"] == "FAILED" and "meta-iteration 7" in "".join(run["fail_trace"])
    assert _json(tmp_path / "1" / "metrics.json")["x"]["values"] == [1.0]
