"""MuJoCo locomotion tasks: gymnasium's checker, the cheetah and the ant stepped as MAML's rllab code
steps them (recomputed with MuJoCo on fixed actions), their start states, termination, and the vector-env sampler
(skipped when ``mujoco`` is not installed)."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

mujoco = pytest.importorskip("mujoco")

from metalearning.rl.envs import LOCOMOTION_IDS  # noqa: E402
from metalearning.rl.envs.vector import make_task_vector_env  # noqa: E402
from metalearning.rl.rollouts import sample_vector_env  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:MuJoCo. compiler attribute 'settotalmass'", "ignore::UserWarning")


@pytest.mark.parametrize("env_id", list(LOCOMOTION_IDS))
def test_registered_env_passes_gymnasium_checker(env_id):
    env = gymnasium.make(env_id)
    assert env.spec.max_episode_steps == 200
    check_env(env.unwrapped, skip_render_check=True)


def rllab_comvel(model, data, body: int) -> float:
    """rllab's ``MjModel.body_comvels[body][0]`` (``rllab/mujoco_py/mjcore.py``), recomputed its way:
    every body's velocity at its centre of mass (``mj_objectVelocity``, world frame) times its
    mass, summed up the kinematic tree, over the subtree's mass."""
    velocities = np.zeros((model.nbody, 6))
    for i in range(model.nbody):
        mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_BODY, i, velocities[i], 0)
    mass = model.body_mass.copy()
    momenta = velocities[:, 3:] * mass[:, None]
    for i in range(model.nbody - 1, 0, -1):
        momenta[model.body_parentid[i]] += momenta[i]
        mass[model.body_parentid[i]] += mass[i]
    return float(momenta[body, 0] / mass[body])


def _actions(dim: int, steps: int = 4) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1.5, 1.5, (steps, dim)).astype(np.float32)  # some beyond ±1


@pytest.mark.parametrize(("env_id", "goal"), [("metalearning/HalfCheetahVel-v0", 1.3),
                                              ("metalearning/HalfCheetahDir-v0", -1.0)])
def test_cheetah_steps_as_maml_rllab_code_on_a_fixed_action_sequence(env_id, goal):
    """rllab's HalfCheetahEnvRand(Direc).step on the same model and start state, written out with
    MuJoCo: one simulator step of 0.01 s per action, mj_forward, reward task(v) − 0.05‖clip(a)‖²
    with v the torso subtree's centre-of-mass velocity, observation [qpos[1:], qvel, subtree com]."""
    env = gymnasium.make(env_id)
    observation, _ = env.reset(seed=0, options={"goal": goal})
    robot = env.unwrapped.robot
    model = robot.model  # the model (rllab's cheetah); the reference steps its own data
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = robot.data.qpos, robot.data.qvel
    mujoco.mj_forward(model, data)
    torso, start_x = model.body("torso").id, float(data.qpos[0])

    def rllab_observation():
        return np.concatenate([data.qpos[1:], data.qvel, data.subtree_com[torso]])

    assert model.opt.timestep == 0.01 and env.unwrapped.robot.dt == 0.01 and observation.shape == (20,)
    np.testing.assert_allclose(observation, rllab_observation(), rtol=0, atol=1e-12)
    for action in _actions(6, steps=30):
        clipped = np.clip(action, -1, 1).astype(np.float64)
        data.ctrl[:] = clipped
        mujoco.mj_step(model, data)
        mujoco.mj_forward(model, data)
        velocity = rllab_comvel(model, data, torso)
        task = -abs(velocity - goal) if "Vel" in env_id else goal * velocity
        observation, reward, terminated, truncated, info = env.step(action)
        assert not (terminated or truncated)
        np.testing.assert_allclose(observation, rllab_observation(), rtol=1e-6, atol=1e-8)
        assert info["com_velocity"] == pytest.approx(velocity, rel=1e-6, abs=1e-9)
        assert reward == pytest.approx(task - 0.05 * np.sum(clipped**2), rel=1e-6, abs=1e-9)
    assert abs(data.qpos[0] - start_x) > 1e-3  # it moved: the comparison is not vacuous


def test_cheetah_start_state_has_rllab_reset_noise():
    """rllab's reset_mujoco: qpos0 + 0.01·N(0, 1), qvel 0.1·N(0, 1), per coordinate."""
    env = gymnasium.make("metalearning/HalfCheetahDir-v0").unwrapped
    starts = np.stack([env.reset(seed=seed, options={"goal": 1.0})[0] for seed in range(300)])
    qpos, qvel, com = starts[:, :8], starts[:, 8:17], starts[:, 17:]
    assert qpos.std() == pytest.approx(0.01, rel=0.1) and abs(qpos.mean()) < 2e-3
    assert qvel.std() == pytest.approx(0.1, rel=0.1) and abs(qvel.mean()) < 2e-2
    assert np.all(com[:, 2] > 0.5)  # the centre of mass, above the floor
    np.testing.assert_array_equal(env.reset(seed=3)[0], env.reset(seed=3)[0])


RLLAB_ANT_INIT_QPOS = [0.0, 0.0, 0.55, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, -1.0, 0.0, -1.0, 0.0, 1.0]  # its ant.xml


@pytest.mark.parametrize(("env_id", "goal"), [("metalearning/AntVel-v0", 2.2), ("metalearning/AntDir-v0", -1.0)])
def test_ant_steps_as_maml_rllab_code_on_a_fixed_action_sequence(env_id, goal):
    """rllab's AntEnvRand(Direc).step written out with MuJoCo: rllab's ant.xml (gymnasium's, with
    rllab's 0.02 s RK4 step; ±1 × gear 150 = rllab's ±150 × gear 1 under ``normalize``), one
    simulator step per action, mj_forward and the post-constraint forces, reward task(v) (+1 for
    velocity) − 0.005‖clip(a)‖² − 5e-4‖clip(cfrc_ext)‖² + 0.05, termination outside z ∈ [0.2, 1],
    observation [qpos, qvel, clip(cfrc_ext), xmat[torso], subtree_com[torso]]."""
    env = gymnasium.make(env_id)
    observation, _ = env.reset(seed=0, options={"goal": goal})
    model = env.unwrapped.robot.model
    assert model.opt.timestep == 0.02 and model.opt.integrator == mujoco.mjtIntegrator.mjINT_RK4
    assert env.unwrapped.robot.dt == 0.02 and observation.shape == (125,)
    np.testing.assert_array_equal(model.actuator_gear[:, 0], 150.0)
    np.testing.assert_array_equal(model.actuator_ctrlrange, [[-1.0, 1.0]] * 8)
    data = mujoco.MjData(model)
    data.qpos[:], data.qvel[:] = env.unwrapped.robot.data.qpos, env.unwrapped.robot.data.qvel
    mujoco.mj_forward(model, data)
    mujoco.mj_rnePostConstraint(model, data)
    torso, start_xy = model.body("torso").id, data.qpos[:2].copy()

    def rllab_observation():
        return np.concatenate([data.qpos, data.qvel, np.clip(data.cfrc_ext, -1, 1).ravel(), data.xmat[torso],
                               data.subtree_com[torso]])

    np.testing.assert_allclose(observation, rllab_observation(), rtol=0, atol=1e-12)
    contact_costs = []
    for action in _actions(8, steps=30):
        clipped = np.clip(action, -1, 1).astype(np.float64)
        data.ctrl[:] = clipped
        mujoco.mj_step(model, data)
        mujoco.mj_forward(model, data)
        mujoco.mj_rnePostConstraint(model, data)
        velocity = rllab_comvel(model, data, torso)
        task = -abs(velocity - goal) + 1.0 if "Vel" in env_id else goal * velocity
        contact_costs.append(5e-4 * np.sum(np.clip(data.cfrc_ext, -1, 1) ** 2))
        done = not (np.isfinite(data.qpos).all() and np.isfinite(data.qvel).all() and 0.2 <= data.qpos[2] <= 1.0)
        observation, reward, terminated, truncated, info = env.step(action)
        assert terminated == done and not truncated
        np.testing.assert_allclose(observation, rllab_observation(), rtol=1e-6, atol=1e-8)
        assert info["com_velocity"] == pytest.approx(velocity, rel=1e-6, abs=1e-9)
        assert reward == pytest.approx(task - 0.005 * np.sum(clipped**2) - contact_costs[-1] + 0.05, rel=1e-6,
                                       abs=1e-9)
        if done:
            break
    assert np.linalg.norm(data.qpos[:2] - start_xy) > 1e-3 and max(contact_costs) > 0  # not vacuous


def test_ant_start_state_is_rllab_init_qpos_with_reset_noise():
    """rllab's reset_mujoco from its ant.xml's ``init_qpos`` (torso at 0.55, legs bent):
    init_qpos + 0.01·N(0, 1), qvel 0.1·N(0, 1)."""
    env = gymnasium.make("metalearning/AntDir-v0").unwrapped
    starts = np.stack([env.reset(seed=seed, options={"goal": 1.0})[0] for seed in range(300)])
    qpos, qvel = starts[:, :15], starts[:, 15:29]
    np.testing.assert_allclose(qpos.mean(0), RLLAB_ANT_INIT_QPOS, atol=3e-3)
    assert (qpos - RLLAB_ANT_INIT_QPOS).std() == pytest.approx(0.01, rel=0.1)
    assert qvel.std() == pytest.approx(0.1, rel=0.1) and abs(qvel.mean()) < 2e-2


def test_ant_terminates_when_its_torso_leaves_the_healthy_height():
    env = gymnasium.make("metalearning/AntVel-v0")
    env.reset(seed=0, options={"goal": 1.0})
    env.unwrapped.robot.data.qpos[2] = 2.0  # torso above the healthy range [0.2, 1.0]
    _, reward, terminated, _, info = env.step(np.zeros(8, np.float32))
    assert terminated and info["reward_survive"] == 0.05  # rllab adds it on the last step too
    assert reward == pytest.approx(info["reward_task"] + info["reward_ctrl"] + info["reward_contact"] + 0.05)


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
    assert [f.shape for f in episodes] == [(2, 6, 2, 20), (2, 6, 2, 6), (2, 6, 2), (2, 6, 2)]
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
