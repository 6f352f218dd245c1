"""Meta-testing: adapt to held-out tasks and score the adapted learner on their query sets."""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MetaLearner, MetaParams, meta_leaves
from metalearning.core.batching import num_tasks, over_tasks
from metalearning.devices import to_device

Z_95 = 1.959963984540054  # two-sided 95% normal quantile
# Student's t 0.975 quantiles for 1 … 30 degrees of freedom (standard tables, 3 decimals).
T_95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile_95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom: the table up to 30,
    then ``z + (t_30 − z)·30/df`` (within 0.002 of the exact value)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T_95[df - 1] if df <= len(T_95) else Z_95 + (T_95[-1] - Z_95) * len(T_95) / df


def mean_t_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and 95% confidence half-width by Student's t over a few values (e.g. training seeds);
    the half-width is NaN for one value."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, t_quantile_95(n - 1) * std / math.sqrt(n)


ScoreFn = Callable[[Any, Any], Tensor]  # score(params, query batch) -> scalar


def _score_path(algo: MetaLearner, at: Sequence[int], loss: LossFn, scores: Mapping[str, ScoreFn],
                meta_params: MetaParams, task: Any) -> dict[str, Tensor]:
    path = algo.adaptation_path(meta_params, task.support, loss, max(at))
    return {name: torch.stack([score(path[s], task.query) for s in at]) for name, score in scores.items()}


def adapted_scores(algo: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn, steps: int,
                   scores: Mapping[str, ScoreFn], chunk_size: int = 2000,
                   at: Sequence[int] | None = None) -> dict[str, Tensor]:
    """Every ``scores`` entry on every task's query set after 0, 1, …, ``steps`` inner steps.

    One adaptation path per task serves all scores (e.g. the accuracy under both batch-norm
    modes). Tasks are vmapped in chunks of ``chunk_size`` to bound memory. ``at`` scores only
    those steps (each in 0..``steps``): scoring can cost more than adapting when the path is
    long (Reptile's 50 evaluation steps).

    Returns:
        name → ``[tasks, len(at)]``, by default ``at = 0, 1, …, steps``; step 0 is the
        un-adapted meta-learned initialisation.
    """
    at = list(range(steps + 1)) if at is None else list(at)
    if not at or min(at) < 0 or max(at) > steps:
        raise ValueError(f"steps to score {at} must be non-empty and within 0..{steps}")
    fn = partial(_score_path, algo, at, loss, dict(scores))
    n, device = num_tasks(tasks), meta_leaves(meta_params)[0].device  # tasks follow the model's device
    with torch.no_grad():
        chunks = [
            over_tasks(fn, meta_params, to_device(pytree.tree_map(lambda t: t[i : i + chunk_size], tasks), device))
            for i in range(0, n, chunk_size)
        ]
    return {name: torch.cat([c[name] for c in chunks]) for name in scores}


def adapted_query_losses(algo: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn,
                         steps: int, chunk_size: int = 2000) -> Tensor:
    """Query loss of every task after 0, 1, …, ``steps`` inner steps: ``[tasks, steps + 1]``."""
    return adapted_scores(algo, meta_params, tasks, loss, steps, {"loss": loss}, chunk_size)["loss"]


def metric_scores(predict: Callable[[Any, Any], Tensor],
                  metrics: Mapping[str, Callable[[Tensor, Tensor], Tensor]]) -> dict[str, ScoreFn]:
    """``metric(predict(params, batch), batch[1])`` as score functions, one per metric."""
    return {name: partial(_metric_score, predict, metric) for name, metric in metrics.items()}


def _metric_score(predict, metric, params, batch) -> Tensor:
    return metric(predict(params, batch), batch[1])


def validation_metrics(algo: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn, predict,
                       metrics: Mapping[str, Callable[[Tensor, Tensor], Tensor]], steps: int) -> dict[str, float]:
    """Mean of each metric over ``tasks``' query sets after ``steps`` inner steps (logged while training)."""
    per_task = adapted_scores(algo, meta_params, tasks, loss, steps, metric_scores(predict, metrics), at=[steps])
    return {name: float(values[:, -1].mean()) for name, values in per_task.items()}


def mean_ci95(samples: Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval, over dim 0."""
    n = samples.shape[0]
    std = float(samples.std(unbiased=True)) if n > 1 else math.nan
    return float(samples.mean()), Z_95 * std / math.sqrt(n)
