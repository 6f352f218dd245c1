"""The unit every supervised task family produces: a task's support and query batches."""

from __future__ import annotations

from typing import Any, NamedTuple


class Task(NamedTuple):
    """One task, or a meta-batch of tasks when every leaf has the task index as dimension 0.

    ``support`` is what the inner loop adapts on, ``query`` what the adapted learner is scored
    on (the meta-objective's term, maml.md eq. 3). Each is a batch pytree, e.g. ``(inputs,
    targets)``; a few-shot query also carries its task's support inputs as context
    (:func:`metalearning.data.episodes.with_context`).
    """

    support: Any
    query: Any
