"""Meta-testing: adapt to held-out tasks and score the adapted learner on their query sets."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MetaLearner, MetaParams
from metalearning.core.batching import num_tasks, over_tasks

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def _loss_path(algo: MetaLearner, steps: int, loss: LossFn, meta_params: MetaParams, task: Any) -> Tensor:
    path = algo.adaptation_path(meta_params, task.support, loss, steps)
    return torch.stack([loss(params, task.query) for params in path])


def adapted_query_losses(algo: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn,
                         steps: int, chunk_size: int = 2000) -> Tensor:
    """Query loss of every task after 0, 1, …, ``steps`` inner steps.

    Returns:
        ``[tasks, steps + 1]``; column 0 is the un-adapted meta-learned initialisation.
    """
    fn = partial(_loss_path, algo, steps, loss)
    n = num_tasks(tasks)
    with torch.no_grad():
        chunks = [
            over_tasks(fn, meta_params, pytree.tree_map(lambda t: t[i : i + chunk_size], tasks))
            for i in range(0, n, chunk_size)
        ]
    return torch.cat(chunks)


def query_mse_after(algo: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn, steps: int) -> float:
    """Mean query loss after ``steps`` inner steps (the validation number logged while training)."""
    return float(adapted_query_losses(algo, meta_params, tasks, loss, steps)[:, -1].mean())


def mean_ci95(samples: Tensor) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval, over dim 0."""
    n = samples.shape[0]
    std = float(samples.std(unbiased=True)) if n > 1 else math.nan
    return float(samples.mean()), Z_95 * std / math.sqrt(n)
