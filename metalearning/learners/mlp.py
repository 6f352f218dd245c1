"""Fully-connected learners (the sine regressor of maml.md §5.1 / meta-sgd.md §4.1)."""

from __future__ import annotations

from typing import Sequence

import gin
import torch
from torch import nn

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@gin.configurable
class MLP(nn.Sequential):
    """``sizes[0] → … → sizes[-1]`` with an activation between layers, none after the last.

    Args:
        sizes: layer widths including input and output, e.g. ``(1, 40, 40, 1)``.
        activation: ``"relu"`` or ``"tanh"``.
        weight_std: if set, weights are drawn from a normal truncated at ±2 std with this
            standard deviation and biases are zero (the papers' sine regressor: std 0.01);
            if ``None``, PyTorch's default ``nn.Linear`` initialisation is kept.
    """

    def __init__(self, sizes: Sequence[int], activation: str = "relu", weight_std: float | None = None):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"MLP.activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if len(sizes) < 2:
            raise ValueError(f"MLP.sizes needs an input and an output width, got {tuple(sizes)}")
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                layers.append(_ACTIVATIONS[activation]())
            layers.append(nn.Linear(fan_in, fan_out))
        super().__init__(*layers)
        if weight_std is not None:
            self._truncated_normal_init(weight_std)

    @torch.no_grad()
    def _truncated_normal_init(self, std: float) -> None:
        for layer in self:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(layer.bias)
