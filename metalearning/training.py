"""Meta-training: sample a meta-batch, take the algorithm's meta-gradient, step the meta-optimiser."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import gin
import torch
from torch import Tensor, nn
from tqdm import tqdm

from metalearning.core.algorithms import MetaLearner, MetaParams, _leaves
from metalearning.core.functional import make_loss
from metalearning.evaluation import query_mse_after


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


@dataclass
class TrainResult:
    meta_params: MetaParams
    optimizer: torch.optim.Optimizer
    iterations: int
    final_meta_loss: float
    val_mse: float


def _set_grads(meta_params: MetaParams, grads: MetaParams) -> None:
    for group, params in meta_params.items():
        for k, p in params.items():
            p.grad = grads[group][k]


def meta_train(trainer: MetaTrainer, *, seed: int, sink: MetricsSink, val_tasks,
               progress: bool = True) -> TrainResult:
    """Run ``trainer`` from its learner's initial parameters.

    ``seed`` drives task sampling and Meta-SGD's α draw; the learner was already built under it.
    Logs ``meta_train.loss`` (mean query loss after adaptation over the last ``log_every``
    iterations) and ``meta_val.mse`` (on the fixed ``val_tasks``) every ``log_every`` iterations.
    """
    generator = torch.Generator().manual_seed(seed)
    algo = trainer.algorithm
    meta_params = algo.init_meta_params(dict(trainer.learner.named_parameters()), generator)
    optimizer = trainer.meta_optimizer(_leaves(meta_params))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: 1 - it / trainer.meta_iterations if trainer.anneal_meta_lr else 1.0
    )
    window: list[Tensor] = []
    val_mse = math.nan
    bar = tqdm(range(1, trainer.meta_iterations + 1), desc="meta-train", disable=not progress,
               mininterval=2.0, unit="it")
    for it in bar:
        batch = trainer.tasks.sample(trainer.meta_batch_size, generator)
        grads, meta_loss = algo.meta_gradient(meta_params, batch, trainer.loss)
        _check_finite(meta_loss, it)
        _set_grads(meta_params, grads)
        optimizer.step()
        schedule.step()
        window.append(meta_loss)
        if it % trainer.log_every == 0 or it == trainer.meta_iterations:
            train_loss = float(torch.stack(window).mean())
            window.clear()
            val_mse = query_mse_after(algo, meta_params, val_tasks, trainer.loss, algo.eval_inner_steps)
            sink.log_scalar("meta_train.loss", train_loss, it)
            sink.log_scalar("meta_val.mse", val_mse, it)
            bar.set_postfix(loss=f"{train_loss:.3f}", val_mse=f"{val_mse:.3f}")
    return TrainResult(meta_params=meta_params, optimizer=optimizer, iterations=trainer.meta_iterations,
                       final_meta_loss=train_loss, val_mse=val_mse)


def _check_finite(meta_loss: Tensor, iteration: int) -> None:
    if not torch.isfinite(meta_loss):
        raise FloatingPointError(f"meta-loss became {meta_loss.item()} at meta-iteration {iteration}")
