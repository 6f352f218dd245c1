"""The command line reports bad input clearly and exits non-zero."""

import subprocess
import sys

import yaml


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
    # one line, with the unpickler's words, not torch's advice to load with weights_only=False
    assert len(out.stderr.strip().splitlines()) == 1 and "UnpicklingError: Unsupported operand" in out.stderr
    assert "weights_only" not in out.stderr


def test_report_of_an_unknown_section_is_refused(tmp_path):
    out = _cli("report", "--task", "cifar", "--out", str(tmp_path / "r"))
    assert out.returncode == 2 and "no report for params section 'cifar'" in out.stderr
    assert not (tmp_path / "r").exists()


def test_report_command_writes_a_section_from_its_metrics(tmp_path, repo):
    """`metalearning report` writes the same report as the pipeline stage, from metrics and models."""
    models, metrics = tmp_path / "models", tmp_path / "metrics"
    exp = repo / "configs" / "experiments" / "maml_sine_5shot.gin"
    assert _cli("train", "--config", str(exp), "--bind", "MetaTrainer.meta_iterations = 4", "--bind",
                "MetaTrainer.log_every = 2", "--out", str(models / "maml_sine_5shot"), "--quiet",
                "--runs-dir", str(tmp_path / "runs")).returncode == 0
    assert _cli("split-sine", "--config", str(repo / "configs" / "tasks" / "sine_metasgd.gin"), "--bind", "shots = 5",
                "--shots", "5", "10", "20", "--curves", "3", "--repeats", "2", "--seed", "0",
                "--out", str(tmp_path / "test.pt")).returncode == 0
    assert _cli("test", "--checkpoint", str(models / "maml_sine_5shot" / "checkpoint.pt"), "--test-set",
                str(tmp_path / "test.pt"), "--out", str(metrics / "maml_sine_5shot"),
                "--runs-dir", str(tmp_path / "runs")).returncode == 0
    params = tmp_path / "params.yaml"
    values = yaml.safe_load((repo / "params.yaml").read_text())
    values["sine"]["experiments"] = {"maml_sine_5shot": {"family": "sine_metasgd", "seeds": 1}}
    params.write_text(yaml.safe_dump(values))
    out = _cli("report", "--task", "sine", "--params", str(params), "--metrics", str(metrics), "--models", str(models),
               "--out", str(tmp_path / "report"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report" / "README.md").read_text()
    assert "`maml_sine_5shot`" in page and (tmp_path / "report" / "learning_curves.png").stat().st_size > 0


def test_train_refuses_a_folder_holding_another_run(tmp_path, repo):
    """A folder's files belong to one run: a second train into it (here one whose config then fails)
    is refused before it writes anything; --force replaces the old run."""
    exp = repo / "configs" / "experiments" / "maml_sine_5shot.gin"
    base = ["train", "--config", str(exp), "--bind", "MetaTrainer.meta_iterations = 2", "--out", str(tmp_path / "m"),
            "--runs-dir", str(tmp_path / "runs"), "--quiet"]
    assert _cli(*base).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    out = _cli(*base, "--bind", "MAML.inner_lr = 'x'")
    assert out.returncode == 2 and "is not empty" in out.stderr and "--force" in out.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    assert _cli(*base, "--bind", "MetaTrainer.meta_iterations = 3", "--force").returncode == 0
    assert '"meta_iterations": 3' in (tmp_path / "m" / "train_metrics.json").read_text()


def test_a_folder_holding_only_hidden_files_is_free(tmp_path, repo):
    """DVC leaves a .gitignore in a stage's output folder after removing its outputs for a re-run."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / ".gitignore").write_text("/checkpoint.pt\n")
    exp = repo / "configs" / "experiments" / "maml_sine_5shot.gin"
    out = _cli("train", "--config", str(exp), "--bind", "MetaTrainer.meta_iterations = 2", "--out", str(tmp_path / "m"),
               "--runs-dir", str(tmp_path / "runs"), "--quiet")
    assert out.returncode == 0, out.stderr


def test_checkpoint_every_zero_is_refused(tmp_path, repo):
    exp = repo / "configs" / "experiments" / "maml_sine_5shot.gin"
    out = _cli("train", "--config", str(exp), "--checkpoint-every", "0", "--out", str(tmp_path / "m"))
    assert out.returncode == 2 and "--checkpoint-every" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "m").exists()
