"""The check functions every property uses; each raises ``AssertionError`` on a mismatch.

The same functions are run on deliberately wrong variants (a dropped term, a wrong
coefficient, the wrong algorithm) in ``pytest.raises(AssertionError)`` blocks, so every
property is shown to be able to fail.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

# Identities that hold exactly in real arithmetic (eq. 6-7, 20-21, 26 as g_FOMAML = g_k, the
# quadratic closed forms, Meta-SGD's chain rule, vmap == loop). float64 carries ε ≈ 2.2e-16;
# the computations compared here chain at most a few dozen matrix-vector products of
# dimension ≤ 20 with O(1) entries, so accumulated roundoff stays below ~1e-13 of the scale
# of the result. Reptile's pseudo-gradient divided by α adds cancellation, ≈ ε·|φ|/α ≤ 1e-12
# for |φ| ≲ 5 and α ≥ 1e-3. 1e-9 leaves three orders of margin over both, and is still five
# orders below the smallest wrong-variant difference the suite exercises (≳ α² ≈ 1e-4).
EXACT_RTOL = 1e-9

# Fourth-order central differences with step h = 1e-3: truncation h⁴/30·|f⁽⁵⁾| ≈ 3e-14·|f⁽⁵⁾|
# and roundoff ≈ 1.5·ε·|f|/h ≈ 3e-13·|f|; the generated meta-objectives have O(1) values and
# derivatives up to (1 + α‖H‖)^k ≲ 10, so the error is ≲ 1e-11. 1e-7 is safe, and four orders
# below the O(α·‖H‖·‖g‖) ≳ 1e-3 gap of the first-order gradient this check must reject.
FD_STEP = 1e-3
FD_RTOL = 1e-7

# A residual r(α) = c₂α² + c₃α³ + … with c₂ ≠ 0 gives r(α)/r(α/2) = 4·(1 + O(α)). The
# properties take α = a/(k·(1 + max‖H̄_i‖)) with a ≤ 0.1 (see ``small_step``), which keeps the
# O(α) correction small: at most 5.2% over 900 random (problem, algorithm) pairs measured, and
# no failure in ~5,000 Hypothesis examples of the ``dev`` profile at 10× its size. A ±12.5%
# band around 4 is safe, and far from 2 (an O(α) residual: a missing or mis-weighted
# first-order term), 1 (an O(1) residual) and 8 (an expansion exact one order further than
# claimed). A wrong variant's residual c₁α + c₂α² halves by ≈ 2 only while c₂α ≪ c₁; with a
# nearly fitted minibatch (‖ḡ‖ ≈ 0.05) c₁ is small and at a ≈ 0.06 the ratio reached 3.57, so
# the wrong-variant tests take a ∈ [0.001, 0.01], where the measured ratio stays ≤ 2.03.
SECOND_ORDER_RATIO = (3.5, 4.5)


def _scale(expected: Tensor) -> float:
    return max(1.0, expected.abs().max().item())


def assert_exact(actual: Tensor, expected: Tensor) -> None:
    """``actual == expected`` up to float64 roundoff: |Δ| ≤ EXACT_RTOL·max(1, ‖expected‖_∞)."""
    torch.testing.assert_close(actual, expected, rtol=0.0, atol=EXACT_RTOL * _scale(expected))


def assert_matches_finite_differences(gradient: Tensor, finite_differences: Tensor) -> None:
    """An analytic gradient against a fourth-order central-difference estimate (FD_RTOL)."""
    atol = FD_RTOL * _scale(finite_differences)
    torch.testing.assert_close(gradient, finite_differences, rtol=0.0, atol=atol)


def second_order_ratio(residual: Callable[[float], Tensor], alpha: float) -> float:
    """‖r(α)‖ / ‖r(α/2)‖: 4 for an O(α²) residual, 2 for O(α), 1 for O(1)."""
    return (residual(alpha).norm() / residual(alpha / 2).norm()).item()


def assert_second_order(residual: Callable[[float], Tensor], alpha: float) -> None:
    """``residual(α)`` is Θ(α²): ‖r‖/α² is the same at α and α/2 (halving α cuts ‖r‖ by ≈ 4).

    That is both halves of "O(α²)": r/α² stays bounded (it converges to ‖c₂‖ rather than
    growing like 1/α), and the error is not smaller than claimed either.
    """
    ratio = second_order_ratio(residual, alpha)
    low, high = SECOND_ORDER_RATIO
    assert low <= ratio <= high, f"halving α={alpha:.3g} divided the residual by {ratio:.3f}, not ≈ 4"
