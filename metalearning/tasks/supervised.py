"""The shared part of the supervised task families (sine regression, few-shot classification)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import Tensor

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MetaParams
from metalearning.core.family import MetaBatch
from metalearning.evaluation import validation_metrics

if TYPE_CHECKING:
    from metalearning.training import MetaTrainer


class SupervisedFamily:
    """The shared part of supervised families (sine regression, few-shot classification): a
    meta-batch is ``sample(n, generator)``; the loss is ``criterion(predict(params, batch),
    batch[1])``; validation scores each of ``metrics`` on fixed tasks' query sets after
    ``eval_inner_steps`` inner steps. Subclasses define ``kind``, ``criterion``, ``metrics``,
    ``sample``, ``meta_test`` and ``describe``."""

    kind: str
    selects_best = False
    parallel_meta_test = False  # a fixed test set, evaluated in one process
    criterion: Callable[[Tensor, Tensor], Tensor]
    metrics: dict[str, Callable[[Tensor, Tensor], Tensor]]

    def sample(self, n: int, generator: torch.Generator) -> Any:
        raise NotImplementedError

    def meta_batch(self, trainer: MetaTrainer, meta_params: MetaParams, n: int,
                   generator: torch.Generator) -> MetaBatch:
        return MetaBatch(self.sample(n, generator), {})

    def loss(self, learner: Any, predict: Callable[[Any, Any], Tensor]) -> LossFn:
        criterion = self.criterion

        def loss(params, batch) -> Tensor:
            return criterion(predict(params, batch), batch[1])

        return loss

    def validation_tasks(self, n: int, generator: torch.Generator) -> Any:
        return self.sample(n, generator)

    def validation(self, trainer: MetaTrainer, meta_params: MetaParams, tasks: Any) -> dict[str, float]:
        algo = trainer.algorithm
        return validation_metrics(algo, meta_params, tasks, trainer.loss, trainer.predict, self.metrics,
                                  algo.eval_inner_steps)
