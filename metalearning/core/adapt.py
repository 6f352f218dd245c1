"""Inner-loop adaptation as a pure function of the parameters (STYLE P1).

Every algorithm in this package adapts a task with :func:`adapt`: ``k`` steps of a
gradient rule applied to a dict of tensors through a functional forward
(``torch.func``), with no module state touched. MAML differentiates through it,
first-order MAML cuts the graph through the inner gradients, Meta-SGD passes a
learned per-parameter step size and Reptile uses it graph-free (optionally with
Adam as the inner rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Collection, Iterator, Mapping, NamedTuple, Sequence, Union

import torch
from torch import Tensor

Params = dict[str, Tensor]
Batch = Any  # a pytree of tensors, e.g. ``(inputs, targets)``
LossFn = Callable[[Params, Batch], Tensor]
StepSize = Union[float, Mapping[str, Tensor]]


def _lr_of(inner_lr: StepSize, name: str) -> float | Tensor:
    """The step size for parameter ``name``: a scalar, or Meta-SGD's per-parameter tensor."""
    return inner_lr[name] if isinstance(inner_lr, Mapping) else inner_lr


@dataclass(frozen=True)
class SGD:
    """Plain gradient descent, ``θ ← θ − α∘g`` (MAML eq. 1; Meta-SGD eq. 3 when α is a tree)."""

    def init(self, params: Params) -> tuple:
        return ()

    def step(self, params: Params, grads: Params, inner_lr: StepSize, state: tuple):
        new = {k: p - _lr_of(inner_lr, k) * grads[k] for k, p in params.items()}
        return new, state


class AdamState(NamedTuple):
    """Adam's moment estimates and step count; lives for one task's inner loop."""

    m: Params
    v: Params
    t: int


@dataclass(frozen=True)
class Adam:
    """Adam as Reptile's inner optimiser (reptile.md §6: β1 = 0, "momentum reduced performance").

    Args:
        beta1: first-moment decay; the paper uses 0.
        beta2: second-moment decay.
        eps: denominator fuzz, as ``torch.optim.Adam``.
    """

    beta1: float = 0.0
    beta2: float = 0.999
    eps: float = 1e-8

    def init(self, params: Params) -> AdamState:
        zeros = {k: torch.zeros_like(p) for k, p in params.items()}
        return AdamState(m=zeros, v=dict(zeros), t=0)

    def step(self, params: Params, grads: Params, inner_lr: StepSize, state: AdamState):
        t = state.t + 1
        m = {k: self.beta1 * state.m[k] + (1 - self.beta1) * g for k, g in grads.items()}
        v = {k: self.beta2 * state.v[k] + (1 - self.beta2) * g * g for k, g in grads.items()}
        bias1, bias2 = 1 - self.beta1**t, 1 - self.beta2**t
        new = {
            k: p - _lr_of(inner_lr, k) * (m[k] / bias1) / ((v[k] / bias2).sqrt() + self.eps)
            for k, p in params.items()
        }
        return new, AdamState(m=m, v=v, t=t)


StepSizes = Union[StepSize, Sequence[StepSize]]
Support = Union[Batch, Callable[[int], Batch]]


def step_size_at(inner_lr: StepSizes, step: int) -> StepSize:
    """α of inner step ``step`` (0-based): one α for every step, or a sequence of one per step
    (MAML++'s per-step learning rates)."""
    if isinstance(inner_lr, (list, tuple)):
        if step >= len(inner_lr):
            raise IndexError(f"inner step {step + 1} has no step size: {len(inner_lr)} given, one per step")
        return inner_lr[step]
    return inner_lr


def inner_loop(
    params: Params,
    support: Support,
    *,
    loss: LossFn,
    inner_lr: StepSizes,
    inner_steps: int,
    first_order: bool,
    rule: SGD | Adam = SGD(),
    state: Any = None,
    only: Collection[str] | None = None,
) -> Iterator[tuple[Params, Any]]:
    """Yield (θ_i, rule state) after each inner step i = 1 … ``inner_steps``; :func:`adapt`'s loop.

    ``support`` is the batch of every step, or a function ``step -> batch`` (Reptile's
    minibatches, meta-RL's fresh episodes per step). ``only`` names the parameters the inner
    loop changes (ANIL: the head); the others enter the loss unchanged and are returned as given.
    ``state=None`` starts the rule afresh, so nothing carries over from another task.
    """
    fast = params if only is None else {k: p for k, p in params.items() if k in only}
    step_loss = loss if only is None else partial(_loss_with_fixed, loss, params)
    state = rule.init(fast) if state is None else state
    for step in range(inner_steps):
        batch = support(step) if callable(support) else support
        grads = torch.func.grad(step_loss)(fast, batch)
        if first_order:
            grads = {k: g.detach() for k, g in grads.items()}
        fast, state = rule.step(fast, grads, step_size_at(inner_lr, step), state)
        yield (fast if only is None else {k: fast.get(k, p) for k, p in params.items()}), state


def _loss_with_fixed(loss: LossFn, params: Params, fast: Params, batch: Batch) -> Tensor:
    return loss({k: fast.get(k, p) for k, p in params.items()}, batch)


def adapt_with_state(
    params: Params,
    support: Support,
    *,
    loss: LossFn,
    inner_lr: StepSizes,
    inner_steps: int,
    first_order: bool,
    rule: SGD | Adam = SGD(),
    state: Any = None,
    only: Collection[str] | None = None,
) -> tuple[Params, Any]:
    """:func:`adapt`, also returning the inner rule's state (Adam moments) after the last step;
    ``state=None`` starts the rule afresh."""
    out = params, state
    for out in inner_loop(params, support, loss=loss, inner_lr=inner_lr, inner_steps=inner_steps,
                          first_order=first_order, rule=rule, state=state, only=only):
        pass
    return out


def adapt(
    params: Params,
    support: Support,
    *,
    loss: LossFn,
    inner_lr: StepSizes,
    inner_steps: int,
    first_order: bool,
    rule: SGD | Adam = SGD(),
    only: Collection[str] | None = None,
) -> Params:
    """Adapt ``params`` to one task by ``inner_steps`` steps of ``rule`` on ``support``.

    With the default SGD rule this is U^k of MAML (maml.md eq. 1, Algorithm 2 line 6):
    ``θ_{i+1} = θ_i − α_i ∘ ∇_θ L(θ_i; support)``. The result stays a differentiable function
    of ``params`` (and of a tensor-valued ``inner_lr``) unless ``first_order`` is set, in
    which case the inner gradients are treated as constants (first-order MAML, and
    Reptile's graph-free inner loop).

    Args:
        params: parameter name -> tensor (a model's ``named_parameters`` or a meta-learned copy).
        support: the batch every inner step is computed on, passed to ``loss`` as is, or a
            function ``step -> batch`` (0-based step).
        loss: ``loss(params, batch) -> scalar``, a functional forward plus criterion.
        inner_lr: α; a float, or a mapping name -> tensor shaped like the parameter (Meta-SGD),
            or a sequence of those, one per step (MAML++).
        inner_steps: k, the number of inner gradient steps.
        first_order: drop the second-order terms (no graph through the inner gradients).
        rule: the inner update rule, :class:`SGD` or :class:`Adam`.
        only: the names of the parameters to adapt (ANIL); ``None``: all.

    Returns:
        The adapted parameters θ' with the same names and shapes as ``params``.
    """
    adapted, _ = adapt_with_state(params, support, loss=loss, inner_lr=inner_lr, inner_steps=inner_steps,
                                  first_order=first_order, rule=rule, only=only)
    return adapted
