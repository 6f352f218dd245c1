"""The meta-batch as a tensor dimension (STYLE P3): vmap == the per-task reference loop.

Property 8 of issue 3, on the project's own sine tasks and MLP learner (through
``metalearning.core.functional.make_loss``), for every algorithm and inner rule.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_reference import flatten

from metalearning.core.algorithms import MAML, MetaSGD, Reptile
from metalearning.core.batching import task_at
from metalearning.core.functional import make_loss
from metalearning.learners.mlp import MLP
from metalearning.tasks.sine import SineTasks

ALGORITHMS = {
    "maml": lambda k, lr: MAML(inner_lr=lr, inner_steps=k, eval_inner_steps=k, first_order=False),
    "fomaml": lambda k, lr: MAML(inner_lr=lr, inner_steps=k, eval_inner_steps=k, first_order=True),
    "meta-sgd": lambda k, lr: MetaSGD(inner_lr_init=(lr / 2, lr), inner_steps=k, eval_inner_steps=k),
    "reptile-sgd": lambda k, lr: Reptile(inner_lr=lr, inner_steps=k, eval_inner_steps=k,
                                         inner_optimizer="sgd"),
    "reptile-adam": lambda k, lr: Reptile(inner_lr=lr, inner_steps=k, eval_inner_steps=k,
                                          inner_optimizer="adam"),
}


@st.composite
def setups(draw):
    """(algorithm factory arguments, meta-params, sine meta-batch, loss) from drawn sizes and seed."""
    k, lr = draw(st.integers(1, 3)), draw(st.floats(1e-3, 0.3))
    num_tasks, hidden = draw(st.integers(1, 4)), draw(st.integers(2, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    with torch.random.fork_rng(devices=[]):  # nn.Linear's own init draws from the global RNG
        model = MLP((1, hidden, hidden, 1), activation="tanh")
    params = {n: 0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
              for n, p in model.named_parameters()}
    tasks = SineTasks(support_size=5, query_size=5).sample(num_tasks, gen, dtype=torch.float64)
    return (k, lr), params, tasks, make_loss(model, F.mse_loss)


def _build(name, setup):
    """The algorithm ``name`` with its meta-parameters, the tasks and the loss of a drawn setup."""
    (k, lr), params, tasks, loss = setup
    algo = ALGORITHMS[name](k, lr)
    return algo, algo.init_meta_params(params, torch.Generator().manual_seed(0)), tasks, loss


def _flat(meta_grads):
    return torch.cat([flatten(group) for group in meta_grads.values()])


@pytest.mark.parametrize("name", ALGORITHMS)
@budget(10)
@given(setup=setups())
def test_vmap_meta_gradient_equals_per_task_loop(name, setup):
    algo, meta, tasks, loss = _build(name, setup)
    vmapped, vmapped_loss = algo.meta_gradient(meta, tasks, loss, vectorize=True)
    looped, looped_loss = algo.meta_gradient(meta, tasks, loss, vectorize=False)
    assert_exact(_flat(vmapped), _flat(looped))
    assert_exact(vmapped_loss, looped_loss)


@pytest.mark.parametrize("name", ALGORITHMS)
@budget(10)
@given(setup=setups())
def test_meta_batch_gradient_is_mean_of_per_task_gradients(name, setup):
    algo, meta, tasks, loss = _build(name, setup)
    batched, _ = algo.meta_gradient(meta, tasks, loss)
    singles = [algo.meta_gradient(meta, _alone(tasks, i), loss)[0] for i in range(len(tasks.support[0]))]
    assert_exact(_flat(batched), torch.stack([_flat(g) for g in singles]).mean(0))


def _alone(tasks, i):
    """Task i as a meta-batch of one (dimension 0 kept)."""
    return type(tasks)(*(tuple(t.unsqueeze(0) for t in part) for part in task_at(tasks, i)))
