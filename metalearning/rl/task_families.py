"""Task distributions with batched samplers, in the form :class:`~metalearning.rl.meta_rl.MetaRL`
consumes (``sample_tasks`` + ``rollout``): 2D navigation over the batched torch env and the
MuJoCo locomotion tasks over a task-major gymnasium vector env; either optionally as the oracle
whose observation also holds the task's goal (maml.md §5.3 baseline (c))."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import gin
import gymnasium
import torch
from torch import Tensor

from metalearning.rl.envs.navigation import BatchNavigation2D, NavigationTasks
from metalearning.rl.envs.registration import LOCOMOTION_HORIZON, LOCOMOTION_IDS
from metalearning.rl.envs.vector import make_task_vector_env, set_vector_tasks
from metalearning.rl.policy import ActFn
from metalearning.rl.rollouts import Episodes, ShardedGenerator, base_generator, sample_navigation, sample_vector_env


def with_task_inputs(act: ActFn, inputs: Tensor) -> ActFn:
    """``act`` on observations extended by a per-task vector: row ``r`` of the task-major
    ``[N, obs_dim]`` batch gets ``inputs[r // (N / tasks)]`` appended.

    Args:
        act: the policy, acting on ``[N, obs_dim + input_dim]``.
        inputs: ``[tasks, input_dim]``, e.g. the goals.
    """
    def extended(observations: Tensor, generator: torch.Generator) -> Tensor:
        per_row = inputs.repeat_interleave(observations.shape[0] // inputs.shape[0], dim=0)
        return act(torch.cat([observations, per_row.to(observations)], dim=-1), generator)

    return extended


def append_task_inputs(episodes: Episodes, inputs: Tensor) -> Episodes:
    """Episodes ``[tasks, T, B, ...]`` whose observations also hold ``inputs [tasks, d]``
    (zero where the step was not taken, like the rest of the padding)."""
    obs = episodes.observations
    extra = inputs.to(obs).view(inputs.shape[0], 1, 1, -1).expand(*obs.shape[:-1], -1)
    return episodes._replace(observations=torch.cat([obs, extra * episodes.mask.unsqueeze(-1)], dim=-1))


@gin.configurable
@dataclass(frozen=True)
class NavigationFamily:
    """2D navigation tasks (goals, and starts for Meta-SGD's second set) and their sampler.

    Args:
        env: the batched environment: reward variant (MAML ``"squared"``, Meta-SGD
            ``"distance"``), random starts (Meta-SGD's second task set), horizon.
        oracle: append the goal to every observation (``obs_dim`` 4 instead of 2).
    """

    env: BatchNavigation2D
    oracle: bool = False

    @property
    def obs_dim(self) -> int:
        return 4 if self.oracle else 2

    @property
    def act_dim(self) -> int:
        return 2

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> NavigationTasks:
        return self.env.sample_tasks(num_tasks, generator)

    def rollout(self, act: ActFn, tasks: NavigationTasks, trajectories: int,
                generator: torch.Generator) -> Episodes:
        """``trajectories`` episodes of every task, fields ``[tasks, T, B, ...]``."""
        if not self.oracle:
            return sample_navigation(self.env, act, tasks.goals, tasks.starts, trajectories, generator)
        episodes = sample_navigation(self.env, with_task_inputs(act, tasks.goals), tasks.goals, tasks.starts,
                                     trajectories, generator)
        return append_task_inputs(episodes, tasks.goals)


@gin.configurable
@dataclass(frozen=True)
class LocomotionFamily:
    """Goal-velocity / goal-direction MuJoCo tasks (maml.md §5.3), one goal scalar per task.

    The ``tasks × B`` sub-envs are built once per meta-batch shape and re-targeted with
    ``set_task`` for every rollout; each rollout resets them with seeds drawn from the generator.

    Args:
        env_id: one of ``metalearning.rl.envs.registration.LOCOMOTION_IDS``.
        horizon: H (maml.md §5.3: 200).
        oracle: append the goal to every observation.
    """

    env_id: str
    horizon: int = LOCOMOTION_HORIZON
    oracle: bool = False
    _envs: dict[tuple[int, int], Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.env_id not in LOCOMOTION_IDS:
            raise ValueError(f"LocomotionFamily.env_id must be one of {sorted(LOCOMOTION_IDS)}, got {self.env_id!r}")

    @property
    def obs_dim(self) -> int:
        return self._space_sizes[0] + int(self.oracle)

    @property
    def act_dim(self) -> int:
        return self._space_sizes[1]

    @cached_property
    def _space_sizes(self) -> tuple[int, int]:
        """(observation size, action size), read from one env, once."""
        env = gymnasium.make(self.env_id)
        try:
            return int(env.observation_space.shape[0]), int(env.action_space.shape[0])
        finally:
            env.close()

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> Tensor:
        """Goals ``[num_tasks]`` (velocities or ±1 directions)."""
        from metalearning.rl.envs.locomotion import sample_locomotion_tasks  # imports mujoco

        spec = LOCOMOTION_IDS[self.env_id]
        return sample_locomotion_tasks(spec["robot"], spec["objective"], num_tasks, generator)

    def rollout(self, act: ActFn, tasks: Tensor, trajectories: int, generator: torch.Generator) -> Episodes:
        """``trajectories`` episodes of every task, fields ``[tasks, T, B, ...]``."""
        envs = self._vector_env(tasks, trajectories)
        seed = int(torch.randint(2**31 - 1, (), generator=base_generator(generator)))
        if isinstance(generator, ShardedGenerator):  # sub-env k of this process is sub-env start·B + k of all
            seed += generator.shard.start * trajectories
        goals = tasks.view(-1, 1)
        if not self.oracle:
            return sample_vector_env(envs, act, trajectories, self.horizon, generator, seed)
        episodes = sample_vector_env(envs, with_task_inputs(act, goals), trajectories, self.horizon, generator, seed)
        return append_task_inputs(episodes, goals)

    def _vector_env(self, tasks: Tensor, trajectories: int):
        key = (tasks.shape[0], trajectories)
        if key not in self._envs:
            self._envs[key] = make_task_vector_env(self.env_id, tasks.tolist(), trajectories)
        else:
            set_vector_tasks(self._envs[key], tasks.tolist(), trajectories)
        return self._envs[key]
