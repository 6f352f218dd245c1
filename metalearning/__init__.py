"""metalearning: a config-first platform for gradient-based meta-learning.

Importing the package sets OpenMP's wait policy to PASSIVE unless the environment already sets
``OMP_WAIT_POLICY`` (see :mod:`metalearning.openmp`), and applies ``$METALEARNING_NUMERICS``
(``portable`` pins the CPU kernel paths: :mod:`metalearning.numerics`). Both must happen
before torch loads its libraries, which read the environment once; every entry point (the CLI,
the pipeline stages) imports this package before torch.
"""

from metalearning.numerics import numerics_from_env
from metalearning.openmp import default_wait_policy

default_wait_policy()
numerics_from_env()
