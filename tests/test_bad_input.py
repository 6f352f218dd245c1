"""Bad input, as a new user types it: exit code 2, one line naming the culprit, before any compute,
and nothing written to the model folder or the run store (issue 14's table)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from metalearning.cli import main

REPO = Path(__file__).resolve().parents[1]
S5 = str(REPO / "configs" / "experiments" / "maml_sine_5shot.gin")


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "metalearning", *args], capture_output=True, text=True, cwd=cwd)


def _main(capsys, *args: str) -> subprocess.CompletedProcess:
    """The CLI in this process (faster than a subprocess per case); stdout and stderr captured."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out.out, out.err)


def _train(tmp_path: Path, *binds: str, capsys, config: str = S5):
    bind_args = [x for b in binds for x in ("--bind", b)]
    return _main(capsys, "train", "--config", config, *bind_args, "--out", str(tmp_path / "model"),
                 "--runs-dir", str(tmp_path / "runs"), "--quiet")


CASES = {
    "missing binding": ((), "{tmp}/nolr.gin", "no value bound for MAML.inner_lr"),
    "unset macro": ((), "{tmp}/unset.gin", "macro %nonexistent is read but never set"),
    "string for an int": (('MetaTrainer.meta_batch_size = "four"',), S5,
                          "MetaTrainer.meta_batch_size must be an integer >= 1, got 'four'"),
    "float for an int": (("MetaTrainer.meta_batch_size = 4.5",), S5,
                         "MetaTrainer.meta_batch_size must be an integer >= 1, got 4.5"),
    "negative budget": (("MetaTrainer.meta_iterations = -5",), S5,
                        "MetaTrainer.meta_iterations must be an integer >= 0, got -5"),
    "negative inner steps": (("inner_steps = -1",), S5, "MAML.inner_steps must be an integer >= 0, got -1"),
    "unknown parameter": (("MAML.inner_lrr = 0.1",), S5, "inner_lrr"),
    "missing include": ((), "{tmp}/include.gin", "nope.gin"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_config_is_one_line_exit_2_and_writes_nothing(case, tmp_path, capsys):
    (tmp_path / "nolr.gin").write_text("include 'tasks/sine_metasgd.gin'\ninclude 'learners/mlp_sine.gin'\n"
                                       "MetaTrainer.algorithm = @MAML()\nMAML.inner_steps = 1\n"
                                       "MAML.eval_inner_steps = 1\nMAML.first_order = False\n"
                                       "MetaTrainer.meta_optimizer = @torch.optim.Adam\nshots = 5\n"
                                       "MetaTrainer.meta_batch_size = 4\nMetaTrainer.meta_iterations = 2\n")
    (tmp_path / "unset.gin").write_text("include 'experiments/maml_sine_5shot.gin'\nMAML.inner_lr = %nonexistent\n")
    (tmp_path / "include.gin").write_text("include 'tasks/nope.gin'\n")
    binds, config, message = CASES[case]
    out = _train(tmp_path, *binds, capsys=capsys, config=config.format(tmp=tmp_path))
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert out.returncode == 2 and len(errors) == 1 and message in errors[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "model").exists() and not (tmp_path / "runs").exists()


def test_a_macro_nothing_reads_is_warned_about(tmp_path):
    out = _cli("train", "--config", S5, "--bind", "inner_lrr = 0.1", "--bind", "MetaTrainer.meta_iterations = 2",
               "--out", str(tmp_path / "model"), "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert out.returncode == 0 and "ConfigWarning: gin macro 'inner_lrr' is set but no binding reads it" in out.stderr


def test_a_users_own_gin_outside_configs_can_include_the_shipped_ones(tmp_path):
    mine = tmp_path / "elsewhere" / "mine.gin"
    mine.parent.mkdir()
    mine.write_text("include 'experiments/maml_sine_5shot.gin'\nMetaTrainer.meta_iterations = 2\n")
    out = _cli("train", "--config", str(mine), "--out", str(tmp_path / "model"), "--runs-dir", str(tmp_path / "runs"),
               "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "meta_iterations=2" in out.stdout


def test_adapt_refuses_a_folder_as_its_json_output(tmp_path):
    (tmp_path / "support").mkdir()
    out = _cli("adapt", "--checkpoint", str(tmp_path / "c.pt"), "--support", str(tmp_path / "support"), "--query",
               str(tmp_path / "q.png"), "--json", str(tmp_path))
    assert out.returncode == 2 and "--json" in out.stderr and "is a folder" in out.stderr
