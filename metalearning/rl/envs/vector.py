"""Synchronous vector envs holding B trajectories of each of several tasks.

Sub-environment ``i·B + j`` runs trajectory ``j`` of task ``i`` (task-major, the layout the
samplers and the policies' per-task ``act`` expect). ``SyncVectorEnv`` steps them in one
process: on the project's 2-core machine, 10 ``HalfCheetahVel`` envs stepped at ~2,600
env-steps/s with ``SyncVectorEnv`` against ~900 with ``AsyncVectorEnv`` (one process per env;
the pipe traffic costs more than a MuJoCo step).
"""

from __future__ import annotations

from typing import Any, Sequence

import gymnasium
from gymnasium.vector import SyncVectorEnv
from torch import Tensor

import metalearning.rl.envs  # noqa: F401  (registers the metalearning/ ids)


def make_task_vector_env(env_id: str, goals: Tensor | Sequence[Any], trajectories: int,
                         **make_kwargs: Any) -> SyncVectorEnv:
    """``len(goals) × trajectories`` copies of ``env_id``, copy ``i·B + j`` set to ``goals[i]``.

    Args:
        env_id: a registered id whose env has ``set_task(goal)`` (the ``metalearning/`` ids;
            navigation with random starts needs a start too and is not supported here: use
            :class:`~metalearning.rl.envs.navigation.BatchNavigation2D`).
        goals: ``[tasks, ...]`` one goal per task (a velocity, a direction, a 2D point).
        trajectories: B, copies per task.
        **make_kwargs: passed to ``gymnasium.make``.
    """
    tasks = len(goals)
    envs = SyncVectorEnv([lambda: gymnasium.make(env_id, **make_kwargs) for _ in range(tasks * trajectories)])
    set_vector_tasks(envs, goals, trajectories)
    return envs


def set_vector_tasks(envs: SyncVectorEnv, goals: Tensor | Sequence[Any], trajectories: int) -> None:
    """Give sub-env ``i·B + j`` the task ``goals[i]`` (call before ``reset``, which starts the episodes).

    Raises:
        ValueError: if ``envs`` does not hold exactly ``len(goals) × trajectories`` sub-envs.
    """
    if envs.num_envs != len(goals) * trajectories:
        raise ValueError(f"{envs.num_envs} sub-envs cannot hold {len(goals)} tasks × {trajectories} trajectories")
    for index, env in enumerate(envs.envs):
        env.unwrapped.set_task(goals[index // trajectories])
