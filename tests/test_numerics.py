"""Pinned numerics (issue 13 item 1): portable runs give the same bits whatever the host's kernel
paths, native ones do not; each run records the numerics in force; a stage refuses numerics that
differ from params.yaml's.

A weaker host is simulated the way its libraries would behave on it: MKL limited to AVX2
(``MKL_ENABLE_INSTRUCTIONS``), or another thread count. (Portable mode pins ``MKL_CBWR``,
``ONEDNN_MAX_CPU_ISA`` and ``ATEN_CPU_CAPABILITY`` itself, so those cannot simulate anything
there; they show in native mode.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from metalearning import commands
from metalearning.numerics import MODE_ENV, set_numerics
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
import measure_numerics  # noqa: E402

sys.path.remove(str(REPO / "tools"))

WIDER_THAN_AVX2 = "avx512f" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else False


def _digest(**env: str) -> str:
    return measure_numerics.run(env, "omniglot", iterations=8)[0]


def test_portable_numerics_are_identical_under_a_weaker_host_and_other_threads():
    portable = _digest(METALEARNING_NUMERICS="portable")
    assert _digest(METALEARNING_NUMERICS="portable", MKL_ENABLE_INSTRUCTIONS="AVX2") == portable
    assert _digest(METALEARNING_NUMERICS="portable", THREADS="2") == portable


@pytest.mark.skipif(not WIDER_THAN_AVX2, reason="this host has no AVX-512: native already is the AVX2 path")
def test_native_numerics_change_with_the_host_so_the_pinning_matters():
    native = _digest()
    assert _digest(MKL_ENABLE_INSTRUCTIONS="AVX2") != native
    assert _digest(ONEDNN_MAX_CPU_ISA="AVX2") != native
    assert _digest(METALEARNING_NUMERICS="portable") != native


def test_every_run_records_its_numerics(tmp_path):
    commands.train([REPO / "configs" / "experiments" / "maml_sine_5shot.gin"], ["MetaTrainer.meta_iterations = 1"],
                   seed=0, out_dir=tmp_path / "m", runs_dir=tmp_path / "runs", progress=False)
    numerics = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())["host"]["numerics"]
    assert numerics["mode"] == os.environ.get(MODE_ENV, "native")
    assert numerics["cpu"]["model"] and "MKL_CBWR" in numerics["environment"]
    assert numerics["aten_cpu_capability"] and "torch" in numerics and "BLAS" in numerics["torch_build"].upper()


def test_numerics_are_chosen_before_torch_loads(monkeypatch):
    monkeypatch.delenv(MODE_ENV, raising=False)
    with pytest.raises(ValueError, match=r"^params.yaml: numerics: numerics must be one of native, portable, got "
                                         r"'fast'$"):
        set_numerics("fast", "params.yaml: numerics")
    with pytest.raises(RuntimeError, match="after torch was imported"):  # pytest has imported torch
        set_numerics("portable")
    assert set_numerics("native") == "native"


def test_a_stage_refuses_numerics_other_than_the_params_file(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["numerics"] = "portable"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {k: v for k, v in os.environ.items() if k != MODE_ENV}
    done = subprocess.run([sys.executable, "pipeline/train.py", "--task", "sine", "--experiment", "maml_sine_5shot",
                           "--out", str(tmp_path / "m"), "--params", str(tmp_path / "params.yaml")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and not (tmp_path / "m").exists()
    assert done.stderr.strip().splitlines() == [
        f"train.py: error: numerics 'portable' chosen after torch was imported; choose it first "
        f"(export {MODE_ENV}=portable before starting Python)"]
