"""Meta-training: sample a meta-batch, take the algorithm's meta-gradient, step the meta-optimiser.

The loop checkpoints its whole state every ``CheckpointPolicy.every`` iterations (and on
Ctrl-C), so a killed run resumed from its last checkpoint ends bit-identical to an
uninterrupted one on CPU. A non-finite meta-loss stops the run before the bad step is
applied, leaving the last good checkpoint in place.
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import gin
import torch
from torch import Tensor, nn
from tqdm import tqdm

from metalearning.checkpoints import save_checkpoint
from metalearning.core.adapt import Batch
from metalearning.core.algorithms import MetaLearner, MetaParams, meta_leaves, set_meta_grads
from metalearning.core.functional import predictor as plain_predictor
from metalearning.evaluation import validation_metrics
from metalearning.rng import get_rng_states, set_rng_states


class MetricsSink(Protocol):
    """Where per-iteration scalars go (a Sacred run, or a list in tests)."""

    def log_scalar(self, name: str, value: float, step: int) -> None: ...


@gin.configurable
class MetaTrainer:
    """Everything one meta-training run needs, bound from gin (STYLE P4 names).

    The loss of both loops is ``tasks.criterion(predict(params, batch), batch[1])``; validation
    logs every metric of ``tasks.metrics`` (e.g. ``mse``; ``loss`` and ``accuracy``) on the query
    sets of fixed validation tasks, after ``algorithm.eval_inner_steps`` inner steps.

    Args:
        algorithm: a :class:`~metalearning.core.algorithms.MetaLearner`.
        learner: the model whose parameters are meta-learned (built once, seeded).
        tasks: the task distribution; provides ``sample(n, generator)``, ``criterion(outputs,
            targets)`` and ``metrics`` (name → ``fn(outputs, targets)``).
        meta_optimizer: optimiser class called on the meta-parameter leaves (lr bound in gin).
        meta_batch_size: tasks per meta-iteration.
        meta_iterations: number of meta-iterations.
        anneal_meta_lr: linearly anneal the meta learning rate to 0 (reptile.md appendix).
        log_every: meta-iterations per logged point of the learning curve.
        predictor: ``predictor(learner) -> predict(params, batch)``; default: the learner applied
            to ``batch[0]``. Batch-norm classifiers bind
            :func:`~metalearning.learners.classification.classification_predictor` (BN mode).
        meta_val_tasks: number of fixed validation tasks (drawn once from ``tasks`` with a seed
            stream disjoint from training's).
    """

    def __init__(self, *, algorithm: MetaLearner, learner: nn.Module, tasks, meta_optimizer: Callable,
                 meta_batch_size: int, meta_iterations: int, anneal_meta_lr: bool = False,
                 log_every: int = 100, predictor: Callable[[nn.Module], Callable] = plain_predictor,
                 meta_val_tasks: int = 100):
        self.algorithm, self.learner, self.tasks = algorithm, learner, tasks
        self.meta_optimizer, self.meta_batch_size = meta_optimizer, meta_batch_size
        self.meta_iterations, self.anneal_meta_lr, self.log_every = meta_iterations, anneal_meta_lr, log_every
        self.predict, self.meta_val_tasks = predictor(learner), meta_val_tasks
        criterion = tasks.criterion

        def loss(params, batch: Batch) -> Tensor:
            return criterion(self.predict(params, batch), batch[1])

        self.loss = loss

    def validate(self, meta_params: MetaParams, val_tasks) -> dict[str, float]:
        """Mean of each of ``tasks.metrics`` on ``val_tasks``' query sets after adaptation."""
        return validation_metrics(self.algorithm, meta_params, val_tasks, self.loss, self.predict,
                                  self.tasks.metrics, self.algorithm.eval_inner_steps)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often to checkpoint; ``extra`` (config text, seed…) is saved alongside."""

    path: Path
    every: int
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingState:
    """Everything the rest of a run depends on; restoring it resumes bit-identically."""

    meta_params: MetaParams
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    iteration: int = 0
    window: list[Tensor] = field(default_factory=list)
    train_loss: float = math.nan
    val: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "task_generator": self.generator.get_state(),
            "window": [w.detach().clone() for w in self.window], "train_loss": self.train_loss,
            "val": dict(self.val), "rng": get_rng_states(),
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        with torch.no_grad():
            for group, params in self.meta_params.items():
                for k, p in params.items():
                    p.copy_(saved["meta_params"][group][k])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])
        self.generator.set_state(saved["task_generator"])
        self.iteration, self.window = saved["iteration"], list(saved["window"])
        self.train_loss, self.val = saved["train_loss"], dict(saved["val"])
        set_rng_states(saved["rng"])


@dataclass
class TrainResult:
    meta_params: MetaParams
    optimizer: torch.optim.Optimizer
    iterations: int
    final_meta_loss: float
    val: dict[str, float]


def init_state(trainer: MetaTrainer, seed: int) -> TrainingState:
    """Fresh state: meta-parameters from the learner, meta-optimiser, LR schedule, task RNG."""
    generator = torch.Generator().manual_seed(seed)
    meta_params = trainer.algorithm.init_meta_params(dict(trainer.learner.named_parameters()), generator)
    optimizer = trainer.meta_optimizer(meta_leaves(meta_params))
    total = trainer.meta_iterations
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 1 - it / total if trainer.anneal_meta_lr else 1.0
    )
    return TrainingState(meta_params, optimizer, schedule, generator)


def _step(trainer: MetaTrainer, state: TrainingState) -> None:
    """One meta-iteration; raises before the update if the meta-loss is not finite."""
    batch = trainer.tasks.sample(trainer.meta_batch_size, state.generator)
    grads, meta_loss = trainer.algorithm.meta_gradient(state.meta_params, batch, trainer.loss)
    if not torch.isfinite(meta_loss):
        raise FloatingPointError(f"meta-loss became {meta_loss.item()} at meta-iteration {state.iteration + 1}")
    set_meta_grads(state.meta_params, grads)
    state.optimizer.step()
    state.schedule.step()
    state.window.append(meta_loss)
    state.iteration += 1


def _log(trainer: MetaTrainer, state: TrainingState, sink: MetricsSink, val_tasks) -> None:
    state.train_loss = float(torch.stack(state.window).mean())
    state.window.clear()
    state.val = trainer.validate(state.meta_params, val_tasks)
    sink.log_scalar("meta_train.loss", state.train_loss, state.iteration)
    for name, value in state.val.items():
        sink.log_scalar(f"meta_val.{name}", value, state.iteration)


def save_state(policy: CheckpointPolicy, state: TrainingState, **extra: Any) -> None:
    save_checkpoint(policy.path, meta_params=state.meta_params, iteration=state.iteration,
                    training_state=state.state_dict(), **policy.extra, **extra)


@contextmanager
def _deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Turn Ctrl-C into a flag checked between iterations, so the checkpoint is consistent."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    hit = []
    previous = signal.signal(signal.SIGINT, lambda *_: hit.append(True))
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def meta_train(trainer: MetaTrainer, state: TrainingState, *, sink: MetricsSink, val_tasks,
               checkpoint: CheckpointPolicy | None = None, progress: bool = True) -> TrainResult:
    """Run ``trainer`` from ``state`` (fresh from :func:`init_state`, or restored) to the end.

    Logs ``meta_train.loss`` (mean query loss after adaptation over the last ``log_every``
    iterations) and ``meta_val.<metric>`` for each of ``tasks.metrics`` (on the fixed
    ``val_tasks``) every ``log_every`` iterations.

    Raises:
        FloatingPointError: the meta-loss is NaN/inf (the bad update is not applied).
        KeyboardInterrupt: on Ctrl-C, after writing a checkpoint of the last whole iteration.
    """
    bar = tqdm(total=trainer.meta_iterations, initial=state.iteration, desc="meta-train",
               disable=not progress, mininterval=2.0, unit="it")
    with bar, _deferred_interrupt() as interrupted:
        while state.iteration < trainer.meta_iterations:
            _step(trainer, state)
            bar.update()
            if state.iteration % trainer.log_every == 0 or state.iteration == trainer.meta_iterations:
                _log(trainer, state, sink, val_tasks)
                shown = {f"val_{k}": f"{v:.3f}" for k, v in state.val.items()}
                bar.set_postfix(loss=f"{state.train_loss:.3f}", **shown)
            if checkpoint and (state.iteration % checkpoint.every == 0 or interrupted()):
                save_state(checkpoint, state)
            if interrupted():
                raise KeyboardInterrupt(f"interrupted after meta-iteration {state.iteration}")
    return TrainResult(meta_params=state.meta_params, optimizer=state.optimizer, iterations=state.iteration,
                       final_meta_loss=state.train_loss, val=state.val)
