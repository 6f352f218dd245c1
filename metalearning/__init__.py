"""metalearning: a config-first platform for gradient-based meta-learning.

Importing the package sets OpenMP's wait policy to PASSIVE unless the environment already sets
``OMP_WAIT_POLICY`` (see :mod:`metalearning.openmp`), and applies ``$METALEARNING_NUMERICS``
(``portable`` pins the CPU kernel paths: :mod:`metalearning.numerics`). Both must happen
before torch loads its libraries, which read the environment once; every entry point (the CLI,
the pipeline stages) imports this package before torch. It also lets glibc's malloc keep freed
memory for the next tensor instead of unmapping it (``$METALEARNING_MALLOC``:
:mod:`metalearning.allocator`).
"""

from metalearning.allocator import keep_freed_memory
from metalearning.numerics import numerics_from_env
from metalearning.openmp import default_wait_policy

default_wait_policy()
try:
    numerics_from_env()
    keep_freed_memory()
except ValueError as err:  # a bad $METALEARNING_NUMERICS or $METALEARNING_MALLOC: one line, before any work
    raise SystemExit(f"metalearning: error: {err}") from None
