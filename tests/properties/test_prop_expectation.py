"""Expected meta-gradients under minibatch sampling (reptile.md eq. 28-35, 37, 39, 41).

Property 6 of issue 3. A task has n minibatches; the inner sequence L_1 … L_k is drawn
uniformly among the ordered sequences of k of them — without replacement (distinct
minibatches, as the non-overlapping minibatches of §6.2) or with replacement; both are drawn
by Hypothesis. The expectation is computed exactly by putting *every* sequence in one
meta-batch: ``meta_gradient`` averages over the meta-batch, so it returns E[g] itself.

    E[g] = c₁·AvgGrad − c₂·α·AvgGradInner + O(α²)
    MAML (1, 2(k−1)) eq. 33/37 · FOMAML (1, k−1) eq. 34/39 · Reptile (k, k(k−1)/2) eq. 35/41
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact, assert_second_order
from props_core import META_GRADIENTS
from props_problems import SMOOTH_MLP_KINDS, problem_specs
from props_reference import (
    avg_grad,
    avg_grad_inner,
    flatten,
    half_grad_of_gradient_inner_product,
    orders,
    small_step,
)

COEFFICIENTS = {  # (c₁, c₂) as functions of k
    "maml": lambda k: (1, 2 * (k - 1)),
    "fomaml": lambda k: (1, k - 1),
    "reptile": lambda k: (k, k * (k - 1) / 2),
}


@st.composite
def sampling_cases(draw, *, kinds=SMOOTH_MLP_KINDS):
    """(problem spec with n minibatches, k ∈ {2, 3}, replacement): n ∈ {k, k+1}."""
    k = draw(st.integers(2, 3))
    spec = draw(problem_specs(num_minibatches=draw(st.integers(k, k + 1)), kinds=kinds))
    return spec, k, draw(st.booleans())


def _residual(algorithm, coefficients, problem, k, replacement):
    """α ↦ E[g](α) − (c₁·AvgGrad − c₂·α·AvgGradInner)."""
    x, n = flatten(problem.params), problem.num_minibatches
    sequences, pairs = orders(n, k, replacement=replacement), orders(n, 2, replacement=replacement)
    c1, c2 = coefficients(k)
    grad, inner = avg_grad(problem, x), avg_grad_inner(problem, pairs, x)
    meta_gradient = META_GRADIENTS[algorithm]
    return lambda alpha: meta_gradient(problem, sequences, alpha) - (c1 * grad - c2 * alpha * inner)


@pytest.mark.parametrize("algorithm", META_GRADIENTS)
@budget(10)
@given(case=sampling_cases(), a=st.floats(0.01, 0.1))
def test_expected_meta_gradient_is_avggrad_minus_avggradinner(algorithm, case, a):
    spec, k, replacement = case
    problem = spec.build()
    residual = _residual(algorithm, COEFFICIENTS[algorithm], problem, k, replacement)
    assert_second_order(residual, small_step(problem, a, k))


WRONG_COEFFICIENTS = {
    "maml-with-fomaml-coefficients": ("maml", COEFFICIENTS["fomaml"]),
    "fomaml-with-maml-coefficients": ("fomaml", COEFFICIENTS["maml"]),
    "reptile-with-doubled-inner-coefficient": ("reptile", lambda k: (k, k * (k - 1))),
}


@pytest.mark.parametrize("case_name", WRONG_COEFFICIENTS)
@budget(15)
@given(case=sampling_cases(), a=st.floats(0.001, 0.01))  # see props_checks.SECOND_ORDER_RATIO
def test_expectation_check_rejects_wrong_coefficients(case_name, case, a):
    """Property 6 can fail: a wrong AvgGradInner coefficient leaves an O(α) residual."""
    algorithm, wrong = WRONG_COEFFICIENTS[case_name]
    spec, k, replacement = case
    problem = spec.build()
    with pytest.raises(AssertionError):
        assert_second_order(_residual(algorithm, wrong, problem, k, replacement), small_step(problem, a, k))


@budget(15)
@given(case=sampling_cases(kinds=("quadratic",) + SMOOTH_MLP_KINDS))
def test_avg_grad_inner_is_half_gradient_of_gradient_inner_product(case):
    """Eq. 29-32: E[H̄₂ḡ₁] = ½ E[∂/∂φ (ḡ₁·ḡ₂)], for an exchangeable law of (L_1, L_2)."""
    spec, _, replacement = case
    problem = spec.build()
    x, pairs = flatten(problem.params), orders(spec.num_minibatches, 2, replacement=replacement)
    assert_exact(avg_grad_inner(problem, pairs, x), half_grad_of_gradient_inner_product(problem, pairs, x))


@budget(15)
@given(case=sampling_cases(kinds=("quadratic",) + SMOOTH_MLP_KINDS))
def test_inner_product_check_rejects_non_exchangeable_law(case):
    """Eq. 32 can fail: it needs eq. 30's swap of indices; with only the pair (L_1, L_2) =
    (minibatch 0, minibatch 1), E[H̄₂ḡ₁] = H_1 g_0 ≠ ½(H_1 g_0 + H_0 g_1)."""
    spec, _, _ = case
    problem = spec.build()
    x, pairs = flatten(problem.params), orders(2, 2, replacement=False)[:1]
    half_grad = half_grad_of_gradient_inner_product(problem, pairs, x)
    with pytest.raises(AssertionError):
        assert_exact(avg_grad_inner(problem, pairs, x), half_grad)
