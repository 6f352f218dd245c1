"""``metalearning bench --rollouts``: the measured samplers step the envs they name and count the
env-steps they took (the rates themselves are measurements, not asserted)."""

from __future__ import annotations

import warnings

import gymnasium
import torch

from metalearning.rl import bench_rollouts


def test_cheetah_policy_acts_on_the_cheetah_tasks_observation():
    with warnings.catch_warnings():  # the cheetah XML's deprecated attribute
        warnings.filterwarnings("ignore", message="MuJoCo")
        env = gymnasium.make(bench_rollouts.CHEETAH)
        observation, _ = env.reset(seed=0)
        env.close()
        act = bench_rollouts.cheetah_act()
    actions = act(torch.as_tensor(observation, dtype=torch.float32).repeat(3, 1), torch.Generator().manual_seed(0))
    assert actions.shape == (3, env.action_space.shape[0])


def test_navigation_samplers_count_the_steps_taken():
    steps, seconds = bench_rollouts.batched_navigation(tasks=2, trajectories=3)
    assert 0 < steps <= 2 * 3 * 100 and seconds > 0
    steps, _ = bench_rollouts.looped_navigation(tasks=2, trajectories=3)
    assert 0 < steps <= 2 * 3 * 100


def test_cheetah_split_across_ranks_steps_every_env_once():
    # 5 envs over 2 gloo ranks: shares 3 and 2, 4 steps each, no early termination
    steps, seconds = bench_rollouts.cheetah_processes(2, envs=5, horizon=4)
    assert steps == 5 * 4 and seconds > 0
