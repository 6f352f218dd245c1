"""The platform's commands as importable functions; the CLI and pipeline stages call these."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import gin
import torch

from metalearning.checkpoints import load_checkpoint
from metalearning.config import config_as_dict, load_config, load_config_text
from metalearning.evaluation import adapted_query_losses, mean_ci95
from metalearning.metrics_io import CurveRecorder, write_json
from metalearning.runs import DEFAULT_RUNS_DIR, recorded_run
from metalearning.tasks.sine import SineTasks
from metalearning.tasks.sine_testset import as_tasks, build_meta_test_set, load_meta_test_set, save_meta_test_set
from metalearning.training import CheckpointPolicy, MetaTrainer, init_state, meta_train, save_state

VAL_SEED_OFFSET = 1_000_003  # validation tasks come from a stream disjoint from training's


def train(config_files: Sequence[Path], bindings: Sequence[str] = (), *, seed: int, out_dir: Path,
          runs_dir: Path = DEFAULT_RUNS_DIR, progress: bool = True, checkpoint_every: int = 1000) -> dict:
    """Meta-train the experiment described by ``config_files`` (+ ``bindings``) into ``out_dir``.

    Writes ``checkpoint.pt`` (also every ``checkpoint_every`` iterations and on Ctrl-C),
    ``config.gin`` (all bindings), ``operative_config.gin``, ``learning_curve.csv`` and
    ``train_metrics.json``; records a Sacred run.
    """
    config_text = load_config(config_files, bindings)
    config = {"seed": seed, "gin_files": [str(f) for f in config_files], "gin_bindings": list(bindings),
              "checkpoint_every": checkpoint_every, "gin": config_as_dict()}
    return _record_training(config_text, config, seed=seed, out_dir=Path(out_dir), runs_dir=runs_dir,
                            progress=progress, resume=None)


def resume(checkpoint: Path, *, out_dir: Path, runs_dir: Path = DEFAULT_RUNS_DIR, progress: bool = True,
           checkpoint_every: int = 1000) -> dict:
    """Continue a killed or interrupted run from ``checkpoint`` to the end of its budget.

    The continuation is a new Sacred run linked to the old one by ``resumed_from`` (checkpoint
    path and Sacred run id) and ``resumed_at_iteration``; its metrics start after that iteration.
    On CPU the final parameters and metrics are bit-identical to an uninterrupted run.
    """
    saved = load_checkpoint(checkpoint)
    if "training_state" not in saved:
        raise ValueError(f"checkpoint {checkpoint} holds no training state to resume from")
    load_config_text(saved["gin_config"], origin=f"config stored in checkpoint {checkpoint}")
    config = {"seed": saved["seed"], "resumed_from": {"checkpoint": str(checkpoint),
                                                       "sacred_run_id": saved.get("sacred_run_id")},
              "resumed_at_iteration": saved["iteration"], "checkpoint_every": checkpoint_every,
              "gin": config_as_dict()}
    return _record_training(saved["gin_config"], config, seed=saved["seed"], out_dir=Path(out_dir),
                            runs_dir=runs_dir, progress=progress, resume=saved)


def _record_training(config_text: str, config: dict, *, seed: int, out_dir: Path, runs_dir: Path,
                     progress: bool, resume: dict | None) -> dict:
    def body(run) -> dict:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.gin").write_text(config_text)
        run.add_artifact(str(out_dir / "config.gin"))
        torch.manual_seed(seed)
        trainer = MetaTrainer()
        state = init_state(trainer, seed)
        curve = CurveRecorder(forward=run)
        if resume is not None:
            state.load_state_dict(resume["training_state"] | {"meta_params": resume["meta_params"]})
            curve.rows.update(resume["learning_curve"])
        val_tasks = trainer.tasks.sample(trainer.meta_val_tasks, torch.Generator().manual_seed(seed + VAL_SEED_OFFSET))
        policy = CheckpointPolicy(out_dir / "checkpoint.pt", config["checkpoint_every"],
                                  extra={"gin_config": config_text, "seed": seed, "sacred_run_id": run._id,
                                         "learning_curve": curve.rows})  # live: saved as it grows
        result = meta_train(trainer, state, sink=curve, val_tasks=val_tasks, checkpoint=policy, progress=progress)
        save_state(policy, state)
        return _write_training_outputs(run, out_dir, curve, result)

    result, _ = recorded_run("meta-train", body, config=config, runs_dir=runs_dir)
    return result


def _write_training_outputs(run, out_dir: Path, curve: CurveRecorder, result) -> dict:
    (out_dir / "operative_config.gin").write_text(gin.operative_config_str())
    curve.write_csv(out_dir / "learning_curve.csv")
    for name in ("operative_config.gin", "checkpoint.pt", "learning_curve.csv"):
        run.add_artifact(str(out_dir / name))
    metrics = {"final_meta_train_loss": result.final_meta_loss,
               **{f"final_meta_val_{name}": value for name, value in result.val.items()},
               "meta_iterations": result.iterations}
    write_json(out_dir / "train_metrics.json", {**metrics, "sacred_run_id": run._id})
    return metrics


def split_sine(config_files: Sequence[Path], bindings: Sequence[str] = (), *, shots: Sequence[int],
               curves: int, repeats: int, seed: int, out: Path) -> None:
    """Write the fixed meta-test set of the sine family configured in ``config_files``.

    The family's ``meta_test/SineTasks`` scope sets the query grid (e.g. 100 evenly spaced points).
    """
    load_config(config_files, bindings)
    with gin.config_scope("meta_test"):
        tasks = SineTasks(support_size=max(shots))
    save_meta_test_set(build_meta_test_set(tasks, shots=shots, curves=curves, repeats=repeats, seed=seed), out)


def _rebuild(checkpoint: Path) -> tuple[MetaTrainer, dict]:
    """The trainer (learner, algorithm, tasks) and state saved in ``checkpoint``."""
    ckpt = load_checkpoint(checkpoint)
    load_config_text(ckpt["gin_config"], origin=f"config stored in checkpoint {checkpoint}")
    return MetaTrainer(), ckpt


def evaluate_block(trainer: MetaTrainer, meta_params, block: dict, max_steps: int) -> dict:
    """Meta-test one K-block: per-curve mean over the repeats, then mean ± 95% CI over curves."""
    algo = trainer.algorithm
    c, r = block["support_x"].shape[:2]
    losses = adapted_query_losses(algo, meta_params, as_tasks(block), trainer.loss, max_steps)
    per_curve = losses.view(c, r, max_steps + 1).mean(dim=1)
    steps = [mean_ci95(per_curve[:, s]) for s in range(max_steps + 1)]
    mse, ci95 = steps[algo.eval_inner_steps]
    return {"mse": mse, "ci95": ci95, "curve_mse": [m for m, _ in steps], "curve_ci95": [h for _, h in steps]}


def qualitative_example(trainer: MetaTrainer, meta_params, block: dict, points: int = 200) -> dict:
    """The paper figure's data: true curve, K support points, prediction before/after adaptation."""
    algo = trainer.algorithm
    support = (block["support_x"][0, 0].float(), block["support_y"][0, 0].float())
    amplitude, frequency, phase = block["curves"][0].tolist()
    x = torch.linspace(float(block["query_x"][0, 0]), float(block["query_x"][0, -1]), points).view(-1, 1)
    with torch.no_grad():
        path = algo.adaptation_path(meta_params, support, trainer.loss, algo.eval_inner_steps)
        before, after = (torch.func.functional_call(trainer.learner, p, (x,)) for p in (path[0], path[-1]))
    return {"x": x.flatten().tolist(), "true": (amplitude * torch.sin(frequency * x + phase)).flatten().tolist(),
            "before": before.flatten().tolist(), "after": after.flatten().tolist(),
            "support_x": support[0].flatten().tolist(), "support_y": support[1].flatten().tolist(),
            "inner_steps": algo.eval_inner_steps}


def describe(trainer: MetaTrainer, ckpt: dict) -> dict:
    """What the report needs to place a result: algorithm, training shots, budget, test steps."""
    algo = trainer.algorithm
    name = type(algo).__name__
    if getattr(algo, "first_order", False):
        name = "FOMAML"
    return {"algorithm": name, "train_shots": trainer.tasks.support_size,
            "meta_iterations": ckpt["iteration"], "meta_batch_size": trainer.meta_batch_size,
            "inner_steps": algo.inner_steps, "eval_inner_steps": algo.eval_inner_steps, "seed": ckpt["seed"]}


def test(checkpoint: Path, test_set: Path, *, out_dir: Path, runs_dir: Path = DEFAULT_RUNS_DIR,
         curve_steps: int = 10) -> dict:
    """Meta-test ``checkpoint`` on a fixed sine meta-test set; writes ``metrics.json`` etc. to ``out_dir``."""
    trainer, ckpt = _rebuild(checkpoint)
    data = load_meta_test_set(test_set)
    config = {"seed": ckpt["seed"], "checkpoint": str(checkpoint), "test_set": str(test_set),
              "gin": config_as_dict()}
    max_steps = max(curve_steps, trainer.algorithm.eval_inner_steps)

    def body(run) -> dict:
        per_k = {f"{k}shot": evaluate_block(trainer, ckpt["meta_params"], block, max_steps)
                 for k, block in sorted(data["shots"].items())}
        summary = {name: {"mse": v["mse"], "ci95": v["ci95"]} for name, v in per_k.items()}
        write_json(Path(out_dir) / "metrics.json", {**summary, "inner_steps": trainer.algorithm.eval_inner_steps})
        write_json(Path(out_dir) / "curves.json", {"setting": describe(trainer, ckpt), "shots": per_k})
        smallest = min(data["shots"])
        write_json(Path(out_dir) / "qualitative.json",
                   qualitative_example(trainer, ckpt["meta_params"], data["shots"][smallest]))
        for name in ("metrics.json", "curves.json", "qualitative.json"):
            run.add_artifact(str(Path(out_dir) / name), name=f"meta_test_{name}")
        return {f"{name}_{stat}": v for name, stats in summary.items() for stat, v in stats.items()}

    result, _ = recorded_run("meta-test", body, config=config, runs_dir=runs_dir)
    return result
