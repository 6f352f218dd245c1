"""ANIL, "Almost No Inner Loop" (Raghu et al. 2020, "Rapid Learning or Feature Reuse?"): MAML whose
inner loop adapts only the head (STYLE P2: one core, a different set of adapted parameters)."""

from __future__ import annotations

from typing import Collection, Sequence

import gin

from metalearning.core.adapt import Params
from metalearning.core.algorithms import MAML


def matching_names(names: Collection[str], prefixes: Sequence[str], binding: str) -> frozenset[str]:
    """The parameter names under any of ``prefixes``: the name itself or a dotted module path above it
    (``"head.2"`` selects ``head.2.weight`` and ``head.2.bias``; ``"4"`` does not select ``40.bias``).

    Raises:
        ValueError: a prefix selects no parameter (a typo, or a binding written for another
            learner); the message names ``binding`` and lists the learner's parameter names.
    """
    chosen = set()
    for prefix in prefixes:
        hits = {n for n in names if n == prefix or n.startswith(prefix + ".")}
        if not hits:
            raise ValueError(f"{binding}: {prefix!r} matches no parameter of the learner; its parameters are "
                             f"{', '.join(names)}")
        chosen |= hits
    return frozenset(chosen)


@gin.configurable
class ANIL(MAML):
    """ANIL (Raghu et al. 2020): the inner loop updates only the head w; the body φ is shared.

    Inner loop, for every step i (MAML's eq. 1 restricted to the head)::

        φ'_i = φ,    w_{i+1} = w_i − α ∇_w L_support(φ, w_i)

    Meta-objective as MAML's (maml.md eq. 3): the task-mean of L_query(φ, w_k). Its gradient
    reaches the body both directly and through the adapted head w_k(φ, w), second order unless
    ``first_order`` (then the inner gradients are constants, and the body's gradient is the
    query gradient at (φ, w_k)). At meta-test too only the head is adapted. Meta-RL families get
    the same restriction through :meth:`MetaLearner.adapt`.

    Args:
        inner_lr: α, the head's inner step size.
        inner_steps: k inner steps during meta-training.
        eval_inner_steps: inner steps at meta-test time.
        first_order: drop the second-order terms (first-order ANIL).
        inner_params: the parameters the inner loop adapts, as names or dotted module prefixes of
            the learner's ``named_parameters`` — the sine MLP ``(1, 40, 40, 1)``: ``("4",)``; the
            strided Omniglot Conv4 (``reduce="mean"``): ``("head.2",)``; the max-pooled Conv4
            without hidden layer: ``("head.1",)``; the RL policy: ``("mean.4",)``. Every entry
            must select at least one parameter.
    """

    def __init__(self, *, inner_lr: float, inner_steps: int, eval_inner_steps: int, first_order: bool,
                 inner_params: Sequence[str]):
        super().__init__(inner_lr=inner_lr, inner_steps=inner_steps, eval_inner_steps=eval_inner_steps,
                         first_order=first_order)
        inner_params = (inner_params,) if isinstance(inner_params, str) else tuple(inner_params)
        if not inner_params:
            raise ValueError("ANIL.inner_params must name the head's parameters (e.g. ('head.2',)), got ()")
        self.inner_params = inner_params

    def init_meta_params(self, params, generator):
        self.adapted_names(params)  # a binding that selects nothing fails before training starts
        return super().init_meta_params(params, generator)

    def adapted_names(self, params: Params) -> frozenset[str]:
        return matching_names(list(params), self.inner_params, "ANIL.inner_params")
