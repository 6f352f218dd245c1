"""The functional core: one ``adapt`` and the outer rules of MAML, FOMAML, Meta-SGD, Reptile, ANIL, MAML++."""

from metalearning.core.adapt import SGD, Adam, adapt, adapt_with_state
from metalearning.core.algorithms import MAML, MetaLearner, MetaSGD, Reptile
from metalearning.core.anil import ANIL
from metalearning.core.mamlpp import MAMLPlusPlus

__all__ = ["SGD", "Adam", "adapt", "adapt_with_state", "MAML", "MetaLearner", "MetaSGD", "Reptile", "ANIL",
           "MAMLPlusPlus"]
