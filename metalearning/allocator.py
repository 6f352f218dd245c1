"""glibc malloc's policy for torch's CPU tensors: keep freed memory for the next tensor.

torch allocates every CPU tensor with ``malloc``. By default glibc serves a block above its mmap
threshold (128 KiB, raised as such blocks are freed, at most 32 MiB) with a fresh ``mmap`` and
unmaps it on ``free``, and gives the heap's free top back to the kernel beyond twice that
threshold. A loop that allocates the same large activations at every step — a meta-RL
iteration's policy on ``[tasks, T, B, 100]``, its Hessian-vector products, the meta-test's inner
updates on ``[100 tasks, 100, 40, 100]`` — then pays, at every step, page faults and the
kernel's zeroing of fresh pages.

:func:`keep_freed_memory` (applied when the package is imported) serves blocks up to
``MMAP_THRESHOLD`` from the heap (a glibc that refuses so large a threshold gets 32 MiB), keeps up to
``TRIM_THRESHOLD`` of free heap top for later tensors, and grows the heap ``TOP_PAD`` at a time.
Measured on the 2-core machine (Intel Xeon, glibc 2.36, ``METALEARNING_NUMERICS=portable``; the
outputs are the same bits either way), glibc's defaults → this policy, alternated twice:

* 12 meta-iterations of MAML-TRPO on the papers' 2D navigation in 2 processes (``torchrun
  --nproc_per_node 2 -m metalearning train --config configs/rl/experiments/maml_nav2d.gin --bind
  'MetaTrainer.meta_iterations = 12'``): 29.7, 30.0 s → 25.9, 25.8 s (7.7–8.6 s → 1.2 s in the
  kernel); peak memory per process 732–768 → 665–694 MB;
* the meta-test stage of ``metasgd_nav2d_fixed`` in one process (600 tasks): 16.7, 16.5 s →
  13.2, 13.1 s (4.6–4.8 s → 0.5 s in the kernel); peak memory 845–850 → 1182–1185 MB (freed
  64 MB blocks stay in the heap, and a new one does not always fit in the gaps);
* ``maml_nav2d``'s meta-test stage (3 seeds, 2 processes): 48.1 → 38.4 s.

``METALEARNING_MALLOC=system`` keeps glibc's defaults; other C libraries are left alone.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "METALEARNING_MALLOC"
POLICIES = ("keep", "system")
# mallopt(3) parameters (malloc.h) and the values set
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 256 * 2**20  # blocks up to this size come from the heap (and stay there when freed)
OLD_GLIBC_MMAP_THRESHOLD = 32 * 2**20  # HEAP_MAX_SIZE / 2 on 64-bit hosts: the most older glibc accepts
TRIM_THRESHOLD = 2**30  # free heap top kept for later tensors before it is given back
TOP_PAD = 64 * 2**20  # extra heap requested with every growth (fewer brk calls)

_applied: dict[str, int] = {}


def keep_freed_memory() -> dict[str, int]:
    """Apply the policy of the module docstring to this process unless ``$METALEARNING_MALLOC``
    is ``system`` or the C library is not glibc; return the values set (empty if none).

    Raises:
        ValueError: ``$METALEARNING_MALLOC`` is neither ``keep`` nor ``system``.
    """
    policy = os.environ.get(ENV, "keep")
    if policy not in POLICIES:
        raise ValueError(f"{ENV} must be one of {', '.join(POLICIES)}, got {policy!r}")
    if policy == "system" or not sys.platform.startswith("linux"):
        return {}
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return {}
    _applied.clear()
    choices = (("mmap_threshold", M_MMAP_THRESHOLD, (MMAP_THRESHOLD, OLD_GLIBC_MMAP_THRESHOLD)),
               ("trim_threshold", M_TRIM_THRESHOLD, (TRIM_THRESHOLD,)), ("top_pad", M_TOP_PAD, (TOP_PAD,)))
    for name, param, values in choices:  # the first value glibc accepts
        accepted = next((value for value in values if mallopt(param, value) == 1), None)
        if accepted is not None:
            _applied[name] = accepted
    return dict(_applied)


def applied() -> dict[str, int]:
    """The mallopt values :func:`keep_freed_memory` set in this process (empty: glibc's defaults),
    for run records."""
    return dict(_applied)
