"""Episodes and the samplers that fill them: K trajectories per task, many tasks at once.

A policy enters as ``act(observations [N, obs_dim], generator) -> actions [N, act_dim]``; the
samplers call it once per time step for all ``N = tasks × B`` running trajectories together
(task-major rows: ``i·B … (i+1)·B − 1`` are task ``i``), under ``torch.no_grad()``.

Episodes are padded to the horizon T. After an episode terminates its later steps have
``mask = 0`` and zero observations, actions and rewards, so masked sums over time are exact
and finished trajectories contribute nothing (maml.md §3.2 eq. 4 sums rewards up to H).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from metalearning.rl.envs.navigation import BatchNavigation2D

ActFn = Callable[[Tensor, torch.Generator], Tensor]


class TaskShard(NamedTuple):
    """The tasks ``start … stop − 1`` of a meta-batch of ``total`` that this process samples."""

    start: int
    stop: int
    total: int


class ShardedGenerator:
    """The random stream of a whole meta-batch, of which one process keeps its tasks' part.

    Passed where a sampler takes a ``generator``: every draw is the one a single process
    sampling all ``total`` tasks makes (same shape, same order), and this process keeps the rows
    of its tasks. So N processes sample exactly the episodes one process samples, and the
    generator's state stays the same in every process (and as in one process).
    """

    def __init__(self, generator: torch.Generator, shard: TaskShard):
        self.generator, self.shard = generator, shard

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def randn(self, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
        """Standard normal noise ``shape`` (leading dim: this process's tasks or their rows)."""
        start, stop, total = self.shard
        local = stop - start
        if shape[0] % local:
            raise ValueError(f"noise of {shape[0]} rows does not split over this process's {local} tasks")
        per_task = shape[0] // local
        full = torch.randn((per_task * total, *shape[1:]), generator=self.generator, dtype=dtype,
                           device=self.generator.device)
        return full[per_task * start:per_task * stop]


def normal_noise(generator: torch.Generator | ShardedGenerator, shape: Sequence[int], dtype: torch.dtype) -> Tensor:
    """Standard normal noise from a sampler's generator (its device: the CPU), sharded or not."""
    if isinstance(generator, ShardedGenerator):
        return generator.randn(shape, dtype)
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=generator.device)


def base_generator(generator: torch.Generator | ShardedGenerator) -> torch.Generator:
    """The torch generator behind a sampler's generator (for draws every process makes whole)."""
    return generator.generator if isinstance(generator, ShardedGenerator) else generator


def all_finished(alive: Tensor, generator: torch.Generator | ShardedGenerator) -> bool:
    """Whether every episode of the meta-batch has ended: of all processes' tasks when sharded
    (a collective), so every process takes as many steps, and draws as much noise, as one would."""
    finished = not bool(alive.any())
    if isinstance(generator, ShardedGenerator):
        from metalearning import distributed

        return not distributed.any_true(not finished)
    return finished


SHARDED_FINISH_CHECK = 10  # steps between the processes' "has every episode ended?" collectives


class DeferredEnd:
    """When every process's episodes have ended, asked once per ``SHARDED_FINISH_CHECK`` steps (one
    all-reduce) rather than after every step, for a sharded sampler of a stateless env: it keeps
    the random stream's state after each step, so it can set the stream back to where one process
    would have stopped."""

    def __init__(self, generator: ShardedGenerator, horizon: int):
        self.generator, self.horizon = generator, horizon
        self.pending: list[tuple[bool, Tensor]] = []  # (a local episode alive after the step, the stream's state)
        self.checked = 0  # steps decided: some episode was alive after each

    def steps_taken(self, alive: Tensor) -> int | None:
        """Record one more step (``alive``: this process's episodes after it). ``None`` to go on;
        else the number of steps one process takes, with the stream set back to its state then."""
        from metalearning import distributed

        self.pending.append((bool(alive.any()), self.generator.generator.get_state()))
        if len(self.pending) < SHARDED_FINISH_CHECK and self.checked + len(self.pending) < self.horizon:
            return None
        flags = torch.tensor([flag for flag, _ in self.pending], dtype=torch.float32)
        ended = (distributed.reduced_sum(flags) == 0).nonzero()
        if not len(ended):
            self.checked, self.pending = self.checked + len(self.pending), []
            return None
        end = int(ended[0])
        self.generator.generator.set_state(self.pending[end][1])
        return self.checked + end + 1


class Episodes(NamedTuple):
    """B trajectories of T steps (of one task, or with a leading task dimension of many).

    Fields (one task; with many, each gains a leading ``[tasks, ...]``):
        observations: float32 ``[T, B, obs_dim]``, the observation at step t, before acting.
        actions: float32 ``[T, B, act_dim]``, the actions fed to the env (unclipped samples).
        rewards: float32 ``[T, B]``, 0 after the episode ended.
        mask: float32 ``[T, B]``, 1 where step t was taken, 0 after termination.
    """

    observations: Tensor
    actions: Tensor
    rewards: Tensor
    mask: Tensor


def stack_tasks(episodes: Sequence[Episodes]) -> Episodes:
    """Per-task Episodes ``[T, B, ...]`` (same T and B) -> one Episodes ``[tasks, T, B, ...]``."""
    return Episodes(*(torch.stack(field) for field in zip(*episodes)))


def _stack_steps(steps: Sequence[Episodes], horizon: int) -> Episodes:
    """Per-step Episodes ``[tasks, B, ...]`` -> ``[tasks, T, B, ...]``, zero-padded to ``horizon`` steps."""
    stacked = Episodes(*(torch.stack(field, dim=1) for field in zip(*steps)))
    missing = horizon - len(steps)
    if missing == 0:
        return stacked
    return Episodes(*(torch.cat([f, f.new_zeros(f.shape[0], missing, *f.shape[2:])], dim=1) for f in stacked))


def _masked_step(observations: Tensor, actions: Tensor, rewards: Tensor, mask: Tensor) -> Episodes:
    """One step ``[tasks, B, ...]`` with every field zeroed where ``mask`` is 0."""
    keep = mask.bool()
    zero = torch.zeros((), dtype=torch.float32)
    return Episodes(torch.where(keep.unsqueeze(-1), observations, zero),
                    torch.where(keep.unsqueeze(-1), actions, zero), torch.where(keep, rewards, zero), mask)


def _act(act: ActFn, observations: Tensor, generator: torch.Generator) -> Tensor:
    """Call ``act`` on ``[tasks, B, obs_dim]`` observations flattened task-major; return ``[tasks, B, act_dim]``."""
    tasks, trajectories = observations.shape[:2]
    actions = act(observations.reshape(tasks * trajectories, -1), generator)
    return actions.reshape(tasks, trajectories, -1).to(torch.float32)


@torch.no_grad()
def sample_navigation(env: BatchNavigation2D, act: ActFn, goals: Tensor, starts: Tensor | None,
                      trajectories: int, generator: torch.Generator) -> Episodes:
    """Roll out ``trajectories`` episodes of each 2D navigation task, all stepped together.

    Args:
        env: the batched navigation env (reward variant and horizon T).
        act: the policy (module docstring).
        goals: ``[tasks, 2]``.
        starts: ``[tasks, 2]``, or ``None`` for the origin.
        trajectories: B, episodes per task.
        generator: passed to ``act`` (the only randomness: the dynamics are deterministic).

    Returns:
        Episodes with fields ``[tasks, T, B, ...]`` (``obs_dim = act_dim = 2``). Stops early, and
        zero-pads, once every episode has terminated.

    Sharded over processes, the step after which every process's episodes have ended is found
    with one collective per ``SHARDED_FINISH_CHECK`` steps rather than one per step: the steps
    taken past it are dropped and the random stream is set back to where it was then (the env is
    stateless), so the episodes and the stream are exactly one process's.
    """
    deferred = DeferredEnd(generator, env.horizon) if isinstance(generator, ShardedGenerator) else None
    state = env.reset(goals, starts, trajectories)
    steps = []
    for _ in range(env.horizon):
        observations = state.positions
        actions = _act(act, observations, generator)
        state, rewards, mask = env.step(state, actions)
        steps.append(_masked_step(observations, actions, rewards, mask))
        if deferred is None:
            if all_finished(state.alive, generator):
                break
        elif (taken := deferred.steps_taken(state.alive)) is not None:
            del steps[taken:]
            break
    return _stack_steps(steps, env.horizon)


@torch.no_grad()
def sample_vector_env(envs: VectorEnv, act: ActFn, trajectories: int, horizon: int,
                      generator: torch.Generator, seed: int | None) -> Episodes:
    """Roll out one episode in each sub-env of a (task-major) gymnasium vector env.

    Args:
        envs: ``tasks × B`` sub-envs, ``i·B + j`` = trajectory ``j`` of task ``i`` (see
            :func:`~metalearning.rl.envs.vector.make_task_vector_env`).
        act: the policy (module docstring).
        trajectories: B.
        horizon: T, the most steps taken (the envs' ``TimeLimit`` may end episodes earlier).
        generator: passed to ``act``.
        seed: sub-env ``k`` is reset with seed ``seed + k`` (gymnasium's convention), which
            fixes the initial states; ``None`` continues the envs' own RNGs.

    Returns:
        Episodes ``[tasks, T, B, ...]`` float32. A sub-env whose episode has ended (terminated or
        truncated) is masked from then on; gymnasium's autoreset of it is ignored.
    """
    tasks = envs.num_envs // trajectories
    if tasks * trajectories != envs.num_envs:
        raise ValueError(f"{envs.num_envs} sub-envs are not tasks × {trajectories} trajectories")
    observations, _ = envs.reset(seed=seed)
    alive = np.ones(envs.num_envs, dtype=bool)
    steps = []
    for _ in range(horizon):
        obs = torch.as_tensor(observations, dtype=torch.float32).reshape(tasks, trajectories, -1)
        actions = _act(act, obs, generator)
        observations, rewards, terminated, truncated, _ = envs.step(actions.reshape(envs.num_envs, -1).cpu().numpy())
        mask = torch.as_tensor(alive, dtype=torch.float32).reshape(tasks, trajectories)
        rewards = torch.as_tensor(rewards, dtype=torch.float32).reshape(tasks, trajectories)
        steps.append(_masked_step(obs, actions, rewards, mask))
        alive &= ~(terminated | truncated)
        if all_finished(torch.as_tensor(alive), generator):
            break
    return _stack_steps(steps, horizon)
