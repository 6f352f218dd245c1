"""Glue between ``nn.Module`` learners and the functional core."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from metalearning.core.adapt import Batch, LossFn, Params

Predict = Callable[[Params, Batch], Tensor]


def predictor(model: nn.Module) -> Predict:
    """``predict(params, batch)``: ``model(batch[0])`` with ``params`` substituted; the rest of
    the batch (targets, context) is not read."""

    def predict(params: Params, batch: Batch) -> Tensor:
        return torch.func.functional_call(model, params, (batch[0],))

    return predict


def make_loss(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """``loss(params, (inputs, targets, ...))`` evaluating ``model`` functionally with ``params``;
    elements after the targets (a query batch's context) are not read."""

    def loss(params: Params, batch: Batch) -> Tensor:
        return criterion(torch.func.functional_call(model, params, (batch[0],)), batch[1])

    return loss
