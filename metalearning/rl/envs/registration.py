"""The gymnasium ids of the meta-RL environments and their registration.

Kept free of MuJoCo imports: entry points are strings, so ``import metalearning.rl.envs``
works without ``mujoco`` and only ``make`` of a locomotion id needs it.
"""

from __future__ import annotations

from typing import Any

import gymnasium

from metalearning.rl.envs.navigation import HORIZON as NAVIGATION_HORIZON

LOCOMOTION_HORIZON = 200  # H of the locomotion tasks (maml.md §5.3)

NAVIGATION_IDS: dict[str, dict[str, Any]] = {
    "metalearning/Navigation2D-v0": {"reward": "distance", "random_start": False},  # MAML's code; Meta-SGD, set 1
    "metalearning/Navigation2D-Squared-v0": {"reward": "squared", "random_start": False},  # maml.md §5.3's text
    "metalearning/Navigation2D-DistanceRandomStart-v0": {"reward": "distance", "random_start": True},  # set 2
}

LOCOMOTION_IDS: dict[str, dict[str, Any]] = {
    "metalearning/HalfCheetahVel-v0": {"robot": "half_cheetah", "objective": "velocity"},
    "metalearning/HalfCheetahDir-v0": {"robot": "half_cheetah", "objective": "direction"},
    "metalearning/AntVel-v0": {"robot": "ant", "objective": "velocity"},
    "metalearning/AntDir-v0": {"robot": "ant", "objective": "direction"},
}


def make_navigation(**kwargs: Any) -> gymnasium.Env:
    """A :class:`Navigation2D` with MAML's rllab ``normalize`` action mapping (policy actions in [−1, 1])."""
    from metalearning.rl.envs.navigation import Navigation2D, rllab_normalized

    return rllab_normalized(Navigation2D(**kwargs))


def make_locomotion(**kwargs: Any) -> gymnasium.Env:
    """A :class:`GoalLocomotion` inside rllab's ``normalize`` action mapping, as MAML's code runs it
    (the robots' boxes are already [−1, 1]: the wrapper only clips)."""
    from metalearning.rl.envs.locomotion import GoalLocomotion
    from metalearning.rl.envs.navigation import rllab_normalized

    return rllab_normalized(GoalLocomotion(**kwargs))


def register_all() -> None:
    """Register every id above with ``gymnasium`` (ids already registered are left alone)."""
    tables = (
        (NAVIGATION_IDS, "metalearning.rl.envs.registration:make_navigation", NAVIGATION_HORIZON),
        (LOCOMOTION_IDS, "metalearning.rl.envs.registration:make_locomotion", LOCOMOTION_HORIZON),
    )
    for ids, entry_point, horizon in tables:
        for env_id, kwargs in ids.items():
            if env_id not in gymnasium.registry:
                gymnasium.register(env_id, entry_point, max_episode_steps=horizon, kwargs=kwargs)
