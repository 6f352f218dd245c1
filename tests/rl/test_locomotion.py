"""MuJoCo locomotion tasks: gymnasium's checker, MAML's rewards recomputed from the simulator
state, termination, and the vector-env sampler (skipped when ``mujoco`` is not installed)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

pytest.importorskip("mujoco")

from metalearning.rl.envs import LOCOMOTION_IDS  # noqa: E402
from metalearning.rl.envs.vector import make_task_vector_env  # noqa: E402
from metalearning.rl.rollouts import sample_vector_env  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:MuJoCo. compiler attribute 'settotalmass'", "ignore::UserWarning")


@pytest.mark.parametrize("env_id", list(LOCOMOTION_IDS))
def test_registered_env_passes_gymnasium_checker(env_id):
    env = gymnasium.make(env_id)
    assert env.spec.max_episode_steps == 200
    check_env(env.unwrapped, skip_render_check=True)


def _x(robot) -> float:
    """The x position gymnasium differentiates: rootx for the cheetah, the torso body for the ant."""
    return float(robot.data.qpos[0]) if robot.data.qpos.size == 9 else float(robot.data.body(1).xpos[0])


def _steps(env_id: str, goal: float, actions: np.ndarray):
    """Yield (reward, x velocity, clipped action, robot) for each action, from a seeded episode."""
    env = gymnasium.make(env_id)
    env.reset(seed=0, options={"goal": goal})
    robot = env.unwrapped.robot
    for action in actions:
        before = _x(robot)
        _, reward, terminated, _, _ = env.step(action)
        assert not terminated
        yield reward, (_x(robot) - before) / robot.dt, np.clip(action, -1, 1), robot


def _actions(dim: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.5, 1.5, (4, dim)).astype(np.float32)  # some beyond ±1


@pytest.mark.parametrize(("env_id", "goal"), [("metalearning/HalfCheetahVel-v0", 1.3),
                                              ("metalearning/HalfCheetahDir-v0", -1.0)])
def test_cheetah_reward_is_task_term_minus_maml_control_cost(env_id, goal):
    for reward, velocity, action, _ in _steps(env_id, goal, _actions(6)):
        task = -abs(velocity - goal) if "Vel" in env_id else goal * velocity
        assert reward == pytest.approx(task - 0.05 * np.sum(action.astype(np.float64) ** 2), rel=1e-6)


@pytest.mark.parametrize(("env_id", "goal"), [("metalearning/AntVel-v0", 2.2), ("metalearning/AntDir-v0", 1.0)])
def test_ant_reward_adds_contact_cost_survival_and_velocity_bonus(env_id, goal):
    for reward, velocity, action, robot in _steps(env_id, goal, _actions(8)):
        task = -abs(velocity - goal) + 1.0 if "Vel" in env_id else goal * velocity
        contact = 5e-4 * np.sum(np.clip(robot.data.cfrc_ext, -1, 1) ** 2)
        want = task - 0.005 * np.sum(action.astype(np.float64) ** 2) - contact + 0.05
        assert reward == pytest.approx(want, rel=1e-6)


def test_ant_terminates_when_its_torso_leaves_the_healthy_height():
    env = gymnasium.make("metalearning/AntVel-v0")
    env.reset(seed=0, options={"goal": 1.0})
    env.unwrapped.robot.data.qpos[2] = 2.0  # torso above the healthy range [0.2, 1.0]
    _, reward, terminated, _, info = env.step(np.zeros(8, np.float32))
    assert terminated and info["reward_survive"] == 0.0
    assert reward == pytest.approx(info["reward_task"] + info["reward_ctrl"] + info["reward_contact"])


def test_direction_tasks_reject_other_goals_and_sample_plus_minus_one():
    env = gymnasium.make("metalearning/HalfCheetahDir-v0").unwrapped
    with pytest.raises(ValueError, match="-1 or \\+1"):
        env.set_task(0.5)
    goals = env.sample_tasks(400, torch.Generator().manual_seed(0))
    assert set(goals.tolist()) == {-1.0, 1.0} and abs(goals.mean()) < 0.15
    velocities = gymnasium.make("metalearning/AntVel-v0").unwrapped.sample_tasks(400, torch.Generator())
    assert velocities.min() >= 0 and velocities.max() <= 3 and velocities.max() > 2.5


def test_vector_env_sampler_matches_single_env_with_the_same_seeds():
    goals, trajectories, horizon = torch.tensor([0.5, 1.5]), 2, 6
    envs = make_task_vector_env("metalearning/HalfCheetahVel-v0", goals, trajectories)

    def act(observations, generator):
        return torch.randn(observations.shape[0], 6, generator=generator)

    episodes = sample_vector_env(envs, act, trajectories, horizon, torch.Generator().manual_seed(1), seed=10)
    assert [f.shape for f in episodes] == [(2, 6, 2, 17), (2, 6, 2, 6), (2, 6, 2), (2, 6, 2)]
    assert torch.all(episodes.mask == 1)
    assert episodes.actions.abs().max() > 1  # stored unclipped

    single = gymnasium.make("metalearning/HalfCheetahVel-v0")
    obs, _ = single.reset(seed=10 + 3, options={"goal": 1.5})  # sub-env 3 = task 1, trajectory 1
    for t in range(horizon):
        np.testing.assert_allclose(episodes.observations[1, t, 1].numpy(), obs, rtol=1e-6, atol=1e-6)
        obs, reward, *_ = single.step(episodes.actions[1, t, 1].numpy())
        assert episodes.rewards[1, t, 1].item() == pytest.approx(reward, rel=1e-5)

    again = sample_vector_env(envs, act, trajectories, horizon, torch.Generator().manual_seed(1), seed=10)
    assert all(torch.equal(a, b) for a, b in zip(episodes, again))
