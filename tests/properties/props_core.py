"""Driving the project's real algorithms on a :class:`Problem` with a different loss per step.

``MAML.meta_gradient`` and ``Reptile.meta_gradient`` adapt on one ``support`` batch for every
inner step, while reptile.md §5.1 analyses a sequence of minibatch losses L_1, …, L_k. To check
§5.1 against the algorithms themselves (not against a loop of single ``adapt`` calls written
here), :func:`sequence_loss` makes the *parameters* carry a step counter:

* the parameter dict gets one extra scalar, ``"clock"``, starting at 0;
* the loss of a stacked batch ``[k, …]`` is ``L_{clock}(θ) − clock/α``, where the minibatch is
  chosen by a non-differentiable mask ``|clock − i| < ½``.

So ∂loss/∂clock = −1/α and each SGD step moves the clock by exactly +1 (to a few ulps, far from
the ½ mask boundary), while ∂loss/∂θ and ∂²loss/∂θ² are those of minibatch ``clock`` alone and
the mixed θ-clock derivatives are zero. Inner step i of the core therefore sees L_{i+1}:
MAML with k−1 inner steps evaluates L_k(U_{k−1}(… U_1(φ))) (eq. 18) and Reptile with k steps
walks φ_1 … φ_{k+1} (eq. 10). The θ-part of every meta-gradient is then exactly the quantity of
the paper; the clock's entry is dropped. ``test_sequence_loss_runs_minibatch_i_at_inner_step_i``
checks the device itself.

For MAML the support stack holds L_1 … L_{k−1} and the query stack L_k at the slots the clock
will read; the slots it never reads are filled with the *other* set's minibatch (L_1 in the
support, L_k in the query), so a core that adapted on the query or scored on the support
would get a different answer.
"""

from __future__ import annotations

from typing import Any

import torch
from props_problems import LossFn, Params, Problem
from props_reference import flatten
from torch import Tensor

from metalearning.core.algorithms import MAML, MetaLearner, Reptile
from metalearning.core.task import Task

CLOCK = "clock"


def sequence_loss(loss: LossFn, inner_lr: float) -> LossFn:
    """``loss(θ, minibatch clock) − clock/α`` for a batch stacking the step minibatches on dim 0."""

    def step_loss(params: Params, batches: Any) -> Tensor:
        theta = {k: p for k, p in params.items() if k != CLOCK}
        clock = params[CLOCK]
        steps = len(batches[0])
        total = -clock / inner_lr
        for i in range(steps):
            value = loss(theta, tuple(t[i] for t in batches))
            total = total + torch.where((clock - i).abs() < 0.5, value, torch.zeros_like(value))
        return total

    return step_loss


def with_clock(params: Params) -> Params:
    return {**params, CLOCK: torch.zeros((), dtype=torch.float64)}


def without_clock(params: Params) -> Params:
    return {k: p for k, p in params.items() if k != CLOCK}


def maml_tasks(problem: Problem, orders: Tensor) -> Task:
    """One task per row (o_1 … o_k) of ``orders``: support (o_1 … o_{k−1}, o_1), query (o_k, …, o_k)."""
    k = orders.shape[1]
    support = torch.cat([orders[:, :-1], orders[:, :1]], dim=1)
    return Task(support=problem.select(support), query=problem.select(orders[:, -1:].expand(-1, k)))


def reptile_tasks(problem: Problem, orders: Tensor) -> Task:
    """One task per row of ``orders``; the support (and the unused query) is L_1 … L_k."""
    stacked = problem.select(orders)
    return Task(support=stacked, query=stacked)


def theta_gradient(algo: MetaLearner, problem: Problem, tasks: Task, alpha: float) -> Tensor:
    """The flat θ-part of ``algo.meta_gradient`` on ``tasks`` with the per-step loss."""
    meta = algo.init_meta_params(with_clock(problem.params), torch.Generator())
    grads, _ = algo.meta_gradient(meta, tasks, sequence_loss(problem.loss, alpha))
    return flatten(without_clock(grads["theta"]))


def maml_gradient(problem: Problem, orders: Tensor, alpha: float, *, first_order: bool) -> Tensor:
    """g_MAML (eq. 17) or g_FOMAML, averaged over the rows of ``orders`` ``[tasks, k]``."""
    k = orders.shape[1]
    algo = MAML(inner_lr=alpha, inner_steps=k - 1, eval_inner_steps=k - 1, first_order=first_order)
    return theta_gradient(algo, problem, maml_tasks(problem, orders), alpha)


def reptile_gradient(problem: Problem, orders: Tensor, alpha: float) -> Tensor:
    """g_Reptile = (φ_1 − φ_{k+1})/α (eq. 6, 40): the core's pseudo-gradient over α."""
    k = orders.shape[1]
    algo = Reptile(inner_lr=alpha, inner_steps=k, eval_inner_steps=k, inner_optimizer="sgd")
    return theta_gradient(algo, problem, reptile_tasks(problem, orders), alpha) / alpha


def one_order(k: int) -> Tensor:
    """The single sequence L_1 = minibatch 0, …, L_k = minibatch k−1, as ``[1, k]``."""
    return torch.arange(k).view(1, k)


META_GRADIENTS = {  # name -> (problem, orders [tasks, k], α) -> flat meta-gradient, §5.1's scaling
    "maml": lambda problem, orders, alpha: maml_gradient(problem, orders, alpha, first_order=False),
    "fomaml": lambda problem, orders, alpha: maml_gradient(problem, orders, alpha, first_order=True),
    "reptile": reptile_gradient,
}
