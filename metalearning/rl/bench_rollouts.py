"""Measured env-steps/s of the rollout samplers: ``metalearning bench --rollouts``.

(a) the batched torch 2D navigation sampler, 20 tasks × 20 trajectories × 100 steps (the
meta-batch of maml.md A.2 / meta-sgd.md §4.3), with a 2-100-100-2 ReLU MLP Gaussian policy;
(b) the same rollout with 400 single ``gymnasium.make`` navigation envs stepped in a Python
loop (the policy still called once per step on all of them); (c) ``HalfCheetah-v5`` (through
``metalearning/HalfCheetahVel-v0``) in a ``SyncVectorEnv`` of 10 envs × 200 steps.
Env-steps counts the steps actually taken (mask = 1).
"""

from __future__ import annotations

import time
from typing import Callable

import gymnasium
import numpy as np
import torch

from metalearning.rl.envs import BatchNavigation2D
from metalearning.rl.policy import GaussianMLPPolicy, make_task_act
from metalearning.rl.rollouts import ActFn, sample_navigation, sample_vector_env


def policy_act(obs_dim: int, act_dim: int, seed: int = 0) -> ActFn:
    """The 100-100 ReLU Gaussian policy of maml.md §5.3 (:class:`GaussianMLPPolicy`) acting on
    the rows of one task (``make_task_act`` with a single task)."""
    policy = GaussianMLPPolicy(obs_dim, act_dim, generator=torch.Generator().manual_seed(seed))
    params = {k: p.detach().unsqueeze(0) for k, p in policy.named_parameters()}
    return make_task_act(policy, params, 1)


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

    envs = make_task_vector_env("metalearning/HalfCheetahVel-v0", torch.tensor([1.0]), num_envs)
    act = policy_act(17, 6)
    generator = torch.Generator().manual_seed(0)
    return _timed(lambda: sample_vector_env(envs, act, num_envs, horizon, generator, seed=0).mask.sum().item())


def main() -> None:
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


if __name__ == "__main__":
    main()
