"""metalearning: a config-first platform for gradient-based meta-learning.

Importing the package sets OpenMP's wait policy to PASSIVE unless the environment already sets
``OMP_WAIT_POLICY`` (see :mod:`metalearning.openmp`). It must happen before torch loads its
OpenMP runtime, which reads the variable once; every entry point (the CLI, the pipeline stages)
imports this package before torch.
"""

from metalearning.openmp import default_wait_policy

default_wait_policy()
