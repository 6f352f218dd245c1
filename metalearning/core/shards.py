"""The meta-gradient of a meta-batch as a weighted sum over pieces of it (chunks, process shards).

Every algorithm's meta-gradient is a mean over the meta-batch of per-task terms (MAML's and
Meta-SGD's query-loss gradients, maml.md eq. 3 / meta-sgd.md eq. 3; Reptile's φ − φ̃_i,
reptile.md eq. 5; MAML++'s weighted multi-step loss), and so is the logged meta-loss. So for a
meta-batch of ``n`` tasks split into pieces P_j of ``n_j`` tasks,

    mean_i g_i = Σ_j (n_j / n) · mean_{i ∈ P_j} g_i,

which lets a process compute its shard (torch.distributed, summed by an all-reduce) and lets a
shard be computed in chunks, each with its own backward, so only one chunk's graph is alive at a
time (peak memory bounded by the chunk size, not the meta-batch).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils import _pytree as pytree

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MetaLearner, MetaParams
from metalearning.core.batching import num_tasks


def task_slice(tasks: Any, start: int, stop: int) -> Any:
    """Tasks ``start … stop − 1`` of a batched task pytree (views, no copy)."""
    return pytree.tree_map(lambda t: t[start:stop], tasks)


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous global task indices ``[start, stop)`` of process ``rank`` of ``world``:
    balanced, the first ``n % world`` ranks taking one task more. Keyed by the global index, so
    any number of processes covers the same meta-batch."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside a world of {world} processes")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def weighted_meta_gradient(algorithm: MetaLearner, meta_params: MetaParams, tasks: Any, loss: LossFn, *, total: int,
                           chunk: int | None = None, iteration: int = 0,
                           vectorize: bool = True) -> tuple[MetaParams, Tensor]:
    """(Σ over ``tasks`` of the per-task meta-gradient / ``total``, the same for the meta-loss).

    With ``total == len(tasks)`` this is the algorithm's meta-gradient of ``tasks``; a shard
    passes the whole meta-batch's size, so the shards' results sum to it.

    Args:
        tasks: batched tasks (leaves ``[m, ...]``), ``m ≥ 1``.
        total: the number of tasks the mean is over (the whole meta-batch).
        chunk: tasks per backward (``None``: all ``m`` at once). One chunk of all the tasks
            with ``total == m`` is exactly :meth:`MetaLearner.meta_gradient`.
        iteration: the 0-based meta-iteration (MAML++'s schedules).
    """
    m = num_tasks(tasks)
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be a positive number of tasks, got {chunk}")
    step = m if chunk is None else chunk
    grads, meta_loss = None, None
    for start in range(0, m, step):
        stop = min(start + step, m)
        piece = tasks if stop - start == m else task_slice(tasks, start, stop)
        size = stop - start
        g, part = algorithm.meta_gradient(meta_params, piece, loss, iteration=iteration, vectorize=vectorize)
        if size != total:  # the whole meta-batch at once keeps the algorithm's own result, bit for bit
            weight = size / total
            g = {grp: {k: weight * v for k, v in vals.items()} for grp, vals in g.items()}
            part = weight * part
        if grads is None:
            grads, meta_loss = g, part
        else:
            grads = {grp: {k: grads[grp][k] + v for k, v in vals.items()} for grp, vals in g.items()}
            meta_loss = meta_loss + part
    return grads, meta_loss
