"""MAML++ (Antoniou et al. 2019): multi-step loss (MSL), learned per-layer per-step rates
(LSLR) and derivative-order annealing (DA), against MAML and against references built here.

Each problem is split into T tasks: support = minibatch τ, query = minibatch T + τ (as
``test_prop_meta_sgd``). The schedules are checked against the authors' code
(HowToTrainYourMAMLPytorch, ``few_shot_learning_system.py``).
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_problems import ProblemSpec, problem_specs
from props_reference import flat_loss, flatten, sgd_path, unflatten

from metalearning.core.algorithms import MAML, MetaSGD
from metalearning.core.mamlpp import MAMLPlusPlus, multi_step_loss_weights
from metalearning.core.task import Task
from tests import test_algorithms

task_specs = st.integers(1, 3).flatmap(lambda tasks: problem_specs(num_minibatches=2 * tasks))
PER_EPOCH = 7  # iterations per epoch in the properties: small, and not a divisor of anything in sight


def _tasks(problem):
    t = problem.num_minibatches // 2
    return Task(support=problem.select(torch.arange(t)), query=problem.select(torch.arange(t, 2 * t)))


def _mamlpp(a, k, *, msl_epochs=10, first_order_epochs=0):
    return MAMLPlusPlus(inner_lr=a, inner_steps=k, eval_inner_steps=k, iterations_per_epoch=PER_EPOCH,
                        multi_step_loss_epochs=msl_epochs, first_order_epochs=first_order_epochs)


def _run(algo, problem, iteration=0):
    """(flat θ-meta-gradient, query loss, full gradient dict) of ``algo`` at its initial meta-parameters."""
    meta = algo.init_meta_params(problem.params, torch.Generator())
    grads, loss = algo.meta_gradient(meta, _tasks(problem), problem.loss, iteration=iteration)
    return flatten(grads["theta"]), loss, grads


def _maml(a, k, first_order=False):
    return MAML(inner_lr=a, inner_steps=k, eval_inner_steps=k, first_order=first_order)


# --- the multi-step-loss schedule --------------------------------------------------------------

def test_msl_weights_are_the_authors_values():
    """k = 5, 10 MSL epochs (the authors' configs): d = 1/(5·10) = 0.02, floor 0.03/5 = 0.006.

    Epoch 0: uniform 0.2. Epoch 3: 0.2 − 3·0.02 = 0.14 four times, 0.2 + 3·4·0.02 = 0.44. Epoch 9:
    0.02 and 0.92. From epoch 10 on the authors score only the last step.
    """
    expected = {0: [0.2] * 5, 3: [0.14] * 4 + [0.44], 9: [0.02] * 4 + [0.92], 10: [0.0] * 4 + [1.0],
                57: [0.0] * 4 + [1.0]}
    for epoch, weights in expected.items():
        assert multi_step_loss_weights(5, epoch, 10) == pytest.approx(weights, abs=1e-12), epoch
    # k = 2, 2 epochs: d = 0.25, so epoch 1 gives 0.25 and 0.75
    assert multi_step_loss_weights(2, 1, 2) == pytest.approx([0.25, 0.75])
    # the floors bind in the last 3% of the phase: k = 4, 40 epochs, epoch 39: 0.25 − 39/160 < 0.03/4
    assert multi_step_loss_weights(4, 39, 40) == pytest.approx([0.0075] * 3 + [1 - 3 * 0.0075])


def test_epochs_are_whole_blocks_of_iterations():
    algo = MAMLPlusPlus(inner_lr=0.1, inner_steps=5, eval_inner_steps=5, iterations_per_epoch=500,
                        multi_step_loss_epochs=10, first_order_epochs=2)
    assert algo.step_weights(1499) == multi_step_loss_weights(5, 2, 10)
    assert algo.step_weights(1500) == pytest.approx([0.14] * 4 + [0.44])
    assert algo.step_weights(4999)[-1] == pytest.approx(0.92) and algo.step_weights(5000) == [0, 0, 0, 0, 1]
    assert algo.first_order_at(999) and not algo.first_order_at(1000)


@budget(30)
@given(k=st.integers(1, 8), msl_epochs=st.integers(1, 200), epoch=st.integers(0, 400))
def test_msl_weights_sum_to_one_and_anneal_to_the_last_step(k, msl_epochs, epoch):
    weights = multi_step_loss_weights(k, epoch, msl_epochs)
    assert len(weights) == k and math.isclose(sum(weights), 1.0, abs_tol=1e-12)
    if epoch < msl_epochs:
        assert all(w >= 0.03 / k - 1e-15 for w in weights)
        assert weights[-1] <= multi_step_loss_weights(k, epoch + 1, msl_epochs)[-1]
    else:
        assert weights == [0.0] * (k - 1) + [1.0]


# --- MSL + LSLR against MAML and against a reference objective ----------------------------------

constant_rate_cases = dict(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3),
                           msl_epochs=st.integers(0, 3))


@budget(12)
@given(**constant_rate_cases)
def test_after_msl_with_initial_rates_mamlpp_is_maml(spec, a, k, msl_epochs):
    """Past the MSL epochs (from the first iteration of epoch E on) and with every learned rate at its
    initial α = a, MAML++'s θ-meta-gradient and query loss are second-order MAML's with inner_lr = a."""
    problem = spec.build()
    grad, loss, _ = _run(_mamlpp(a, k, msl_epochs=msl_epochs), problem, iteration=msl_epochs * PER_EPOCH)
    maml_grad, maml_loss, _ = _run(_maml(a, k), problem)
    assert_exact(grad, maml_grad)
    assert_exact(loss, maml_loss)


@budget(8)
@given(spec=task_specs, a=st.floats(0.05, 0.3), k=st.integers(2, 3))
def test_identity_check_rejects_the_multi_step_loss(spec, a, k):
    """The identity can fail: at iteration 0 (uniform weights 1/k, k ≥ 2) MAML++ is not MAML."""
    problem = spec.build()
    grad, loss, _ = _run(_mamlpp(a, k), problem, iteration=0)
    maml_grad, maml_loss, _ = _run(_maml(a, k), problem)
    with pytest.raises(AssertionError):
        assert_exact(grad, maml_grad)
    with pytest.raises(AssertionError):
        assert_exact(loss, maml_loss)


def _msl_reference(problem, a, k, weights):
    """(∇_x, value) of mean_τ Σ_i w_i L_{T+τ}(x_i), x_i = i plain SGD steps on L_τ from x (props_reference)."""
    t = problem.num_minibatches // 2

    def objective(x):
        terms = [sum(w * flat_loss(problem, t + tau)(x_i)
                     for w, x_i in zip(weights, sgd_path(problem, [tau] * k, a, x)[1:]))
                 for tau in range(t)]
        return torch.stack(terms).mean()

    x = flatten(problem.params)
    return torch.func.grad(objective)(x), objective(x)


@budget(12)
@given(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3), epoch=st.integers(0, 3))
def test_multi_step_loss_is_the_weighted_sum_of_per_step_query_losses(spec, a, k, epoch):
    """MSL (second order): the θ-meta-gradient and loss of Σ_i w_i(epoch) · L_query(θ_i), task-mean."""
    problem = spec.build()
    grad, loss, _ = _run(_mamlpp(a, k, msl_epochs=3), problem, iteration=epoch * PER_EPOCH + PER_EPOCH - 1)
    ref_grad, ref_loss = _msl_reference(problem, a, k, multi_step_loss_weights(k, epoch, 3))
    assert_exact(grad, ref_grad)
    assert_exact(loss, ref_loss)


@budget(10)
@given(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3), iteration=st.integers(0, 40))
def test_lslr_gradient_summed_over_steps_is_meta_sgd_gradient_summed_over_entries(spec, a, k, iteration):
    """Tying every rate to one: Σ_i ∂/∂α[n][i] (MAML++, rates per tensor and step, all = a) equals
    Σ_entries ∂/∂α[n] (Meta-SGD, one rate per entry shared by the steps, all = a), final step only."""
    problem = spec.build()
    _, _, grads = _run(_mamlpp(a, k, msl_epochs=0), problem, iteration=iteration)
    _, _, sgd_grads = _run(MetaSGD(inner_lr_init=(a, a), inner_steps=k, eval_inner_steps=k), problem)
    assert_exact(torch.stack([g.sum() for g in grads["alpha"].values()]),
                 torch.stack([g.sum() for g in sgd_grads["alpha"].values()]))
    assert all(g.shape == (k,) for g in grads["alpha"].values())


# --- derivative-order annealing -----------------------------------------------------------------

@budget(10)
@given(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3), fo_epochs=st.integers(1, 3))
def test_first_order_until_the_switch_then_second_order(spec, a, k, fo_epochs):
    """DA: the last iteration of epoch E − 1 gets FOMAML's θ-gradient, the first of epoch E MAML's."""
    problem = spec.build()
    algo = _mamlpp(a, k, msl_epochs=0, first_order_epochs=fo_epochs)
    switch = fo_epochs * PER_EPOCH
    assert_exact(_run(algo, problem, iteration=switch - 1)[0], _run(_maml(a, k, first_order=True), problem)[0])
    assert_exact(_run(algo, problem, iteration=switch)[0], _run(_maml(a, k), problem)[0])


@budget(8)
@given(spec=task_specs, a=st.floats(0.05, 0.3), k=st.integers(1, 3))
def test_switch_check_rejects_second_order_before_the_switch(spec, a, k):
    """The DA check can fail: before the switch the gradient is not second-order MAML's."""
    problem = spec.build()
    algo = _mamlpp(a, k, msl_epochs=0, first_order_epochs=1)
    with pytest.raises(AssertionError):
        assert_exact(_run(algo, problem, iteration=PER_EPOCH - 1)[0], _run(_maml(a, k), problem)[0])


# --- meta-test, refusals, bindings --------------------------------------------------------------

def test_meta_test_past_the_trained_steps_reuses_the_last_rate():
    """θ_0 … θ_5 with rates learned for 2 steps: steps 3-5 take step 2's rate, per tensor."""
    problem = ProblemSpec("tanh", (2, 3), 2, seed=5).build()
    algo = _mamlpp(0.1, 2)
    meta = algo.init_meta_params(problem.params, torch.Generator())
    rates = {n: torch.tensor([0.1 + 0.01 * i, 0.05 + 0.02 * i], dtype=torch.float64)
             for i, n in enumerate(meta["alpha"])}
    meta["alpha"] = rates
    path = algo.adaptation_path(meta, problem.minibatch(0), problem.loss, 5)
    expected = flatten(problem.params)
    for step in range(5):
        assert_exact(flatten(path[step]), expected)
        g = unflatten(torch.func.grad(flat_loss(problem, 0))(expected), problem.params)
        x = unflatten(expected, problem.params)
        expected = flatten({n: x[n] - rates[n][min(step, 1)] * g[n] for n in x})
    assert_exact(flatten(path[5]), expected)


def test_refuses_meta_rl_only():
    algo = _mamlpp(0.1, 5)
    assert "multi-step loss" in algo.unsupported("rl")
    assert algo.unsupported("sine") is None and algo.unsupported("fewshot") is None
    assert algo.label == "MAML++"


@pytest.mark.parametrize("binding, value", [("inner_steps", 0), ("iterations_per_epoch", 0),
                                            ("multi_step_loss_epochs", -1), ("first_order_epochs", -1)])
def test_bad_bindings_are_rejected(binding, value):
    kwargs = dict(inner_lr=0.1, inner_steps=5, eval_inner_steps=5, iterations_per_epoch=500,
                  multi_step_loss_epochs=10, first_order_epochs=0)
    with pytest.raises(ValueError, match=f"MAMLPlusPlus.{binding}"):
        MAMLPlusPlus(**{**kwargs, binding: value})


CONTRACT = {
    "mamlpp_msl_k3": lambda: MAMLPlusPlus(inner_lr=0.1, inner_steps=3, eval_inner_steps=3, iterations_per_epoch=5,
                                          multi_step_loss_epochs=10, first_order_epochs=0),
    "mamlpp_first_order_k2": lambda: MAMLPlusPlus(inner_lr=0.1, inner_steps=2, eval_inner_steps=2,
                                                  iterations_per_epoch=5, multi_step_loss_epochs=0,
                                                  first_order_epochs=1),
}


class TestMAMLPlusPlusContract(test_algorithms.TestContract):
    """The contract every algorithm inherits (tests/test_algorithms.py), for MAML++ at iteration 0."""

    @pytest.fixture(params=sorted(CONTRACT))
    def algo(self, request):
        return CONTRACT[request.param]()
