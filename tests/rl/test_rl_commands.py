"""The meta-RL family through the one command set: every shipped experiment smoke-runs train + test at tiny
sizes, runs are deterministic, the report renders beside the papers' numbers, and a short real
run on 2D navigation learns to adapt."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium
import pytest
import torch

from metalearning import commands
from metalearning.checkpoints import load_checkpoint
from metalearning.cli import main
from metalearning.metrics_io import read_json, write_json
from metalearning.params import load_params
from metalearning.rl.report import load_rl_results, write_rl_report

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "configs" / "rl" / "experiments").glob("*.gin"))
LOCOMOTION = [p for p in EXPERIMENTS if "cheetah" in p.stem or "ant_" in p.stem]
CURVE_FIELDS = ("iteration", "meta_train.pre_update_return", "meta_train.post_update_return", "trpo.kl")
METHODS = {"maml": "MAML", "metasgd": "MetaSGD", "pretrained": "pretrained", "random": "random init",
           "oracle": "oracle"}


def tiny_bindings(path: Path) -> list[str]:
    """Shrink an experiment to seconds: small policy, 2 tasks × 2 trajectories, 5-step episodes."""
    tiny = ["GaussianMLPPolicy.hidden = (8,)", "meta_batch_size = 2", "trajectories = 2", "TRPO.cg_iters = 2",
            "eval_tasks = 3", "eval_trajectories = 2", "MetaRL.plotted_tasks = 2"]
    if not path.stem.startswith("random"):  # the random-init baseline is not trained at all
        tiny.append("MetaTrainer.meta_iterations = 1")
    horizon = "LocomotionFamily.horizon = 5" if path in LOCOMOTION else "BatchNavigation2D.horizon = 5"
    return [*tiny, horizon]


def train_and_test(path: Path, tmp_path: Path, bindings: list[str], seed: int = 0,
                   test_bindings: tuple[str, ...] = ()) -> tuple[dict, dict]:
    model, metrics = tmp_path / "model", tmp_path / "metrics"
    train = commands.train([path], bindings, seed=seed, out_dir=model, runs_dir=tmp_path / "runs", progress=False)
    commands.test(model / "checkpoint.pt", out_dir=metrics, runs_dir=tmp_path / "runs", bindings=test_bindings)
    return train, read_json(metrics / "metrics.json")


@pytest.mark.filterwarnings("ignore:MuJoCo:RuntimeWarning")  # gymnasium's cheetah XML uses a deprecated attribute
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_rl_experiment_smoke_runs(path, tmp_path):
    if path in LOCOMOTION:
        pytest.importorskip("mujoco")
    train, metrics = train_and_test(path, tmp_path, tiny_bindings(path))
    curves = read_json(tmp_path / "metrics" / "curves.json")
    steps = 0 if path.stem.startswith("oracle") else 3
    assert train["meta_iterations"] == (0 if path.stem.startswith("random") else 1)
    assert set(metrics) == {f"{k}_steps" for k in range(steps + 1)} | {
        "tasks", "trajectories", "later_steps_lr_scale", "eval_seed", "steps"}
    assert all(math.isfinite(metrics[f"{k}_steps"]["return"]) for k in range(steps + 1))
    assert curves["setting"]["method"] == METHODS[path.stem.split("_")[0]]
    alpha = curves["meta_test"]["alpha"]  # Meta-SGD's α is learned per parameter: recorded as null
    assert alpha is None if path.stem.startswith("metasgd") else alpha == pytest.approx(0.1)
    assert curves["meta_test"]["paper"] == ("metasgd" if path.stem.endswith(("_fixed", "_random")) else "maml")
    paths = read_json(tmp_path / "metrics" / "trajectories.json")["tasks"]
    assert len(paths) == (0 if path in LOCOMOTION else 2)
    for task in paths:
        assert len(task["paths"]) == steps + 1 and all(len(p) >= 2 for p in task["paths"])
    for name in ("checkpoint.pt", "config.gin", "operative_config.gin", "learning_curve.csv", "train_metrics.json"):
        assert (tmp_path / "model" / name).is_file()
    header = (tmp_path / "model" / "learning_curve.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "iteration" and (len(header) == 1) == path.stem.startswith("random")


def test_params_list_every_rl_experiment_and_the_cpu_profile_only_navigation():
    section = load_params(REPO / "params.yaml")["rl"]
    shared = set(section["shared"])  # meta-tested on another experiment's models
    assert set(section["navigation"]) | set(section["locomotion"]) | shared == {p.stem for p in EXPERIMENTS}
    assert set(section["locomotion"]) == {p.stem for p in LOCOMOTION}
    assert set(section["experiments"]) == set(section["navigation"])  # the cpu list `dvc repro` trains
    assert {"maml_nav2d", "maml_nav2d_fixed", "metasgd_nav2d_fixed", "maml_nav2d_random",
            "metasgd_nav2d_random"} <= set(section["experiments"]) | shared


def _tensors(meta_params: dict) -> list[torch.Tensor]:
    return [p for group in meta_params.values() for p in group.values()]


def test_train_and_test_are_deterministic_for_a_seed(tmp_path):
    path = REPO / "configs" / "rl" / "experiments" / "metasgd_nav2d_random.gin"
    tiny = [*tiny_bindings(path), "MetaTrainer.meta_iterations = 2", "BatchNavigation2D.horizon = 8"]
    runs = [train_and_test(path, tmp_path / name, tiny) for name in ("a", "b")]
    assert runs[0] == runs[1]
    ckpts = [load_checkpoint(tmp_path / name / "model" / "checkpoint.pt") for name in ("a", "b")]
    for key in ("meta_params", "best_meta_params"):
        for x, y in zip(_tensors(ckpts[0][key]), _tensors(ckpts[1][key])):
            assert torch.equal(x, y)
    for name in ("model/learning_curve.csv", "metrics/trajectories.json"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    # ... and the seeds matter: another training seed, or another eval seed, changes the numbers.
    other_train = train_and_test(path, tmp_path / "c", tiny, seed=1)
    other_eval = train_and_test(path, tmp_path / "d", tiny, test_bindings=("MetaRL.eval_seed = 1",))
    assert other_train[0] != runs[0][0] and other_eval[0] == runs[0][0] and other_eval[1] != runs[0][1]
    assert other_eval[1]["eval_seed"] == 1


def test_cli_train_and_test_of_an_rl_model(tmp_path, capsys):
    path = REPO / "configs" / "rl" / "experiments" / "maml_nav2d_fixed.gin"
    binds = [arg for binding in tiny_bindings(path) for arg in ("--bind", binding)]
    runs = ["--runs-dir", str(tmp_path / "runs")]
    assert main(["train", "--config", str(path), *binds, "--out", str(tmp_path / "m"), "--quiet", *runs]) == 0
    assert "meta_iterations=1" in capsys.readouterr().out
    checkpoint = ["--checkpoint", str(tmp_path / "m" / "checkpoint.pt")]
    assert main(["test", *checkpoint, "--out", str(tmp_path / "t"), "--bind", "eval_tasks = 4", *runs]) == 0
    assert "return_3_steps=" in capsys.readouterr().out and read_json(tmp_path / "t" / "metrics.json")["tasks"] == 4
    host = read_json(tmp_path / "runs" / "1" / "run.json")["host"]  # the simulators' versions are recorded
    assert host["environments"]["gymnasium"] == gymnasium.__version__
    typo = ["--bind", "MetaRL.eval_sed = 1"]
    assert main(["test", *checkpoint, "--out", str(tmp_path / "u"), *typo, *runs]) == 2
    assert "eval_sed" in capsys.readouterr().err


# --- the report -------------------------------------------------------------------------------


def _fake_result(root: Path, name: str, *, method: str, task: dict, returns: list[float], iterations: int = 20,
                 paper: str = "maml", selected: float | None = None):
    metrics, model = root / "metrics" / name, root / "models" / name
    setting = {"method": method, "algorithm": "MAML", "task": {"horizon": 100, "oracle": method == "oracle", **task},
               "meta_iterations": iterations, "best_iteration": max(iterations - 1, 0), "meta_batch_size": 20,
               "trajectories": 20, "inner_steps": int(method in ("MAML", "MetaSGD")),
               "eval_inner_steps": len(returns) - 1, "seed": 0,
               "hvp": "composed"}
    protocol = {"tasks": 600, "trajectories": 40 if paper == "maml" else 20, "alpha": 0.1, "later_steps_lr_scale": 0.5,
                "eval_seed": 7, "steps": len(returns) - 1, "paper": paper}
    write_json(metrics / "curves.json", {"setting": setting, "meta_test": protocol, "return_mean": returns,
                                         "return_ci95": [0.5] * len(returns)})
    path = [[0.0, 0.0], [0.05, 0.1], [0.1, 0.2]]
    plotted = [{"goal": [0.1, 0.2], "start": [0.0, 0.0], "returns": returns, "paths": [path] * len(returns)}]
    write_json(metrics / "trajectories.json", {"tasks": plotted if task["family"] == "nav2d" else []})
    model.mkdir(parents=True)
    if selected is not None:
        write_json(model / "train_metrics.json", {"best_post_update_return": selected})
    with open(model / "learning_curve.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CURVE_FIELDS)
        writer.writeheader()
        writer.writerows({field: -float(i) for field in CURVE_FIELDS} | {"iteration": i}
                         for i in range(1, iterations + 1))


def test_report_puts_the_papers_numbers_beside_ours(tmp_path):
    """Results are grouped by task family and by the paper whose meta-test protocol they follow:
    MAML's curve (maml.md Table 4) beside the MAML-protocol group, Meta-SGD's Table 4 from the
    Meta-SGD-protocol group only, although both use the same fixed-start distance task."""
    fixed = {"family": "nav2d", "reward": "distance", "start": "fixed"}
    _fake_result(tmp_path, "maml_curve", method="MAML", task=fixed, returns=[-35.0, -12.5, -6.0, -5.25],
                 selected=-8.25)
    _fake_result(tmp_path, "oracle", method="oracle", task=fixed, returns=[-4.5], selected=-0.5)
    _fake_result(tmp_path, "random", method="random init", task=fixed, returns=[-90.0, -80.0, -75.0, -70.0],
                 iterations=0)
    _fake_result(tmp_path, "metasgd_fixed", method="MetaSGD", task=fixed, returns=[-30.0, -9.75, -9.0, -8.5],
                 paper="metasgd")
    results = load_rl_results(["maml_curve", "oracle", "random", "metasgd_fixed"], tmp_path / "metrics",
                              tmp_path / "models")
    write_rl_report(results, tmp_path / "report", notes=["a note"])
    text = (tmp_path / "report" / "README.md").read_text()
    curve_row = next(line for line in text.splitlines() if line.startswith("| `maml_curve`"))
    assert "-35.00 ± 0.50 | -12.50 ± 0.50 | -6.00 ± 0.50 | -5.25 ± 0.50" in curve_row
    assert "-40.41 | -11.68 | -3.33 | -3.23" in text  # maml.md Table 4
    assert "-4.50 ± 0.50 | (no adaptation)" in text
    table4 = next(line for line in text.splitlines() if line.startswith("| MetaSGD |"))
    assert "-9.75 ± 0.50 (paper -8.64 ± 0.68)" in table4 and "not run (paper -10.15 ± 0.62)" in table4
    assert "| MAML | not run (paper -9.12 ± 0.66)" in text  # maml_curve follows MAML's protocol, not Table 4's
    sections = text.split("\n## ")
    # under Table 4: the two papers' MAML numbers for the fixed-start cell, and ours (MAML models only)
    disagreement = next(part for part in sections if part.startswith("Meta-SGD's Table 4")).split("\n\n")[2].strip()
    assert "maml.md Table 4 gives MAML -11.68 after one step on 40 trajectories" in disagreement
    assert "-9.12 ± 0.66 after one step on 20 trajectories, trained 100: 2.56 higher" in disagreement
    assert disagreement.endswith("under each paper's protocol: -12.50 ± 0.50 on 40 trajectories (`maml_curve`).")
    maml_section = next(part for part in sections if part.startswith("2D navigation, MAML's Fig. 4"))
    assert "`maml_curve`" in maml_section and "`metasgd_fixed`" not in maml_section
    assert "exact (Jᵀ∇²KL J)" in text and "— (not trained)" in text
    assert "| 0.1 | 7 |" in text  # the first step's α beside the eval seed
    assert "a note" in text
    # best-model selection: the chosen iteration's training return beside the test return, for the
    # models trained through an inner step only (not the oracle, nor a model without train metrics)
    selection = next(part for part in sections if part.startswith("Best-model selection"))
    assert "| `maml_curve` | MAML | 19 | -8.25 | -12.50 ± 0.50 | -4.25 |" in selection
    assert "`oracle`" not in selection and "`metasgd_fixed`" not in selection
    for png in ("return_vs_steps.png", "trajectories.png", "learning_curves.png"):
        assert (tmp_path / "report" / png).read_bytes()[:4] == b"\x89PNG"


def test_a_locomotion_report_names_its_tasks_and_only_its_own_environment(tmp_path):
    """The paper profile's MuJoCo results: titled by their task and reward, MAML's Table 5 beside the
    cheetah direction curve, the bindings that shorten a run named, and no 2D-navigation notes."""
    import yaml

    from metalearning.report.sections import write_section_report

    _fake_result(tmp_path, "maml_cheetah_dir", method="MAML", task={"family": "HalfCheetahDir"},
                 returns=[-57.0, -28.0, -18.0, -4.0], iterations=40, selected=7.75)
    values = yaml.safe_load((REPO / "paper" / "params.yaml").read_text())
    values["rl"]["experiments"] = {"maml_cheetah_dir": {"seeds": 1, "paper": ["MetaTrainer.meta_iterations = 40"]}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(values))
    out = write_section_report("rl", params_path=tmp_path / "params.yaml", metrics=tmp_path / "metrics",
                               models=tmp_path / "models", out=tmp_path / "report")
    text = (out / "README.md").read_text()
    assert ("## Half-cheetah forward/backward, MAML's Fig. 5 and Table 5 (reward d·v − 0.05‖a‖², d = ±1; "
            "v: centre-of-mass velocity, 0.01 s steps, as MAML's code)") in text
    assert "| | MAML (paper, maml.md Table 5) | 500 (best) | -50.69 | 293.19 | 313.48 | 315.65 |" in text
    assert "| `maml_cheetah_dir` | MAML | 39 | 7.75 | -28.00 ± 0.50 | -35.75 |" in text
    assert "except the bindings the generated deviations section lists" in text
    assert "| `maml_cheetah_dir` | `MetaTrainer.meta_iterations` | `500` | `40` |" in text
    assert "2D navigation" not in text and "meet the same new tasks (their number" in text
    assert not (out / "trajectories.png").exists()


# --- a short real run -------------------------------------------------------------------------


def test_a_short_maml_trpo_run_learns_to_adapt_on_navigation(tmp_path):
    """Ten meta-iterations of a small MAML-TRPO through the commands: compared with the same
    initialisation untrained (the random-init baseline), the trained policy starts far closer to
    the goals and one PG step improves it by a clear margin (the helpers' thresholds)."""
    path = REPO / "configs" / "rl" / "experiments" / "maml_nav2d.gin"
    small = ["GaussianMLPPolicy.hidden = (32, 32)", "meta_batch_size = 10", "trajectories = 10", "TRPO.cg_iters = 5",
             "eval_tasks = 40", "eval_trajectories = 20", "eval_inner_steps = 1"]
    _, trained = train_and_test(path, tmp_path / "trained", [*small, "MetaTrainer.meta_iterations = 10"], seed=1)
    _, untrained = train_and_test(path, tmp_path / "untrained", [*small, "MetaTrainer.meta_iterations = 0"], seed=1)
    before, after = trained["0_steps"], trained["1_steps"]
    # measured (seed 1): untrained −95.5 → −94.1 after one step; trained −43.1 → −25.5
    assert untrained["0_steps"]["return"] < -80 < -55 < before["return"], (untrained, trained)
    assert after["return"] - before["return"] > 8.0, trained
    curve = list(csv.DictReader(open(tmp_path / "trained" / "model" / "learning_curve.csv")))
    assert len(curve) == 10 and all(float(row["trpo.kl"]) <= 0.01 for row in curve)
    assert json.loads((tmp_path / "trained" / "model" / "train_metrics.json").read_text())["meta_iterations"] == 10
