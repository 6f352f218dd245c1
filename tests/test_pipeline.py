"""The real dvc.yaml, run end to end at toy size in a temporary git + DVC repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

COPIED = ["dvc.yaml", ".dvcignore", "configs", "pipeline", "metalearning"]


def _tiny_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["cpu"]["sine_meta_iterations"] = 20
    params["sine"]["meta_test"].update(curves=4, repeats=2)
    params["sine"]["families"] = ["sine_metasgd"]
    params["sine"]["experiments"] = {"maml_sine_5shot": {"family": "sine_metasgd"}}
    return params


def _run(cmd, cwd):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, work / name)
    (work / "params.yaml").write_text(yaml.safe_dump(_tiny_params()))
    _run(["git", "init", "-q"], work)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"], work)
    _run(["dvc", "init", "-q"], work)
    _run(["dvc", "repro", "-q"], work)
    return work


def test_repro_writes_every_stage_output(pipeline_dir):
    for rel in ["data/sine/sine_metasgd.pt", "models/maml_sine_5shot/checkpoint.pt",
                "metrics/sine/maml_sine_5shot/metrics.json", "reports/sine/README.md",
                "reports/sine/qualitative.png", "dvc.lock"]:
        assert (pipeline_dir / rel).is_file(), rel
    assert "maml_sine_5shot" in (pipeline_dir / "reports/sine/README.md").read_text()


def test_second_repro_is_a_no_op(pipeline_dir):
    out = _run(["dvc", "status"], pipeline_dir).stdout
    assert "up to date" in out
    lock = (pipeline_dir / "dvc.lock").read_text()
    _run(["dvc", "repro", "-q"], pipeline_dir)
    assert (pipeline_dir / "dvc.lock").read_text() == lock


def test_changing_a_param_reruns_training(pipeline_dir):
    params = _tiny_params()
    params["profiles"]["cpu"]["sine_meta_iterations"] = 21
    (pipeline_dir / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "status"], pipeline_dir).stdout
    assert "train_sine@maml_sine_5shot" in out and "split_sine@sine_metasgd" not in out
