"""Is the budget the limit? A report section read off each model's validation curve.

For every experiment with a validation curve, the slope of validation accuracy against
meta-iterations over the second half of training (least squares, with its standard error from the
residuals) says whether the curve was still rising when the budget ran out, or had flattened: a
short budget that stops a rising curve is a budget limit, a flat curve is not cured by more of the
same iterations.
"""

from __future__ import annotations

import math
from typing import Sequence

METRIC = "meta_val.accuracy"
RISING_Z = 2.0  # slope / standard error beyond which a trend is called rising (falling)


def trend(points: Sequence[tuple[float, float]]) -> tuple[float, float | None]:
    """(slope, standard error) of the least-squares line through ``points`` (x, y).

    The standard error is ``None`` with fewer than three points or no spread in x (no residual
    degrees of freedom to estimate it from).
    """
    n = len(points)
    if n < 2:
        raise ValueError(f"a trend needs at least 2 points, got {n}")
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((x - mean_x) ** 2 for x, _ in points)
    if sxx == 0:
        raise ValueError("a trend needs points at two different x at least")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sxx
    if n < 3:
        return slope, None
    residual = sum((y - mean_y - slope * (x - mean_x)) ** 2 for x, y in points)
    return slope, math.sqrt(residual / (n - 2) / sxx)


def verdict(slope: float, se: float | None) -> str:
    """``rising``, ``falling`` or ``flat``: whether the slope is more than :data:`RISING_Z`
    standard errors from zero (``flat`` when no standard error can be had and the slope is 0)."""
    if se is None or se == 0:
        return "rising" if slope > 0 else "falling" if slope < 0 else "flat"
    z = slope / se
    return "rising" if z > RISING_Z else "falling" if z < -RISING_Z else "flat"


def convergence_row(name: str, curve: Sequence[dict]) -> dict | None:
    """One experiment's row: budget, best validation accuracy and where, the second half's trend
    (accuracy points per 1000 meta-iterations ± standard error) and its verdict; None when the
    curve has fewer than 4 validation points (no second half to fit)."""
    points = [(float(row["iteration"]), 100 * float(row[METRIC])) for row in curve if row.get(METRIC) is not None]
    if len(points) < 4:
        return None
    last = points[-1][0]
    half = [p for p in points if p[0] > last / 2]
    if len(half) < 2:
        half = points[-2:]
    slope, se = trend(half)
    best = max(points, key=lambda p: p[1])
    return {"experiment": name, "iterations": int(last), "best": best[1], "best_at": int(best[0]),
            "first": int(half[0][0]), "slope": 1000 * slope,
            "se": None if se is None else 1000 * se, "verdict": verdict(slope, se)}


def convergence_section(curves: dict[str, Sequence[dict]]) -> str:
    """Markdown: the trend table for ``experiment → learning-curve rows`` ("" when no curve has
    enough validation points)."""
    rows = [row for name, curve in sorted(curves.items()) if (row := convergence_row(name, curve)) is not None]
    if not rows:
        return ""
    lines = ["## Is the budget the limit? (generated)", "",
             "Validation accuracy over the second half of each training run: the least-squares slope in accuracy "
             "points per 1000 meta-iterations ± its standard error, and whether it is more than "
             f"{RISING_Z:g} standard errors from zero. A curve still *rising* at the end of its budget would gain from "
             "more meta-iterations; a *flat* one would not gain much from more of the same.", "",
             "| experiment | meta-iterations | best validation accuracy (at) | second-half slope (points / 1000 its) "
             "| trend |", "|---|---|---|---|---|"]
    for r in rows:
        slope = f"{r['slope']:+.2f}" + ("" if r["se"] is None else f" ± {r['se']:.2f}")
        lines.append(f"| `{r['experiment']}` | {r['iterations']} | {r['best']:.1f}% ({r['best_at']}) | "
                     f"{slope} (from {r['first']}) | {r['verdict']} |")
    return "\n".join(lines) + "\n"
