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
from metalearning.core.algorithms import MetaLearner, MetaParams, meta_leaves, set_meta_grads
from metalearning.core.functional import make_loss
from metalearning.evaluation import query_mse_after
from metalearning.rng import get_rng_states, set_rng_states


class MetricsSink(Protocol):
    """Where per-iteration scalars go (a Sacred run, or a list in tests)."""

    def log_scalar(self, name: str, value: float, step: int) -> None: ...


@gin.configurable
class MetaTrainer:
    """Everything one meta-training run needs, bound from gin (STYLE P4 names).

    Args:
        algorithm: a :class:`~metalearning.core.algorithms.MetaLearner`.
        learner: the model whose parameters are meta-learned (built once, seeded).
        tasks: the task distribution; provides ``sample(n, generator)`` and ``criterion``.
        meta_optimizer: optimiser class called on the meta-parameter leaves (lr bound in gin).
        meta_batch_size: tasks per meta-iteration.
        meta_iterations: number of meta-iterations.
        anneal_meta_lr: linearly anneal the meta learning rate to 0 (reptile.md appendix).
        log_every: meta-iterations per logged point of the learning curve.
    """

    def __init__(self, *, algorithm: MetaLearner, learner: nn.Module, tasks, meta_optimizer: Callable,
                 meta_batch_size: int, meta_iterations: int, anneal_meta_lr: bool = False,
                 log_every: int = 100):
        self.algorithm, self.learner, self.tasks = algorithm, learner, tasks
        self.meta_optimizer, self.meta_batch_size = meta_optimizer, meta_batch_size
        self.meta_iterations, self.anneal_meta_lr, self.log_every = meta_iterations, anneal_meta_lr, log_every
        self.loss = make_loss(learner, tasks.criterion)


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
    val_mse: float = math.nan

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "task_generator": self.generator.get_state(),
            "window": [w.detach().clone() for w in self.window], "train_loss": self.train_loss,
            "val_mse": self.val_mse, "rng": get_rng_states(),
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
        self.train_loss, self.val_mse = saved["train_loss"], saved["val_mse"]
        set_rng_states(saved["rng"])


@dataclass
class TrainResult:
    meta_params: MetaParams
    optimizer: torch.optim.Optimizer
    iterations: int
    final_meta_loss: float
    val_mse: float


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
    algo = trainer.algorithm
    state.train_loss = float(torch.stack(state.window).mean())
    state.window.clear()
    state.val_mse = query_mse_after(algo, state.meta_params, val_tasks, trainer.loss, algo.eval_inner_steps)
    sink.log_scalar("meta_train.loss", state.train_loss, state.iteration)
    sink.log_scalar("meta_val.mse", state.val_mse, state.iteration)


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
    iterations) and ``meta_val.mse`` (on the fixed ``val_tasks``) every ``log_every`` iterations.

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
                bar.set_postfix(loss=f"{state.train_loss:.3f}", val_mse=f"{state.val_mse:.3f}")
            if checkpoint and (state.iteration % checkpoint.every == 0 or interrupted()):
                save_state(checkpoint, state)
            if interrupted():
                raise KeyboardInterrupt(f"interrupted after meta-iteration {state.iteration}")
    return TrainResult(meta_params=state.meta_params, optimizer=state.optimizer, iterations=state.iteration,
                       final_meta_loss=state.train_loss, val_mse=state.val_mse)
