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


@pytest.fixture(autouse=True)
def _fresh_gin_config():
    """gin bindings are process-global: a config loaded by one test (e.g. `Reptile.inner_batch_size`
    from an Omniglot experiment) must not reach configurables another test builds by hand."""
    import gin

    gin.clear_config()
    yield


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


def fake_omniglot(directory: Path, characters: int = 40) -> list[str]:
    """A random Omniglot-format array file and split in ``directory``; the gin bindings that use them."""
    from metalearning.data.omniglot import write_synthetic

    return write_synthetic(directory, characters)


def fake_miniimagenet(directory: Path, classes: int = 8, per_class: int = 20) -> list[str]:
    """Random MiniImagenet-format split files (84×84 RGB) in ``directory``; the bindings that use them."""
    import numpy as np

    from metalearning.data.arrays import save_arrays

    rng = np.random.default_rng(1)
    bindings = []
    for split in ("meta_train", "meta_test"):
        path = directory / f"miniimagenet_{split}.npz"
        save_arrays(path, {"images": rng.integers(0, 256, (classes, per_class, 84, 84, 3), dtype=np.uint8),
                           "labels": np.array([f"n{split}{c:03d}" for c in range(classes)])}, compress=False)
        bindings.append(f"{split}/miniimagenet_classes.data_file = '{path}'")
    return bindings
