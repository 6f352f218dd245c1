"""2D navigation: the gymnasium env against hand-computed steps, and the batched torch env
and sampler against a loop of single ``gymnasium.make`` envs fed the same actions."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from metalearning.rl.envs import NAVIGATION_IDS, BatchNavigation2D, Navigation2D
from metalearning.rl.envs.navigation import navigation_step
from metalearning.rl.rollouts import sample_navigation

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:gymnasium")  # env_checker's advice on ±inf bounds


@pytest.mark.parametrize("env_id", list(NAVIGATION_IDS))
def test_registered_env_passes_gymnasium_checker(env_id):
    env = gymnasium.make(env_id)
    assert env.spec.max_episode_steps == 100
    check_env(env.unwrapped, skip_render_check=True)


def test_reward_is_negative_squared_distance_after_the_step():
    env = Navigation2D(reward="squared", goal=[0.3, -0.2])
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0.0, 0.0])
    obs, reward, terminated, truncated, _ = env.step(np.array([0.05, 0.02], np.float32))
    np.testing.assert_allclose(obs, [0.05, 0.02])
    assert reward == pytest.approx(-(0.25**2 + 0.22**2), rel=1e-6)
    assert not terminated and not truncated


def test_distance_reward_and_action_clipping():
    env = Navigation2D(reward="distance", goal=[0.3, -0.2])
    env.reset()
    obs, reward, *_ = env.step(np.array([3.0, -0.5], np.float32))  # clipped to (0.1, -0.1)
    np.testing.assert_allclose(obs, [0.1, -0.1])
    assert reward == pytest.approx(-np.hypot(0.2, 0.1), rel=1e-6)


def test_terminates_within_001_of_goal_per_coordinate_and_that_step_is_rewarded():
    """MAML's point env ends the episode when |x − g_x| < 0.01 and |y − g_y| < 0.01."""
    env = Navigation2D(reward="squared", goal=[0.1, 0.0])
    env.reset()
    _, reward, terminated, *_ = env.step(np.array([0.1, 0.0095], np.float32))
    assert terminated and reward == pytest.approx(-(0.0095**2), rel=1e-4)
    env.reset()
    _, _, terminated, *_ = env.step(np.array([0.1, 0.0105], np.float32))
    assert not terminated  # strict, per coordinate
    env.reset()
    _, _, terminated, *_ = env.step(np.array([0.092, 0.008], np.float32))
    assert terminated  # ‖·‖ = 0.0113 > 0.01, but inside the 0.01 box


def _rllab_point_env(goal, actions):
    """MAML's code, transcribed (cbfinn/maml_rl): ``normalize(PointEnvRandGoal(goal))``, float64.

    rllab's NormalizedEnv maps the action box [−1, 1] onto the env's [−0.1, 0.1] as
    ``lb + (a + 1)·0.5·(ub − lb)`` and clips there; the point env adds it to the state, rewards
    ``−‖s − g‖`` and is done when both coordinates are within 0.01 of the goal.
    """
    lb, ub = np.full(2, -0.1), np.full(2, 0.1)
    state, out = np.zeros(2), []
    for action in actions:
        scaled = np.clip(lb + (np.asarray(action, np.float64) + 1.0) * 0.5 * (ub - lb), lb, ub)
        state = state + scaled
        x, y = state - goal
        out.append((state.copy(), -((x**2 + y**2) ** 0.5), abs(x) < 0.01 and abs(y) < 0.01))
        if out[-1][2]:
            break
    return out


@pytest.mark.parametrize("seed", range(3))
def test_registered_env_matches_maml_code_on_fixed_action_sequences(seed):
    """The wrapped env's step sizes, positions, rewards and termination equal rllab's normalized
    point env on the same actions: a unit action moves 0.1, larger ones saturate at 0.1."""
    rng = np.random.default_rng(seed)
    goal = rng.uniform(-0.5, 0.5, 2)
    actions = np.concatenate([rng.normal(0.0, 1.0, (60, 2)), rng.normal(0.0, 3.0, (40, 2))]).astype(np.float32)
    if seed == 2:  # head straight for the goal at full speed, then stop: exercises termination
        n = int(np.ceil(np.abs(goal).max() / 0.1))
        actions = np.repeat((goal / (0.1 * n))[None], n + 5, 0).astype(np.float32)
    reference = _rllab_point_env(goal, actions)
    env = gymnasium.make("metalearning/Navigation2D-v0")
    assert env.action_space.low.tolist() == [-1.0, -1.0] and env.action_space.high.tolist() == [1.0, 1.0]
    env.reset(options={"goal": goal})
    for (state, reward, done), action in zip(reference, actions):
        obs, r, terminated, *_ = env.step(action)
        np.testing.assert_allclose(obs, state, rtol=0, atol=2e-6)
        assert r == pytest.approx(reward, abs=2e-6)
        assert terminated == done
    if seed == 2:
        assert reference[-1][2]
    steps = np.diff(np.stack([np.zeros(2)] + [s for s, _, _ in reference]), axis=0)
    assert np.abs(steps).max() <= 0.1 + 1e-12


def test_batch_env_moves_like_the_registered_env_bit_for_bit():
    """``velocity`` (the sampler's) and gymnasium's ClipAction∘RescaleAction give the same float32 step."""
    from metalearning.rl.envs.navigation import velocity

    actions = torch.randn(500, 2, generator=torch.Generator().manual_seed(0)) * 2
    env = gymnasium.make("metalearning/Navigation2D-v0")
    env.reset(options={"goal": [5.0, 5.0]})
    position = np.zeros(2, np.float32)
    for a in actions:
        obs, *_ = env.step(a.numpy())
        position = position + velocity(a).numpy()
        np.testing.assert_array_equal(obs, position)


@pytest.mark.filterwarnings("ignore:MuJoCo")
def test_locomotion_ids_keep_the_robots_action_box():
    pytest.importorskip("mujoco")
    env = gymnasium.make("metalearning/HalfCheetahVel-v0")
    assert env.action_space.low.tolist() == [-1.0] * 6 and env.action_space.high.tolist() == [1.0] * 6
    assert env.unwrapped.robot_name == "half_cheetah"


def test_time_limit_truncates_at_100_steps():
    env = gymnasium.make("metalearning/Navigation2D-v0")
    env.reset(seed=0, options={"goal": [0.5, 0.5]})
    ends = [env.step(np.array([0.0, 0.0], np.float32))[2:4] for _ in range(100)]
    assert ends[-1] == (False, True) and all(end == (False, False) for end in ends[:-1])


def test_task_is_kept_across_resets_and_random_start_needs_a_start():
    env = gymnasium.make("metalearning/Navigation2D-DistanceRandomStart-v0")
    obs, _ = env.reset(options={"goal": [0.1, 0.2], "start": [-0.4, 0.3]})
    np.testing.assert_allclose(obs, [-0.4, 0.3])
    np.testing.assert_allclose(env.reset(seed=3)[0], [-0.4, 0.3])
    with pytest.raises(ValueError, match="start"):
        env.unwrapped.set_task([0.1, 0.2])
    with pytest.raises(ValueError, match="origin"):
        Navigation2D(goal=[0.1, 0.2], start=[0.0, 0.1])


def test_sample_tasks_are_uniform_in_the_unit_square():
    tasks = BatchNavigation2D(random_start=True).sample_tasks(2000, torch.Generator().manual_seed(0))
    for points in tasks:
        assert points.shape == (2000, 2) and points.dtype == torch.float32
        assert points.min() >= -0.5 and points.max() <= 0.5
        torch.testing.assert_close(points.mean(0), torch.zeros(2), atol=0.03, rtol=0)
    fixed = BatchNavigation2D().sample_tasks(5, torch.Generator().manual_seed(0))
    assert torch.equal(fixed.starts, torch.zeros(5, 2))
    torch.testing.assert_close(fixed.goals, tasks.goals[:5])  # goals are drawn first


def test_batch_step_freezes_finished_episodes():
    env = BatchNavigation2D(reward="squared")
    state = env.reset(torch.tensor([[0.05, 0.005]]), None, trajectories=2)
    state, rewards, mask = env.step(state, torch.tensor([[[0.5, 0.0], [-0.5, 0.0]]]))  # policy units: ×0.1
    assert state.alive.tolist() == [[False, True]] and mask.tolist() == [[1.0, 1.0]]
    torch.testing.assert_close(rewards, torch.tensor([[-0.005**2, -(0.1**2 + 0.005**2)]]))
    state, rewards, mask = navigation_step(state, torch.tensor([[[1.0, 1.0], [1.0, 0.0]]]), "squared")
    torch.testing.assert_close(state.positions, torch.tensor([[[0.05, 0.0], [0.05, 0.0]]]))
    assert mask.tolist() == [[0.0, 1.0]] and rewards[0, 0] == 0 and not state.alive.any()


def _homing_policy(goals: torch.Tensor, trajectories: int, noise: torch.Tensor):
    """act() that heads for each row's goal, with per-trajectory noise (some never arrive)."""
    targets = goals.repeat_interleave(trajectories, 0)
    scale = noise.repeat(goals.shape[0]).unsqueeze(-1)

    def act(observations, generator):
        return 0.5 * (targets - observations) + scale * torch.randn(observations.shape, generator=generator)

    return act


@pytest.mark.parametrize("env_id", list(NAVIGATION_IDS))
def test_batched_rollout_equals_single_gymnasium_envs(env_id):
    kwargs = NAVIGATION_IDS[env_id]
    batch_env = BatchNavigation2D(**kwargs)
    tasks = batch_env.sample_tasks(3, torch.Generator().manual_seed(1))
    trajectories = 4
    act = _homing_policy(tasks.goals, trajectories, torch.tensor([0.0, 0.003, 0.2, 2.0]))
    episodes = sample_navigation(batch_env, act, tasks.goals, tasks.starts if kwargs["random_start"] else None,
                                 trajectories, torch.Generator().manual_seed(2))
    assert [tuple(f.shape) for f in episodes] == [(3, 100, 4, 2), (3, 100, 4, 2), (3, 100, 4), (3, 100, 4)]
    lengths = episodes.mask.sum(1)
    assert (lengths < 100).any() and (lengths == 100).any()  # both endings are exercised

    for i in range(3):
        for j in range(trajectories):
            _check_against_single_env(env_id, episodes, i, j, tasks.goals[i], tasks.starts[i], kwargs["random_start"])


def _check_against_single_env(env_id, episodes, i, j, goal, start, random_start):
    env = gymnasium.make(env_id)
    options = {"goal": goal, "start": start} if random_start else {"goal": goal}
    obs, _ = env.reset(seed=0, options=options)
    length = int(episodes.mask[i, :, j].sum())
    assert torch.all(episodes.mask[i, :length, j] == 1)
    for t in range(length):
        np.testing.assert_array_equal(episodes.observations[i, t, j].numpy(), obs)
        obs, reward, terminated, truncated, _ = env.step(episodes.actions[i, t, j].numpy())
        assert episodes.rewards[i, t, j].item() == pytest.approx(reward, rel=1e-6, abs=1e-7)
        assert (terminated or truncated) == (t == length - 1)
    after = (slice(length, None), j)
    for field in episodes:
        assert torch.all(field[i][after] == 0)
