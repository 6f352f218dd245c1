"""Reference quantities of reptile.md §5.1, computed independently of ``metalearning.core``.

Everything here works on the *flattened* parameter vector x (the dict's tensors concatenated in
insertion order) with plain ``torch.func`` transforms of the problem's per-minibatch losses,
so it shares no code with :func:`metalearning.core.adapt` or the algorithms under test.
An ``order`` is a sequence of minibatch indices (o_1, …, o_k): L_i is minibatch o_i.

Notation (reptile.md eq. 9-12): g_i = L_i'(φ_i), φ_{i+1} = φ_i − α g_i, ḡ_i = L_i'(φ_1),
H̄_i = L_i''(φ_1).
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import torch
from props_problems import Params, Problem
from torch import Tensor


def flatten(params: Params) -> Tensor:
    return torch.cat([p.reshape(-1) for p in params.values()])


def unflatten(x: Tensor, like: Params) -> Params:
    chunks = torch.split(x, [p.numel() for p in like.values()])
    return {k: c.view_as(p) for (k, p), c in zip(like.items(), chunks)}


def flat_loss(problem: Problem, i: int) -> Callable[[Tensor], Tensor]:
    """x ↦ L_i(x), minibatch ``i`` as a function of the flat parameter vector."""
    batch = problem.minibatch(i)
    return lambda x: problem.loss(unflatten(x, problem.params), batch)


def gradient(problem: Problem, i: int, x: Tensor) -> Tensor:
    return torch.func.grad(flat_loss(problem, i))(x)


def hessian(problem: Problem, i: int, x: Tensor) -> Tensor:
    return torch.func.hessian(flat_loss(problem, i))(x)


def hvp(problem: Problem, i: int, x: Tensor, v: Tensor) -> Tensor:
    """L_i''(x)·v by forward-over-reverse differentiation (no Hessian materialised)."""
    return torch.func.jvp(torch.func.grad(flat_loss(problem, i)), (x,), (v,))[1]


def sgd_path(problem: Problem, order: Sequence[int], alpha: float, x: Tensor) -> list[Tensor]:
    """φ_1 = x, …, φ_{len(order)+1}: one plain SGD step per minibatch in ``order`` (eq. 10)."""
    path = [x]
    for i in order:
        path.append(path[-1] - alpha * gradient(problem, i, path[-1]))
    return path


def maml_objective(problem: Problem, order: Sequence[int], alpha: float) -> Callable[[Tensor], Tensor]:
    """x ↦ L_k(U_{k−1}(… U_1(x))) (eq. 17-18), the function MAML differentiates."""
    return lambda x: flat_loss(problem, order[-1])(sgd_path(problem, order[:-1], alpha, x)[-1])


def central_difference(f: Callable[[Tensor], Tensor], x: Tensor, h: float) -> Tensor:
    """∇f(x) by the fourth-order central stencil, every coordinate at once (vmap over e_j)."""
    e = h * torch.eye(x.numel(), dtype=x.dtype)
    fx = torch.func.vmap(f)
    return (-fx(x + 2 * e) + 8 * fx(x + e) - 8 * fx(x - e) + fx(x - 2 * e)) / (12 * h)


def maml_product_form(
    problem: Problem, order: Sequence[int], alpha: float, x: Tensor, *, hessians_at_start: bool = False
) -> Tensor:
    """(Π_{j<k} (I − α L_j''(φ_j))) g_k with explicit Hessians (eq. 20-21).

    ``hessians_at_start=True`` uses H̄_j = L_j''(φ_1) instead — the eq. 22 approximation, kept
    only so a test can show the exactness check rejects it.
    """
    path = sgd_path(problem, order[:-1], alpha, x)
    g = gradient(problem, order[-1], path[-1])
    for j in reversed(range(len(order) - 1)):  # the innermost factor, j = k−1, acts first
        at = x if hessians_at_start else path[j]
        g = g - alpha * hessian(problem, order[j], at) @ g
    return g


def _hbar_sum_gbar(problem: Problem, order: Sequence[int], x: Tensor, i: int) -> Tensor:
    """H̄_i Σ_{j<i} ḡ_j (zero for i = 1)."""
    if i == 0:
        return torch.zeros_like(x)
    return hvp(problem, order[i], x, sum(gradient(problem, o, x) for o in order[:i]))


def fomaml_leading(problem: Problem, order: Sequence[int], alpha: float, x: Tensor) -> Tensor:
    """ḡ_k − α H̄_k Σ_{j<k} ḡ_j (eq. 38; eq. 26 for k = 2)."""
    k = len(order) - 1
    return gradient(problem, order[k], x) - alpha * _hbar_sum_gbar(problem, order, x, k)


def maml_leading(problem: Problem, order: Sequence[int], alpha: float, x: Tensor) -> Tensor:
    """FOMAML's terms − α Σ_{j<k} H̄_j ḡ_k (eq. 36; eq. 25 for k = 2)."""
    g_k = gradient(problem, order[-1], x)
    extra = sum((hvp(problem, o, x, g_k) for o in order[:-1]), torch.zeros_like(x))
    return fomaml_leading(problem, order, alpha, x) - alpha * extra


def reptile_leading(problem: Problem, order: Sequence[int], alpha: float, x: Tensor) -> Tensor:
    """Σ_i ḡ_i − α Σ_i Σ_{j<i} H̄_i ḡ_j (eq. 40; eq. 27 for k = 2)."""
    return sum(
        gradient(problem, o, x) - alpha * _hbar_sum_gbar(problem, order, x, i) for i, o in enumerate(order)
    )


def orders(n: int, k: int, *, replacement: bool) -> Tensor:
    """Every ordered sequence of k of the n minibatches, as a ``[count, k]`` index tensor.

    Without replacement (distinct minibatches, as the non-overlapping minibatches of
    reptile.md §6.2) these are the k-permutations; with replacement, all n^k tuples. Both
    laws are exchangeable, which is all eq. 28-41 need: every position has the same marginal
    and every pair of positions the same joint law.
    """
    pick = itertools.product(range(n), repeat=k) if replacement else itertools.permutations(range(n), k)
    return torch.tensor(list(pick), dtype=torch.long).view(-1, k)


def avg_grad(problem: Problem, x: Tensor) -> Tensor:
    """AvgGrad = E_1[ḡ_1] (eq. 28): each position's marginal is uniform over the minibatches."""
    return torch.stack([gradient(problem, i, x) for i in range(problem.num_minibatches)]).mean(0)


def avg_grad_inner(problem: Problem, pairs: Tensor, x: Tensor) -> Tensor:
    """AvgGradInner = E_{1,2}[H̄_2 ḡ_1] (eq. 29), the law of (L_1, L_2) given by ``pairs``."""
    terms = [hvp(problem, int(b), x, gradient(problem, int(a), x)) for a, b in pairs]
    return torch.stack(terms).mean(0)


def half_grad_of_gradient_inner_product(problem: Problem, pairs: Tensor, x: Tensor) -> Tensor:
    """½ E_{1,2}[∂/∂φ (ḡ_1·ḡ_2)] (eq. 32), differentiating the inner product directly."""

    def inner(a: int, b: int) -> Callable[[Tensor], Tensor]:
        return lambda y: gradient(problem, a, y) @ gradient(problem, b, y)

    terms = [torch.func.grad(inner(int(a), int(b)))(x) for a, b in pairs]
    return 0.5 * torch.stack(terms).mean(0)


def curvature(problem: Problem, x: Tensor) -> float:
    """max_i ‖L_i''(x)‖₂, the largest Hessian spectral norm over the minibatches."""
    norms = [torch.linalg.matrix_norm(hessian(problem, i, x), 2) for i in range(problem.num_minibatches)]
    return max(norms).item()


def small_step(problem: Problem, a: float, k: int) -> float:
    """α = a / (k·(1 + max_i ‖H̄_i‖)): αk‖H̄‖ < a, the regime where §5.1's expansion holds."""
    return a / (k * (1.0 + curvature(problem, flatten(problem.params))))
