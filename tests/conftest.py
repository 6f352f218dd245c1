"""Shared fixtures: small float64 learners and sine meta-batches."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from metalearning.core.functional import make_loss
from metalearning.learners.mlp import MLP
from metalearning.tasks.sine import SineTasks

REPO = Path(__file__).resolve().parents[1]

# The learners here are tiny: one thread avoids oversubscription when the CI machine's two
# cores are shared with subprocesses (DVC stages, the CLI) and makes timings steadier.
torch.set_num_threads(1)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return MLP((1, 8, 8, 1), "tanh").double()


@pytest.fixture
def small_loss(small_model):
    return make_loss(small_model, torch.nn.functional.mse_loss)


@pytest.fixture
def sine_batch():
    """Three float64 5-shot sine tasks with 7 query points each."""
    return SineTasks(support_size=5, query_size=7).sample(3, torch.Generator().manual_seed(1), torch.float64)
