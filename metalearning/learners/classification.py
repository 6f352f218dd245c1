"""Classification losses for batch-norm learners: transductive or non-transductive query BN.

The learners of :mod:`metalearning.learners.conv` normalise with the statistics of whatever
batch they are given, so *which batch* a query example is evaluated in is part of the loss
(reptile.md §6):

* ``"transductive"`` — the whole query set is one batch and shares its statistics (MAML's
  evaluation; Finn et al. use transduction).
* ``"non_transductive"`` — each query example is normalised with the statistics of the task's
  support set plus that one example, so its prediction does not depend on the other queries.

Batch layout. A batch is ``(inputs, targets)`` or ``(inputs, targets, context)``:

* ``inputs`` ``[B, C, H, W]`` (or ``[B, F]``), ``targets`` int64 ``[B]``;
* ``context`` ``[S, C, H, W]``: the support inputs of the same task. Only a non-transductive
  loss reads it; a transductive one ignores it, so one set of tasks serves both modes.

The support loss of the inner steps is an ordinary ``(inputs, targets)`` batch: the support set
is normalised by its own statistics in both modes. :func:`with_context` turns a :class:`Task`
into ``Task(support=(xs, ys), query=(xq, yq, xs))``; since every leaf keeps the task dimension,
the algorithms of :mod:`metalearning.core.algorithms` run on it unchanged under ``vmap``.
Note: in ``"non_transductive"`` mode a query batch *without* context is normalised with its
own statistics; call :func:`with_context` on query sets.
"""

from __future__ import annotations

import gin
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearning.core.adapt import Batch, LossFn, Params
from metalearning.data.episodes import accuracy, with_context

__all__ = ["BN_MODES", "accuracy", "classification_predictor", "make_classification_loss", "predict_logits",
           "with_context"]

BN_MODES = ("transductive", "non_transductive")


def _check_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")


def _logits_with_context(model: nn.Module, params: Params, inputs: Tensor, context: Tensor) -> Tensor:
    """logits_i = model(cat(context, inputs[i:i+1]))[-1] for every i, vectorised with vmap.

    Args:
        inputs: ``[B, ...]`` query inputs; context: ``[S, ...]`` support inputs.

    Returns:
        ``[B, ways]``; row i saw batch statistics of the ``S + 1`` examples context ∪ {x_i}.
    """

    def one(x: Tensor) -> Tensor:
        batch = torch.cat([context, x.unsqueeze(0)])
        return torch.func.functional_call(model, params, (batch,))[-1]

    return torch.func.vmap(one)(inputs)


def predict_logits(model: nn.Module, params: Params, batch: Batch, bn_mode: str) -> Tensor:
    """Logits ``[B, ways]`` for ``batch[0]`` under ``bn_mode`` (see the module docstring).

    A ``(inputs, targets)`` batch, or any batch in ``"transductive"`` mode, is one forward of
    ``model`` on ``inputs``; a ``(inputs, targets, context)`` batch in ``"non_transductive"`` mode
    normalises each example with the statistics of ``context`` plus that example.
    """
    _check_mode(bn_mode)
    if bn_mode == "non_transductive" and len(batch) == 3:
        return _logits_with_context(model, params, batch[0], batch[2])
    return torch.func.functional_call(model, params, (batch[0],))


@gin.configurable("classification_predictor")
class ClassificationPredictor:
    """``predict(params, batch)`` → logits under ``bn_mode`` (:func:`predict_logits`); the
    ``MetaTrainer.predictor`` of batch-norm classifiers (gin: ``@classification_predictor``).

    Args:
        model: a learner with stateless batch norm.
        bn_mode: ``"transductive"`` or ``"non_transductive"`` (reptile.md §6); reports and the
            adapt command read it back as an attribute.
    """

    def __init__(self, model: nn.Module, bn_mode: str):
        _check_mode(bn_mode)
        self.model, self.bn_mode = model, bn_mode

    def __call__(self, params: Params, batch: Batch) -> Tensor:
        return predict_logits(self.model, params, batch, self.bn_mode)


classification_predictor = ClassificationPredictor


def make_classification_loss(model: nn.Module, bn_mode: str) -> LossFn:
    """``loss(params, batch)``: mean cross-entropy of :func:`predict_logits` against ``batch[1]``.

    Compatible with :func:`metalearning.core.adapt.adapt` (support batches ``(x, y)``) and the
    algorithms' query losses (``(x, y, context)`` batches from :func:`with_context`); the loss
    is maml.md §5.2's cross-entropy between predicted and true class.

    Args:
        model: a learner with stateless batch norm, e.g. :class:`~metalearning.learners.conv.Conv4`.
        bn_mode: ``"transductive"`` or ``"non_transductive"`` (reptile.md §6).
    """
    predict = classification_predictor(model, bn_mode)

    def loss(params: Params, batch: Batch) -> Tensor:
        return F.cross_entropy(predict(params, batch), batch[1])

    return loss
