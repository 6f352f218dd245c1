"""Runs survive faults: SIGKILL + resume is bit-identical, Ctrl-C checkpoints, NaN fails cleanly."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metalearning.checkpoints import load_checkpoint
from metalearning.config import load_config
from metalearning.metrics_io import CurveRecorder
from metalearning.training import CheckpointPolicy, MetaTrainer, init_state, meta_train

from .conftest import REPO

EXPERIMENT = REPO / "configs" / "experiments" / "metasgd_sine_5shot.gin"
BINDINGS = ["MetaTrainer.meta_iterations = 600", "MetaTrainer.log_every = 50"]


def _cmd(*args):
    return [sys.executable, "-m", "metalearning", *args]


def _train_cmd(out: Path, runs: Path):
    binds = [x for b in BINDINGS for x in ("--bind", b)]
    return _cmd("train", "--config", str(EXPERIMENT), *binds, "--seed", "2", "--out", str(out),
                "--runs-dir", str(runs), "--checkpoint-every", "100", "--quiet")


def _wait_for_checkpoint(path: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return load_checkpoint(path)["iteration"]
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError(path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reference")
    subprocess.run(_train_cmd(tmp / "model", tmp / "runs"), check=True, capture_output=True)
    return tmp / "model"


def _assert_same_run(model: Path, reference: Path):
    got, want = load_checkpoint(model / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert got["iteration"] == want["iteration"] == 600
    for group in want["meta_params"]:
        for k, p in want["meta_params"][group].items():
            assert torch.equal(got["meta_params"][group][k], p), (group, k)
    assert (model / "learning_curve.csv").read_text() == (reference / "learning_curve.csv").read_text()
    strip = lambda d: {k: v for k, v in d.items() if k != "sacred_run_id"}  # noqa: E731
    assert strip(json.loads((model / "train_metrics.json").read_text())) == \
        strip(json.loads((reference / "train_metrics.json").read_text()))


def test_sigkill_then_resume_is_bit_identical(tmp_path, reference):
    proc = subprocess.Popen(_train_cmd(tmp_path / "model", tmp_path / "runs"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = _wait_for_checkpoint(tmp_path / "model" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert killed_at < 600
    subprocess.run(_cmd("resume", "--checkpoint", str(tmp_path / "model" / "checkpoint.pt"),
                        "--runs-dir", str(tmp_path / "runs"), "--quiet"), check=True, capture_output=True)
    _assert_same_run(tmp_path / "model", reference)
    resumed = json.loads((tmp_path / "runs" / "2" / "config.json").read_text())
    assert resumed["resumed_at_iteration"] == killed_at and resumed["resumed_from"]["sacred_run_id"] == "1"


def test_ctrl_c_marks_interrupted_and_checkpoints(tmp_path, reference):
    proc = subprocess.Popen(_train_cmd(tmp_path / "model", tmp_path / "runs"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    first = _wait_for_checkpoint(tmp_path / "model" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "INTERRUPTED" in err
    assert json.loads((tmp_path / "runs" / "1" / "run.json").read_text())["status"] == "INTERRUPTED"
    assert load_checkpoint(tmp_path / "model" / "checkpoint.pt")["iteration"] >= first
    subprocess.run(_cmd("resume", "--checkpoint", str(tmp_path / "model" / "checkpoint.pt"),
                        "--runs-dir", str(tmp_path / "runs"), "--quiet"), check=True, capture_output=True)
    _assert_same_run(tmp_path / "model", reference)


class _NanAfter:
    """Wraps an algorithm so its meta-loss turns NaN from meta-iteration ``n`` on."""

    def __init__(self, algo, n):
        self.algo, self.n, self.calls = algo, n, 0

    def __getattr__(self, name):
        return getattr(self.algo, name)

    def meta_gradient(self, *args, **kwargs):
        self.calls += 1
        grads, loss = self.algo.meta_gradient(*args, **kwargs)
        return grads, loss * float("nan") if self.calls >= self.n else loss


def test_nan_stops_with_reason_and_keeps_last_good_checkpoint(tmp_path):
    load_config([EXPERIMENT], ["MetaTrainer.meta_iterations = 100", "MetaTrainer.log_every = 10"])
    torch.manual_seed(0)
    trainer = MetaTrainer()
    trainer.algorithm = _NanAfter(trainer.algorithm, 37)
    state = init_state(trainer, 0)
    val = trainer.tasks.sample(4, torch.Generator().manual_seed(1))
    policy = CheckpointPolicy(tmp_path / "ckpt.pt", every=10)
    with pytest.raises(FloatingPointError, match="meta-iteration 37"):
        meta_train(trainer, state, sink=CurveRecorder(), val_tasks=val, checkpoint=policy, progress=False)
    saved = load_checkpoint(tmp_path / "ckpt.pt")
    assert saved["iteration"] == 30
    assert all(torch.isfinite(p).all() for g in saved["meta_params"].values() for p in g.values())


def test_nan_run_is_recorded_failed_via_cli(tmp_path):
    maml = REPO / "configs" / "experiments" / "maml_sine_5shot.gin"  # its α is the inner_lr macro
    out = subprocess.run(_cmd("train", "--config", str(maml), "--bind", "inner_lr = 1e30", "--bind",
                              "MetaTrainer.meta_iterations = 5", "--out", str(tmp_path / "m"),
                              "--runs-dir", str(tmp_path / "runs"), "--quiet"), capture_output=True, text=True)
    assert out.returncode == 1 and "meta-iteration 1" in out.stderr
    run = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())
    assert run["status"] == "FAILED" and "meta-iteration 1" in "".join(run["fail_trace"])
