"""The Episodes container and the two samplers (batched torch navigation, gymnasium vector env)."""

from __future__ import annotations

import pytest
import torch

from metalearning.rl.envs import BatchNavigation2D
from metalearning.rl.envs.vector import make_task_vector_env, set_vector_tasks
from metalearning.rl.rollouts import Episodes, sample_navigation, sample_vector_env, stack_tasks


def _homing_policy(goals: torch.Tensor, trajectories: int, noise: torch.Tensor):
    targets = goals.repeat_interleave(trajectories, 0)
    scale = noise.repeat(goals.shape[0]).unsqueeze(-1)
    calls = []

    def act(observations, generator):
        calls.append((tuple(observations.shape), torch.is_grad_enabled()))
        return 0.5 * (targets - observations) + scale * torch.randn(observations.shape, generator=generator)

    return act, calls


def test_sample_navigation_calls_policy_once_per_step_without_grad():
    env = BatchNavigation2D(horizon=7)
    goals = torch.tensor([[0.3, 0.3], [-0.2, 0.1]])
    act, calls = _homing_policy(goals, 5, torch.full((5,), 1.0))
    episodes = sample_navigation(env, act, goals, None, 5, torch.Generator().manual_seed(0))
    assert calls == [((10, 2), False)] * 7
    assert [f.shape for f in episodes] == [(2, 7, 5, 2), (2, 7, 5, 2), (2, 7, 5), (2, 7, 5)]
    assert all(f.dtype == torch.float32 for f in episodes)
    assert torch.all(episodes.observations[:, 0] == 0)  # everyone starts at the origin


def test_navigation_stops_early_and_pads_when_all_episodes_end():
    env = BatchNavigation2D()
    goals = torch.tensor([[0.05, 0.0]])

    def act(observations, generator):
        return torch.tensor([[0.5, 0.0], [0.25, 0.0]])  # policy units: the env moves 0.1·a

    episodes = sample_navigation(env, act, goals, None, 2, torch.Generator())
    assert episodes.mask.shape == (1, 100, 2)
    assert episodes.mask[0, :, 0].sum() == 1 and episodes.mask[0, :, 1].sum() == 2
    torch.testing.assert_close(episodes.observations[0, 1, 1], torch.tensor([0.025, 0.0]))
    assert torch.all(episodes.actions[0, 2:] == 0) and torch.all(episodes.rewards[0, 1:, 0] == 0)


def test_stack_tasks_adds_a_leading_task_dimension():
    one = Episodes(torch.zeros(4, 3, 2), torch.ones(4, 3, 1), torch.zeros(4, 3), torch.ones(4, 3))
    two = one._replace(rewards=torch.full((4, 3), 2.0))
    stacked = stack_tasks([one, two])
    assert [f.shape for f in stacked] == [(2, 4, 3, 2), (2, 4, 3, 1), (2, 4, 3), (2, 4, 3)]
    assert torch.equal(stacked.rewards[1], two.rewards)


@pytest.mark.filterwarnings("ignore::UserWarning")  # gymnasium's passive checker on ±inf bounds
def test_vector_env_sampler_equals_batched_navigation_sampler():
    """Same policy and generator: the gymnasium SyncVectorEnv path must give the same Episodes,
    including the masking after episodes terminate (some do here, some run to H)."""
    goals = torch.tensor([[0.2, -0.1], [-0.3, 0.4]])
    trajectories = 3
    act, _ = _homing_policy(goals, trajectories, torch.tensor([0.0, 0.01, 1.0]))
    reference = sample_navigation(BatchNavigation2D(reward="distance"), act, goals, None, trajectories,
                                  torch.Generator().manual_seed(5))
    envs = make_task_vector_env("metalearning/Navigation2D-v0", torch.zeros(2, 2), trajectories)
    set_vector_tasks(envs, goals, trajectories)
    episodes = sample_vector_env(envs, act, trajectories, 100, torch.Generator().manual_seed(5), seed=0)
    lengths = reference.mask.sum(1)
    assert (lengths < 100).any() and (lengths == 100).any()
    for got, want in zip(episodes, reference):
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)


def test_set_vector_tasks_checks_the_layout():
    envs = make_task_vector_env("metalearning/Navigation2D-v0", torch.zeros(2, 2), 2)
    with pytest.raises(ValueError, match="2 trajectories"):
        set_vector_tasks(envs, torch.zeros(3, 2), 2)
    with pytest.raises(ValueError, match="trajectories"):
        sample_vector_env(envs, lambda o, g: o, 3, 5, torch.Generator(), seed=0)
