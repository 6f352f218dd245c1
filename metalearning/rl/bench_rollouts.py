"""Measured env-steps/s of the rollout samplers: ``metalearning bench --rollouts``.

(a) the batched torch 2D navigation sampler, 20 tasks × 20 trajectories × 100 steps (the
meta-batch of maml.md A.2 / meta-sgd.md §4.3), with a 2-100-100-2 ReLU MLP Gaussian policy;
(b) the same rollout with 400 single ``gymnasium.make`` navigation envs stepped in a Python
loop (the policy still called once per step on all of them); (c) ``HalfCheetah-v5`` as MAML's
code runs it (``metalearning/HalfCheetahVel-v0``: 0.01 s per step) in a ``SyncVectorEnv`` of
10 envs × 200 steps; (d) the same 40 cheetah envs × 200 steps split across 1, 2, … processes —
each a ``SyncVectorEnv`` of its share with the policy, as the meta-RL trainer's torch.distributed
ranks roll out their tasks — against gymnasium's ``AsyncVectorEnv`` (one worker process per
env, stepped from one policy process).
Env-steps counts the steps actually taken (mask = 1).
"""

from __future__ import annotations

import os
import time
from typing import Callable

import gymnasium
import numpy as np
import torch

from metalearning.rl.envs import BatchNavigation2D
from metalearning.rl.policy import GaussianMLPPolicy, make_task_act
from metalearning.rl.rollouts import ActFn, sample_navigation, sample_vector_env
from metalearning.rl.task_families import LocomotionFamily

CHEETAH = "metalearning/HalfCheetahVel-v0"  # the robot every cheetah measurement steps


def policy_act(obs_dim: int, act_dim: int, seed: int = 0) -> ActFn:
    """The 100-100 ReLU Gaussian policy of maml.md §5.3 (:class:`GaussianMLPPolicy`) acting on
    the rows of one task (``make_task_act`` with a single task)."""
    policy = GaussianMLPPolicy(obs_dim, act_dim, generator=torch.Generator().manual_seed(seed))
    params = {k: p.detach().unsqueeze(0) for k, p in policy.named_parameters()}
    return make_task_act(policy, params, 1)


def cheetah_act(seed: int = 0) -> ActFn:
    """:func:`policy_act` sized for the cheetah tasks' observation and action spaces."""
    family = LocomotionFamily(CHEETAH)
    return policy_act(family.obs_dim, family.act_dim, seed)


def _timed(run: Callable[[], float]) -> tuple[float, float]:
    """(steps, seconds) of one call of ``run``, which returns the env-steps it took."""
    start = time.perf_counter()
    steps = run()
    return steps, time.perf_counter() - start


def batched_navigation(tasks: int = 20, trajectories: int = 20) -> tuple[float, float]:
    """(env-steps, seconds) of one :func:`sample_navigation` call."""
    env, generator = BatchNavigation2D(), torch.Generator().manual_seed(0)
    goals = env.sample_tasks(tasks, generator).goals
    act = policy_act(2, 2)
    return _timed(lambda: sample_navigation(env, act, goals, None, trajectories, generator).mask.sum().item())


def looped_navigation(tasks: int = 20, trajectories: int = 20) -> tuple[float, float]:
    """(env-steps, seconds) of the same rollout over single gymnasium envs in a Python loop."""
    generator = torch.Generator().manual_seed(0)
    goals = BatchNavigation2D().sample_tasks(tasks, generator).goals.repeat_interleave(trajectories, 0)
    envs = [gymnasium.make("metalearning/Navigation2D-v0") for _ in goals]
    act = policy_act(2, 2)

    def run() -> float:
        observations = np.stack([env.reset(options={"goal": goal})[0] for env, goal in zip(envs, goals)])
        alive, steps = np.ones(len(envs), bool), 0
        for _ in range(100):
            with torch.no_grad():
                actions = act(torch.from_numpy(observations), generator).numpy()
            for k in np.flatnonzero(alive):
                observations[k], _, terminated, truncated, _ = envs[k].step(actions[k])
                alive[k] = not (terminated or truncated)
                steps += 1
        return steps

    return _timed(run)


def cheetah_vector_env(num_envs: int = 10, horizon: int = 200) -> tuple[float, float]:
    """(env-steps, seconds) of one :func:`sample_vector_env` rollout of HalfCheetah-v5."""
    from metalearning.rl.envs.vector import make_task_vector_env

    envs = make_task_vector_env(CHEETAH, torch.tensor([1.0]), num_envs)
    act = cheetah_act()
    generator = torch.Generator().manual_seed(0)
    return _timed(lambda: sample_vector_env(envs, act, num_envs, horizon, generator, seed=0).mask.sum().item())


def _rank_rollout(rank: int, processes: int, envs: int, horizon: int, port: int, out) -> None:
    """One of ``processes`` workers: its share of ``envs`` cheetah envs, timed between two barriers."""
    import warnings

    import torch.distributed as dist

    from metalearning.rl.envs.vector import make_task_vector_env

    warnings.filterwarnings("ignore", message="MuJoCo")  # the cheetah XML's deprecated attribute, once per env
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=processes)
    share = envs // processes + (rank < envs % processes)
    vector = make_task_vector_env(CHEETAH, torch.tensor([1.0]), share)
    act = cheetah_act()
    generator = torch.Generator().manual_seed(rank)
    sample_vector_env(vector, act, share, 5, generator, seed=rank)  # warm-up
    dist.barrier()
    rollout = lambda: sample_vector_env(vector, act, share, horizon, generator, seed=rank).mask.sum().item()  # noqa: E731
    steps, seconds = _timed(rollout)
    dist.barrier()
    out.put((rank, steps, seconds))
    dist.destroy_process_group()


def cheetah_processes(processes: int, envs: int = 40, horizon: int = 200) -> tuple[float, float]:
    """(env-steps, seconds of the slowest process) of ``envs`` cheetah envs split over ``processes``
    ranks (torch.distributed, gloo), each stepping a ``SyncVectorEnv`` with its own policy copy."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    out = context.SimpleQueue()
    workers = [context.Process(target=_rank_rollout, args=(rank, processes, envs, horizon, port, out))
               for rank in range(processes)]
    for worker in workers:
        worker.start()
    results = [out.get() for _ in workers]
    for worker in workers:
        worker.join()
    return sum(r[1] for r in results), max(r[2] for r in results)


def cheetah_async(envs: int = 40, horizon: int = 200) -> tuple[float, float]:
    """(env-steps, seconds) of ``envs`` cheetah envs in gymnasium's ``AsyncVectorEnv`` (a process each)."""
    from gymnasium.vector import AsyncVectorEnv

    vector = AsyncVectorEnv([lambda: gymnasium.make(CHEETAH) for _ in range(envs)])
    act, generator = cheetah_act(), torch.Generator().manual_seed(0)
    sample_vector_env(vector, act, envs, 5, generator, seed=0)  # warm-up
    try:
        return _timed(lambda: sample_vector_env(vector, act, envs, horizon, generator, seed=0).mask.sum().item())
    finally:
        vector.close()


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", message="MuJoCo")
    torch.set_num_threads(1)  # a shared 2-core machine; the policy is tiny
    batched_navigation(2, 2)  # warm-up (first-call overheads)
    fast_steps, fast_s = batched_navigation()
    slow_steps, slow_s = looped_navigation()
    fast, slow = fast_steps / fast_s, slow_steps / slow_s
    print(f"(a) batched torch navigation, 20 tasks x 20 traj x 100: {fast:12,.0f} env-steps/s "
          f"({fast_steps:.0f} steps in {fast_s:.3f} s)")
    print(f"(b) loop of single gymnasium navigation envs, same:     {slow:12,.0f} env-steps/s "
          f"({slow_steps:.0f} steps in {slow_s:.3f} s)   batched/loop = {fast / slow:.1f}x")
    cheetah_steps, cheetah_s = cheetah_vector_env()
    print(f"(c) HalfCheetah-v5 SyncVectorEnv, 10 envs x 200:        {cheetah_steps / cheetah_s:12,.0f} env-steps/s "
          f"({cheetah_steps:.0f} steps in {cheetah_s:.3f} s)")
    cores = len(os.sched_getaffinity(0))
    print(f"(d) HalfCheetah-v5, 40 envs x 200 steps, on {cores} cores:")
    one = None
    for processes in sorted({1, 2, cores}):
        steps, seconds = cheetah_processes(processes)
        one = one or steps / seconds
        print(f"    {processes:2d} process(es), SyncVectorEnv share each:     {steps / seconds:12,.0f} env-steps/s "
              f"({steps / seconds / one:.2f}x one process)")
    steps, seconds = cheetah_async()
    print(f"    AsyncVectorEnv, 40 worker processes:              {steps / seconds:12,.0f} env-steps/s "
          f"({steps / seconds / one:.2f}x one process)")


if __name__ == "__main__":
    main()
