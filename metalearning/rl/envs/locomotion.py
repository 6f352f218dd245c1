"""Goal-velocity and goal-direction locomotion tasks (maml.md §5.3 "Locomotion", appendix A.2).

Two robots from gymnasium's MuJoCo suite (``HalfCheetah-v5``, ``Ant-v5``, ``mujoco`` package),
each with two task families, horizon H = 200 (the registered ids' ``TimeLimit``):

* velocity: goal velocity v* ~ U[0, 2] (cheetah) or U[0, 3] (ant); task reward −|v − v*|.
* direction: d ∈ {−1, +1} (backward/forward, equally likely); task reward d·v.

The robots run as MAML's rllab code runs them (``rllab/envs/mujoco/half_cheetah_env_rand*.py``,
``ant_env_rand*.py``, ``mujoco_env.py``), where gymnasium's defaults differ:

* control period: rllab steps the simulator once per action (its ``MujocoEnv.frame_skip`` is 1
  unless the model file sets one, and neither robot's does), at the model's time step: 0.01 s for
  the cheetah (gymnasium's ``half_cheetah.xml`` is rllab's model), 0.02 s for the ant (rllab's
  ``ant.xml``; gymnasium's ant has 0.01 s, so two simulator steps). Gymnasium's default of 5
  would make each of the 200 steps 0.05 s: 10 s episodes instead of 2 s (cheetah).
* v is rllab's ``get_body_comvel("torso")[0]``: the x velocity of the centre of mass of the
  torso's subtree (the whole robot), after the step (rllab runs ``mj_forward`` after
  ``mj_step``; here ``mj_forward`` then ``mj_subtreeVel``). Gymnasium's ``info["x_velocity"]``,
  the finite difference of the torso position, stays in ``info``.
* cheetah observation and reset: rllab's ``[qpos[1:], qvel, torso subtree centre of mass]``
  (20 numbers; gymnasium's 17 lack the last three), and the start state ``qpos0 + 0.01·N(0, I)``,
  ``qvel = 0.1·N(0, I)`` (gymnasium: ``qpos0 + U(−0.1, 0.1)``).
* The ant keeps gymnasium's observation (105 numbers; rllab's 125 add the torso's orientation
  matrix and position and every body's clipped external forces, and keep the x-y position),
  start pose and reset noise, and integrates its 0.02 s in two RK4 steps of 0.01 s where rllab
  takes one of 0.02 s.

The rest of the reward is rllab's, written with gymnasium's own reward terms, whose weights we
set to MAML's values:

* cheetah: r = task − 0.05·‖a‖² (``ctrl_cost_weight=0.05``; rllab: 0.5·1e-1).
* ant: r = task − 0.005·‖a‖² − 5e-4·‖clip(cfrc_ext, −1, 1)‖² + 0.05 (survival; rllab's
  ``survive_reward``) and, for the velocity tasks only, + 1.0: the positive per-step bonus
  maml.md A.2 adds "to prevent the ant from ending the episode" (rllab: "make it happy, not
  suicidal"). Gymnasium's terms: ``ctrl_cost_weight=0.005``, ``contact_cost_weight=5e-4``
  (its default, = rllab's 0.5·1e-3), ``healthy_reward=0.05``. As in gymnasium (unlike rllab)
  the survival term is 0 on the step where the ant becomes unhealthy. The ant terminates when
  its torso height leaves [0.2, 1.0] (gymnasium's and rllab's rule).

Actions are clipped to the action box (±1) before they reach the simulator and the control
cost, so a sampler can store the raw policy samples.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Callable, Iterator, NamedTuple

import gymnasium
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco.ant_v5 import AntEnv
from gymnasium.envs.mujoco.half_cheetah_v5 import HalfCheetahEnv
from numpy.typing import ArrayLike
from torch import Tensor

OBJECTIVES = ("velocity", "direction")
RLLAB_QPOS_NOISE, RLLAB_QVEL_NOISE = 0.01, 0.1  # rllab's MujocoEnv.reset_mujoco: N(0, σ²) on qpos, qvel


class Robot(NamedTuple):
    """How to build one robot and which of gymnasium's reward terms (``info`` keys) it adds."""

    make: Callable[..., gymnasium.Env]
    kwargs: dict[str, Any]  # gymnasium reward weights set to MAML's
    cost_terms: tuple[str, ...]  # info keys summed into the reward (already signed)
    velocity_range: tuple[float, float]  # goal velocities of the velocity tasks
    velocity_bonus: float  # per-step bonus of the velocity tasks (maml.md A.2)
    frame_skip: int  # simulator steps per action: rllab's control period (module docstring)
    rllab_state: bool  # rllab's observation (+ subtree centre of mass) and start-state noise


ROBOTS: dict[str, Robot] = {
    "half_cheetah": Robot(HalfCheetahEnv, {"ctrl_cost_weight": 0.05}, ("reward_ctrl",), (0.0, 2.0), 0.0,
                          frame_skip=1, rllab_state=True),
    "ant": Robot(
        AntEnv,
        {"ctrl_cost_weight": 0.005, "contact_cost_weight": 5e-4, "healthy_reward": 0.05},
        ("reward_ctrl", "reward_contact", "reward_survive"),
        (0.0, 3.0),
        1.0,
        frame_skip=2,
        rllab_state=False,
    ),
}


def goal_velocity_reward(x_velocity: float, goal: float) -> float:
    """Task term of the velocity tasks: −|v − v*| (maml.md §5.3)."""
    return -abs(x_velocity - goal)


def goal_direction_reward(x_velocity: float, goal: float) -> float:
    """Task term of the direction tasks: d·v with d = ``goal`` ∈ {−1, +1} (maml.md §5.3)."""
    return goal * x_velocity


def sample_locomotion_tasks(robot: str, objective: str, n: int, generator: torch.Generator) -> Tensor:
    """``n`` goals ``[n]`` float32: velocities ~ U(robot's range), or directions ±1 w.p. ½ each."""
    if objective == "velocity":
        low, high = ROBOTS[robot].velocity_range
        return low + (high - low) * torch.rand(n, generator=generator)
    return torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1


@contextlib.contextmanager
def _mujoco_warnings_as_python() -> Iterator[None]:
    """Route MuJoCo's warnings to ``warnings.warn`` while building a model.

    MuJoCo's default handler appends them to ``MUJOCO_LOG.TXT`` in the working directory
    (gymnasium's ``half_cheetah.xml`` uses the deprecated ``settotalmass``); the previous
    handler is restored afterwards, so other code using MuJoCo is not affected.
    """
    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(lambda message: warnings.warn(f"MuJoCo: {message}", RuntimeWarning, stacklevel=2))
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


class GoalLocomotion(gymnasium.Env[np.ndarray, np.ndarray]):
    """A gymnasium MuJoCo robot with a goal-velocity or goal-direction task (module docstring).

    The task is set with :meth:`set_task` or ``reset(options={"goal": goal})`` and kept for
    later episodes; until one is set, each ``reset`` draws a fresh goal from p(T) with the
    env's own ``np_random``.

    Args:
        robot: ``"half_cheetah"`` or ``"ant"``.
        objective: ``"velocity"`` (goal = target velocity) or ``"direction"`` (goal = ±1).
        goal: optional initial goal.
        render_mode: passed to the robot.
        **robot_kwargs: override the robot's gymnasium arguments (e.g. ``reset_noise_scale``).

    Observation and action spaces: 20/6 dims for the cheetah (rllab's observation), 105/8 for
    the ant (gymnasium's). ``info`` is the robot's plus ``"com_velocity"`` (v), ``"reward_task"`` and
    ``"goal"``.
    """

    def __init__(self, robot: str, objective: str, goal: float | None = None,
                 render_mode: str | None = None, **robot_kwargs: Any):
        if robot not in ROBOTS or objective not in OBJECTIVES:
            raise ValueError(f"unknown task {robot!r}/{objective!r}: robots {tuple(ROBOTS)}, objectives {OBJECTIVES}")
        self.robot_name, self.objective, self._spec = robot, objective, ROBOTS[robot]
        kwargs = {**self._spec.kwargs, "frame_skip": self._spec.frame_skip, **robot_kwargs}
        with _mujoco_warnings_as_python():
            self.robot = self._spec.make(**kwargs, render_mode=render_mode)
        self._torso = self.robot.model.body("torso").id
        self.metadata, self.render_mode = self.robot.metadata, render_mode
        self.observation_space, self.action_space = self.robot.observation_space, self.robot.action_space
        if self._spec.rllab_state:  # + the torso subtree's centre of mass (3)
            size = self.observation_space.shape[0] + 3
            self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (size,), np.float64)
        self._task_term = goal_velocity_reward if objective == "velocity" else goal_direction_reward
        self._bonus = self._spec.velocity_bonus if objective == "velocity" else 0.0
        self._goal, self._task_fixed = 0.0, False
        if goal is not None:
            self.set_task(goal)

    def sample_tasks(self, n: int, generator: torch.Generator) -> Tensor:
        """``n`` goals ``[n]`` from this task family (see :func:`sample_locomotion_tasks`)."""
        return sample_locomotion_tasks(self.robot_name, self.objective, n, generator)

    def set_task(self, goal: float | ArrayLike) -> None:
        """Fix the task: a goal velocity, or a direction ±1."""
        goal = float(np.asarray(goal.item() if isinstance(goal, Tensor) else goal).reshape(()))
        if self.objective == "direction" and goal not in (-1.0, 1.0):
            raise ValueError(f"a direction task's goal is -1 or +1, got {goal}")
        self._goal, self._task_fixed = goal, True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and "goal" in options:
            self.set_task(options["goal"])
        elif not self._task_fixed:
            self._goal = self._random_goal()
        observation, info = self.robot.reset(seed=seed)
        if self._spec.rllab_state:
            robot = self.robot
            qpos = robot.init_qpos + RLLAB_QPOS_NOISE * robot.np_random.standard_normal(robot.model.nq)
            qvel = robot.init_qvel + RLLAB_QVEL_NOISE * robot.np_random.standard_normal(robot.model.nv)
            robot.set_state(qpos, qvel)  # (runs mj_forward)
            observation = self._rllab_observation()
        return observation, {**info, "goal": self._goal}

    def step(self, action: ArrayLike):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        observation, _, terminated, truncated, info = self.robot.step(action)
        velocity = self._com_velocity()
        if self._spec.rllab_state:
            observation = self._rllab_observation()
        task = self._task_term(velocity, self._goal) + self._bonus
        reward = task + sum(float(info[key]) for key in self._spec.cost_terms)
        return observation, reward, terminated, truncated, {
            **info, "com_velocity": velocity, "reward_task": task, "goal": self._goal}

    def _com_velocity(self) -> float:
        """rllab's ``get_body_comvel("torso")[0]`` at the state after the step: the x velocity of
        the torso subtree's centre of mass (``mj_forward`` first, as rllab's step ends with it)."""
        model, data = self.robot.model, self.robot.data
        mujoco.mj_forward(model, data)
        mujoco.mj_subtreeVel(model, data)
        return float(data.subtree_linvel[self._torso, 0])

    def _rllab_observation(self) -> np.ndarray:
        """rllab's cheetah observation: ``[qpos[1:], qvel, torso subtree centre of mass]``
        (the kinematics must be current: after ``mj_forward``)."""
        data = self.robot.data
        return np.concatenate([data.qpos[1:], data.qvel, data.subtree_com[self._torso]])

    def render(self):
        return self.robot.render()

    def close(self) -> None:
        self.robot.close()

    def _random_goal(self) -> float:
        if self.objective == "direction":
            return float(self.np_random.choice((-1.0, 1.0)))
        return float(self.np_random.uniform(*self._spec.velocity_range))
