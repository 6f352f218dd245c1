"""Meta-RL commands: meta-train an experiment of ``configs/rl/`` and meta-test it on new tasks.

Both are Sacred runs (:func:`~metalearning.runs.recorded_run`) whose outputs are the files the
DVC stages declare. Meta-training keeps the final meta-parameters and the best ones by
post-update return (maml.md A.2); meta-testing evaluates the best on ``eval_tasks`` new tasks
drawn with the experiment's eval seed, after 0, 1, …, ``eval_inner_steps`` PG steps. On CPU both
are deterministic for a fixed seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gin
import torch
from torch import Tensor
from tqdm import tqdm

from metalearning.checkpoints import load_checkpoint, save_checkpoint
from metalearning.config import config_as_dict, load_config, load_config_text
from metalearning.core.algorithms import MetaParams, MetaSGD
from metalearning.metrics_io import CurveRecorder, write_json
from metalearning.rl.envs.navigation import MAX_SPEED
from metalearning.rl.experiment import RLExperiment
from metalearning.rl.meta_rl import MetaStepStats, TrainResult, adaptation_returns
from metalearning.rl.rollouts import Episodes
from metalearning.rl.task_families import NavigationFamily
from metalearning.runs import DEFAULT_RUNS_DIR, recorded_run

CURVE_FIELDS = ("iteration", "meta_train.pre_update_return", "meta_train.post_update_return", "trpo.kl",
                "trpo.loss_before", "trpo.loss_after", "trpo.step_fraction", "trpo.grad_norm")
PATHS_SEED_OFFSET = 1  # the plotted paths come from a stream beside the meta-test tasks'


# --- meta-training ------------------------------------------------------------------------------


def step_scalars(stats: MetaStepStats) -> dict[str, float]:
    """The learning-curve columns of one meta-iteration (:data:`CURVE_FIELDS` but ``iteration``)."""
    trpo = stats.trpo
    return {"meta_train.pre_update_return": stats.pre_update_return,
            "meta_train.post_update_return": stats.post_update_return, "trpo.kl": trpo.kl_after,
            "trpo.loss_before": trpo.loss_before, "trpo.loss_after": trpo.loss_after,
            "trpo.step_fraction": trpo.step_fraction, "trpo.grad_norm": trpo.grad_norm}


def meta_train_rl(experiment: RLExperiment, seed: int, sink: CurveRecorder, progress: bool) -> TrainResult:
    """Run the experiment's meta-iterations from θ (and α) drawn with ``seed``, logging each to ``sink``."""
    meta_rl = experiment.meta_rl
    generator = torch.Generator().manual_seed(seed)
    meta_params = meta_rl.init_meta_params(generator)
    with tqdm(total=experiment.meta_iterations, disable=not progress, desc="meta-RL", unit="it") as bar:
        def log(it: int, stats: MetaStepStats) -> None:
            for name, value in step_scalars(stats).items():
                sink.log_scalar(name, value, it)
            bar.set_postfix(post_update_return=f"{stats.post_update_return:.2f}", refresh=False)
            bar.update()

        return meta_rl.train(meta_params, experiment.meta_iterations, generator, log)


def write_curve(curve: CurveRecorder, path: Path) -> None:
    """``learning_curve.csv``; just the header when nothing was trained (the random-init baseline)."""
    if curve.rows:
        curve.write_csv(path)
    else:
        Path(path).write_text(",".join(CURVE_FIELDS) + "\n")


def train_summary(result: TrainResult, iterations: int) -> dict[str, float]:
    """``train_metrics.json``'s numbers: budget, best iteration and returns (none without training)."""
    summary: dict[str, float] = {"meta_iterations": iterations, "best_iteration": result.best_iteration}
    if result.history:
        last = result.history[-1]
        summary |= {"final_pre_update_return": last.pre_update_return,
                    "final_post_update_return": last.post_update_return,
                    "best_post_update_return": max(s.post_update_return for s in result.history)}
    return summary


def train_rl(config_files: Sequence[Path], bindings: Sequence[str] = (), *, seed: int, out_dir: Path,
             runs_dir: Path = DEFAULT_RUNS_DIR, progress: bool = True) -> dict:
    """Meta-train the experiment of ``config_files`` (+ ``bindings``) into ``out_dir``.

    Writes ``checkpoint.pt`` (final and best meta-parameters, the best's iteration, the gin
    config, the seed), ``config.gin``, ``operative_config.gin``, ``learning_curve.csv`` (one row
    per meta-iteration: returns before/after adaptation, TRPO's KL, losses, step fraction) and
    ``train_metrics.json``; records a Sacred run with the same scalars. Returns the summary.
    """
    config_text = load_config(config_files, bindings)
    config = {"seed": seed, "gin_files": [str(f) for f in config_files], "gin_bindings": list(bindings),
              "gin": config_as_dict()}
    out_dir = Path(out_dir)

    def body(run) -> dict:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.gin").write_text(config_text)
        torch.manual_seed(seed)  # the policy's initial weights
        experiment, curve = RLExperiment(), CurveRecorder(forward=run)
        result = meta_train_rl(experiment, seed, curve, progress)
        summary = train_summary(result, experiment.meta_iterations)
        save_checkpoint(out_dir / "checkpoint.pt", meta_params=result.final, iteration=experiment.meta_iterations,
                        best_meta_params=result.best, best_iteration=summary["best_iteration"],
                        gin_config=config_text, seed=seed, sacred_run_id=run._id)
        (out_dir / "operative_config.gin").write_text(gin.operative_config_str())
        write_curve(curve, out_dir / "learning_curve.csv")
        write_json(out_dir / "train_metrics.json", {**summary, "sacred_run_id": run._id})
        for name in ("config.gin", "operative_config.gin", "checkpoint.pt", "learning_curve.csv"):
            run.add_artifact(str(out_dir / name))
        return summary

    result, _ = recorded_run("meta-rl-train", body, config=config, runs_dir=runs_dir)
    return result


# --- meta-testing -------------------------------------------------------------------------------


def method_name(experiment: RLExperiment, iterations: int) -> str:
    """The label the papers give the model: MAML, FOMAML, Meta-SGD, or a baseline of maml.md §5.3."""
    algo, tasks = experiment.meta_rl.algorithm, experiment.meta_rl.tasks
    if getattr(tasks, "oracle", False):
        return "oracle"
    if iterations == 0:
        return "random init"
    if algo.inner_steps == 0:
        return "pretrained"
    if isinstance(algo, MetaSGD):
        return "Meta-SGD"
    return "FOMAML" if algo.first_order else "MAML"


def task_description(tasks: Any) -> dict[str, Any]:
    """The task family as the report groups it: 2D navigation (reward, start) or a MuJoCo env id."""
    if isinstance(tasks, NavigationFamily):
        return {"family": "nav2d", "reward": tasks.env.reward, "start": "random" if tasks.env.random_start else "fixed",
                "horizon": tasks.env.horizon, "oracle": tasks.oracle}
    return {"family": tasks.env_id.split("/")[-1].removesuffix("-v0"), "env_id": tasks.env_id,
            "horizon": tasks.horizon, "oracle": tasks.oracle}


def describe_rl(experiment: RLExperiment, ckpt: dict) -> dict[str, Any]:
    """What the report needs to place a result: method, task family, budget, protocol sizes."""
    meta_rl, algo = experiment.meta_rl, experiment.meta_rl.algorithm
    return {"method": method_name(experiment, ckpt["iteration"]), "algorithm": type(algo).__name__,
            "task": task_description(meta_rl.tasks), "meta_iterations": ckpt["iteration"],
            "best_iteration": ckpt["best_iteration"], "meta_batch_size": meta_rl.meta_batch_size,
            "trajectories": meta_rl.support_trajectories, "inner_steps": algo.inner_steps,
            "eval_inner_steps": algo.eval_inner_steps, "seed": ckpt["seed"]}


def protocol(experiment: RLExperiment) -> dict[str, Any]:
    """The meta-test protocol as run: tasks, trajectories per step, α scale after step 1, seed."""
    evaluation = experiment.evaluation
    return {"tasks": evaluation.num_tasks, "trajectories": evaluation.trajectories,
            "later_steps_lr_scale": evaluation.later_steps_lr_scale, "eval_seed": experiment.eval_seed,
            "steps": experiment.meta_rl.algorithm.eval_inner_steps}


def step_metrics(summary: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """``{"<k>_steps": {"return": mean, "ci95": half-width}}`` for k = 0 … steps (``metrics.json``)."""
    return {f"{k}_steps": {"return": mean, "ci95": ci}
            for k, (mean, ci) in enumerate(zip(summary["return_mean"], summary["return_ci95"]))}


class RecordingTasks:
    """A task family that keeps every rollout's episodes (to plot each adaptation step's paths)."""

    def __init__(self, tasks: Any):
        self.tasks, self.episodes = tasks, []

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> Any:
        return self.tasks.sample_tasks(num_tasks, generator)

    def rollout(self, act, tasks: Any, trajectories: int, generator: torch.Generator) -> Episodes:
        self.episodes.append(self.tasks.rollout(act, tasks, trajectories, generator))
        return self.episodes[-1]


def episode_path(episodes: Episodes, task: int, trajectory: int) -> list[list[float]]:
    """Positions p_0 … p_L of one navigation episode (its observations, then the last step's result).

    ``episodes`` fields are ``[tasks, T, B, ...]``; the first two observation entries are the
    position (the oracle appends the goal after them).
    """
    length = int(episodes.mask[task, :, trajectory].sum())
    positions = episodes.observations[task, :length, trajectory, :2]
    last = positions[-1] + episodes.actions[task, length - 1, trajectory].clamp(-MAX_SPEED, MAX_SPEED)
    return torch.cat([positions, last.unsqueeze(0)]).round(decimals=4).tolist()


def navigation_paths(experiment: RLExperiment, meta_params: MetaParams, generator: torch.Generator) -> dict:
    """One sampled path per adaptation step (pre-update, after 1, 2, … PG steps) for
    ``plotted_tasks`` new tasks, adapted exactly as at meta-test (maml.md Fig. 4, meta-sgd.md Fig. 4)."""
    meta_rl, evaluation = experiment.meta_rl, experiment.evaluation
    algo, recorder = meta_rl.algorithm, RecordingTasks(meta_rl.tasks)
    tasks = recorder.sample_tasks(experiment.plotted_tasks, generator)
    returns = adaptation_returns(
        meta_rl.policy, algo, meta_params, recorder, tasks, steps=algo.eval_inner_steps,
        trajectories=evaluation.trajectories, gamma=meta_rl.gamma, gae_lambda=meta_rl.gae_lambda,
        later_steps_lr_scale=evaluation.later_steps_lr_scale, generator=generator)
    return {"tasks": [{"goal": tasks.goals[i].tolist(), "start": tasks.starts[i].tolist(),
                       "returns": returns[i].tolist(),
                       "paths": [episode_path(episodes, i, 0) for episodes in recorder.episodes]}
                      for i in range(experiment.plotted_tasks)]}


def evaluate(experiment: RLExperiment, meta_params: MetaParams) -> Tensor:
    """Average return per new task after 0 … ``eval_inner_steps`` PG steps, ``[tasks, steps + 1]``."""
    generator = torch.Generator().manual_seed(experiment.eval_seed)
    return experiment.evaluation.returns(experiment.meta_rl, meta_params, generator)


def test_rl(checkpoint: Path, *, out_dir: Path, runs_dir: Path = DEFAULT_RUNS_DIR,
            bindings: Sequence[str] = ()) -> dict:
    """Meta-test the best meta-parameters of ``checkpoint`` on new tasks; write to ``out_dir``.

    Args:
        checkpoint: a ``train_rl`` checkpoint; its gin config rebuilds the experiment.
        bindings: gin bindings applied on top of the stored config (e.g. the eval seed).

    Writes ``metrics.json`` (return ± 95% CI after each number of steps, protocol),
    ``curves.json`` (setting, protocol, the curve) and ``trajectories.json`` (pre-/post-update
    paths of a few navigation tasks; no tasks for other families); records a Sacred run.
    """
    ckpt = load_checkpoint(checkpoint)
    load_config_text("\n".join([ckpt["gin_config"], *bindings]),
                     origin=f"config stored in checkpoint {checkpoint} with bindings {list(bindings)}")
    torch.manual_seed(ckpt["seed"])  # builds the policy module; its parameters are the checkpoint's
    experiment, meta_params = RLExperiment(), ckpt["best_meta_params"]
    config = {"seed": ckpt["seed"], "checkpoint": str(checkpoint), "gin_bindings": list(bindings),
              "gin": config_as_dict()}
    out_dir = Path(out_dir)

    def body(run) -> dict:
        summary = experiment.evaluation.summary(evaluate(experiment, meta_params))
        metrics = step_metrics(summary)
        write_json(out_dir / "metrics.json", {**metrics, **protocol(experiment)})
        write_json(out_dir / "curves.json", {"setting": describe_rl(experiment, ckpt),
                                             "meta_test": protocol(experiment), **summary})
        paths = {"tasks": []}
        if isinstance(experiment.meta_rl.tasks, NavigationFamily):
            generator = torch.Generator().manual_seed(experiment.eval_seed + PATHS_SEED_OFFSET)
            paths = navigation_paths(experiment, meta_params, generator)
        write_json(out_dir / "trajectories.json", paths)
        for name in ("metrics.json", "curves.json", "trajectories.json"):
            run.add_artifact(str(out_dir / name), name=f"meta_test_{name}")
        return {f"{stat}_{k}": v[stat] for k, v in metrics.items() for stat in ("return", "ci95")}

    result, _ = recorded_run("meta-rl-test", body, config=config, runs_dir=runs_dir)
    return result
