"""Sine-wave regression tasks: y = A sin(ωx + b) (maml.md §5.1, meta-sgd.md §4.1, reptile.md §4)."""

from __future__ import annotations

import math
from typing import NamedTuple

import gin
import torch
import torch.nn.functional as F
from torch import Tensor

from metalearning.core.checks import check_args
from metalearning.core.task import Task
from metalearning.tasks.supervised import SupervisedFamily


class SineCurves(NamedTuple):
    """Curve parameters, each shaped ``[tasks]``."""

    amplitude: Tensor
    frequency: Tensor
    phase: Tensor

    def __call__(self, x: Tensor) -> Tensor:
        """Evaluate each curve at its own inputs ``x``, shaped ``[tasks, points, 1]``."""
        shape = (-1,) + (1,) * (x.dim() - 1)
        return self.amplitude.view(shape) * torch.sin(
            self.frequency.view(shape) * x + self.phase.view(shape)
        )


def _uniform(low: float, high: float, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)


@gin.configurable
class SineTasks(SupervisedFamily):
    """The task family p(T) of sine regression.

    Args:
        amplitude: range of A (papers: [0.1, 5.0]).
        phase: range of b (MAML/Meta-SGD: [0, π]; Reptile: [0, 2π]).
        frequency: range of ω (Meta-SGD: [0.8, 1.2]; MAML and Reptile: ω = 1).
        x_range: input interval (papers: [−5, 5]).
        support_size: K, points the learner adapts on, drawn uniformly from ``x_range``.
        query_size: points the adapted learner is scored on (training: 10).
        query_grid: if true, query inputs are ``query_size`` equally spaced points on
            ``x_range`` (reptile.md eq. 8 with 50 points; Meta-SGD's meta-test with 100).
        support_grid: if true, support inputs are ``support_size`` equally spaced points on
            ``x_range`` in a random order per task: the Reptile authors' sine demonstration trains
            each task on minibatches of 10 of the 50 grid points (``Reptile.inner_batch_size``).
    """

    kind = "sine"
    criterion = staticmethod(F.mse_loss)
    metrics = {"mse": F.mse_loss}  # logged on validation tasks while training

    def __init__(
        self,
        *,
        support_size: int,
        query_size: int,
        amplitude: tuple[float, float] = (0.1, 5.0),
        phase: tuple[float, float] = (0.0, math.pi),
        frequency: tuple[float, float] = (1.0, 1.0),
        x_range: tuple[float, float] = (-5.0, 5.0),
        query_grid: bool = False,
        support_grid: bool = False,
    ):
        check_args("SineTasks", support_size=(support_size, int, 1), query_size=(query_size, int, 1))
        self.support_size, self.query_size, self.query_grid = support_size, query_size, query_grid
        self.support_grid = support_grid
        self.amplitude, self.phase, self.frequency, self.x_range = amplitude, phase, frequency, x_range

    def curves(self, n: int, generator: torch.Generator) -> SineCurves:
        """Draw ``n`` curves from p(T)."""
        return SineCurves(
            amplitude=_uniform(*self.amplitude, (n,), generator),
            frequency=_uniform(*self.frequency, (n,), generator),
            phase=_uniform(*self.phase, (n,), generator),
        )

    def inputs(self, n: int, points: int, generator: torch.Generator) -> Tensor:
        """``[n, points, 1]`` inputs drawn uniformly from ``x_range``."""
        return _uniform(*self.x_range, (n, points, 1), generator)

    def grid(self, n: int, points: int) -> Tensor:
        """``[n, points, 1]`` equally spaced inputs over ``x_range``."""
        x = torch.linspace(*self.x_range, points, dtype=torch.float64)
        return x.view(1, points, 1).expand(n, points, 1).clone()

    def sample(self, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Task:
        """A meta-batch of ``n`` tasks with fresh support and query points."""
        curves = self.curves(n, generator)
        if self.support_grid:  # the grid, each task's points in their own random order
            order = torch.argsort(torch.rand(n, self.support_size, generator=generator, dtype=torch.float64), dim=1)
            xs = torch.gather(self.grid(n, self.support_size), 1, order.unsqueeze(-1))
        else:
            xs = self.inputs(n, self.support_size, generator)
        if self.query_grid:
            xq = self.grid(n, self.query_size)
        else:
            xq = self.inputs(n, self.query_size, generator)
        return Task(
            support=(xs.to(dtype), curves(xs).to(dtype)),
            query=(xq.to(dtype), curves(xq).to(dtype)),
        )

    def meta_test(self, model, test_set):
        from metalearning.tasks.sine_metatest import meta_test

        return meta_test(model, test_set)

    def describe(self, model):
        from metalearning.tasks.sine_metatest import describe

        return describe(model)
