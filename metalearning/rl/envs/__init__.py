"""Meta-RL environments, registered with gymnasium when this package is imported.

Ids (``gymnasium.make("metalearning/...")``):

* ``Navigation2D-v0``: MAML's 2D navigation as its code runs it, and Meta-SGD's first task set
  (start at the origin, reward −‖p − g‖), H = 100.
* ``Navigation2D-Squared-v0``: the same with the reward maml.md §5.3's text states, −‖p − g‖².
* ``Navigation2D-DistanceRandomStart-v0``: Meta-SGD's second set (the start is a task parameter).

Every id wraps its env in rllab's ``normalize`` action mapping, as MAML's code does
(:func:`~metalearning.rl.envs.navigation.rllab_normalized`): the policy acts in [−1, 1].
* ``HalfCheetahVel-v0``, ``HalfCheetahDir-v0``, ``AntVel-v0``, ``AntDir-v0``: MAML's
  locomotion tasks over gymnasium's MuJoCo ``-v5`` robots, H = 200 (``make`` needs ``mujoco``).
"""

from __future__ import annotations

from metalearning.rl.envs.navigation import BatchNavigation2D, Navigation2D, NavigationTasks
from metalearning.rl.envs.registration import LOCOMOTION_IDS, NAVIGATION_IDS, register_all

__all__ = ["BatchNavigation2D", "Navigation2D", "NavigationTasks", "LOCOMOTION_IDS", "NAVIGATION_IDS"]

register_all()
