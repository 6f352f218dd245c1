"""Argument checks at the gin constructor boundary: a wrong type or range in a binding fails in
one line naming the binding (``MetaTrainer.meta_batch_size must be an integer >= 1, got 'four'``),
before any compute, instead of deep inside torch."""

from __future__ import annotations

import math
from numbers import Real
from typing import Any


def check_args(owner: str, **specs: tuple[Any, type, float | None]) -> None:
    """Check each ``name=(value, int | float, minimum)`` of configurable ``owner``.

    ``int`` wants an integer (not a bool, not 4.5); ``float`` any finite real number; ``minimum``
    (or None) is inclusive.

    Raises:
        ValueError: ``<owner>.<name> must be …, got <value>`` for the first value that fails.
    """
    for name, (value, kind, minimum) in specs.items():
        if kind is int:
            ok, what = isinstance(value, int) and not isinstance(value, bool), "an integer"
        else:
            ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            what = "a finite number"
        if ok and minimum is not None and value < minimum:
            ok = False
        if not ok:
            bound = "" if minimum is None else f" >= {minimum:g}"
            raise ValueError(f"{owner}.{name} must be {what}{bound}, got {value!r}")
