"""Registers every meta-RL configurable with gin (``metalearning.config`` imports this module),
including :class:`~metalearning.rl.envs.navigation.BatchNavigation2D`, which the environment
module keeps free of gin. The gin files live in ``configs/rl/``."""

from __future__ import annotations

import gin

import metalearning.rl.meta_rl  # noqa: F401  (registers MetaRL, AdaptationEval)
import metalearning.rl.policy  # noqa: F401  (registers GaussianMLPPolicy)
import metalearning.rl.task_families  # noqa: F401  (registers NavigationFamily, LocomotionFamily)
import metalearning.rl.trpo  # noqa: F401  (registers TRPO)
from metalearning.rl.envs.navigation import BatchNavigation2D

gin.external_configurable(BatchNavigation2D, module="metalearning.rl.envs")
