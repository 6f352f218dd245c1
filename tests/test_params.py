"""params.yaml is checked against one schema before any stage runs: a bad value gets one line that
names the file, the key and what is allowed (issue: an unknown profile trained paper budgets)."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from metalearning.params import (
    ParamsError,
    check_params,
    experiment_bindings,
    load_params,
    rl_test_bindings,
    stage_launch,
)

REPO = Path(__file__).resolve().parents[1]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _set(path: str, value):
    def edit(params: dict) -> None:
        *parents, last = path.split(".")
        node = params
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return edit


BAD = [
    ("profile", "gpu", r"profile: Input should be 'cpu' or 'paper' \(got 'gpu'\)"),
    ("omniglot.experiments.maml_omniglot_5w1s.cpu", KeyError, r"omniglot\.experiments\.maml_omniglot_5w1s\.cpu: "
                                                              "required under profile cpu"),
    ("profiles.cpu.sine_meta_iterations", KeyError, r"profiles\.cpu\.sine_meta_iterations: Field required"),
    ("profiles.cpu.sine_meta_iterations", None, r"sine_meta_iterations must be a number"),
    ("data.mirrors", "/data/mirror", r"data\.mirrors: Input should be a valid list \(got '/data/mirror'\)"),
    ("sine.experimentz", {}, r"sine\.experimentz: Extra inputs are not permitted"),
    ("omniglot.experiments.maml_omniglot_5w1s.episodes", "5w9s", r"episodes names \['5w9s'\], not in meta_test\.sets"),
    ("threads", 0, r"threads: Input should be greater than or equal to 1"),
    ("omniglot.threads", "2", r"omniglot\.threads: Input should be a valid integer"),
    ("profiles.cpu.device", "gpu", r"profiles\.cpu\.device: String should match pattern .*\(got 'gpu'\)"),
    ("profiles.cpu.nproc", 0, r"profiles\.cpu\.nproc: Input should be greater than or equal to 1"),
    ("rl.nproc", 0, r"rl\.nproc: Input should be greater than or equal to 1"),
    ("sine.experiments.maml_sine_5shot.seeds", KeyError, r"sine\.experiments\.maml_sine_5shot\.seeds: Field required"),
    ("omniglot.experiments.maml_omniglot_5w1s.seeds", 0, r"maml_omniglot_5w1s\.seeds: Input should be greater than or "
                                                         "equal to 1"),
    ("rl.experiments.maml_nav2d.seeds", "3", r"maml_nav2d\.seeds: Input should be a valid integer"),
]


def test_the_shipped_params_file_is_valid():
    check_params(PARAMS)
    assert load_params(REPO / "params.yaml") == PARAMS


@pytest.mark.parametrize("key, value, message", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_a_bad_value_is_named_in_one_line(key, value, message):
    params = copy.deepcopy(PARAMS)
    _set(key, value)(params)
    with pytest.raises(ParamsError, match=message) as err:
        check_params(params, Path("params.yaml"))
    assert str(err.value).startswith("params.yaml: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("script", ["train.py", "test.py", "report.py"])
def test_a_stage_stops_on_a_bad_params_file_with_one_line(script, tmp_path):
    params = copy.deepcopy(PARAMS)
    params["profile"] = "gpu"
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    args = {"train.py": ["--task", "omniglot", "--experiment", "maml_omniglot_5w1s", "--out", str(tmp_path / "m")],
            "test.py": ["--task", "omniglot", "--experiment", "maml_omniglot_5w1s", "--checkpoint",
                        str(tmp_path / "c.pt"), "--out", str(tmp_path / "o")],
            "report.py": ["--task", "sine", "--out", str(tmp_path / "r")]}[script]
    out = subprocess.run([sys.executable, str(REPO / "pipeline" / script), *args, "--params", str(bad)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0, out.stderr
    assert "profile: Input should be 'cpu' or 'paper'" in out.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists() and not (tmp_path / "r").exists()


def test_a_task_sections_nproc_overrides_the_profiles():
    """``rl.nproc`` sets the RL training stages' processes; other tasks (and RL without it) use the profile's."""
    params = copy.deepcopy(PARAMS)
    params["profiles"]["cpu"]["nproc"], params["rl"]["nproc"] = 1, 2
    assert stage_launch(params, task="rl") == (None, 2)
    assert stage_launch(params, task="omniglot") == stage_launch(params, task="sine") == (None, 1)
    del params["rl"]["nproc"]
    params["profiles"]["cpu"]["nproc"] = 3
    assert stage_launch(params, task="rl") == (None, 3)


def test_rl_device_overrides_the_profiles():
    """``rl.device``: a GPU profile's RL stages can run on the CPU (tiny policies, CPU rollouts)."""
    params = copy.deepcopy(PARAMS)
    params["profiles"]["cpu"]["device"], params["rl"]["device"] = "auto", "cpu"
    check_params(params)
    assert stage_launch(params, task="rl")[0] is None  # cpu: no binding
    assert stage_launch(params, task="omniglot")[0] == stage_launch(params)[0] == "auto"
    params["rl"]["device"] = None
    assert stage_launch(params, task="rl")[0] == "auto"
    params["rl"]["device"] = "gpu"
    with pytest.raises(ParamsError, match=r"rl\.device: String should match pattern"):
        check_params(params)


def test_rl_experiments_bind_per_profile_and_at_meta_test():
    """An RL entry's ``cpu``/``paper`` lists bind training in that profile only; its ``test`` list
    binds every meta-test, after the meta-test seed."""
    params = copy.deepcopy(PARAMS)
    params["rl"]["experiments"]["pretrained_nav2d"] = {"cpu": ["a = 1"], "paper": ["b = 2"], "test": ["c = 3"],
                                                    "seeds": 1}
    check_params(params)
    assert experiment_bindings(params, "rl", "pretrained_nav2d") == ["a = 1"]
    params["profile"] = "paper"
    assert experiment_bindings(params, "rl", "pretrained_nav2d") == ["b = 2"]
    seed = params["rl"]["meta_test_seed"]
    assert rl_test_bindings(params, "pretrained_nav2d") == [f"MetaRL.eval_seed = {seed}", "c = 3"]
    assert rl_test_bindings(params, "maml_nav2d_fixed") == [f"MetaRL.eval_seed = {seed}"]
