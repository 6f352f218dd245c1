"""The per-step loss device of ``props_core`` does what the other property tests rely on."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_core import CLOCK, sequence_loss, with_clock, without_clock
from props_problems import sequence_specs
from props_reference import flatten

from metalearning.core.adapt import adapt


@budget(12)
@given(spec=sequence_specs(1, 4), alpha=st.floats(1e-3, 0.5), first_order=st.booleans())
def test_sequence_loss_runs_minibatch_i_at_inner_step_i(spec, alpha, first_order):
    """k inner steps on the stacked sequence == k single-step ``adapt`` calls on L_1 … L_k."""
    problem, k = spec.build(), spec.num_minibatches
    adapted = adapt(with_clock(problem.params), problem.minibatches, loss=sequence_loss(problem.loss, alpha),
                    inner_lr=alpha, inner_steps=k, first_order=first_order)
    expected = problem.params
    for i in range(k):
        expected = adapt(expected, problem.minibatch(i), loss=problem.loss, inner_lr=alpha, inner_steps=1,
                         first_order=first_order)
    assert_exact(flatten(without_clock(adapted)), flatten(expected))
    assert adapted[CLOCK].item() == pytest.approx(k, abs=1e-9)  # a few ulps of drift per step at most
