"""Every shipped gin file parses; every experiment smoke-runs; bad configs fail with a named file."""

import warnings
from pathlib import Path

import pytest

from metalearning import commands
from metalearning.config import ConfigError, ConfigWarning, load_config
from metalearning.fewshot import split_episodes
from metalearning.metrics_io import read_json
from metalearning.tasks.sine_metatest import split_sine
from tests.conftest import fake_miniimagenet, fake_omniglot

REPO = Path(__file__).resolve().parents[1]
ALL_GIN = sorted((REPO / "configs").rglob("*.gin"))
EXPERIMENTS = sorted((REPO / "configs" / "experiments").glob("*.gin"))
TINY = ["MetaTrainer.meta_iterations = 3", "MetaTrainer.log_every = 2"]


@pytest.mark.filterwarnings("ignore::metalearning.config.ConfigWarning")  # a component's macros are read elsewhere
@pytest.mark.parametrize("path", ALL_GIN, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_every_gin_file_parses(path):
    # macros (e.g. %shots) are resolved when a configurable is called, so component files parse alone
    load_config([path])


@pytest.mark.parametrize("path", [p for p in ALL_GIN if "experiments" in p.parts], ids=lambda p: p.stem)
def test_every_experiment_sets_only_macros_it_reads(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        load_config([path])


SINE = [p for p in EXPERIMENTS if "sine" in p.stem]
FEWSHOT = [p for p in EXPERIMENTS if p not in SINE]


@pytest.mark.parametrize("path", FEWSHOT, ids=lambda p: p.stem)
def test_every_fewshot_experiment_smoke_runs(path, tmp_path):
    """Train a few iterations on generated data of the right format, build an episode set, meta-test."""
    # 84 characters: 5 validation characters, 20 classes with rotations, as a 20-way task needs
    data = fake_omniglot(tmp_path, characters=84) if "omniglot" in path.stem else fake_miniimagenet(tmp_path)
    small = ["queries = 2"] if "miniimagenet" in path.stem else []  # 84×84 inputs: keep the smoke run light
    tiny = [*TINY, *data, *small, "filters = 4", "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_val_tasks = 2",
            "eval_inner_steps = 2"]
    result = commands.train([path], tiny, seed=0, out_dir=tmp_path / "model", runs_dir=tmp_path / "runs",
                            progress=False)
    assert result["meta_iterations"] == 3 and 0 <= result["final_meta_val_accuracy"] <= 1
    ways = 20 if "20w" in path.stem else 5
    split_episodes([path], data, ways=ways, shots=1, queries=2, episodes=4, seed=0, out=tmp_path / "episodes.pt")
    commands.test(tmp_path / "model" / "checkpoint.pt", tmp_path / "episodes.pt", out_dir=tmp_path / "metrics",
                  runs_dir=tmp_path / "runs")
    metrics = read_json(tmp_path / "metrics" / "metrics.json")
    assert metrics["episodes"] == 4 and metrics["ways"] == ways
    for mode in ("transductive", "non_transductive"):
        assert 0 <= metrics[mode]["accuracy"] <= 1


@pytest.mark.parametrize("path", SINE, ids=lambda p: p.stem)
def test_every_sine_experiment_smoke_runs(path, tmp_path):
    result = commands.train([path], TINY, seed=0, out_dir=tmp_path / "model", runs_dir=tmp_path / "runs",
                            progress=False)
    assert result["meta_iterations"] == 3
    family = "sine_reptile" if "reptile" in path.stem else "sine_metasgd"
    split_sine([REPO / "configs" / "tasks" / f"{family}.gin"], ["shots = 5"], shots=[5, 10],
                        curves=3, repeats=2, seed=0, out=tmp_path / "test.pt")
    commands.test(tmp_path / "model" / "checkpoint.pt", tmp_path / "test.pt", out_dir=tmp_path / "metrics",
                  runs_dir=tmp_path / "runs")
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
