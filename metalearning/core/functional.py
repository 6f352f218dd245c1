"""Glue between ``nn.Module`` learners and the functional core."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from metalearning.core.adapt import Batch, LossFn, Params


def make_loss(model: nn.Module, criterion: Callable[[Tensor, Tensor], Tensor]) -> LossFn:
    """``loss(params, (inputs, targets))`` evaluating ``model`` functionally with ``params``."""

    def loss(params: Params, batch: Batch) -> Tensor:
        inputs, targets = batch
        return criterion(torch.func.functional_call(model, params, (inputs,)), targets)

    return loss


def predict(model: nn.Module, params: Params, inputs: Tensor) -> Tensor:
    """``model(inputs)`` with ``params`` substituted for the module's own parameters."""
    return torch.func.functional_call(model, params, (inputs,))


def clone_params(params: Params) -> Params:
    """Detached copies, e.g. to snapshot meta-parameters."""
    return {k: p.detach().clone() for k, p in params.items()}
