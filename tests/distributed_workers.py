"""Process bodies of the torch.distributed tests (importable by spawned processes)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils import _pytree as pytree


def join(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives a process, on one machine."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)


def float64_meta_gradients(rank: int, world: int, port: int, cases: list, out: str) -> None:
    """One meta-iteration of every (name, configs, bindings) case in float64, through the trainer's
    own step; saves every meta-parameter's gradient (gradient rule; TRPO sets none), the updated
    meta-parameters and the step's scalars (identical on every rank)."""
    from metalearning import distributed
    from metalearning.config import load_config
    from metalearning.core.algorithms import meta_leaves
    from metalearning.training import MetaTrainer, _step, init_state

    if world > 1:
        join(rank, world, port)
        distributed.init_from_env(torch.device("cpu"))
    grads = {}
    for name, configs, bindings in cases:
        load_config(configs, bindings)
        torch.manual_seed(0)
        trainer = MetaTrainer()
        trainer.learner.double()
        sample = trainer.tasks.meta_batch

        def float64_batch(*args, sample=sample, **kwargs):
            batch = sample(*args, **kwargs)
            return batch._replace(tasks=pytree.tree_map(
                lambda t: t.double() if torch.is_tensor(t) and t.is_floating_point() else t, batch.tasks))

        trainer.tasks.meta_batch = float64_batch
        state = init_state(trainer, seed=0)
        initial = [p.detach().clone() for p in meta_leaves(state.meta_params)]
        _step(trainer, state)
        leaves = meta_leaves(state.meta_params)
        grads[name] = {"grads": [p.grad.clone() for p in leaves] if leaves[0].grad is not None else None,
                       "params": [p.detach().clone() for p in leaves], "initial": initial,
                       "scalars": {k: float(v[0]) for k, v in state.window.items()}}
    torch.save(grads, Path(out) / f"grads_{world}_{rank}.pt")
    distributed.shutdown()


def train_command(rank: int, world: int, port: int, kwargs: dict, die_after: int | None = None) -> None:
    """``metalearning train`` in one process of a ``world``; with ``die_after``, rank 1 dies (SIGKILL
    -like, no cleanup) when it samples meta-iteration ``die_after + 1``."""
    from metalearning import commands, distributed

    join(rank, world, port)
    if die_after is not None and rank == 1:
        from metalearning.training import MetaTrainer

        original = MetaTrainer.__init__

        def dying_init(self, *args, **kw):
            original(self, *args, **kw)
            sample, seen = self.tasks.meta_batch, []

            def meta_batch(*a, **k):
                seen.append(1)
                if len(seen) > die_after:
                    os._exit(9)
                return sample(*a, **k)

            self.tasks.meta_batch = meta_batch

        MetaTrainer.__init__ = dying_init
    try:
        commands.train(**kwargs)
    finally:
        distributed.shutdown()


def homing_act(goals: torch.Tensor, trajectories: int):
    """A policy (policy units: the env moves 0.1·a) heading for each row's goal at full speed,
    with a little noise drawn from the sampler's generator (sharded or not)."""
    from metalearning.rl.rollouts import normal_noise

    targets = goals.repeat_interleave(trajectories, 0)

    def act(observations, generator):
        noise = normal_noise(generator, observations.shape, observations.dtype)
        return (10 * (targets - observations)).clamp(-1, 1) + 1e-3 * noise

    return act


def sharded_navigation(rank: int, world: int, port: int, cases: list, out: str) -> None:
    """``sample_navigation`` of each (goals [3, 2], horizon) case with 2 trajectories, this process's
    tasks of the 3 (``world`` > 1: a ShardedGenerator); saves the episodes and the stream's state."""
    from metalearning import distributed
    from metalearning.core.shards import shard_bounds
    from metalearning.rl.envs import BatchNavigation2D
    from metalearning.rl.rollouts import ShardedGenerator, TaskShard, sample_navigation

    if world > 1:
        join(rank, world, port)
        distributed.init_from_env(torch.device("cpu"))
    results = []
    for goals, horizon in cases:
        goals = torch.tensor(goals)
        start, stop = shard_bounds(len(goals), rank, world)
        generator = torch.Generator().manual_seed(7)
        sampler_generator = ShardedGenerator(generator, TaskShard(start, stop, len(goals))) if world > 1 else generator
        episodes = sample_navigation(BatchNavigation2D(horizon=horizon), homing_act(goals[start:stop], 2),
                                     goals[start:stop], None, 2, sampler_generator)
        results.append({"episodes": [f.clone() for f in episodes], "state": generator.get_state(),
                        "tasks": (start, stop)})
    torch.save(results, Path(out) / f"navigation_{world}_{rank}.pt")
    distributed.shutdown()
