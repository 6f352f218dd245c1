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
from typing import Any, Collection, Iterator, Mapping

import gin
import torch
from torch import Tensor

from metalearning.core.adapt import (
    SGD,
    Adam,
    AdamState,
    Batch,
    LossFn,
    Params,
    StepSizes,
    Support,
    adapt_with_state,
    inner_loop,
)
from metalearning.core.batching import num_tasks, over_tasks, task_at
from metalearning.core.checks import check_args

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
    index = (torch.arange(batch_size, device=support[0].device) + step * batch_size) % size
    return tuple(t.index_select(0, index) for t in support)


def algorithm_label(configurable: str, first_order: bool = False) -> str:
    """The name results are labelled with: the algorithm's configurable name, except MAML with
    ``first_order`` (FOMAML, one core with a flag: STYLE P2) and MAML++. The one place that names
    an algorithm, for built objects (:attr:`MetaLearner.label`) and for recorded gin configs."""
    if configurable == "MAML" and first_order:
        return "FOMAML"
    return LABELS.get(configurable, configurable)


LABELS = {"MAMLPlusPlus": "MAML++"}


def method_label(algorithm: MetaLearner) -> str:
    """The name a result of ``algorithm`` is reported under: ``"pretrained"`` when it trains without
    inner steps (maml.md's baseline "pretraining on all of the tasks", fine-tuned at meta-test by
    its inner rule), else :attr:`MetaLearner.label`."""
    return "pretrained" if getattr(algorithm, "inner_steps", None) == 0 else algorithm.label


def scale_step_size(inner_lr: StepSizes, scale: float) -> StepSizes:
    """``scale · α`` for a float α, Meta-SGD's α tree, or a sequence of one α per step."""
    if scale == 1.0:
        return inner_lr
    if isinstance(inner_lr, (list, tuple)):
        return [scale_step_size(a, scale) for a in inner_lr]
    if isinstance(inner_lr, Mapping):
        return {k: scale * a for k, a in inner_lr.items()}
    return scale * inner_lr


class MetaLearner(ABC):
    """Shared surface of all algorithms; subclasses differ in step size and outer rule.

    Every task family drives an algorithm only through :meth:`adapt`/:meth:`inner_path`
    (the inner loop), :meth:`adaptation_path` (meta-test) and :meth:`meta_gradient` (the outer
    rule of gradient-based meta-optimisers); :meth:`unsupported` refuses a family it cannot serve.
    """

    inner_steps: int
    eval_inner_steps: int
    first_order: bool = True  # the meta-gradient ignores the inner loop's second-order terms
    rule: SGD | Adam = SGD()
    inner_batch_size: int | None = None  # support examples per meta-training inner step (None: all)
    eval_inner_batch_size: int | None = None  # support examples per meta-test inner step (None: all)

    @property
    def label(self) -> str:
        """The name reports and run queries give this algorithm (:func:`algorithm_label`)."""
        return algorithm_label(type(self).__name__, self.first_order)

    def unsupported(self, family: str) -> str | None:
        """Why this algorithm cannot meta-train on task family ``family`` (``"rl"``, ...), or None."""
        return None

    @property
    def carries_state(self) -> bool:
        """Whether meta-training carries state from task to task (Reptile's persistent inner-Adam
        moments): the tasks of a meta-batch then run one after another, in one process."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """What meta-training carries from one meta-iteration to the next besides the
        meta-parameters (checkpointed with them); none by default."""
        return {}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; an empty mapping starts afresh."""

    def init_meta_params(self, params: Params, generator: torch.Generator) -> MetaParams:
        """Meta-parameters as leaf tensors that require grad, starting at ``params``."""
        return {"theta": {k: p.detach().clone().requires_grad_() for k, p in params.items()}}

    def step_size(self, meta_params: MetaParams) -> StepSizes:
        """α for the inner rule: a float, Meta-SGD's learned tree, or one of those per step."""
        return self.inner_lr

    def adapted_names(self, params: Params) -> Collection[str] | None:
        """The parameters the inner loop changes (``None``: all of them; ANIL: the head's)."""
        return None

    def inner_path(self, meta_params: MetaParams, support: Support, loss: LossFn, steps: int, *,
                   first_order: bool, batch_size: int | None = None, lr_scale: float = 1.0,
                   start: Params | None = None) -> Iterator[Params]:
        """θ_1 … θ_steps for one task, the inner rule's state carried across the steps.

        Args:
            support: the task's support batch (step i trains on :func:`minibatch` i of it), or a
                function ``step -> batch`` (meta-RL: each step's own episodes).
            first_order: no graph through the inner gradients.
            batch_size: support examples per step (:func:`minibatch`); None: all.
            lr_scale: multiplies α (maml.md A.2 halves it after the first meta-test PG step).
            start: the parameters to adapt from (default: θ of ``meta_params``).
        """
        params = meta_params["theta"] if start is None else start
        batches = support if callable(support) else partial(minibatch, support, batch_size=batch_size)
        for adapted, _ in inner_loop(
            params, batches, loss=loss, inner_lr=scale_step_size(self.step_size(meta_params), lr_scale),
            inner_steps=steps, first_order=first_order, rule=self.rule, only=self.adapted_names(params),
        ):
            yield adapted

    def adapt(self, meta_params: MetaParams, support: Support, loss: LossFn, steps: int, *, first_order: bool,
              batch_size: int | None = None, lr_scale: float = 1.0, start: Params | None = None) -> Params:
        """θ after ``steps`` inner steps (:meth:`inner_path`'s last element; the start for 0 steps)."""
        adapted = meta_params["theta"] if start is None else start
        for adapted in self.inner_path(meta_params, support, loss, steps, first_order=first_order,
                                       batch_size=batch_size, lr_scale=lr_scale, start=start):
            pass
        return adapted

    def adaptation_path(
        self, meta_params: MetaParams, support: Batch, loss: LossFn, steps: int
    ) -> list[Params]:
        """θ_0 … θ_steps for one task at meta-test time (no graph through the inner gradients)."""
        path = self.inner_path(meta_params, support, loss, steps, first_order=True,
                               batch_size=self.eval_inner_batch_size)
        return [meta_params["theta"], *path]

    @abstractmethod
    def meta_gradient(
        self, meta_params: MetaParams, tasks: Any, loss: LossFn, *, iteration: int = 0, vectorize: bool = True
    ) -> tuple[MetaParams, Tensor]:
        """(gradient for the meta-optimiser, mean query loss after adaptation) for a meta-batch.

        ``iteration`` (0-based, the meta-iteration this gradient is for) lets an algorithm
        schedule its objective (MAML++'s loss weights and derivative order).
        """


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
        check_args(type(self).__name__, inner_lr=(inner_lr, float, None), inner_steps=(inner_steps, int, 0),
                   eval_inner_steps=(eval_inner_steps, int, 0))
        self.inner_lr, self.inner_steps = inner_lr, inner_steps
        self.eval_inner_steps, self.first_order = eval_inner_steps, first_order

    def query_loss(self, meta_params: MetaParams, task: Any, loss: LossFn, iteration: int = 0) -> Tensor:
        """L_query(U^k(θ)) for one task: the term of the meta-objective that task contributes."""
        adapted = self.adapt(meta_params, task.support, loss, self.inner_steps, first_order=self.first_order)
        return loss(adapted, task.query)

    def meta_gradient(self, meta_params, tasks, loss, *, iteration=0, vectorize=True):
        losses = over_tasks(partial(self.query_loss, loss=loss, iteration=iteration), meta_params, tasks,
                            vectorize=vectorize)
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
        if not (isinstance(inner_lr_init, (tuple, list)) and len(inner_lr_init) == 2):
            raise ValueError(f"MetaSGD.inner_lr_init must be a (low, high) pair, got {inner_lr_init!r}")
        check_args("MetaSGD", inner_steps=(inner_steps, int, 0), eval_inner_steps=(eval_inner_steps, int, 0),
                   inner_lr_init_low=(inner_lr_init[0], float, None),
                   inner_lr_init_high=(inner_lr_init[1], float, None))
        # MAML's fields without its fixed α (Meta-SGD's α is a meta-parameter: step_size below)
        self.inner_lr, self.inner_steps, self.eval_inner_steps, self.first_order = (
            float("nan"), inner_steps, eval_inner_steps, False)
        self.inner_lr_init = tuple(inner_lr_init)

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
        persistent_moments: carry the inner Adam's moments and step count from task to task
            through meta-training, as the paper's code does (reptile.md §6: "we never reset or
            interpolated Adam's rolling moment data"): the tasks of a meta-batch adapt one after
            another, each starting from the state the previous one left. Meta-test and
            validation adaptation still start from fresh moments (nothing leaks from training).
            Off: the moments start from zero for every task, and the tasks run vectorised.
    """

    def __init__(self, *, inner_lr: float, inner_steps: int, eval_inner_steps: int,
                 inner_optimizer: str, adam_beta2: float = 0.999, inner_batch_size: int | None = None,
                 eval_inner_batch_size: int | None = None, persistent_moments: bool = False):
        check_args("Reptile", inner_lr=(inner_lr, float, None), inner_steps=(inner_steps, int, 0),
                   eval_inner_steps=(eval_inner_steps, int, 0), adam_beta2=(adam_beta2, float, 0))
        for name, size in (("inner_batch_size", inner_batch_size), ("eval_inner_batch_size", eval_inner_batch_size)):
            if size is not None:
                check_args("Reptile", **{name: (size, int, 1)})
        rules = {"sgd": SGD(), "adam": Adam(beta1=0.0, beta2=adam_beta2)}
        if inner_optimizer not in rules:
            raise ValueError(f"Reptile.inner_optimizer must be one of {sorted(rules)}, got {inner_optimizer!r}")
        self.inner_lr, self.inner_steps, self.eval_inner_steps = inner_lr, inner_steps, eval_inner_steps
        self.rule = rules[inner_optimizer]
        self.inner_batch_size, self.eval_inner_batch_size = inner_batch_size, eval_inner_batch_size
        if persistent_moments and inner_optimizer != "adam":
            raise ValueError(f"Reptile.persistent_moments needs inner_optimizer = 'adam' (got {inner_optimizer!r}): "
                             "plain SGD has no moments to carry")
        self.persistent_moments = bool(persistent_moments)
        self._moments: AdamState | None = None  # meta-training's carried inner-Adam state

    @property
    def carries_state(self) -> bool:
        return self.persistent_moments

    def state_dict(self) -> dict[str, Any]:
        if self._moments is None:
            return {}
        m, v, t = self._moments
        return {"adam_moments": {"m": {k: x.clone() for k, x in m.items()}, "v": {k: x.clone() for k, x in v.items()},
                                 "t": t}}

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        moments = saved.get("adam_moments")
        self._moments = None if moments is None else AdamState(
            m={k: x.clone() for k, x in moments["m"].items()}, v={k: x.clone() for k, x in moments["v"].items()},
            t=int(moments["t"]))

    def unsupported(self, family: str) -> str | None:
        if family == "rl":
            return ("Reptile has no meta-RL form here: its pseudo-gradient needs the adapted policy's own "
                    "episodes at every inner step, and TRPO needs a differentiable objective")
        return None

    def _adapt_and_score(self, theta: Params, task: Any, loss: LossFn) -> tuple[Params, Tensor]:
        adapted = self.adapt({"theta": theta}, task.support, loss, self.inner_steps, first_order=True,
                             batch_size=self.inner_batch_size)
        return adapted, loss(adapted, task.query)

    def _sequential_with_moments(self, theta: Params, tasks: Any, loss: LossFn) -> tuple[Params, Tensor]:
        """Adapt the tasks one after another, the inner Adam's state carried through all of them."""
        adapted_all, losses, state = [], [], self._moments
        for i in range(num_tasks(tasks)):
            task = task_at(tasks, i)
            batches = partial(minibatch, task.support, batch_size=self.inner_batch_size)
            adapted, state = adapt_with_state(theta, batches, loss=loss, inner_lr=self.inner_lr,
                                              inner_steps=self.inner_steps, first_order=True, rule=self.rule,
                                              state=state)
            adapted_all.append(adapted)
            losses.append(loss(adapted, task.query))
        if state is not None:
            self._moments = AdamState(m={k: x.detach() for k, x in state.m.items()},
                                      v={k: x.detach() for k, x in state.v.items()}, t=state.t)
        stacked = {k: torch.stack([a[k] for a in adapted_all]) for k in theta}
        return stacked, torch.stack(losses)

    def meta_gradient(self, meta_params, tasks, loss, *, iteration=0, vectorize=True):
        theta = {k: p.detach() for k, p in meta_params["theta"].items()}
        if self.persistent_moments:
            adapted, losses = self._sequential_with_moments(theta, tasks, loss)
        else:
            adapted, losses = over_tasks(partial(self._adapt_and_score, loss=loss), theta, tasks,
                                         vectorize=vectorize)
        pseudo = {k: theta[k] - adapted[k].mean(dim=0) for k in theta}
        return {"theta": pseudo}, losses.mean().detach()
