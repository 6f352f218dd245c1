"""The report's "is the budget the limit?" section: least-squares trends of validation curves."""

import math
import random

import pytest

from metalearning.report.convergence import convergence_row, convergence_section, trend, verdict


def _curve(accuracy, iterations):
    return [{"iteration": it, "meta_train.loss": 1.0, "meta_val.accuracy": accuracy(it)} for it in iterations]


def test_trend_is_the_least_squares_slope_with_its_standard_error():
    # y = 2x + 1 with residuals +1, -1, -1, +1 at x = 0..3: slope 2 exactly (the residuals are
    # orthogonal to x - mean x), SE = sqrt(sum r² / (n - 2) / Sxx) = sqrt(4 / 2 / 5).
    points = [(0, 2.0), (1, 2.0), (2, 4.0), (3, 8.0)]
    slope, se = trend(points)
    assert slope == pytest.approx(2.0)
    assert se == pytest.approx(math.sqrt(4 / 2 / 5))


def test_trend_of_two_points_has_no_standard_error_and_bad_input_is_refused():
    assert trend([(0, 1.0), (2, 2.0)]) == (0.5, None)
    with pytest.raises(ValueError, match="at least 2 points"):
        trend([(0, 1.0)])
    with pytest.raises(ValueError, match="two different x"):
        trend([(1, 1.0), (1, 2.0)])


def test_verdict_needs_the_slope_two_standard_errors_from_zero():
    assert verdict(2.1, 1.0) == "rising"
    assert verdict(1.9, 1.0) == "flat"
    assert verdict(-2.1, 1.0) == "falling"
    assert verdict(0.5, None) == "rising" and verdict(0.0, None) == "flat"


def test_a_curve_still_climbing_is_rising_and_a_noisy_plateau_is_flat():
    rng = random.Random(0)
    its = range(100, 4100, 100)
    climbing = convergence_row("a", _curve(lambda it: 0.5 + it / 10000 + rng.gauss(0, 0.01), its))
    assert climbing["verdict"] == "rising"
    assert climbing["slope"] == pytest.approx(10.0, abs=1.5)  # 0.1 accuracy per 1000 its = 10 points
    assert climbing["first"] == 2100 and climbing["iterations"] == 4000
    plateau = convergence_row("b", _curve(lambda it: 0.9 + rng.gauss(0, 0.01), its))
    assert plateau["verdict"] == "flat"
    assert plateau["best"] > 90.0


def test_the_best_point_is_reported_where_it_is():
    row = convergence_row("m", _curve(lambda it: {300: 0.95}.get(it, 0.8), range(100, 900, 100)))
    assert (row["best"], row["best_at"]) == (pytest.approx(95.0), 300)


def test_curves_without_enough_validation_points_are_left_out():
    short = _curve(lambda it: 0.5, [100, 200, 300])
    no_validation = [{"iteration": it, "meta_train.loss": 1.0} for it in range(100, 1000, 100)]
    assert convergence_row("s", short) is None and convergence_row("n", no_validation) is None
    assert convergence_section({"s": short, "n": no_validation}) == ""


def test_the_section_has_one_row_per_experiment_with_a_curve():
    its = range(100, 2100, 100)
    text = convergence_section({"b_run": _curve(lambda it: 0.9, its),
                                "a_run": _curve(lambda it: 0.5 + it / 10000, its)})
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert [row.split("`")[1] for row in rows] == ["a_run", "b_run"]
    assert rows[0].endswith("| rising |") and rows[1].endswith("| flat |")
    assert "+10.00" in rows[0]
