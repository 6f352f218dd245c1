"""tools/rl_device_check.py (issue 15 item 4's prepared run for a lent many-core machine) at toy
sizes on this machine: the timing trainings, the budgeted training and its meta-test under
torchrun, and the numbers in results.json agreeing with the files they come from."""

from __future__ import annotations

import csv
import json
import math
import sys

import pytest

from tests.conftest import REPO


def _tool():
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import rl_device_check
    finally:
        sys.path.remove(str(REPO / "tools"))
    return rl_device_check


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_rl_device_check_times_trains_and_meta_tests_the_cheetah(tmp_path):
    pytest.importorskip("mujoco")
    out = tmp_path / "check"
    assert _tool().main(["--tiny", "--out", str(out), "--train-minutes", "0.002", "--timing-iterations", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    timing, training = results["timing"], results["training"]
    assert timing["processes"] == min(results["machine"]["cores"], 2)  # at most the (tiny) meta-batch
    assert timing["seconds_per_iteration"] == pytest.approx(
        max(timing["seconds_3_iterations"] - timing["seconds_2_iterations"], 1e-3))
    assert timing["projected_minutes_500_iterations"] == pytest.approx(timing["seconds_per_iteration"] * 500 / 60)
    assert training["iterations"] == max(1, min(500, math.floor(0.12 / timing["seconds_per_iteration"])))
    model = out / "model" / "maml_cheetah_vel"
    rows = list(csv.DictReader((model / "learning_curve.csv").open()))
    assert training["train_metrics"]["meta_iterations"] == training["iterations"] == int(rows[-1]["iteration"])
    assert (model / "checkpoint.pt").is_file() and not (out / "rollouts.txt").exists()  # --tiny: no bench
    meta_test = json.loads((out / "metrics" / "maml_cheetah_vel" / "metrics.json").read_text())
    assert training["meta_test"] == meta_test and meta_test["eval_seed"] == 20170709
    assert set(meta_test) >= {"0_steps", "1_steps"} and meta_test["tasks"] == 2


def test_the_rl_device_check_refuses_a_used_output_folder(tmp_path, capsys):
    earlier = tmp_path / "earlier.json"
    earlier.write_text("{}")
    for used in (tmp_path, earlier):  # a folder with files in it, or a file
        assert _tool().main(["--tiny", "--out", str(used)]) == 2
        assert capsys.readouterr().err.strip() == f"rl_device_check: error: --out {used} is not an empty folder"
    assert [p.name for p in tmp_path.iterdir()] == ["earlier.json"] and earlier.read_text() == "{}"


def test_the_rl_device_check_names_a_missing_package_in_one_line(tmp_path, capsys, monkeypatch):
    from importlib.metadata import PackageNotFoundError

    tool = _tool()

    def version(name):
        if name == "mujoco":
            raise PackageNotFoundError(name)
        return "1.0"

    monkeypatch.setattr(tool, "version", version)
    assert tool.main(["--tiny", "--out", str(tmp_path / "check")]) == 2
    assert capsys.readouterr().err.strip() == (
        "rl_device_check: error: the package mujoco is not installed (environment.lock pins it)")
    assert not (tmp_path / "check").exists()


def test_a_bad_config_is_one_line_and_a_failing_torchrun_step_names_its_command(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mujoco")
    tool = _tool()
    monkeypatch.setattr(tool, "TINY", [*tool.TINY, "TRPO.ls_batch = 0"])  # a config every process refuses
    assert tool.main(["--tiny", "--out", str(tmp_path / "first")]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"rl_device_check: error: {tool.EXPERIMENT}: TRPO.ls_batch must be a positive integer, got 0"]
    monkeypatch.setattr(tool, "meta_batch_size", lambda bindings: 2)  # past the check: torchrun meets it
    assert tool.main(["--tiny", "--out", str(tmp_path / "second")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rl_device_check: error: torch.distributed.run --standalone --nproc_per_node")
    assert "metalearning train" in err and "TRPO.ls_batch must be a positive integer, got 0" in err
    assert not any((tmp_path / name / "results.json").exists() for name in ("first", "second"))
