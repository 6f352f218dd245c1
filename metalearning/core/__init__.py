"""The functional core: one ``adapt`` and the outer rules of MAML, FOMAML, Meta-SGD, Reptile."""

from metalearning.core.adapt import SGD, Adam, adapt, adapt_with_state
from metalearning.core.algorithms import MAML, MetaLearner, MetaSGD, Reptile

__all__ = ["SGD", "Adam", "adapt", "adapt_with_state", "MAML", "MetaLearner", "MetaSGD", "Reptile"]
