"""What a task family provides to the one trainer and the one command set (STYLE P10).

Sine regression, few-shot image classification and meta-RL are task families. The trainer
(:mod:`metalearning.training`) only ever asks a family for a meta-batch and, for the gradient
outer rule, a loss; the commands ask it for its meta-test protocol and a description of the
setting for reports. Everything else (checkpoint/resume, the NaN guard, progress, Sacred
records, the learning curve) is written once, in the trainer and the command layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Protocol

import torch
from torch import Tensor

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MetaParams

if TYPE_CHECKING:
    from metalearning.model import Model
    from metalearning.training import MetaTrainer


class MetaBatch(NamedTuple):
    """One meta-iteration's data, as a family sampled it.

    Attributes:
        tasks: the tasks (a :class:`~metalearning.core.task.Task` batch, or meta-RL's episodes).
        scalars: values measured while sampling, logged with the learning curve (meta-RL: the
            returns before and after adaptation); may be empty.
        score: the family's model-selection score of the meta-parameters that were sampled with
            (meta-RL: the post-update return, maml.md A.2), or None when the family keeps the last.
    """

    tasks: Any
    scalars: dict[str, float | Tensor]
    score: float | None = None


class MetaTestResult(NamedTuple):
    """A meta-test's outcome: the run's scalar result and the JSON files to write in ``out_dir``."""

    result: dict[str, float]
    files: dict[str, Any]


class TaskFamily(Protocol):
    """A distribution over tasks, with its sampling, loss, validation and meta-test protocol.

    Attributes:
        kind: ``"sine"``, ``"fewshot"`` or ``"rl"``: what algorithms check in
            :meth:`~metalearning.core.algorithms.MetaLearner.unsupported`.
        selects_best: the trainer keeps the meta-parameters with the best score and the meta-test
            uses them: meta-RL's :attr:`MetaBatch.score`, or a few-shot family's validation metric
            ``select_on`` at each logged point; otherwise the final ones.
        parallel_meta_test: the meta-test splits its work over torchrun's processes (meta-RL:
            each rolls out and adapts a share of every chunk of new tasks, with the tasks and noise
            of one process); otherwise it runs in one process.
    """

    kind: str
    selects_best: bool
    parallel_meta_test: bool

    def meta_batch(self, trainer: MetaTrainer, meta_params: MetaParams, n: int,
                   generator: torch.Generator) -> MetaBatch:
        """``n`` tasks for one meta-iteration, drawn with ``generator`` (meta-RL: rolled out with
        the current meta-parameters, adapted by ``trainer.algorithm``)."""

    def loss(self, predict: Callable[[Any, Any], Tensor]) -> LossFn:
        """``loss(params, batch)`` of the inner and the outer loop for a ``predict(params, batch)``."""

    def validation(self, trainer: MetaTrainer, meta_params: MetaParams, tasks: Any) -> dict[str, float]:
        """Mean validation metrics on fixed ``tasks`` (from :meth:`validation_tasks`); may be empty."""

    def validation_tasks(self, n: int, generator: torch.Generator) -> Any:
        """``n`` fixed validation tasks (None when the family validates on nothing)."""

    def meta_test(self, model: Model, test_set: Path | None) -> MetaTestResult:
        """The family's meta-test protocol on a fixed test set (or its seeded new tasks)."""

    def describe(self, model: Model) -> dict[str, Any]:
        """What a report needs to place a result: algorithm, task setting, budget."""

