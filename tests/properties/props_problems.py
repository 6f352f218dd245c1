"""Random smooth per-minibatch losses for the gradient-identity properties.

A :class:`Problem` is one task in the notation of reptile.md §5.1: a starting point φ_1 and a
small fixed set of minibatches whose losses L_1 … L_n are smooth functions of a dict of
parameters. Two families:

* ``"quadratic"``: L(z) = ½ zᵀAz + bᵀz with A symmetric (indefinite allowed) — Hessians are
  constant, so the Taylor expansions of §5.1 truncate and closed forms are exact;
* ``"tanh"`` / ``"softplus"``: squared error of a one-hidden-layer MLP on random data — third
  derivatives do not vanish, so the O(α²) remainders of §5.1 are really there.

Problems are described by a :class:`ProblemSpec` (small, readable in Hypothesis' failure
report) and built deterministically from its seed. Everything is float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import Tensor
from torch.utils import _pytree as pytree

F64 = torch.float64
Params = dict[str, Tensor]
LossFn = Callable[[Params, Any], Tensor]

SMOOTH_MLP_KINDS = ("tanh", "softplus")
KINDS = ("quadratic",) + SMOOTH_MLP_KINDS
_ACTIVATIONS = {"tanh": torch.tanh, "softplus": F.softplus}


@dataclass(frozen=True)
class Problem:
    """Losses L_i(params) = ``loss(params, minibatch i)`` and the starting point φ_1 = ``params``.

    ``minibatches`` is a pytree of float64 tensors whose dimension 0 indexes the minibatches.
    """

    loss: LossFn
    params: Params
    minibatches: Any

    @property
    def num_minibatches(self) -> int:
        return pytree.tree_leaves(self.minibatches)[0].shape[0]

    def minibatch(self, i: int) -> Any:
        return pytree.tree_map(lambda t: t[i], self.minibatches)

    def select(self, index: Tensor) -> Any:
        """The minibatches picked by an integer ``index`` of any shape, e.g. ``[tasks, k]``."""
        return pytree.tree_map(lambda t: t[index], self.minibatches)


def quadratic_loss(params: Params, batch: tuple[Tensor, Tensor]) -> Tensor:
    """½ zᵀAz + bᵀz with z = (u, v) concatenated; ``batch = (A [d, d], b [d])``."""
    a, b = batch
    z = torch.cat([params["u"], params["v"].reshape(-1)])
    return 0.5 * z @ a @ z + b @ z


def mlp_loss(params: Params, batch: tuple[Tensor, Tensor], *, activation: str) -> Tensor:
    """Mean squared error of ``w2·act(w1·x + b1) + b2``; ``batch = (x [m, d_in], y [m, 1])``."""
    x, y = batch
    hidden = _ACTIVATIONS[activation](x @ params["w1"].T + params["b1"])
    return ((hidden @ params["w2"].T + params["b2"] - y) ** 2).mean()


@dataclass(frozen=True)
class ProblemSpec:
    """What to build: ``kind`` in :data:`KINDS`, two ``sizes``, ``num_minibatches``, ``seed``.

    ``sizes`` is (len u, len v / 2) for a quadratic (v is a 2-row matrix, so the parameter
    dict holds tensors of different ranks) and (d_in, hidden) for an MLP.
    """

    kind: str
    sizes: tuple[int, int]
    num_minibatches: int
    seed: int

    def build(self) -> Problem:
        gen = torch.Generator().manual_seed(self.seed)
        if self.kind == "quadratic":
            return _quadratic_problem(*self.sizes, self.num_minibatches, gen)
        return _mlp_problem(self.kind, *self.sizes, self.num_minibatches, gen)


def _normal(gen: torch.Generator, *shape: int, std: float = 1.0) -> Tensor:
    return std * torch.randn(shape, generator=gen, dtype=F64)


def _quadratic_problem(d_u: int, half_d_v: int, n: int, gen: torch.Generator) -> Problem:
    d = d_u + 2 * half_d_v
    m = _normal(gen, n, d, d, std=d**-0.5)  # spectral norm of (M + Mᵀ)/2 is O(1) whatever d
    params = {"u": _normal(gen, d_u), "v": _normal(gen, 2, half_d_v)}
    return Problem(quadratic_loss, params, (0.5 * (m + m.transpose(1, 2)), _normal(gen, n, d)))


def _mlp_problem(activation: str, d_in: int, hidden: int, n: int, gen: torch.Generator) -> Problem:
    points = 3
    params = {
        "w1": _normal(gen, hidden, d_in, std=d_in**-0.5),
        "b1": _normal(gen, hidden, std=0.5),
        "w2": _normal(gen, 1, hidden, std=hidden**-0.5),
        "b2": _normal(gen, 1, std=0.5),
    }
    data = (_normal(gen, n, points, d_in), _normal(gen, n, points, 1))
    return Problem(partial(mlp_loss, activation=activation), params, data)


@st.composite
def problem_specs(draw, *, num_minibatches: int, kinds: tuple[str, ...] = KINDS) -> ProblemSpec:
    """Random problem descriptions: family, dimensions and seed (the minibatch count is given)."""
    return ProblemSpec(
        kind=draw(st.sampled_from(kinds)),
        sizes=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        num_minibatches=num_minibatches,
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def sequence_specs(min_k: int, max_k: int, *, kinds: tuple[str, ...] = KINDS) -> st.SearchStrategy:
    """Problems with k ∈ [min_k, max_k] minibatches, used in order as L_1 … L_k."""
    return st.integers(min_k, max_k).flatmap(lambda k: problem_specs(num_minibatches=k, kinds=kinds))
