"""One meta-RL experiment as gin builds it: the trainer, its budget and its meta-test protocol.

Importing this module registers every meta-RL configurable with gin (``metalearning.config``
imports it), including :class:`~metalearning.rl.envs.navigation.BatchNavigation2D`, which the
environment module keeps free of gin. The gin files live in ``configs/rl/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import gin

import metalearning.rl.policy  # noqa: F401  (registers GaussianMLPPolicy)
import metalearning.rl.task_families  # noqa: F401  (registers NavigationFamily, LocomotionFamily)
import metalearning.rl.trpo  # noqa: F401  (registers TRPO)
from metalearning.rl.envs.navigation import BatchNavigation2D
from metalearning.rl.meta_rl import AdaptationEval, MetaRL

gin.external_configurable(BatchNavigation2D, module="metalearning.rl.envs")


@gin.configurable
@dataclass(frozen=True)
class RLExperiment:
    """What ``train_rl`` and ``test_rl`` build from the experiment's gin files.

    Args:
        meta_rl: the meta-training loop (algorithm, policy, task family, TRPO, batch sizes).
        meta_iterations: TRPO meta-iterations (maml.md A.2: up to 500; meta-sgd.md §4.3: 100);
            0 keeps the random initialisation (maml.md §5.3 baseline (b), fine-tuned at meta-test).
        evaluation: the meta-test protocol (new tasks, PG steps, trajectories per step).
        eval_seed: seeds the meta-test generator (new tasks, episodes), disjoint from training's.
        plotted_tasks: navigation tasks whose pre-/post-update paths ``test_rl`` records.
    """

    meta_rl: MetaRL
    meta_iterations: int
    evaluation: AdaptationEval
    eval_seed: int
    plotted_tasks: int = 3
