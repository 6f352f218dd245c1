"""Confidence intervals: Student's t across a few values (training seeds)."""

from __future__ import annotations

import math

import pytest
import torch

from metalearning.evaluation import Z_95, mean_ci95, mean_t_ci95, t_quantile_95


@pytest.mark.parametrize("df, exact", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (30, 2.0423), (40, 2.0211),
                                       (60, 2.0003), (120, 1.9799), (10_000, 1.9602)])
def test_t_quantile_matches_the_exact_values(df, exact):
    assert t_quantile_95(df) == pytest.approx(exact, abs=2e-3)


def test_t_quantile_rejects_no_degrees_of_freedom():
    with pytest.raises(ValueError, match="degrees of freedom"):
        t_quantile_95(0)


def test_t_interval_is_wider_than_the_normal_one_for_few_values_and_agrees_for_many():
    few = [0.5, 0.62, 0.44]
    mean, half = mean_t_ci95(few)
    normal_mean, normal_half = mean_ci95(torch.tensor(few, dtype=torch.float64))
    assert mean == pytest.approx(normal_mean)
    assert half == pytest.approx(normal_half * 4.303 / Z_95, rel=1e-3)  # t with 2 df
    many = torch.randn(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert mean_t_ci95(many.tolist())[1] == pytest.approx(mean_ci95(many)[1], rel=1e-3)
    assert math.isnan(mean_t_ci95([1.0])[1]) and mean_t_ci95([1.0])[0] == 1.0
