"""Closed forms for quadratic losses (property 5 of issue 3; reptile.md eq. 25-27 made exact).

For L_i(φ) = ½ φᵀA_iφ + b_iᵀφ the Hessian is the constant A_i, so the O(α²) remainders of §5.1
are finite polynomials and the k = 2 meta-gradients have closed forms, written here from the
data (A_i, b_i) alone — no automatic differentiation on the reference side:

    g_MAML    = (I − αA_1)(ḡ_2 − αA_2ḡ_1)
    g_FOMAML  = ḡ_2 − αA_2ḡ_1
    g_Reptile = ḡ_1 + ḡ_2 − αA_2ḡ_1           with ḡ_i = A_iφ + b_i.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_core import maml_gradient, one_order, reptile_gradient
from props_problems import problem_specs
from props_reference import flatten

two_quadratics = problem_specs(num_minibatches=2, kinds=("quadratic",))
steps = st.floats(0.01, 1.0)  # any α: nothing here is asymptotic


def _terms(problem):
    """(A_1, A_2, ḡ_1, ḡ_2) from the quadratics' data."""
    (a1, a2), b = problem.minibatches
    x = flatten(problem.params)
    return a1, a2, a1 @ x + b[0], a2 @ x + b[1]


@budget(12)
@given(spec=two_quadratics, alpha=steps)
def test_maml_two_steps_closed_form(spec, alpha):
    problem = spec.build()
    a1, a2, g1, g2 = _terms(problem)
    expected = (torch.eye(len(g1), dtype=g1.dtype) - alpha * a1) @ (g2 - alpha * a2 @ g1)
    assert_exact(maml_gradient(problem, one_order(2), alpha, first_order=False), expected)


@budget(12)
@given(spec=two_quadratics, alpha=steps)
def test_fomaml_two_steps_closed_form(spec, alpha):
    problem = spec.build()
    a1, a2, g1, g2 = _terms(problem)
    assert_exact(maml_gradient(problem, one_order(2), alpha, first_order=True), g2 - alpha * a2 @ g1)


@budget(12)
@given(spec=two_quadratics, alpha=steps)
def test_reptile_two_steps_closed_form(spec, alpha):
    problem = spec.build()
    a1, a2, g1, g2 = _terms(problem)
    assert_exact(reptile_gradient(problem, one_order(2), alpha), g1 + g2 - alpha * a2 @ g1)
