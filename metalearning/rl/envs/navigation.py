"""2D point navigation (maml.md §5.3 "2D Navigation"; meta-sgd.md §4.3).

A point agent moves in the plane towards a goal. State/observation: the position p_t ∈ R².
Action: a velocity command in [−0.1, 0.1] per coordinate; p_{t+1} = p_t + v_t (meta-sgd.md
§4.3: "the new state ... is the sum of the previous state and the action").

The policy acts in [−1, 1], as in MAML's code (cbfinn/maml_rl ``maml_trpo_point.py``), which
runs the point env inside rllab's ``normalize`` wrapper: ``v = lb + (a + 1)·(ub − lb)/2``
clipped to ``[lb, ub] = [−0.1, 0.1]``, i.e. ``v = clip(0.1·a, −0.1, 0.1)`` (:func:`velocity`;
for the gymnasium ids, :func:`rllab_normalized`: gymnasium's ``RescaleAction`` to [−1, 1], and
the env's own clip to its box).
A policy with σ = 1 (rllab's initial std) thus takes steps of ~0.1·N(μ, 1) instead of
saturating every coordinate at ±0.1. rllab's wrapper normalises neither observations nor
rewards in these experiments (its defaults).
A task is a goal g ~ U([−0.5, 0.5]²) and a start p_0: the origin (MAML; Meta-SGD's first task
set) or, for Meta-SGD's second set, also ~ U([−0.5, 0.5]²).

Exact definitions (shared by :class:`Navigation2D` and :class:`BatchNavigation2D`):

* reward of step t is taken at the position *after* the step, as MAML's rllab point env
  (``point_env_randgoal.py``) does: ``"distance"``: r_t = −‖p_{t+1} − g‖, what MAML's code
  computes (``- (x ** 2 + y ** 2) ** 0.5``) and meta-sgd.md §4.3 states, so the reward of MAML's
  Fig. 4 (its step-0 return, −40.41, is ~100 × the mean distance from the origin to a goal,
  0.38; with the squared distance it would be ~−19); ``"squared"``: r_t = −‖p_{t+1} − g‖², what
  maml.md §5.3's text says ("the negative squared distance to the goal").
* termination: the step that brings the agent within 0.01 of the goal in both coordinates,
  |x_{t+1} − g_x| < 0.01 and |y_{t+1} − g_y| < 0.01 (MAML's ``point_env_randgoal.py``; the
  papers say "within 0.01"), is the last one. It is taken and rewarded like any other; no
  terminal bonus.
* truncation: after H = 100 steps (the ``TimeLimit`` of the registered ids; ``horizon`` of the
  batch env).

Positions and rewards are float32 throughout, so the numpy env and the torch batch env
produce the same numbers from the same actions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium
import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor

REWARDS = ("squared", "distance")
MAX_SPEED = 0.1  # |v_i| of the velocity command (maml.md §5.3)
ACTION_BOUND = 1.0  # the policy's action box is [−1, 1]² (rllab's ``normalize``)
GOAL_RADIUS = 0.01  # episode ends within this distance of the goal
HORIZON = 100  # H (maml.md §5.3)
TASK_RANGE = (-0.5, 0.5)  # goals (and random starts) are uniform in TASK_RANGE²


class NavigationTasks(NamedTuple):
    """A batch of navigation tasks, float32, task index first.

    ``goals`` ``[tasks, 2]``; ``starts`` ``[tasks, 2]`` (zeros for the fixed-start variants).
    """

    goals: Tensor
    starts: Tensor


def sample_navigation_tasks(n: int, generator: torch.Generator, random_start: bool) -> NavigationTasks:
    """Draw ``n`` tasks from p(T): goals ~ U([−0.5, 0.5]²); starts likewise or the origin.

    The goals are drawn first, so the fixed- and random-start variants see the same goals
    for the same generator state.
    """
    low, high = TASK_RANGE
    goals = low + (high - low) * torch.rand((n, 2), generator=generator)
    starts = low + (high - low) * torch.rand((n, 2), generator=generator) if random_start else torch.zeros(n, 2)
    return NavigationTasks(goals, starts)


def _rescale_constants() -> tuple[float, float]:
    """(gradient, intercept) of gymnasium's ``RescaleAction`` from [−1, 1] onto the env's float32
    box, computed as gymnasium computes them (``wrappers.utils.rescale_box``); the wrapper hands
    the env ``(a − intercept) / gradient``."""
    low, bound = np.float32(-MAX_SPEED), np.float32(ACTION_BOUND)  # float32, as the boxes hold them
    gradient = (bound - (-bound)) / (-low - low)
    intercept = gradient * -low + (-bound)
    return float(gradient), float(intercept)


_GRADIENT, _INTERCEPT = _rescale_constants()
_SPEED32 = float(np.float32(MAX_SPEED))  # the float32 bound of the env's box


def velocity(actions: Tensor) -> Tensor:
    """The velocity command of float32 policy actions ``[..., 2]``: ``clip(0.1·a, −0.1, 0.1)``
    (rllab's ``normalize`` wrapper), computed as :func:`rllab_normalized` ∘ :class:`Navigation2D`
    computes it, so the batch env and the gymnasium ids take bit-identical steps."""
    return ((actions - _INTERCEPT) / _GRADIENT).clamp(-_SPEED32, _SPEED32)


def rllab_normalized(env: gymnasium.Env) -> gymnasium.Env:
    """``env`` with rllab's ``normalize`` action mapping: the policy acts in [−1, 1] per coordinate,
    mapped affinely onto ``env``'s action box by gymnasium's ``RescaleAction``; ``env`` clips to its
    box itself (as rllab's wrapper clips after scaling). For the MuJoCo robots, whose box already is
    [−1, 1], the mapping is the identity."""
    space = env.action_space
    bound = np.full(space.shape, ACTION_BOUND, space.dtype)
    return gymnasium.wrappers.RescaleAction(env, -bound, bound)


def _check_reward(reward: str) -> None:
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}, got {reward!r}")


# --- single environment (the gymnasium reference) -------------------------------------------


class Navigation2D(gymnasium.Env[np.ndarray, np.ndarray]):
    """One 2D navigation episode at a time, as a ``gymnasium.Env`` (see the module docstring).

    The task is set with :meth:`set_task` or ``reset(options={"goal": g, "start": s})`` and then
    kept for every later episode. Until a task is set, each ``reset`` draws a fresh one from
    p(T) with the env's own ``np_random`` (so a plain ``gymnasium.make`` env is usable and
    seeded resets are reproducible).

    Args:
        reward: ``"squared"`` (MAML) or ``"distance"`` (Meta-SGD).
        random_start: if true the start is part of the task (Meta-SGD's second task set) and
            must be given with the goal; otherwise every episode starts at the origin.
        goal: optional initial goal ``[2]``.
        start: optional initial start ``[2]`` (only with ``random_start``).

    Observation: ``Box(-inf, inf, (2,), float32)``, the position. Action: the velocity,
    ``Box(-0.1, 0.1, (2,), float32)``; larger actions are clipped, not rejected. The registered
    ids wrap it in :func:`rllab_normalized` (the policy's actions in [−1, 1]). Info:
    ``{"distance": ‖p − g‖}``.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, reward: str = "squared", random_start: bool = False,
                 goal: ArrayLike | None = None, start: ArrayLike | None = None):
        _check_reward(reward)
        self.reward_type, self.random_start = reward, random_start
        self.observation_space = gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.action_space = gymnasium.spaces.Box(-MAX_SPEED, MAX_SPEED, (2,), np.float32)
        self._goal: np.ndarray | None = None
        self._task_fixed = False  # set_task was called: keep the task across resets
        self._start = np.zeros(2, np.float32)
        self._position = np.zeros(2, np.float32)
        if goal is not None:
            self.set_task(goal, start)

    def sample_tasks(self, n: int, generator: torch.Generator) -> NavigationTasks:
        """``n`` tasks from this variant's p(T) (see :func:`sample_navigation_tasks`)."""
        return sample_navigation_tasks(n, generator, self.random_start)

    def set_task(self, goal: ArrayLike, start: ArrayLike | None = None) -> None:
        """Fix the task: goal ``[2]`` and, with ``random_start`` (and only then), start ``[2]``."""
        if self.random_start and start is None:
            raise ValueError("random_start navigation: the task needs a start as well as a goal")
        if not self.random_start and start is not None:
            raise ValueError("fixed-start navigation always starts at the origin; got a start")
        self._goal = _as_point(goal)
        self._start = _as_point(start) if start is not None else np.zeros(2, np.float32)
        self._task_fixed = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if options is not None and "goal" in options:
            self.set_task(options["goal"], options.get("start"))
        elif not self._task_fixed:
            self._set_random_task()
        self._position = self._start.copy()
        return self._position.copy(), {"distance": self._distance()}

    def step(self, action: ArrayLike):
        if self._goal is None:
            raise RuntimeError("call reset() before step()")
        velocity = np.clip(np.asarray(action, np.float32), -MAX_SPEED, MAX_SPEED)
        self._position = self._position + velocity
        offset = self._position - self._goal
        squared = np.float32(offset[0] * offset[0] + offset[1] * offset[1])
        distance = np.sqrt(squared)
        reward = -squared if self.reward_type == "squared" else -distance
        terminated = bool(abs(offset[0]) < GOAL_RADIUS and abs(offset[1]) < GOAL_RADIUS)
        return self._position.copy(), float(reward), terminated, False, {"distance": float(distance)}

    def _set_random_task(self) -> None:
        low, high = TASK_RANGE
        goal = self.np_random.uniform(low, high, 2)
        start = self.np_random.uniform(low, high, 2) if self.random_start else None
        self.set_task(goal, start)
        self._task_fixed = False

    def _distance(self) -> float:
        return float(np.linalg.norm(self._position - self._goal))


def _as_point(value: ArrayLike) -> np.ndarray:
    if isinstance(value, Tensor):
        value = value.detach().cpu().numpy()
    point = np.asarray(value, dtype=np.float32).reshape(-1)
    if point.shape != (2,):
        raise ValueError(f"expected a 2D point, got shape {np.shape(value)}")
    return point.copy()


# --- batched torch environment (the sampler's) ----------------------------------------------


class NavigationState(NamedTuple):
    """State of ``[tasks, B]`` navigation episodes.

    ``positions`` float32 ``[tasks, B, 2]``; ``goals`` float32 ``[tasks, 1, 2]``;
    ``alive`` bool ``[tasks, B]`` (false once the episode has terminated).
    """

    positions: Tensor
    goals: Tensor
    alive: Tensor


def navigation_reward(offsets: Tensor, reward: str) -> Tensor:
    """r = −‖p − g‖² (``"squared"``) or −‖p − g‖ (``"distance"``) for ``offsets = p − g`` ``[..., 2]``.

    Returns ``[...]``.
    """
    _check_reward(reward)
    squared = offsets.square().sum(-1)
    return -squared if reward == "squared" else -squared.sqrt()


def navigation_step(state: NavigationState, actions: Tensor, reward: str) -> tuple[NavigationState, Tensor, Tensor]:
    """One step of every episode: p_{t+1} = p_t + clip(0.1·a_t, −0.1, 0.1), masked by ``alive``.

    Args:
        state: the episodes before the step.
        actions: ``[tasks, B, 2]`` raw policy actions (clipped and scaled here: :func:`velocity`).
        reward: ``"squared"`` or ``"distance"``.

    Returns:
        ``(next_state, rewards [tasks, B], mask [tasks, B])``: ``mask`` is 1.0 where the step was
        taken (the episode was alive before it); finished episodes do not move and get reward 0.
        An episode ends when |p_{t+1} − g| < 0.01 in both coordinates; that step itself is taken
        and rewarded.
    """
    alive = state.alive
    step = velocity(actions.to(state.positions.dtype))
    positions = torch.where(alive.unsqueeze(-1), state.positions + step, state.positions)
    offsets = positions - state.goals
    rewards = torch.where(alive, navigation_reward(offsets, reward), torch.zeros(()))
    reached = (offsets.abs() < GOAL_RADIUS).all(-1)
    return NavigationState(positions, state.goals, alive & ~reached), rewards, alive.to(rewards.dtype)


@dataclass(frozen=True)
class BatchNavigation2D:
    """Many 2D navigation episodes (tasks × trajectories) stepped at once as torch tensors.

    Same dynamics, reward and termination as :class:`Navigation2D` (module docstring); the
    state lives in a :class:`NavigationState` the caller threads through :meth:`step`.

    Args:
        reward: ``"squared"`` (MAML) or ``"distance"`` (Meta-SGD).
        random_start: whether the tasks' starts are drawn from the square (Meta-SGD's second set).
        horizon: H, the number of steps a sampler takes at most.
    """

    reward: str = "squared"
    random_start: bool = False
    horizon: int = HORIZON

    def __post_init__(self):
        _check_reward(self.reward)

    def sample_tasks(self, n: int, generator: torch.Generator) -> NavigationTasks:
        """``n`` tasks from this variant's p(T) (see :func:`sample_navigation_tasks`)."""
        return sample_navigation_tasks(n, generator, self.random_start)

    def reset(self, goals: Tensor, starts: Tensor | None, trajectories: int) -> NavigationState:
        """Start ``trajectories`` episodes per task.

        Args:
            goals: ``[tasks, 2]``.
            starts: ``[tasks, 2]``, or ``None`` for the origin.
            trajectories: B, episodes per task.
        """
        goals = goals.to(torch.float32)
        starts = torch.zeros_like(goals) if starts is None else starts.to(goals)
        positions = starts.unsqueeze(1).expand(-1, trajectories, -1).clone()
        alive = torch.ones(goals.shape[0], trajectories, dtype=torch.bool, device=goals.device)
        return NavigationState(positions, goals.unsqueeze(1), alive)

    def step(self, state: NavigationState, actions: Tensor) -> tuple[NavigationState, Tensor, Tensor]:
        """:func:`navigation_step` with this env's reward."""
        return navigation_step(state, actions, self.reward)
