"""The four meta-learning algorithms as outer rules around one :func:`adapt` (STYLE P2).

Meta-parameters are a two-level dict: ``{"theta": Params}`` for MAML, first-order MAML and
Reptile, plus ``{"alpha": Params}`` (the per-parameter step sizes) for Meta-SGD. Every
algorithm provides

* ``init_meta_params(params, generator)`` — meta-parameters from a freshly built learner;
* ``meta_gradient(meta_params, tasks, loss)`` — the gradient handed to the meta-optimiser,
  averaged over the meta-batch, with the mean post-adaptation query loss for logging;
* ``adaptation_path(meta_params, support, loss, steps)`` — the parameters after 0..steps
  inner steps, used at meta-test time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial
from typing import Any

import gin
import torch
from torch import Tensor

from metalearning.core.adapt import SGD, Adam, Batch, LossFn, Params, StepSize, adapt, adapt_with_state
from metalearning.core.batching import over_tasks

MetaParams = dict[str, Params]


def meta_leaves(meta_params: MetaParams) -> list[Tensor]:
    """The meta-parameter tensors in a fixed order (what a meta-optimiser is built on)."""
    return [p for group in meta_params.values() for p in group.values()]


def set_meta_grads(meta_params: MetaParams, grads: MetaParams) -> None:
    """Hand a :meth:`MetaLearner.meta_gradient` result to the meta-optimiser via ``.grad``."""
    for group, params in meta_params.items():
        for k, p in params.items():
            p.grad = grads[group][k]


def _unflatten(meta_params: MetaParams, flat: list[Tensor]) -> MetaParams:
    it = iter(flat)
    return {g: {k: next(it) for k in group} for g, group in meta_params.items()}


def minibatch(support: Batch, step: int, batch_size: int | None) -> Batch:
    """The support examples inner step ``step`` (0-based) trains on.

    ``batch_size=None``: the whole support set. Otherwise examples ``step·b … step·b + b − 1``
    taken cyclically, so consecutive steps sweep the support set in order, as Reptile's inner
    loop does over its shuffled mini-dataset (reptile.md Algorithm 2 with minibatches, §6).
    Leaves are ``[S, ...]`` (one task; the algorithms call this inside ``vmap``).
    """
    if batch_size is None:
        return support
    size = support[0].shape[0]
    index = (torch.arange(batch_size) + step * batch_size) % size
    return tuple(t.index_select(0, index) for t in support)


class MetaLearner(ABC):
    """Shared surface of all algorithms; subclasses differ in step size and outer rule."""

    inner_steps: int
    eval_inner_steps: int
    rule: SGD | Adam = SGD()
    eval_inner_batch_size: int | None = None  # support examples per meta-test inner step (None: all)

    def init_meta_params(self, params: Params, generator: torch.Generator) -> MetaParams:
        """Meta-parameters as leaf tensors that require grad, starting at ``params``."""
        return {"theta": {k: p.detach().clone().requires_grad_() for k, p in params.items()}}

    def step_size(self, meta_params: MetaParams) -> StepSize:
        """α for the inner rule: a float, or Meta-SGD's learned tree."""
        return self.inner_lr

    def adaptation_path(
        self, meta_params: MetaParams, support: Batch, loss: LossFn, steps: int
    ) -> list[Params]:
        """θ_0 … θ_steps for one task (inner rule state carried across the steps)."""
        params, state = meta_params["theta"], None
        path = [params]
        for step in range(steps):
            params, state = adapt_with_state(
                params, minibatch(support, step, self.eval_inner_batch_size), loss=loss,
                inner_lr=self.step_size(meta_params),
                inner_steps=1, first_order=True, rule=self.rule, state=state,
            )
            path.append(params)
        return path

    @abstractmethod
    def meta_gradient(
        self, meta_params: MetaParams, tasks: Any, loss: LossFn, *, vectorize: bool = True
    ) -> tuple[MetaParams, Tensor]:
        """(gradient for the meta-optimiser, mean query loss after adaptation) for a meta-batch."""


@gin.configurable
class MAML(MetaLearner):
    """Model-agnostic meta-learning (maml.md Algorithm 2), second order unless ``first_order``.

    Meta-objective (eq. 3 / Algorithm 2 line 10): the mean over the meta-batch of the query
    loss at θ' = U^k(θ; support); its gradient is taken through every inner step, or with
    the inner gradients held constant for first-order MAML (maml.md §5.2, reptile.md eq. 14).

    Args:
        inner_lr: α, the fixed inner step size.
        inner_steps: k inner steps during meta-training.
        eval_inner_steps: inner steps at meta-test time.
        first_order: first-order MAML (FOMAML): no graph through the inner gradients.
    """

    def __init__(self, *, inner_lr: float, inner_steps: int, eval_inner_steps: int, first_order: bool):
        self.inner_lr, self.inner_steps = inner_lr, inner_steps
        self.eval_inner_steps, self.first_order = eval_inner_steps, first_order

    def query_loss(self, meta_params: MetaParams, task: Any, loss: LossFn) -> Tensor:
        """L_query(U^k(θ)) for one task: the term of the meta-objective that task contributes."""
        adapted = adapt(
            meta_params["theta"], task.support, loss=loss, inner_lr=self.step_size(meta_params),
            inner_steps=self.inner_steps, first_order=self.first_order, rule=self.rule,
        )
        return loss(adapted, task.query)

    def meta_gradient(self, meta_params, tasks, loss, *, vectorize=True):
        losses = over_tasks(partial(self.query_loss, loss=loss), meta_params, tasks, vectorize=vectorize)
        meta_loss = losses.mean()
        grads = torch.autograd.grad(meta_loss, meta_leaves(meta_params))
        return _unflatten(meta_params, list(grads)), meta_loss.detach()


@gin.configurable
class MetaSGD(MAML):
    """Meta-SGD (meta-sgd.md Algorithm 1, eq. 3): θ' = θ − α∘∇L, α learned with θ.

    α has one entry per parameter entry, may become negative (the update direction is
    learned too), and is initialised with one value drawn from ``inner_lr_init`` for all
    entries (meta-sgd.md §4.1: U[0.005, 0.1]).

    Args:
        inner_lr_init: range of the single initial value of every entry of α.
        inner_steps: inner steps during meta-training (the paper: 1).
        eval_inner_steps: inner steps at meta-test time.
    """

    def __init__(self, *, inner_lr_init: tuple[float, float], inner_steps: int, eval_inner_steps: int):
        super().__init__(inner_lr=float("nan"), inner_steps=inner_steps,
                         eval_inner_steps=eval_inner_steps, first_order=False)
        self.inner_lr_init = inner_lr_init

    def init_meta_params(self, params, generator):
        low, high = self.inner_lr_init
        value = low + (high - low) * torch.rand((), generator=generator, dtype=torch.float64).item()
        meta = super().init_meta_params(params, generator)
        meta["alpha"] = {k: torch.full_like(p, value).requires_grad_() for k, p in params.items()}
        return meta

    def step_size(self, meta_params):
        return meta_params["alpha"]


@gin.configurable
class Reptile(MetaLearner):
    """Reptile (reptile.md Algorithm 2, batched eq. 5).

    Each task is adapted graph-free for k steps, φ̃ = U^k(φ); the meta-gradient is the
    pseudo-gradient φ − mean(φ̃), so an outer SGD step of size ε gives exactly
    φ ← φ + ε·mean(φ̃ − φ). Another outer optimiser (e.g. Adam) may consume it instead.

    Args:
        inner_lr: α of the inner optimiser.
        inner_steps: k inner steps per task during meta-training.
        eval_inner_steps: inner steps at meta-test time.
        inner_optimizer: ``"sgd"`` or ``"adam"`` (Adam with β1 = 0, reptile.md §6); Adam's
            moments are carried across the inner steps of one task and start from zero for
            every task, so nothing leaks between tasks, or from meta-training to meta-test.
        adam_beta2: β2 of the inner Adam.
        inner_batch_size: support examples per inner step in meta-training, swept cyclically
            (:func:`minibatch`; reptile.md Table 3 "inner batch size"), or ``None`` for all.
            Sample the support sets shuffled (``FewShotTasks.shuffle_support``) so a minibatch
            is not one class.
        eval_inner_batch_size: the same at meta-test time (Table 3 "eval. inner batch size").
    """

    def __init__(self, *, inner_lr: float, inner_steps: int, eval_inner_steps: int,
                 inner_optimizer: str, adam_beta2: float = 0.999, inner_batch_size: int | None = None,
                 eval_inner_batch_size: int | None = None):
        rules = {"sgd": SGD(), "adam": Adam(beta1=0.0, beta2=adam_beta2)}
        if inner_optimizer not in rules:
            raise ValueError(f"Reptile.inner_optimizer must be one of {sorted(rules)}, got {inner_optimizer!r}")
        self.inner_lr, self.inner_steps, self.eval_inner_steps = inner_lr, inner_steps, eval_inner_steps
        self.rule = rules[inner_optimizer]
        self.inner_batch_size, self.eval_inner_batch_size = inner_batch_size, eval_inner_batch_size

    def _adapt_and_score(self, theta: Params, task: Any, loss: LossFn) -> tuple[Params, Tensor]:
        if self.inner_batch_size is None:
            adapted = adapt(theta, task.support, loss=loss, inner_lr=self.inner_lr,
                            inner_steps=self.inner_steps, first_order=True, rule=self.rule)
        else:
            adapted, state = theta, None
            for step in range(self.inner_steps):
                adapted, state = adapt_with_state(
                    adapted, minibatch(task.support, step, self.inner_batch_size), loss=loss,
                    inner_lr=self.inner_lr, inner_steps=1, first_order=True, rule=self.rule, state=state)
        return adapted, loss(adapted, task.query)

    def meta_gradient(self, meta_params, tasks, loss, *, vectorize=True):
        theta = {k: p.detach() for k, p in meta_params["theta"].items()}
        adapted, losses = over_tasks(partial(self._adapt_and_score, loss=loss), theta, tasks,
                                     vectorize=vectorize)
        pseudo = {k: theta[k] - adapted[k].mean(dim=0) for k in theta}
        return {"theta": pseudo}, losses.mean().detach()
