"""Goal-velocity and goal-direction locomotion tasks (maml.md §5.3 "Locomotion", appendix A.2).

Two robots from gymnasium's MuJoCo suite (``HalfCheetah-v5``, ``Ant-v5``, ``mujoco`` package),
each with two task families, horizon H = 200 (the registered ids' ``TimeLimit``):

* velocity: goal velocity v* ~ U[0, 2] (cheetah) or U[0, 3] (ant); task reward −|v − v*|.
* direction: d ∈ {−1, +1} (backward/forward, equally likely); task reward d·v.

The robots run as MAML's rllab code runs them (``rllab/envs/mujoco/half_cheetah_env_rand*.py``,
``ant_env_rand*.py``, ``mujoco_env.py``, ``vendor/mujoco_models/*.xml``), where gymnasium's
defaults differ. Gymnasium's model files are rllab's, except the ant's time step (rllab: 0.02 s)
and motor scaling (rllab: control ±150, gear 1; gymnasium: control ±1, gear 150 — the same torque
for the policy's action in [−1, 1], which rllab's ``normalize`` wrapper scales to ±150):

* control period: rllab steps the simulator once per action (its ``MujocoEnv.frame_skip`` is 1
  unless the model file sets one, and neither robot's does), at the model's time step: 0.01 s for
  the cheetah, 0.02 s for the ant (set on gymnasium's ant model, one RK4 step). Gymnasium's
  default of 5 would make each of the 200 steps 0.05 s: 10 s episodes instead of 2 s (cheetah).
* after each step rllab runs ``mj_forward`` (and, MuJoCo 1.x, the post-constraint
  recursion that fills ``cfrc_ext``: here ``mj_rnePostConstraint``); everything below is read at
  that state.
* v is rllab's ``get_body_comvel("torso")[0]``: the x velocity of the centre of mass of the
  torso's subtree (the whole robot; ``mj_subtreeVel``). Gymnasium's ``info["x_velocity"]``, the
  finite difference of the torso position, stays in ``info``.
* observation: rllab's ``get_current_obs``. Cheetah: ``[qpos[1:], qvel, torso subtree centre of
  mass]`` (20 numbers; gymnasium's 17 lack the last three). Ant: ``[qpos, qvel, clip(cfrc_ext,
  −1, 1), torso orientation matrix, torso subtree centre of mass]`` (15 + 14 + 14·6 + 9 + 3 = 125;
  gymnasium's 105 drop the x-y position, the world body's forces and the last 12).
* start state: ``init_qpos + 0.01·N(0, I)``, ``qvel = 0.1·N(0, I)``, with ``init_qpos`` the model
  file's ``init_qpos`` numeric where it has one (the ant: torso at 0.55, legs bent), the model's
  rest pose otherwise (the cheetah). Gymnasium: rest pose + U(−0.1, 0.1).

The reward is rllab's, r = task + bonus − c·‖clip(a)‖² − k·‖clip(cfrc_ext, −1, 1)‖² + s:

* cheetah: c = 0.05 (rllab: 0.5·1e-1), k = s = 0.
* ant: c = 0.005 (rllab: 0.5·1e-2 on the action over its ±150 scale), k = 5e-4 (0.5·1e-3),
  s = 0.05 (``survive_reward``, on every step, the last one included), and for the velocity tasks
  the bonus + 1.0: the positive per-step bonus maml.md A.2 adds "to prevent the ant from ending the
  episode" (rllab: "make it happy, not suicidal"). The ant terminates when its state is not finite
  or its torso height leaves [0.2, 1.0] (rllab's rule; gymnasium's ``is_healthy``).

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


def cheetah_observation(data: mujoco.MjData, torso: int) -> np.ndarray:
    """rllab's ``HalfCheetahEnvRand(Direc).get_current_obs``: ``[qpos[1:], qvel, subtree_com[torso]]``."""
    return np.concatenate([data.qpos[1:], data.qvel, data.subtree_com[torso]])


def ant_observation(data: mujoco.MjData, torso: int) -> np.ndarray:
    """rllab's ``AntEnvRand(Direc).get_current_obs``: ``[qpos, qvel, clip(cfrc_ext, −1, 1), xmat[torso],
    subtree_com[torso]]``."""
    return np.concatenate([data.qpos, data.qvel, np.clip(data.cfrc_ext, -1, 1).ravel(), data.xmat[torso],
                           data.subtree_com[torso]])


def rllab_init_qpos(model: mujoco.MjModel) -> np.ndarray:
    """The start pose rllab's ``MujocoEnv`` resets to: the model file's ``init_qpos`` numeric where it
    has one (the ant), the model's rest pose ``qpos0`` otherwise (the cheetah)."""
    if mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_NUMERIC, "init_qpos") >= 0:
        return model.numeric("init_qpos").data.copy()
    return model.qpos0.copy()


class Robot(NamedTuple):
    """How to build one robot and rllab's observation and reward terms for it (module docstring)."""

    make: Callable[..., gymnasium.Env]
    observation: Callable[[mujoco.MjData, int], np.ndarray]  # rllab's, from the data and the torso's id
    timestep: float  # seconds per action: one simulator step of this length (rllab's model file)
    ctrl_cost: float  # c: weight of ‖clip(a)‖²
    contact_cost: float  # k: weight of ‖clip(cfrc_ext, −1, 1)‖²
    survive: float  # s: added on every step
    velocity_range: tuple[float, float]  # goal velocities of the velocity tasks
    velocity_bonus: float  # per-step bonus of the velocity tasks (maml.md A.2)
    contact_forces: bool  # observation or reward reads cfrc_ext (MuJoCo 2+ fills it only on request)


ROBOTS: dict[str, Robot] = {
    "half_cheetah": Robot(HalfCheetahEnv, cheetah_observation, timestep=0.01, ctrl_cost=0.05, contact_cost=0.0,
                          survive=0.0, velocity_range=(0.0, 2.0), velocity_bonus=0.0, contact_forces=False),
    "ant": Robot(AntEnv, ant_observation, timestep=0.02, ctrl_cost=0.005, contact_cost=5e-4, survive=0.05,
                 velocity_range=(0.0, 3.0), velocity_bonus=1.0, contact_forces=True),
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
        **robot_kwargs: passed to the gymnasium robot (e.g. ``xml_file``).

    Observation and action spaces: 20/6 dims for the cheetah, 125/8 for the ant (rllab's
    observations). ``info`` is the robot's, with the reward terms replaced by rllab's
    (``"reward_task"`` with the bonus, ``"reward_ctrl"``, ``"reward_contact"``, ``"reward_survive"``),
    plus ``"com_velocity"`` (v) and ``"goal"``.
    """

    def __init__(self, robot: str, objective: str, goal: float | None = None,
                 render_mode: str | None = None, **robot_kwargs: Any):
        if robot not in ROBOTS or objective not in OBJECTIVES:
            raise ValueError(f"unknown task {robot!r}/{objective!r}: robots {tuple(ROBOTS)}, objectives {OBJECTIVES}")
        self.robot_name, self.objective, self._spec = robot, objective, ROBOTS[robot]
        with _mujoco_warnings_as_python():
            self.robot = self._spec.make(**{"frame_skip": 1, **robot_kwargs}, render_mode=render_mode)
        model = self.robot.model
        model.opt.timestep = self._spec.timestep  # one simulator step per action (rllab's control period)
        self.robot.metadata = {**self.robot.metadata, "render_fps": round(1 / self.robot.dt)}
        self._torso = model.body("torso").id
        self._init_qpos = rllab_init_qpos(model)
        self.metadata, self.render_mode = self.robot.metadata, render_mode
        self.action_space = self.robot.action_space
        size = self._spec.observation(self.robot.data, self._torso).shape
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, size, np.float64)
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
        _, info = self.robot.reset(seed=seed)
        robot = self.robot  # rllab's reset_mujoco, then mj_forward (set_state runs it)
        qpos = self._init_qpos + RLLAB_QPOS_NOISE * robot.np_random.standard_normal(robot.model.nq)
        qvel = robot.init_qvel + RLLAB_QVEL_NOISE * robot.np_random.standard_normal(robot.model.nv)
        robot.set_state(qpos, qvel)
        self._post_constraint_forces()
        return self._spec.observation(robot.data, self._torso), {**info, "goal": self._goal}

    def step(self, action: ArrayLike):
        action = np.clip(action, self.action_space.low, self.action_space.high)
        _, _, terminated, truncated, info = self.robot.step(action)
        data, spec = self.robot.data, self._spec
        mujoco.mj_forward(self.robot.model, data)  # rllab's step ends with it; v, costs, observation read after
        self._post_constraint_forces()
        velocity = self._com_velocity()
        terms = {
            "reward_task": self._task_term(velocity, self._goal) + self._bonus,
            "reward_ctrl": -spec.ctrl_cost * float(np.sum(np.square(action, dtype=np.float64))),
            "reward_contact": -spec.contact_cost * float(np.sum(np.square(np.clip(data.cfrc_ext, -1, 1)))),
            "reward_survive": spec.survive,
        }
        return spec.observation(data, self._torso), sum(terms.values()), terminated, truncated, {
            **info, **terms, "com_velocity": velocity, "goal": self._goal}

    def _post_constraint_forces(self) -> None:
        """``cfrc_ext`` at the current state, as rllab's MuJoCo 1.x ``mj_forward`` left it (MuJoCo 2+
        computes it only on request; only robots whose observation or reward reads it ask)."""
        if self._spec.contact_forces:
            mujoco.mj_rnePostConstraint(self.robot.model, self.robot.data)

    def _com_velocity(self) -> float:
        """rllab's ``get_body_comvel("torso")[0]`` at the current (forwarded) state: the x velocity of
        the torso subtree's centre of mass."""
        model, data = self.robot.model, self.robot.data
        mujoco.mj_subtreeVel(model, data)
        return float(data.subtree_linvel[self._torso, 0])

    def render(self):
        return self.robot.render()

    def close(self) -> None:
        self.robot.close()

    def _random_goal(self) -> float:
        if self.objective == "direction":
            return float(self.np_random.choice((-1.0, 1.0)))
        return float(self.np_random.uniform(*self._spec.velocity_range))
