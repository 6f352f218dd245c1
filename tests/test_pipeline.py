"""The real dvc.yaml, run end to end at toy size in a temporary git + DVC repository."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

OMNIGLOT_MIRROR = REPO.parent / "shared" / "datasets" / "omniglot"

COPIED = ["dvc.yaml", ".dvcignore", "configs", "pipeline", "metalearning"]


def _tiny_params() -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["cpu"]["sine_meta_iterations"] = 20
    params["sine"]["meta_test"].update(curves=4, repeats=2)
    params["sine"]["families"] = ["sine_metasgd"]
    params["sine"]["experiments"] = {"maml_sine_5shot": {"family": "sine_metasgd", "seeds": 2}}
    params["data"]["mirrors"] = [str(OMNIGLOT_MIRROR)]  # the copy lives in a temp dir without ../shared
    params["omniglot"]["meta_test"]["episodes"] = 10
    tiny = ["filters = 4", "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_iterations = 3",
            "MetaTrainer.meta_val_tasks = 2", "MetaTrainer.log_every = 2"]
    params["omniglot"]["meta_test"]["sets"]["5w2s"] = {"ways": 5, "shots": 2, "queries": 1}
    params["omniglot"]["experiments"] = {
        "maml_omniglot_5w1s": {"episodes": ["5w1s", "5w2s"], "cpu": list(tiny), "seeds": 1},
        "reptile_omniglot_5w1s": {"episodes": "5w1s", "cpu": list(tiny), "seeds": 1}}
    rl_tiny = ["GaussianMLPPolicy.hidden = (8,)", "meta_batch_size = 2", "trajectories = 2", "TRPO.cg_iters = 2",
               "eval_tasks = 3", "eval_trajectories = 2", "MetaRL.plotted_tasks = 2",
               "BatchNavigation2D.horizon = 5"]
    params["rl"]["experiments"] = {
        "maml_nav2d_fixed": {"cpu": [*rl_tiny, "MetaTrainer.meta_iterations = 1"], "seeds": 1},
        "random_nav2d": {"cpu": list(rl_tiny), "seeds": 1}}
    # MAML's curve protocol on the Table-4 model (the tiny bindings make the two trainings the same)
    params["rl"]["shared"] = {
        "maml_nav2d": {"model": "maml_nav2d_fixed", "cpu": [*rl_tiny, "MetaTrainer.meta_iterations = 1"], "seeds": 1}}
    return params


def _run(cmd, cwd, *, fails: bool = False):
    """Run ``cmd`` with this interpreter's tools (and the pipeline's numerics) first on PATH; assert
    that it succeeds, or with ``fails`` that it does not."""
    env = {**os.environ, "METALEARNING_NUMERICS": "portable",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if fails:
        assert done.returncode != 0, f"{' '.join(cmd)} succeeded:\n{done.stdout[-3000:]}"
    else:
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def dvc_workspace(tmp_path_factory, name: str, copied=COPIED):
    """A fresh git + DVC repository holding copies of the repo's ``copied`` paths (skips the test
    without the Omniglot mirror, which the data stages read)."""
    if not (OMNIGLOT_MIRROR / "images_background_small1.zip").is_file():
        pytest.skip(f"Omniglot mirror archives not present in {OMNIGLOT_MIRROR}")
    work = tmp_path_factory.mktemp(name)
    for path in copied:
        src = REPO / path
        if src.is_dir():
            shutil.copytree(src, work / path, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, work / path)
    _run(["git", "init", "-q"], work)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"], work)
    _run(["dvc", "init", "-q"], work)
    return work


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    work = dvc_workspace(tmp_path_factory, "pipeline")
    (work / "params.yaml").write_text(yaml.safe_dump(_tiny_params()))
    _run(["dvc", "repro", "-q"], work)
    return work


def test_repro_writes_every_stage_output(pipeline_dir):
    for rel in ["data/sine/sine_metasgd.pt", "models/sine/maml_sine_5shot/checkpoint.pt",
                "metrics/sine/maml_sine_5shot/metrics.json", "reports/sine/README.md",
                "reports/sine/qualitative.png", "dvc.lock", "data/omniglot/raw/images_background_small2.zip",
                "data/omniglot/omniglot.npz", "data/omniglot/split.json", "data/omniglot/episodes/5w1s.pt",
                "models/omniglot/reptile_omniglot_5w1s/checkpoint.pt",
                "metrics/omniglot/maml_omniglot_5w1s/5w1s/metrics.json",
                "metrics/omniglot/maml_omniglot_5w1s/5w2s/metrics.json", "reports/omniglot/README.md",
                "reports/omniglot/accuracy_vs_steps.png", "models/rl/maml_nav2d_fixed/checkpoint.pt",
                "metrics/rl/random_nav2d/metrics.json", "reports/rl/README.md", "reports/rl/trajectories.png",
                "metrics/rl/maml_nav2d/metrics.json"]:
        assert (pipeline_dir / rel).is_file(), rel
    assert "maml_sine_5shot" in (pipeline_dir / "reports/sine/README.md").read_text()
    report = (pipeline_dir / "reports/omniglot/README.md").read_text()
    assert "`maml_omniglot_5w1s`" in report and "`reptile_omniglot_5w1s`" in report
    maml_tests = [line for line in report.splitlines() if line.startswith("| `maml_omniglot_5w1s` | MAML |")]
    assert len(maml_tests) == 2 and "5-way 2-shot" in maml_tests[1]  # the 1-shot model on a second episode set
    assert "95.39 ± 0.09% (non-transductive; from the std. over 3 training seeds)" in report  # Reptile's, as published
    assert "| `maml_omniglot_5w1s` | `filters` | `64` |" in report  # the generated deviations section


def test_a_shared_rl_experiment_is_meta_tested_on_the_other_model_with_its_own_protocol(pipeline_dir):
    """rl.shared maml_nav2d: no training of its own; maml_nav2d_fixed's model under MAML's protocol."""
    import json

    assert not (pipeline_dir / "models/rl/maml_nav2d").exists()
    curves = {name: json.loads((pipeline_dir / f"metrics/rl/{name}/curves.json").read_text())
              for name in ("maml_nav2d", "maml_nav2d_fixed")}
    assert curves["maml_nav2d"]["meta_test"]["paper"] == "maml" and curves["maml_nav2d_fixed"]["meta_test"]["paper"] \
        == "metasgd"
    assert curves["maml_nav2d"]["setting"] == curves["maml_nav2d_fixed"]["setting"]  # the same trained model
    report = (pipeline_dir / "reports/rl/README.md").read_text()
    assert "`maml_nav2d` is meta-tested on `maml_nav2d_fixed`'s trained models" in report
    assert "| `maml_nav2d` | MAML |" in report


def test_meta_rl_meta_tests_run_in_rl_nproc_processes(pipeline_dir):
    """params.yaml ``rl.nproc`` = 2: the RL meta-test stages relaunch themselves under torchrun and
    split the new tasks (3 here: 2 + 1); one Sacred record per meta-test, rank 0's. The other
    families' meta-tests run in one process."""
    import json

    tests = []
    for run in (p for p in (pipeline_dir / "runs").iterdir() if p.name.isdigit()):
        record = json.loads((run / "run.json").read_text())
        if record["experiment"]["name"] == "meta-test":
            tests.append((json.loads((run / "config.json").read_text()), record["status"]))
    rl = sorted(Path(config["checkpoint"]).parent.name for config, _ in tests if "/rl/" in config["checkpoint"])
    assert rl == ["maml_nav2d_fixed", "maml_nav2d_fixed", "random_nav2d"]  # maml_nav2d (shared) on the first's
    for config, status in tests:
        assert status == "COMPLETED"
        assert config["processes"] == (2 if "/rl/" in config["checkpoint"] else 1), config["checkpoint"]


def test_training_seeds_are_a_pipeline_axis(pipeline_dir):
    """maml_sine_5shot has `seeds: 2`: seed 1 trains into replicates/seed1, is meta-tested beside the
    primary, and seeds.json and the report give the mean across both seeds."""
    import torch

    from metalearning.metrics_io import read_json

    models, metrics = pipeline_dir / "models/sine/maml_sine_5shot", pipeline_dir / "metrics/sine/maml_sine_5shot"
    assert read_json(models / "replicates/seeds.json") == {"seeds": [1]}
    primary = torch.load(models / "checkpoint.pt", weights_only=False)
    replica = torch.load(models / "replicates/seed1/checkpoint.pt", weights_only=False)
    assert (primary["seed"], replica["seed"]) == (0, 1)
    assert not torch.equal(primary["meta_params"]["theta"]["0.weight"], replica["meta_params"]["theta"]["0.weight"])
    summary = read_json(metrics / "seeds.json")
    assert summary["seeds"] == [0, 1]
    values = [read_json(metrics / "metrics.json")["5shot"]["mse"],
              read_json(metrics / "replicates/seed1/metrics.json")["5shot"]["mse"]]
    assert summary["results"]["5shot"]["per_seed"] == values
    assert summary["results"]["5shot"]["mse"] == pytest.approx(sum(values) / 2, rel=1e-12)
    report = (pipeline_dir / "reports/sine/README.md").read_text()
    assert "## Across training seeds" in report and "| `maml_sine_5shot` | 5shot · mse | 2 |" in report
    omniglot = read_json(pipeline_dir / "metrics/omniglot/maml_omniglot_5w1s/5w1s/seeds.json")
    assert omniglot["seeds"] == [0] and omniglot["results"]["transductive"]["ci95_seeds"] is None


def test_a_missing_or_corrupt_seed_checkpoint_stops_the_meta_test_with_one_line(pipeline_dir, tmp_path):
    """maml_sine_5shot trains seeds 0 and 1: with seed 1's checkpoint absent, pipeline/test.py names it in
    one line before testing any seed (nothing written); a corrupt one is named with its seed."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(_tiny_params()))
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(pipeline_dir / "models/sine/maml_sine_5shot/checkpoint.pt", models / "checkpoint.pt")
    cmd = [sys.executable, "pipeline/test.py", "--params", str(params), "--experiment", "maml_sine_5shot",
           "--checkpoint", str(models / "checkpoint.pt"), "--test-set", "data/sine/sine_metasgd.pt",
           "--out", str(tmp_path / "metrics")]
    err = _run(cmd, pipeline_dir, fails=True).stderr.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert err.startswith("test.py: error: maml_sine_5shot: ") and "seeds [0, 1], but seed 1's checkpoint " \
        f"{models / 'replicates/seed1/checkpoint.pt'} does not exist" in err
    assert not (tmp_path / "metrics").exists()

    (models / "replicates/seed1").mkdir(parents=True)
    (models / "replicates/seed1/checkpoint.pt").write_bytes(b"not a checkpoint")
    err = _run(cmd, pipeline_dir, fails=True).stderr.strip()
    assert err.splitlines() == [err] and "Traceback" not in err
    assert err.startswith("test.py: error: maml_sine_5shot, seed 1: checkpoint ") and "unreadable or corrupt" in err
    assert (tmp_path / "metrics/metrics.json").is_file()  # the primary seed's results, written first, are kept


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
    assert "omniglot" not in out  # the sine budget does not touch the Omniglot stages


def test_omniglot_experiment_params_rerun_only_that_experiment(pipeline_dir):
    params = _tiny_params()
    params["omniglot"]["experiments"]["reptile_omniglot_5w1s"]["cpu"].append("MetaTrainer.log_every = 3")
    (pipeline_dir / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "status"], pipeline_dir).stdout
    assert "train_omniglot@reptile_omniglot_5w1s" in out
    assert "train_omniglot@maml_omniglot_5w1s" not in out and "sine" not in out and "episodes_omniglot" not in out


def test_more_seeds_rerun_only_that_experiment(pipeline_dir):
    params = _tiny_params()
    params["omniglot"]["experiments"]["reptile_omniglot_5w1s"]["seeds"] = 2
    (pipeline_dir / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "status"], pipeline_dir).stdout
    assert "train_omniglot@reptile_omniglot_5w1s" in out and "test_omniglot@reptile_omniglot_5w1s" in out
    assert "train_omniglot@maml_omniglot_5w1s" not in out and "sine" not in out


def test_another_episode_set_reruns_only_that_meta_test(pipeline_dir):
    params = _tiny_params()
    params["omniglot"]["experiments"]["reptile_omniglot_5w1s"]["episodes"] = ["5w1s", "5w2s"]
    (pipeline_dir / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "status"], pipeline_dir).stdout
    assert "test_omniglot@reptile_omniglot_5w1s" in out and "report_omniglot" in out
    assert "train_omniglot" not in out and "test_omniglot@maml_omniglot_5w1s" not in out


def test_a_training_stage_reruns_into_its_emptied_folder(pipeline_dir):
    """Last in this module (it changes the outputs): DVC empties a stage's output folder but keeps
    a .gitignore there, and training must accept that folder."""
    params = _tiny_params()
    params["profiles"]["cpu"]["sine_meta_iterations"] = 21
    (pipeline_dir / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["dvc", "repro", "-q", "train_sine@maml_sine_5shot"], pipeline_dir)
    assert '"meta_iterations": 21' in (pipeline_dir / "models/sine/maml_sine_5shot/train_metrics.json").read_text()
