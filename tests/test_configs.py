"""Every shipped gin file parses; every experiment smoke-runs; bad configs fail with a named file."""

from pathlib import Path

import pytest

from metalearning import commands
from metalearning.config import ConfigError, load_config
from metalearning.metrics_io import read_json

REPO = Path(__file__).resolve().parents[1]
ALL_GIN = sorted((REPO / "configs").rglob("*.gin"))
EXPERIMENTS = sorted((REPO / "configs" / "experiments").glob("*.gin"))
TINY = ["MetaTrainer.meta_iterations = 3", "MetaTrainer.log_every = 2"]


@pytest.mark.parametrize("path", ALL_GIN, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_gin_file_parses(path):
    # macros (e.g. %shots) are resolved when a configurable is called, so component files parse alone
    load_config([path])


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_smoke_runs(path, tmp_path):
    result = commands.train([path], TINY, seed=0, out_dir=tmp_path / "model", runs_dir=tmp_path / "runs",
                            progress=False)
    assert result["meta_iterations"] == 3
    family = "sine_reptile" if "reptile" in path.stem else "sine_metasgd"
    commands.split_sine([REPO / "configs" / "tasks" / f"{family}.gin"], ["shots = 5"], shots=[5, 10],
                        curves=3, repeats=2, seed=0, out=tmp_path / "test.pt")
    commands.test(tmp_path / "model" / "checkpoint.pt", tmp_path / "test.pt", out_dir=tmp_path / "metrics",
                  runs_dir=tmp_path / "runs", curve_steps=2)
    metrics = read_json(tmp_path / "metrics" / "metrics.json")
    assert set(metrics) == {"5shot", "10shot", "inner_steps"}
    assert metrics["5shot"]["mse"] > 0


def test_malformed_gin_names_the_file(tmp_path):
    bad = tmp_path / "bad.gin"
    bad.write_text("MAML.inner_lr = = 0.1\n")
    with pytest.raises(ConfigError, match="bad.gin"):
        load_config([bad])


def test_unknown_configurable_names_the_file(tmp_path):
    bad = tmp_path / "typo.gin"
    bad.write_text("MAMl.inner_lr = 0.1\n")
    with pytest.raises(ConfigError, match=r"typo\.gin.*MAMl"):
        load_config([bad])


def test_unknown_parameter_names_file_and_key(tmp_path):
    bad = tmp_path / "param.gin"
    bad.write_text("MAML.inner_lrr = 0.1\n")
    with pytest.raises(ConfigError, match=r"param\.gin.*inner_lrr"):
        load_config([bad])


def test_missing_include_is_an_error(tmp_path):
    bad = tmp_path / "inc.gin"
    bad.write_text("include 'tasks/nope.gin'\n")
    with pytest.raises((ConfigError, OSError), match="nope.gin"):
        load_config([bad])


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.gin"):
        load_config([tmp_path / "absent.gin"])


def test_missing_paper_value_fails_loudly(tmp_path):
    """Core configurables have no default for what a paper specifies (STYLE P4)."""
    exp = REPO / "configs" / "experiments" / "maml_sine_5shot.gin"
    cfg = tmp_path / "no_lr.gin"
    cfg.write_text(exp.read_text().replace("inner_lr = 0.01", ""))
    cfg_dir = tmp_path / "configs" / "experiments"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "no_lr.gin").write_text(cfg.read_text())
    for sub in ("tasks", "learners", "algorithms"):
        (tmp_path / "configs" / sub).symlink_to(REPO / "configs" / sub)
    with pytest.raises(Exception, match="inner_lr"):
        commands.train([cfg_dir / "no_lr.gin"], TINY, seed=0, out_dir=tmp_path / "m", runs_dir=tmp_path / "r",
                       progress=False)
