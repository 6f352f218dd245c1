"""Exact meta-gradients: MAML (reptile.md eq. 17-21), FOMAML (g_k) and one-step Reptile (eq. 6-7).

Properties 1-3 of issue 3. The sequence L_1 … L_k is the problem's minibatches in order; the
core is driven with a per-step loss as described in ``props_core``.
"""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import FD_STEP, assert_exact, assert_matches_finite_differences
from props_core import maml_gradient, one_order
from props_problems import SMOOTH_MLP_KINDS, sequence_specs
from props_reference import central_difference, flatten, gradient, maml_objective, maml_product_form, sgd_path

from metalearning.core.algorithms import Reptile
from metalearning.core.task import Task

steps = st.floats(0.01, 0.5)


def _order(k: int) -> list[int]:
    return list(range(k))


@budget(15)
@given(spec=sequence_specs(1, 4), alpha=steps)
def test_maml_meta_gradient_matches_finite_differences(spec, alpha):
    """Property 1, eq. 17-18: ∂/∂φ L_k(U_{k−1}(… U_1(φ))) by central differences."""
    problem, k = spec.build(), spec.num_minibatches
    fd = central_difference(maml_objective(problem, _order(k), alpha), flatten(problem.params), FD_STEP)
    assert_matches_finite_differences(maml_gradient(problem, one_order(k), alpha, first_order=False), fd)


@budget(15)
@given(spec=sequence_specs(1, 4), alpha=steps)
def test_maml_meta_gradient_is_product_form(spec, alpha):
    """Property 1, eq. 20-21: (Π_{j<k} (I − α L_j''(φ_j))) g_k with explicit Hessians."""
    problem, k = spec.build(), spec.num_minibatches
    expected = maml_product_form(problem, _order(k), alpha, flatten(problem.params))
    assert_exact(maml_gradient(problem, one_order(k), alpha, first_order=False), expected)


@budget(10)
@given(spec=sequence_specs(2, 4), alpha=steps)
def test_finite_difference_check_rejects_first_order_gradient(spec, alpha):
    """Property 1 can fail: FOMAML's gradient is not the derivative of the meta-objective."""
    problem, k = spec.build(), spec.num_minibatches
    fd = central_difference(maml_objective(problem, _order(k), alpha), flatten(problem.params), FD_STEP)
    with pytest.raises(AssertionError):
        assert_matches_finite_differences(maml_gradient(problem, one_order(k), alpha, first_order=True), fd)


@budget(10)
@given(spec=sequence_specs(3, 4, kinds=SMOOTH_MLP_KINDS), alpha=steps)
def test_product_form_check_rejects_hessians_at_start(spec, alpha):
    """Property 1 can fail: eq. 22's H̄_j = L_j''(φ_1) in place of L_j''(φ_j) is not exact.

    k ≥ 3 and non-quadratic losses: for k = 2 the only Hessian is taken at φ_1 anyway, and a
    quadratic's Hessian is the same everywhere.
    """
    problem, k = spec.build(), spec.num_minibatches
    wrong = maml_product_form(problem, _order(k), alpha, flatten(problem.params), hessians_at_start=True)
    with pytest.raises(AssertionError):
        assert_exact(maml_gradient(problem, one_order(k), alpha, first_order=False), wrong)


@budget(15)
@given(spec=sequence_specs(1, 4), alpha=steps)
def test_fomaml_meta_gradient_is_last_inner_gradient(spec, alpha):
    """Property 2, eq. 26/38 (left): g_FOMAML = g_k = L_k'(φ_k), exactly."""
    problem, k = spec.build(), spec.num_minibatches
    phi_k = sgd_path(problem, _order(k - 1), alpha, flatten(problem.params))[-1]
    g_k = gradient(problem, k - 1, phi_k)
    assert_exact(maml_gradient(problem, one_order(k), alpha, first_order=True), g_k)


@budget(15)
@given(spec=sequence_specs(1, 4), alpha=st.floats(1e-3, 1.0))
def test_one_step_reptile_is_gradient_of_expected_loss(spec, alpha):
    """Property 3, eq. 6-7: E_τ[φ − U_τ(φ)]/α = E_τ[∇L_τ(φ)], every minibatch a task τ."""
    problem = spec.build()
    reptile = Reptile(inner_lr=alpha, inner_steps=1, eval_inner_steps=1, inner_optimizer="sgd")
    meta = reptile.init_meta_params(problem.params, torch.Generator())
    tasks = Task(support=problem.minibatches, query=problem.minibatches)
    pseudo, _ = reptile.meta_gradient(meta, tasks, problem.loss)
    x = flatten(problem.params)
    expected = torch.stack([gradient(problem, i, x) for i in range(spec.num_minibatches)]).mean(0)
    assert_exact(flatten(pseudo["theta"]) / alpha, expected)
