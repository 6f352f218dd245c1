"""Runs survive faults: SIGKILL + resume is bit-identical, Ctrl-C checkpoints, NaN fails cleanly."""

import json
import math
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
RL_EXPERIMENT = REPO / "configs" / "rl" / "experiments" / "metasgd_nav2d_random.gin"
RL_BINDINGS = ["GaussianMLPPolicy.hidden = (16,)", "meta_batch_size = 3", "trajectories = 4", "TRPO.cg_iters = 3",
               "BatchNavigation2D.horizon = 20", "MetaTrainer.meta_iterations = 40",
               "MetaTrainer.log_every = 3"]  # checkpoints (every 4) fall mid-window: the window is resumed too
MAML_RL_EXPERIMENT = REPO / "configs" / "rl" / "experiments" / "maml_nav2d.gin"
REPTILE_EXPERIMENT = REPO / "configs" / "experiments" / "reptile_sine.gin"
REPTILE_BINDINGS = ["inner_optimizer = 'adam'", "inner_lr = 0.001", "Reptile.persistent_moments = True",
                    "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_iterations = 600",
                    "MetaTrainer.log_every = 50"]
# family -> (experiment, bindings, iterations, checkpoint every)
RUNS = {"sine": (EXPERIMENT, BINDINGS, 600, 100), "rl": (RL_EXPERIMENT, RL_BINDINGS, 40, 4),
        "rl_maml": (MAML_RL_EXPERIMENT, RL_BINDINGS, 40, 4),
        "reptile_moments": (REPTILE_EXPERIMENT, REPTILE_BINDINGS, 600, 100)}


def _cmd(*args):
    return [sys.executable, "-m", "metalearning", *args]


def _train_cmd(out: Path, runs: Path, family: str = "sine"):
    experiment, bindings, _, every = RUNS[family]
    binds = [x for b in bindings for x in ("--bind", b)]
    return _cmd("train", "--config", str(experiment), *binds, "--seed", "2", "--out", str(out),
                "--runs-dir", str(runs), "--checkpoint-every", str(every), "--quiet")


def _wait_for_checkpoint(path: Path, proc: subprocess.Popen, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return load_checkpoint(path)["iteration"]
        assert proc.poll() is None, "training ended before it could be interrupted"
        time.sleep(0.05)
    raise TimeoutError(path)


def _reference(tmp_path_factory, family: str) -> Path:
    tmp = tmp_path_factory.mktemp(f"reference_{family}")
    subprocess.run(_train_cmd(tmp / "model", tmp / "runs", family), check=True, capture_output=True)
    return tmp / "model"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return _reference(tmp_path_factory, "sine")


@pytest.fixture(scope="module")
def rl_reference(tmp_path_factory):
    return _reference(tmp_path_factory, "rl")


@pytest.fixture(scope="module")
def rl_maml_reference(tmp_path_factory):
    return _reference(tmp_path_factory, "rl_maml")


@pytest.fixture(scope="module")
def reptile_moments_reference(tmp_path_factory):
    return _reference(tmp_path_factory, "reptile_moments")


def _assert_same_run(model: Path, reference: Path, iterations: int = 600):
    got, want = load_checkpoint(model / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert got["iteration"] == want["iteration"] == iterations
    carried, expected = got["training_state"]["algorithm"], want["training_state"]["algorithm"]
    assert carried.keys() == expected.keys()
    for name, moments in expected.get("adam_moments", {}).items():
        if name == "t":
            assert carried["adam_moments"]["t"] == moments
        else:
            assert all(torch.equal(carried["adam_moments"][name][k], v) for k, v in moments.items())
    for key in ("meta_params", "best_meta_params"):
        assert (key in got) == (key in want)
        for group in want.get(key, {}):
            for k, p in want[key][group].items():
                assert torch.equal(got[key][group][k], p), (key, group, k)
    assert got.get("best_iteration") == want.get("best_iteration")
    assert (model / "learning_curve.csv").read_text() == (reference / "learning_curve.csv").read_text()
    strip = lambda d: {k: v for k, v in d.items() if k != "sacred_run_id"}  # noqa: E731
    assert strip(json.loads((model / "train_metrics.json").read_text())) == \
        strip(json.loads((reference / "train_metrics.json").read_text()))


@pytest.mark.parametrize("family", ["sine", "rl", "rl_maml", "reptile_moments"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, family, request):
    """Killed mid-run, resumed from its last checkpoint: the same parameters, learning curve and
    metrics as an uninterrupted run (meta-RL, Meta-SGD-TRPO and second-order MAML-TRPO: also the
    best meta-parameters and their iteration, the rollouts' RNG, and TRPO's updates; Reptile: its
    persistent inner-Adam moments)."""
    reference = request.getfixturevalue({"sine": "reference", "rl": "rl_reference", "rl_maml": "rl_maml_reference",
                                         "reptile_moments": "reptile_moments_reference"}[family])
    iterations = RUNS[family][2]
    proc = subprocess.Popen(_train_cmd(tmp_path / "model", tmp_path / "runs", family),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_checkpoint(tmp_path / "model" / "checkpoint.pt", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = load_checkpoint(tmp_path / "model" / "checkpoint.pt")["iteration"]  # a later one may have landed
    assert killed_at < iterations
    subprocess.run(_cmd("resume", "--checkpoint", str(tmp_path / "model" / "checkpoint.pt"),
                        "--runs-dir", str(tmp_path / "runs"), "--quiet"), check=True, capture_output=True)
    _assert_same_run(tmp_path / "model", reference, iterations)
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


class _NanObjectiveAfter:
    """Wraps the meta-RL family so TRPO's surrogate turns NaN from meta-iteration ``n`` on."""

    def __init__(self, family, n):
        self.family, self.n, self.calls = family, n, 0

    def __getattr__(self, name):
        return getattr(self.family, name)

    def meta_batch(self, *args, **kwargs):
        self.calls += 1
        return self.family.meta_batch(*args, **kwargs)

    def objective_parts(self, *args, **kwargs):
        inner, outer = self.family.objective_parts(*args, **kwargs)

        def poisoned(adapted):
            loss, kl = outer(adapted)
            return (loss * float("nan"), kl) if self.calls >= self.n else (loss, kl)

        return inner, poisoned


def test_rl_nan_stops_with_reason_and_keeps_last_finite_checkpoint(tmp_path):
    load_config([RL_EXPERIMENT], RL_BINDINGS)
    torch.manual_seed(0)
    trainer = MetaTrainer()
    trainer.tasks = _NanObjectiveAfter(trainer.tasks, 7)
    policy = CheckpointPolicy(tmp_path / "ckpt.pt", every=3)
    with pytest.raises(FloatingPointError, match="meta-iteration 7"):
        meta_train(trainer, init_state(trainer, 0), sink=CurveRecorder(), val_tasks=None, checkpoint=policy,
                   progress=False)
    saved = load_checkpoint(tmp_path / "ckpt.pt")
    assert saved["iteration"] == 6
    for key in ("meta_params", "best_meta_params"):
        assert all(torch.isfinite(p).all() for g in saved[key].values() for p in g.values())


def test_rl_nan_run_is_recorded_failed_via_cli(tmp_path):
    """An RL run whose inner step overflows (α = 1e30) fails at its first meta-iteration, FAILED in Sacred."""
    maml = REPO / "configs" / "rl" / "experiments" / "maml_nav2d_fixed.gin"
    binds = [x for b in [*RL_BINDINGS, "MAML.inner_lr = 1e30"] for x in ("--bind", b)]
    out = subprocess.run(_cmd("train", "--config", str(maml), *binds, "--out", str(tmp_path / "m"),
                              "--runs-dir", str(tmp_path / "runs"), "--quiet"), capture_output=True, text=True)
    assert out.returncode == 1 and "meta-iteration 1" in out.stderr, out.stderr
    run = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())
    assert run["status"] == "FAILED"


def test_an_overflowing_update_never_reaches_a_checkpoint(tmp_path):
    """meta_lr = 11 makes the weights overflow although every meta-loss and gradient was finite:
    the run fails at that update, and the checkpoint left behind is the last finite one."""
    sine = REPO / "configs" / "experiments" / "maml_sine_5shot.gin"
    out = subprocess.run(_cmd("train", "--config", str(sine), "--bind", "MetaTrainer.meta_iterations = 300",
                              "--bind", "meta_lr = 11", "--bind", "MetaTrainer.log_every = 10",
                              "--checkpoint-every", "10", "--out", str(tmp_path / "m"), "--runs-dir",
                              str(tmp_path / "runs"), "--quiet"), capture_output=True, text=True)
    assert out.returncode == 1 and "became non-finite at meta-iteration" in out.stderr, out.stderr
    saved = load_checkpoint(tmp_path / "m" / "checkpoint.pt")  # the old guard saved iteration 20 with inf weights
    assert saved["iteration"] == 10
    assert all(torch.isfinite(p).all() for g in saved["meta_params"].values() for p in g.values())
    assert all(math.isfinite(v) for row in saved["learning_curve"].values() for v in row.values())


def test_test_adapt_and_resume_refuse_a_non_finite_checkpoint(tmp_path):
    sine = REPO / "configs" / "experiments" / "maml_sine_5shot.gin"
    subprocess.run(_cmd("train", "--config", str(sine), "--bind", "MetaTrainer.meta_iterations = 2", "--out",
                        str(tmp_path / "m"), "--runs-dir", str(tmp_path / "runs"), "--quiet"), check=True)
    path = tmp_path / "m" / "checkpoint.pt"
    saved = load_checkpoint(path)
    saved["meta_params"]["theta"]["0.weight"][0, 0] = float("inf")
    torch.save(saved, path)
    test = ("test", "--checkpoint", str(path), "--test-set", str(tmp_path / "t.pt"), "--out", str(tmp_path / "o"))
    for args in (test,
                 ("resume", "--checkpoint", str(path), "--runs-dir", str(tmp_path / "runs"))):
        out = subprocess.run(_cmd(*args), capture_output=True, text=True)
        assert out.returncode == 2 and "theta.0.weight is not finite" in out.stderr, (args, out.stderr)
