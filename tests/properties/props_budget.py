"""Hypothesis profiles for the property suite and the per-test example budget.

Profiles (pick one with ``HYPOTHESIS_PROFILE``; the default is ``ci``):

* ``ci``: derandomized (a fixed example sequence, so CI runs are reproducible and need no
  example database) and sized so the whole suite stays well under a minute on 2 CPU cores;
* ``dev``: random examples and 10× the budget, for hunting counterexamples locally.

A test asks for ``budget(n)``: n examples under ``ci``, scaled by the loaded profile's
``max_examples`` otherwise (tests differ in cost, so one global count would not fit all).
"""

from __future__ import annotations

import os

from hypothesis import settings

CI_MAX_EXAMPLES = 10

settings.register_profile(
    "ci", max_examples=CI_MAX_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile(
    "dev", max_examples=10 * CI_MAX_EXAMPLES, deadline=None, print_blob=True
)


def load_profile() -> None:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (``ci`` when unset)."""
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def budget(ci_examples: int) -> settings:
    """Settings for one test: ``ci_examples`` under ``ci``, proportionally more under ``dev``.

    No deadline: the first call of a ``torch.func`` transform is much slower than the rest, so
    per-example timings are noise, and the suite's total time is what is kept in check.
    """
    scale = settings.default.max_examples / CI_MAX_EXAMPLES
    return settings(max_examples=max(1, round(ci_examples * scale)), deadline=None)
