"""The command line reports bad input clearly and exits non-zero."""

import subprocess
import sys


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "metalearning", *args], capture_output=True, text=True)


def test_missing_config_file_is_named(tmp_path):
    out = _cli("train", "--config", str(tmp_path / "nope.gin"), "--out", str(tmp_path / "m"))
    assert out.returncode == 2 and "nope.gin" in out.stderr and "Traceback" not in out.stderr


def test_malformed_binding_is_named(tmp_path, repo):
    exp = repo / "configs" / "experiments" / "maml_sine_5shot.gin"
    out = _cli("train", "--config", str(exp), "--bind", "MAML.nonsense = 1", "--out", str(tmp_path / "m"),
               "--runs-dir", str(tmp_path / "runs"))
    assert out.returncode == 2 and "MAML.nonsense" in out.stderr


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"not a checkpoint")
    out = _cli("test", "--checkpoint", str(bad), "--test-set", str(tmp_path / "t.pt"), "--out", str(tmp_path / "o"))
    assert out.returncode == 2 and "checkpoint.pt" in out.stderr and "corrupt" in out.stderr
