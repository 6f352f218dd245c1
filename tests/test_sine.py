"""Sine task distributions and the fixed meta-test sets."""

import math

import pytest
import torch

from metalearning.tasks.sine import SineTasks
from metalearning.tasks.sine_testset import as_tasks, build_meta_test_set


def test_samples_respect_the_configured_ranges():
    tasks = SineTasks(support_size=5, query_size=10, frequency=(0.8, 1.2), phase=(0.0, math.pi))
    gen = torch.Generator().manual_seed(0)
    curves = tasks.curves(2000, gen)
    assert curves.amplitude.min() >= 0.1 and curves.amplitude.max() <= 5.0
    assert curves.frequency.min() >= 0.8 and curves.frequency.max() <= 1.2
    assert curves.phase.min() >= 0 and curves.phase.max() <= math.pi
    batch = tasks.sample(4, gen)
    assert batch.support[0].shape == (4, 5, 1) and batch.query[0].shape == (4, 10, 1)
    assert batch.support[0].abs().max() <= 5.0


def test_targets_are_the_sine_of_the_inputs():
    tasks = SineTasks(support_size=3, query_size=3, frequency=(0.8, 1.2))
    gen = torch.Generator().manual_seed(0)
    curves = tasks.curves(2, gen)
    x = tasks.inputs(2, 3, gen)
    a, w, b = (t.view(2, 1, 1) for t in curves)
    expected = a * torch.sin(w * x + b)
    torch.testing.assert_close(curves(x), expected)


def test_query_grid_is_evenly_spaced_over_the_range():
    tasks = SineTasks(support_size=10, query_size=50, query_grid=True, phase=(0.0, 2 * math.pi))
    xq = tasks.sample(2, torch.Generator().manual_seed(0)).query[0]
    torch.testing.assert_close(xq[0, :, 0], torch.linspace(-5, 5, 50))
    assert torch.equal(xq[0], xq[1])


def test_meta_test_set_is_deterministic_and_shares_curves_across_shots():
    tasks = SineTasks(support_size=20, query_size=100, query_grid=True, frequency=(0.8, 1.2))
    a = build_meta_test_set(tasks, shots=[5, 10], curves=6, repeats=4, seed=7)
    b = build_meta_test_set(tasks, shots=[5, 10], curves=6, repeats=4, seed=7)
    c = build_meta_test_set(tasks, shots=[5, 10], curves=6, repeats=4, seed=8)
    for k in (5, 10):
        for name, t in a["shots"][k].items():
            assert torch.equal(t, b["shots"][k][name])
    assert not torch.equal(a["shots"][5]["curves"], c["shots"][5]["curves"])
    assert torch.equal(a["shots"][5]["curves"], a["shots"][10]["curves"])
    assert a["shots"][10]["support_x"].shape == (6, 4, 10, 1)


def test_as_tasks_flattens_curves_and_repeats():
    tasks = SineTasks(support_size=5, query_size=100, query_grid=True)
    block = build_meta_test_set(tasks, shots=[5], curves=3, repeats=2, seed=0)["shots"][5]
    flat = as_tasks(block)
    assert flat.support[0].shape == (6, 5, 1) and flat.query[0].shape == (6, 100, 1)
    # task 3 is curve 1, draw 1: its query targets are curve 1's
    torch.testing.assert_close(flat.query[1][3], block["query_y"][1].float())
    torch.testing.assert_close(flat.support[0][3], block["support_x"][1, 1].float())


@pytest.mark.parametrize("sizes", [(1,), ()])
def test_mlp_rejects_degenerate_sizes(sizes):
    from metalearning.learners.mlp import MLP

    with pytest.raises(ValueError, match="MLP.sizes"):
        MLP(sizes)


def test_mlp_truncated_normal_init():
    from metalearning.learners.mlp import MLP

    torch.manual_seed(0)
    model = MLP((1, 40, 40, 1), "relu", weight_std=0.01)
    weights = model[2].weight
    assert weights.abs().max() <= 0.02 and 0.007 < weights.std() < 0.011
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in model if hasattr(m, "bias"))


def test_support_grid_is_the_grid_in_a_random_order_per_task():
    tasks = SineTasks(support_size=50, query_size=50, query_grid=True, support_grid=True, phase=(0.0, 2 * math.pi))
    batch = tasks.sample(3, torch.Generator().manual_seed(0), torch.float64)
    xs = batch.support[0][..., 0]
    grid = torch.linspace(-5.0, 5.0, 50, dtype=torch.float64)
    for x in xs:
        assert torch.equal(x.sort().values, grid)  # every grid point once
    assert not torch.equal(xs[0], xs[1]) and not torch.equal(xs[0], grid)  # each task its own order


def test_reptile_demo_inner_epoch_visits_each_grid_point_once():
    """reptile_sine.gin: 5 inner steps on minibatches of 10 of the shuffled 50-point grid are one
    epoch over the task's grid, as the authors' demonstration trains."""
    from metalearning.config import load_config
    from metalearning.core.algorithms import minibatch
    from metalearning.training import MetaTrainer

    from .conftest import REPO

    load_config([REPO / "configs" / "experiments" / "reptile_sine.gin"], [])
    trainer = MetaTrainer()
    algo, tasks = trainer.algorithm, trainer.tasks
    support = tasks.sample(1, torch.Generator().manual_seed(0)).support
    one = (support[0][0], support[1][0])
    seen = torch.cat([minibatch(one, step, algo.inner_batch_size)[0][:, 0] for step in range(algo.inner_steps)])
    assert algo.inner_batch_size == 10 and algo.inner_steps == 5 and algo.eval_inner_batch_size is None
    assert torch.equal(seen.sort().values, torch.linspace(-5.0, 5.0, 50, dtype=torch.float64).float())
