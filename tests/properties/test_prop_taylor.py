"""Leading-order expansions of the meta-gradients (reptile.md eq. 25-27, 36, 38, 40).

Property 4 of issue 3: the residual between each algorithm's meta-gradient and its
leading-order expression (computed with Hessian-vector products at φ_1) is Θ(α²). Only
tanh/softplus MLP losses: for quadratics the expansions truncate (see test_prop_quadratic)
and some residuals are exactly zero, which has no halving ratio.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_second_order
from props_core import META_GRADIENTS, one_order
from props_problems import SMOOTH_MLP_KINDS, sequence_specs
from props_reference import flatten, fomaml_leading, gradient, hvp, maml_leading, reptile_leading, small_step

LEADING_TERMS = {"maml": maml_leading, "fomaml": fomaml_leading, "reptile": reptile_leading}

# a = α·k·(1 + max‖H̄_i‖); see props_checks.SECOND_ORDER_RATIO for both ranges.
small = st.floats(0.01, 0.1)
smaller = st.floats(0.001, 0.01)


def _residual(algorithm, leading, problem, k):
    x, order = flatten(problem.params), list(range(k))
    meta_gradient = META_GRADIENTS[algorithm]
    return lambda alpha: meta_gradient(problem, one_order(k), alpha) - leading(problem, order, alpha, x)


def _eq_25_to_27(algorithm):
    """The k = 2 expansions exactly as printed: g₂ − αH̄₂ḡ₁ − αH̄₁ḡ₂, g₂ − αH̄₂ḡ₁, ḡ₁ + ḡ₂ − αH̄₂ḡ₁."""

    def leading(problem, order, alpha, x):
        g1, g2 = gradient(problem, 0, x), gradient(problem, 1, x)
        fomaml = g2 - alpha * hvp(problem, 1, x, g1)
        maml = fomaml - alpha * hvp(problem, 0, x, g2)
        return {"maml": maml, "fomaml": fomaml, "reptile": g1 + fomaml}[algorithm]

    return leading


@pytest.mark.parametrize("algorithm", META_GRADIENTS)
@budget(12)
@given(spec=sequence_specs(2, 2, kinds=SMOOTH_MLP_KINDS), a=small)
def test_two_step_meta_gradient_matches_eq_25_to_27(algorithm, spec, a):
    problem = spec.build()
    assert_second_order(_residual(algorithm, _eq_25_to_27(algorithm), problem, 2), small_step(problem, a, 2))


@pytest.mark.parametrize("algorithm", META_GRADIENTS)
@budget(12)
@given(spec=sequence_specs(2, 5, kinds=SMOOTH_MLP_KINDS), a=small)
def test_k_step_meta_gradient_matches_eq_36_38_40(algorithm, spec, a):
    problem, k = spec.build(), spec.num_minibatches
    assert_second_order(_residual(algorithm, LEADING_TERMS[algorithm], problem, k), small_step(problem, a, k))


def _without_inner_term(leading):
    """The expansion with α = 0 inside it: the lone-gradient terms only."""
    return lambda problem, order, alpha, x: leading(problem, order, 0.0, x)


def _halved_inner_term(leading):
    """The AvgGradInner-type term with half its coefficient."""
    return lambda problem, order, alpha, x: leading(problem, order, alpha / 2, x)


WRONG_EXPANSIONS = {
    "maml-without-second-order-term": ("maml", _without_inner_term(maml_leading)),
    "fomaml-against-maml-expansion": ("fomaml", maml_leading),
    "maml-against-fomaml-expansion": ("maml", fomaml_leading),
    "reptile-with-halved-coefficient": ("reptile", _halved_inner_term(reptile_leading)),
}


@pytest.mark.parametrize("case", WRONG_EXPANSIONS)
@budget(15)
@given(spec=sequence_specs(2, 5, kinds=SMOOTH_MLP_KINDS), a=smaller)
def test_expansion_check_rejects_wrong_expansion(case, spec, a):
    """Property 4 can fail: a residual that is only O(α) halves by ≈ 2, not ≈ 4."""
    algorithm, wrong = WRONG_EXPANSIONS[case]
    problem, k = spec.build(), spec.num_minibatches
    with pytest.raises(AssertionError):
        assert_second_order(_residual(algorithm, wrong, problem, k), small_step(problem, a, k))
