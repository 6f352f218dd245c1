"""Property-suite configuration: the Hypothesis profile (see ``props_budget``)."""

import warnings

import pytest
from props_budget import load_profile

load_profile()


@pytest.fixture(autouse=True)
def _quiet_torch_jit_deprecation():
    """The first ``torch.func.jvp`` makes torch JIT-script its own decompositions, and torch
    2.13 warns that ``torch.jit.script`` is deprecated: torch's internals, nothing to act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning
        )
        yield
