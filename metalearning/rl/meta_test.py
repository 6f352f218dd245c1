"""The meta-RL family's meta-test protocol (maml.md §5.3, Fig. 4; meta-sgd.md §4.3, Table 4):
the average return on new tasks after 0 … ``eval_inner_steps`` policy-gradient steps, mean ±
95% CI over tasks, and a few navigation tasks' paths at every step for the plot."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from metalearning import distributed
from metalearning.core.algorithms import MetaParams, method_label
from metalearning.core.family import MetaTestResult
from metalearning.rl.envs.navigation import velocity
from metalearning.rl.meta_rl import adaptation_returns
from metalearning.rl.rollouts import Episodes
from metalearning.rl.task_families import NavigationFamily

if TYPE_CHECKING:
    from metalearning.model import Model

PATHS_SEED_OFFSET = 1  # the plotted paths come from a stream beside the meta-test tasks'


def method_name(model: Model) -> str:
    """The label the papers give the model: the algorithm's, or a baseline of maml.md §5.3."""
    algo, tasks = model.algorithm, model.family.tasks
    if getattr(tasks, "oracle", False):
        return "oracle"
    if model.iteration == 0:
        return "random init"
    return method_label(algo)


def task_description(tasks: Any) -> dict[str, Any]:
    """The task family as the report groups it: 2D navigation (reward, start) or a MuJoCo env id."""
    if isinstance(tasks, NavigationFamily):
        return {"family": "nav2d", "reward": tasks.env.reward, "start": "random" if tasks.env.random_start else "fixed",
                "horizon": tasks.env.horizon, "oracle": tasks.oracle}
    return {"family": tasks.env_id.split("/")[-1].removesuffix("-v0"), "env_id": tasks.env_id,
            "horizon": tasks.horizon, "oracle": tasks.oracle}


def describe(model: Model) -> dict[str, Any]:
    """What the report needs to place a result: method, task family, budget, protocol sizes."""
    family, algo, trainer = model.family, model.algorithm, model.trainer
    return {"method": method_name(model), "algorithm": type(algo).__name__,
            "task": task_description(family.tasks), "meta_iterations": model.iteration,
            "best_iteration": model.checkpoint.get("best_iteration", 0), "meta_batch_size": trainer.meta_batch_size,
            "trajectories": family.support_trajectories, "inner_steps": algo.inner_steps,
            "eval_inner_steps": algo.eval_inner_steps, "seed": model.seed,
            "hvp": getattr(trainer.outer_rule, "hvp", None)}  # TRPO's Hessian-vector products


def protocol(model: Model) -> dict[str, Any]:
    """The meta-test protocol as run: tasks, trajectories per step, α's scale after step 1, seed."""
    family = model.family
    evaluation = family.evaluation
    return {"tasks": evaluation.num_tasks, "trajectories": evaluation.trajectories,
            "later_steps_lr_scale": evaluation.later_steps_lr_scale, "eval_seed": family.eval_seed,
            "steps": model.algorithm.eval_inner_steps}


def first_step_size(model: Model) -> float | None:
    """The first meta-test step's α, or None when it is learned per parameter (Meta-SGD, whose
    fixed ``inner_lr`` is NaN)."""
    alpha = getattr(model.algorithm, "inner_lr", None)
    return float(alpha) if isinstance(alpha, (int, float)) and not math.isnan(alpha) else None


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
    last = positions[-1] + velocity(episodes.actions[task, length - 1, trajectory])
    return torch.cat([positions, last.unsqueeze(0)]).round(decimals=4).tolist()


def navigation_paths(model: Model, generator: torch.Generator) -> dict:
    """One sampled path per adaptation step (pre-update, after 1, 2, … PG steps) for
    ``plotted_tasks`` new tasks, adapted exactly as at meta-test (maml.md Fig. 4, meta-sgd.md Fig. 4)."""
    family, algo = model.family, model.algorithm
    evaluation, recorder = family.evaluation, RecordingTasks(family.tasks)
    tasks = recorder.sample_tasks(family.plotted_tasks, generator)
    returns = adaptation_returns(
        model.trainer.learner, algo, model.meta_params, recorder, tasks, steps=algo.eval_inner_steps,
        trajectories=evaluation.trajectories, gamma=family.gamma, gae_lambda=family.gae_lambda,
        later_steps_lr_scale=evaluation.later_steps_lr_scale, generator=generator)
    return {"tasks": [{"goal": tasks.goals[i].tolist(), "start": tasks.starts[i].tolist(),
                       "returns": returns[i].tolist(),
                       "paths": [episode_path(episodes, i, 0) for episodes in recorder.episodes]}
                      for i in range(family.plotted_tasks)]}


def evaluate(model: Model, meta_params: MetaParams | None = None) -> Tensor:
    """Average return per new task after 0 … ``eval_inner_steps`` PG steps, ``[tasks, steps + 1]``."""
    generator = torch.Generator().manual_seed(model.family.eval_seed)
    return model.family.evaluation.returns(model.trainer, model.meta_params if meta_params is None else meta_params,
                                           generator)


def meta_test(model: Model, test_set: Any) -> MetaTestResult:
    """Return ± 95% CI after each number of PG steps on the family's seeded new tasks
    (``metrics.json``, ``curves.json``) and the plotted paths (``trajectories.json``; no tasks
    for families other than navigation, and on processes other than rank 0, which write nothing). The
    tasks come from ``MetaRL.eval_seed``, not a file."""
    if test_set is not None:
        raise ValueError(f"a meta-RL meta-test draws new tasks from MetaRL.eval_seed; it takes no test set "
                         f"({test_set}): bind 'MetaRL.eval_seed = N' to change them")
    summary = model.family.evaluation.summary(evaluate(model))
    metrics = step_metrics(summary)
    paths = {"tasks": []}
    if isinstance(model.family.tasks, NavigationFamily) and distributed.world().writer:  # only rank 0 writes them
        paths = navigation_paths(model, torch.Generator().manual_seed(model.family.eval_seed + PATHS_SEED_OFFSET))
    files = {"metrics.json": {**metrics, **protocol(model)},
             "curves.json": {"setting": describe(model),
                             "meta_test": {**protocol(model), "paper": model.family.evaluation.paper,
                                           "alpha": first_step_size(model)}, **summary},
             "trajectories.json": paths}
    return MetaTestResult({f"{stat}_{k}": v[stat] for k, v in metrics.items() for stat in ("return", "ci95")}, files)
