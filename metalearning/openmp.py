"""OpenMP's wait policy for torch's intra-op threads on cores other processes may share.

With OpenMP's default policy an idle torch thread spin-waits at every parallel region's
barrier; when another process runs on one of the cores, each region waits for the thread that
lost its core and the spinning one burns the other. Measured with
``tools/measure_thread_policy.py`` (Omniglot MAML, cpu profile, 2-core machine, ms per
meta-iteration relative to 1 thread): one core busy — 2 threads 2.6–2.7×, 2 threads with
``OMP_WAIT_POLICY=PASSIVE`` 1.2×; idle — 0.67–0.70× and 0.78–0.80×. A smaller
``GOMP_SPINCOUNT`` did not help on the busy machine (2.6× at 10 000). PASSIVE bounds the loss
on a shared machine for ~14 % on an idle one, so it is the platform's default; a user on a
dedicated machine exports ``OMP_WAIT_POLICY=ACTIVE`` (or any value), which is never overridden.
"""

from __future__ import annotations

import os

DEFAULT_POLICY = "PASSIVE"


def default_wait_policy() -> str:
    """Set ``OMP_WAIT_POLICY`` to PASSIVE unless the environment sets it; return the policy set.

    Takes effect for this process only if torch is not imported yet (its OpenMP runtime reads
    the environment once, when it loads); child processes (torchrun ranks, stages) inherit it.
    """
    return os.environ.setdefault("OMP_WAIT_POLICY", DEFAULT_POLICY)


def set_threads(threads: int) -> None:
    """Use ``threads`` torch intra-op threads; torch is imported here, after the wait policy is set."""
    import torch

    torch.set_num_threads(threads)
