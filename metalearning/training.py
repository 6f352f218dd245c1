"""The one meta-training loop of every task family (STYLE P10).

A meta-iteration asks the task family for a meta-batch (sine or few-shot tasks; meta-RL's
rollouts of the current policy) and hands it to the outer rule: the algorithm's meta-gradient
into a torch meta-optimiser (:class:`GradientRule`), or TRPO on the family's surrogate
(:class:`metalearning.rl.trpo.TRPO`). Around that, written once for all families:

* a checkpoint of the whole state every ``CheckpointPolicy.every`` iterations and on Ctrl-C,
  so a killed run resumed from its last checkpoint ends bit-identical to an uninterrupted one;
* a NaN guard: a non-finite meta-loss, meta-gradient, sampled scalar or updated parameter stops
  the run before the bad step is applied, leaving the last good checkpoint in place;
* the learning curve (means over ``log_every`` iterations, validation metrics), a progress bar,
  and model selection for families that keep their best meta-parameters (meta-RL).
"""

from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import gin
import torch
from torch import Tensor, nn
from tqdm import tqdm

from metalearning import devices, distributed
from metalearning.checkpoints import save_checkpoint
from metalearning.core.algorithms import MetaLearner, MetaParams, meta_leaves, set_meta_grads
from metalearning.core.batching import num_tasks
from metalearning.core.checks import check_args
from metalearning.core.family import MetaBatch, TaskFamily
from metalearning.core.functional import predictor as plain_predictor
from metalearning.core.shards import shard_bounds, task_slice, weighted_meta_gradient
from metalearning.rng import get_rng_states, set_rng_states

VAL_SEED_OFFSET = 1_000_003  # validation tasks come from a stream disjoint from training's


class MetricsSink(Protocol):
    """Where per-iteration scalars go (a Sacred run, or a list in tests)."""

    def log_scalar(self, name: str, value: float, step: int) -> None: ...


class OuterStep(Protocol):
    """An outer rule bound to one run's meta-parameters: applies one meta-update in place."""

    def step(self, batch: MetaBatch, iteration: int) -> dict[str, float | Tensor]:
        """Update the meta-parameters from ``batch`` (meta-iteration ``iteration``, 0-based);
        return the scalars to log. Raises FloatingPointError before applying a non-finite update."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, saved: dict[str, Any]) -> None: ...


class OuterRule(Protocol):
    """How meta-parameters are updated: ``start`` binds the rule to a run."""

    def start(self, trainer: MetaTrainer, meta_params: MetaParams) -> OuterStep: ...


def require_finite(what: str, values: Mapping[str, Any], iteration: int) -> None:
    """Raise FloatingPointError naming the first non-finite entry of ``values`` (tensors or floats).

    Tensors on the ``meta`` device (shape-only runs: the device-leak tests) have no values to check.
    """
    values = {k: v for k, v in values.items() if not (isinstance(v, Tensor) and v.is_meta)}
    finite = [torch.isfinite(torch.as_tensor(value)).all().cpu() for value in values.values()]
    if finite and bool(torch.stack(finite).all()):
        return
    for (name, value), ok in zip(values.items(), finite):
        if not bool(ok):
            raise FloatingPointError(f"{what} {name} became non-finite at meta-iteration {iteration + 1}")


def named_leaves(meta_params: MetaParams) -> dict[str, Tensor]:
    """``{"theta.<name>": tensor, "alpha.<name>": …}``: the meta-parameters by qualified name."""
    return {f"{group}.{k}": p for group, params in meta_params.items() for k, p in params.items()}


@dataclass(frozen=True)
class GradientRule:
    """The algorithm's meta-gradient, averaged over the meta-batch, into a torch optimiser.

    Args:
        meta_optimizer: optimiser class called on the meta-parameter leaves (lr bound in gin).
        anneal_meta_lr: linearly anneal the meta learning rate to 0 (reptile.md appendix).
    """

    meta_optimizer: Callable[..., torch.optim.Optimizer]
    anneal_meta_lr: bool = False

    def start(self, trainer: MetaTrainer, meta_params: MetaParams) -> GradientStep:
        optimizer = self.meta_optimizer(meta_leaves(meta_params))
        total, anneal = trainer.meta_iterations, self.anneal_meta_lr
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1 - it / total if anneal else 1.0)
        return GradientStep(trainer, meta_params, optimizer, schedule)


@dataclass
class GradientStep:
    trainer: MetaTrainer
    meta_params: MetaParams
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LRScheduler

    def step(self, batch: MetaBatch, iteration: int) -> dict[str, Tensor]:
        """The meta-gradient of this process's shard of the meta-batch (all of it for one process),
        in chunks of ``meta_batch_chunk`` tasks, summed over the processes, then the step."""
        trainer, processes = self.trainer, distributed.world()
        n = num_tasks(batch.tasks)
        start, stop = shard_bounds(n, processes.rank, processes.size)
        tasks = batch.tasks if stop - start == n else task_slice(batch.tasks, start, stop)
        with devices.autocast(trainer.precision, trainer.device):
            grads, meta_loss = weighted_meta_gradient(trainer.algorithm, self.meta_params, tasks, trainer.loss,
                                                      total=n, chunk=trainer.meta_batch_chunk, iteration=iteration)
        if meta_loss.dtype == torch.bfloat16:  # a loss autocast left in bfloat16 (gradients: the parameters' dtype)
            meta_loss = meta_loss.float()
        distributed.all_reduce_sum([*meta_leaves(grads), meta_loss])
        require_finite("meta-loss", {"": meta_loss}, iteration)
        require_finite("meta-gradient of", named_leaves(grads), iteration)
        set_meta_grads(self.meta_params, grads)
        self.optimizer.step()
        self.schedule.step()
        return {"meta_train.loss": meta_loss}

    def state_dict(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict()}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(saved["optimizer"])
        self.schedule.load_state_dict(saved["schedule"])


@gin.configurable
class MetaTrainer:
    """Everything one meta-training run needs, bound from gin (STYLE P4 names), for any family.

    Args:
        algorithm: a :class:`~metalearning.core.algorithms.MetaLearner`; refused (ValueError)
            when its :meth:`~metalearning.core.algorithms.MetaLearner.unsupported` names the family.
        learner: the model whose parameters are meta-learned (built once, seeded): a regressor,
            a classifier, or meta-RL's policy.
        tasks: the task family (:class:`~metalearning.core.family.TaskFamily`).
        meta_batch_size: tasks per meta-iteration.
        meta_iterations: number of meta-iterations (0 keeps the initialisation).
        meta_optimizer: optimiser class for the gradient outer rule (:class:`GradientRule`).
        outer_rule: another outer rule instead (meta-RL: ``@TRPO()``); bind exactly one of the two.
        anneal_meta_lr: linearly anneal the meta learning rate to 0 (gradient rule only).
        log_every: meta-iterations per logged point of the learning curve.
        predictor: ``predictor(learner) -> predict(params, batch)``; default: the learner applied
            to ``batch[0]``. Batch-norm classifiers bind
            :class:`~metalearning.learners.classification.ClassificationPredictor` (BN mode).
        meta_val_tasks: number of fixed validation tasks (drawn once from ``tasks`` with a seed
            stream disjoint from training's); families without validation ignore it.
        meta_batch_chunk: tasks per backward of the gradient outer rule (``None``: the whole
            meta-batch, or a process's shard of it, at once). Smaller chunks bound peak memory
            (one chunk's graph alive at a time) at some speed; the meta-gradient is the same
            (:mod:`metalearning.core.shards`).
        device: where the learner's parameters and the tasks live: ``cpu``, ``cuda``,
            ``cuda:N`` or ``auto`` (CUDA when available; :func:`metalearning.devices.resolve`).
            Tasks are sampled on the CPU with the CPU generator and moved there, so the same seed
            draws the same tasks on every device.
        precision: ``fp32`` or ``bf16``: the meta-gradient's forward ops autocast to bfloat16
            (:func:`metalearning.devices.autocast`; for CUDA), parameters, gradients and the
            optimiser staying float32. The gradient outer rule only (TRPO's conjugate gradient and
            line search need float32); validation and meta-tests run in float32.
    """

    def __init__(self, *, algorithm: MetaLearner, learner: nn.Module, tasks: TaskFamily, meta_batch_size: int,
                 meta_iterations: int, meta_optimizer: Callable | None = None, outer_rule: OuterRule | None = None,
                 anneal_meta_lr: bool = False, log_every: int = 100,
                 predictor: Callable[[nn.Module], Callable] = plain_predictor, meta_val_tasks: int = 100,
                 meta_batch_chunk: int | None = None, device: str = "cpu", precision: str = "fp32"):
        check_args("MetaTrainer", meta_batch_size=(meta_batch_size, int, 1), meta_iterations=(meta_iterations, int, 0),
                   log_every=(log_every, int, 1), meta_val_tasks=(meta_val_tasks, int, 1))
        if meta_batch_chunk is not None:
            check_args("MetaTrainer", meta_batch_chunk=(meta_batch_chunk, int, 1))
        self.device = devices.resolve(device, "MetaTrainer.device")
        self.precision = devices.check_precision(precision, "MetaTrainer.precision")
        if precision != "fp32" and outer_rule is not None:
            raise ValueError(f"MetaTrainer.precision: {precision!r} applies to the gradient outer rule "
                             f"(MetaTrainer.meta_optimizer), not to {type(outer_rule).__name__}, which needs float32")
        processes = distributed.world()
        if processes.size > meta_batch_size:
            raise ValueError(f"MetaTrainer.meta_batch_size: {meta_batch_size} tasks cannot be shared by "
                             f"{processes.size} processes (each needs at least one task)")
        if algorithm.carries_state and processes.size > 1:
            raise ValueError(f"{type(algorithm).__name__} carries state from task to task (e.g. "
                             "Reptile.persistent_moments), so its meta-batch cannot be split across "
                             f"{processes.size} processes: train it in one process")
        reason = algorithm.unsupported(tasks.kind)
        if reason:
            raise ValueError(f"MetaTrainer.algorithm: {algorithm.label} cannot meta-train on {tasks.kind} tasks: "
                             f"{reason}")
        if (meta_optimizer is None) == (outer_rule is None):
            raise ValueError("bind exactly one of MetaTrainer.meta_optimizer (the gradient outer rule) and "
                             "MetaTrainer.outer_rule (e.g. @TRPO())")
        self.algorithm, self.learner, self.tasks = algorithm, learner, tasks
        self.meta_batch_size, self.meta_iterations, self.log_every = meta_batch_size, meta_iterations, log_every
        self.outer_rule = outer_rule if outer_rule is not None else GradientRule(meta_optimizer, anneal_meta_lr)
        self.predict, self.meta_val_tasks = predictor(learner), meta_val_tasks
        self.meta_batch_chunk = meta_batch_chunk
        learner.to(self.device)
        self.loss = tasks.loss(learner, self.predict)

    def validation_tasks(self, seed: int) -> Any:
        """The fixed validation tasks of a run seeded ``seed`` (None if the family has none)."""
        tasks = self.tasks.validation_tasks(self.meta_val_tasks, torch.Generator().manual_seed(seed + VAL_SEED_OFFSET))
        return devices.to_device(tasks, self.device)


@dataclass(frozen=True)
class CheckpointPolicy:
    """Where and how often to checkpoint; ``extra`` (config text, seed…) is saved alongside."""

    path: Path
    every: int
    extra: dict[str, Any] = field(default_factory=dict)


def _clone(meta_params: MetaParams) -> MetaParams:
    return {g: {k: p.detach().clone() for k, p in group.items()} for g, group in meta_params.items()}


@dataclass
class TrainingState:
    """Everything the rest of a run depends on; restoring it resumes bit-identically."""

    meta_params: MetaParams
    outer: OuterStep
    generator: torch.Generator
    iteration: int = 0
    window: dict[str, list] = field(default_factory=dict)  # scalars since the last logged point
    logged: dict[str, float] = field(default_factory=dict)  # the last logged point
    best: MetaParams | None = None  # families that select: the best-scoring meta-parameters so far
    best_iteration: int = 0
    best_score: float = -math.inf
    algorithm: MetaLearner | None = None  # its carried state (Reptile's persistent moments) is checkpointed too

    @property
    def selected(self) -> MetaParams:
        """The meta-parameters a meta-test uses: the best-scoring ones, else the latest."""
        return self.meta_params if self.best is None else self.best

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration, "outer": self.outer.state_dict(), "task_generator": self.generator.get_state(),
            "window": {k: [v.detach().clone() if isinstance(v, Tensor) else v for v in vs]
                       for k, vs in self.window.items()},  # Python floats stay floats (float64 means)
            "logged": dict(self.logged), "best": self.best, "best_iteration": self.best_iteration,
            "best_score": self.best_score, "rng": get_rng_states(),
            "algorithm": {} if self.algorithm is None else self.algorithm.state_dict(),
        }

    def load_state_dict(self, saved: dict[str, Any], meta_params: MetaParams) -> None:
        with torch.no_grad():
            for group, params in self.meta_params.items():
                for k, p in params.items():
                    p.copy_(meta_params[group][k])
        self.outer.load_state_dict(saved["outer"])
        self.generator.set_state(saved["task_generator"])
        self.iteration, self.logged = saved["iteration"], dict(saved["logged"])
        self.window = {k: list(vs) for k, vs in saved["window"].items()}
        self.best, self.best_iteration, self.best_score = saved["best"], saved["best_iteration"], saved["best_score"]
        if self.algorithm is not None:
            self.algorithm.load_state_dict(saved.get("algorithm", {}))  # checkpoints before it: none carried
        set_rng_states(saved["rng"])


@dataclass
class TrainResult:
    """The run's end: meta-parameters (final and selected), iterations, the last logged point."""

    meta_params: MetaParams
    selected: MetaParams
    iterations: int
    logged: dict[str, float]
    best_iteration: int | None


def init_state(trainer: MetaTrainer, seed: int) -> TrainingState:
    """Fresh state: meta-parameters from the learner (drawn with the task generator seeded
    ``seed``, e.g. Meta-SGD's α), the outer rule bound to them, the task generator."""
    generator = torch.Generator().manual_seed(seed)
    meta_params = trainer.algorithm.init_meta_params(dict(trainer.learner.named_parameters()), generator)
    distributed.broadcast_from_writer(meta_leaves(meta_params))  # equal already (same seed); made certain
    trainer.algorithm.load_state_dict({})  # a fresh run carries nothing over from an earlier one
    return TrainingState(meta_params, trainer.outer_rule.start(trainer, meta_params), generator,
                         algorithm=trainer.algorithm)


def _step(trainer: MetaTrainer, state: TrainingState) -> None:
    """One meta-iteration; raises FloatingPointError before a non-finite update is applied."""
    try:
        batch = trainer.tasks.meta_batch(trainer, state.meta_params, trainer.meta_batch_size, state.generator)
    except FloatingPointError as err:  # e.g. meta-RL's baseline fit on a diverged policy's episodes
        raise FloatingPointError(f"{err}, sampling meta-iteration {state.iteration + 1}") from err
    batch = batch._replace(tasks=devices.to_device(batch.tasks, trainer.device))
    require_finite("sampled", batch.scalars, state.iteration)
    if batch.score is not None and batch.score > state.best_score:
        state.best, state.best_iteration, state.best_score = _clone(state.meta_params), state.iteration, batch.score
    scalars = {**batch.scalars, **state.outer.step(batch, state.iteration)}
    # An update can overflow although its inputs were finite (too large a meta learning rate): fail
    # before anything is logged or checkpointed, so the last checkpoint stays the last finite one.
    require_finite("meta-parameter", named_leaves(state.meta_params), state.iteration)
    for name, value in scalars.items():
        state.window.setdefault(name, []).append(value)
    state.iteration += 1


def _mean(values: list) -> float:
    """Mean over a window; float32 losses are averaged in float32, Python floats in float64."""
    return float(torch.stack([torch.as_tensor(v, dtype=torch.float64) if isinstance(v, float) else v
                              for v in values]).mean())


def _log(trainer: MetaTrainer, state: TrainingState, sink: MetricsSink, val_tasks) -> None:
    state.logged = {name: _mean(values) for name, values in state.window.items()}
    state.window = {}
    if val_tasks is not None:
        state.logged |= {f"meta_val.{k}": v for k, v in
                         trainer.tasks.validation(trainer, state.meta_params, val_tasks).items()}
    require_finite("logged", state.logged, state.iteration - 1)
    select_on = getattr(trainer.tasks, "select_on", None)  # model selection on the validation tasks
    if select_on is not None and val_tasks is not None and state.logged[f"meta_val.{select_on}"] > state.best_score:
        state.best, state.best_iteration = _clone(state.meta_params), state.iteration
        state.best_score = state.logged[f"meta_val.{select_on}"]
    for name, value in state.logged.items():
        sink.log_scalar(name, value, state.iteration)


def save_state(policy: CheckpointPolicy, state: TrainingState, **extra: Any) -> None:
    best = {} if state.best is None else {"best_meta_params": state.best, "best_iteration": state.best_iteration}
    save_checkpoint(policy.path, meta_params=state.meta_params, iteration=state.iteration,
                    training_state=state.state_dict(), **best, **policy.extra, **extra)


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

    Every ``log_every`` iterations (and at the end) logs the mean of each scalar the family and
    the outer rule reported since the last point (e.g. ``meta_train.loss``, the mean query loss
    after adaptation; meta-RL's returns and TRPO's diagnostics) and ``meta_val.<metric>`` on the
    fixed ``val_tasks``.

    Raises:
        FloatingPointError: a meta-loss, meta-gradient, sampled scalar or update is NaN/inf (the
            bad update is not applied).
        KeyboardInterrupt: on Ctrl-C, after writing a checkpoint of the last whole iteration.
    """
    processes = distributed.world()
    bar = tqdm(total=trainer.meta_iterations, initial=state.iteration, desc="meta-train",
               disable=not progress or not processes.writer, mininterval=2.0, unit="it")
    with bar, _deferred_interrupt() as interrupted:
        while state.iteration < trainer.meta_iterations:
            _step(trainer, state)
            bar.update()
            if state.iteration % trainer.log_every == 0 or state.iteration == trainer.meta_iterations:
                _log(trainer, state, sink, val_tasks)
                bar.set_postfix({k.split(".")[-1]: f"{v:.3f}" for k, v in list(state.logged.items())[:3]})
            stop = distributed.any_true(interrupted())  # every process stops after the same iteration
            if checkpoint and processes.writer and (state.iteration % checkpoint.every == 0 or stop):
                save_state(checkpoint, state)
            if stop:
                raise KeyboardInterrupt(f"interrupted after meta-iteration {state.iteration}")
    return TrainResult(meta_params=state.meta_params, selected=state.selected, iterations=state.iteration,
                       logged=state.logged, best_iteration=None if state.best is None else state.best_iteration)
