"""Meta-RL environments, registered with gymnasium when this package is imported.

Ids (``gymnasium.make("metalearning/...")``):

* ``Navigation2D-v0``: MAML's 2D navigation (start at the origin, reward −‖p − g‖²), H = 100.
* ``Navigation2D-Distance-v0``: Meta-SGD's first task set (origin start, reward −‖p − g‖).
* ``Navigation2D-DistanceRandomStart-v0``: Meta-SGD's second set (the start is a task parameter).
* ``HalfCheetahVel-v0``, ``HalfCheetahDir-v0``, ``AntVel-v0``, ``AntDir-v0``: MAML's
  locomotion tasks over gymnasium's MuJoCo ``-v5`` robots, H = 200 (``make`` needs ``mujoco``).
"""

from __future__ import annotations

from metalearning.rl.envs.navigation import BatchNavigation2D, Navigation2D, NavigationTasks
from metalearning.rl.envs.registration import LOCOMOTION_IDS, NAVIGATION_IDS, register_all

__all__ = ["BatchNavigation2D", "Navigation2D", "NavigationTasks", "LOCOMOTION_IDS", "NAVIGATION_IDS"]

register_all()
