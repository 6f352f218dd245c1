"""tools/gpu_check.py (issue 12 item 5) runs on the CPU at tiny sizes: every step but the bench
(its own tests cover it), including the 2-process check over gloo. On a machine without CUDA the
default (cuda) refuses in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_gpu_check_runs_its_steps_on_the_cpu(tmp_path):
    sys.path.insert(0, str(REPO / "tools"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(REPO / "tools"))
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--iterations", "2", "--skip-bench", "--distributed",
                           "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    training = results["training"]
    assert training["iterations_timed"] == 2 and training["ms_per_iteration"] > 0
    assert training["projected_paper_minutes"] == pytest.approx(training["ms_per_iteration"] * 60_000 / 60_000)
    check = results["distributed"]
    assert check["ok"] and check["loss_two"] == pytest.approx(check["loss_one"], rel=1e-4)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_check_refuses_in_one_line():
    done = subprocess.run([sys.executable, "tools/gpu_check.py"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "gpu_check: error: --device: 'cuda' asked for, but this machine has no usable CUDA device "
        "(install torch for CUDA, or choose cpu)"]
