"""Trust-region policy optimisation (Schulman et al., 2015) on a flat parameter vector.

The meta-optimiser of maml.md §5.3 and meta-sgd.md §4.3. One step solves ``H s = −g`` by
conjugate gradient, where ``g`` is the gradient of the surrogate loss and ``H`` the Hessian of
the mean KL (the Fisher matrix at the current parameters), scales ``s`` so that the quadratic
model of the KL equals ``max_kl``, and backtracks until the surrogate improves with the KL
within ``max_kl``.

Hessian-vector products are exact, by double backpropagation through the KL (and, in
meta-RL, through the inner update); the MAML paper used finite differences of gradients
instead, "in order to avoid computing third derivatives".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import gin
import torch
from torch import Tensor
from torch.utils import _pytree as pytree

from metalearning import distributed
from metalearning.core.batching import num_tasks

Objective = Callable[[Tensor], tuple[Tensor, Tensor]]  # flat params -> (surrogate loss, mean KL)
HVP = Callable[[Tensor], Tensor]
Reduce = Callable[[Tensor], Tensor]  # a process's share -> the sum over the processes (identity for one)


def flatten(tree: Any) -> Tensor:
    """Every tensor leaf of ``tree`` (e.g. meta-parameters), detached, as one 1-D vector."""
    return torch.cat([leaf.detach().reshape(-1) for leaf in pytree.tree_leaves(tree)])


def unflatten(flat: Tensor, like: Any) -> Any:
    """A tree shaped like ``like`` whose leaves are views into ``flat`` (differentiable)."""
    leaves, spec = pytree.tree_flatten(like)
    chunks = torch.split(flat, [leaf.numel() for leaf in leaves])
    return pytree.tree_unflatten([c.view_as(leaf) for c, leaf in zip(chunks, leaves)], spec)


def conjugate_gradient(hvp: HVP, g: Tensor, iters: int = 10, residual_tol: float = 1e-10) -> Tensor:
    """Approximately solve ``H x = g`` for symmetric positive-definite ``H`` given ``x ↦ Hx``.

    Args:
        hvp: the product with H, ``[n] -> [n]``.
        g: right-hand side, ``[n]``.
        iters: at most this many CG iterations (TRPO: 10).
        residual_tol: stop once ``‖g − Hx‖² < residual_tol``.

    Returns:
        ``x``, ``[n]``.
    """
    x = torch.zeros_like(g)
    r, p = g.clone(), g.clone()
    rr = r @ r
    for _ in range(iters):
        if float(rr) < residual_tol:
            break
        hp = hvp(p)
        step = rr / (p @ hp)
        x, r = x + step * p, r - step * hp
        rr_new = r @ r
        p, rr = r + (rr_new / rr) * p, rr_new
    return x


def kl_hvp(kl: Tensor, flat: Tensor, damping: float) -> HVP:
    """``v ↦ (∇²_flat kl) v + damping·v``, exact, by differentiating ``∇kl · v`` again.

    ``kl`` must have been computed from ``flat`` (a leaf that requires grad); the graph of the
    first derivative is kept, so every product costs one more backward pass.
    """
    (grad,) = torch.autograd.grad(kl, flat, create_graph=True)

    def hvp(v: Tensor) -> Tensor:
        (hv,) = torch.autograd.grad(grad @ v, flat, retain_graph=True)
        return hv + damping * v

    return hvp


class TRPOStats(NamedTuple):
    """Diagnostics of one TRPO step (floats, for logging)."""

    loss_before: float
    loss_after: float
    kl_after: float
    step_fraction: float  # backtrack_ratio^j of the accepted step; 0.0 if every step was rejected
    grad_norm: float


def backtracking_line_search(objective: Objective, flat: Tensor, full_step: Tensor, loss_before: float, *,
                             max_kl: float, backtrack_ratio: float, max_steps: int,
                             reduce: Reduce = distributed.reduced_sum) -> tuple[Tensor, TRPOStats]:
    """Try ``flat + ratio^j · full_step`` for j = 0, 1, …; accept the first that lowers the loss
    with KL ≤ ``max_kl``; keep ``flat`` if none does (rllab's rule)."""
    with torch.no_grad():
        for j in range(max_steps):
            fraction = backtrack_ratio**j
            candidate = flat + fraction * full_step
            loss, kl = (float(v) for v in reduce(torch.stack(objective(candidate))))
            if loss < loss_before and kl <= max_kl:
                return candidate, TRPOStats(loss_before, loss, kl, fraction, math.nan)
    return flat, TRPOStats(loss_before, loss_before, 0.0, 0.0, math.nan)


@gin.configurable
@dataclass(frozen=True)
class TRPO:
    """TRPO's step on any ``objective(flat) -> (loss, kl)`` whose KL is 0 at ``flat``.

    Args:
        max_kl: trust-region radius δ on the mean KL (MAML: 0.01).
        cg_iters: conjugate-gradient iterations (10).
        cg_damping: λ added to the KL Hessian, ``H + λI`` (1e-5 in pytorch-maml-rl and rllab).
        ls_backtrack_ratio: step shrink factor of the line search.
        ls_max_steps: line-search trials (15).
    """

    max_kl: float
    cg_iters: int
    cg_damping: float
    ls_backtrack_ratio: float
    ls_max_steps: int

    def step_direction(self, loss: Tensor, kl: Tensor, flat: Tensor,
                       reduce: Reduce = distributed.reduced_sum) -> tuple[Tensor, Tensor]:
        """(full step ``√(2δ / sᵀHs)·s`` with ``H s = −g``; the gradient g), at ``flat``.

        ``reduce`` sums a process's share of g and of every H·v over the processes, when
        ``loss`` and ``kl`` are this process's weighted share of the meta-batch's.
        """
        (g,) = torch.autograd.grad(loss, flat, retain_graph=True)
        g = reduce(g)
        local_hvp = kl_hvp(kl, flat, 0.0)  # (one process: + 0·v leaves H·v's bits as they are)

        def hvp(v: Tensor) -> Tensor:
            return reduce(local_hvp(v)) + self.cg_damping * v  # the damping once, not once per share

        direction = conjugate_gradient(hvp, -g, self.cg_iters)
        shs = (direction @ hvp(direction)).clamp_min(1e-20)
        return torch.sqrt(2 * self.max_kl / shs) * direction, g

    def step(self, objective: Objective, flat: Tensor,
             reduce: Reduce = distributed.reduced_sum) -> tuple[Tensor, TRPOStats]:
        """One TRPO update of the 1-D parameter vector ``flat``.

        With several processes, ``objective`` gives this process's weighted share of the loss and
        KL, and ``reduce`` sums shares over the processes, which then all take the same step.

        Returns:
            (new parameters, detached ``[n]``; diagnostics). The parameters are unchanged when
            the line search rejects every step.
        """
        x = flat.detach().requires_grad_()
        loss, kl = objective(x)
        full_step, g = self.step_direction(loss, kl, x, reduce)
        new, stats = backtracking_line_search(
            objective, x.detach(), full_step.detach(), float(reduce(loss.detach())), max_kl=self.max_kl,
            backtrack_ratio=self.ls_backtrack_ratio, max_steps=self.ls_max_steps, reduce=reduce,
        )
        return new, stats._replace(grad_norm=float(g.norm()))

    def start(self, trainer: Any, meta_params: Any) -> TRPOStep:
        """Bind this rule to a run (``MetaTrainer.outer_rule``): the family's ``objective`` is the
        surrogate TRPO maximises, and the meta-parameters are updated in place."""
        return TRPOStep(self, trainer, meta_params)


@dataclass(frozen=True)
class TRPOStep:
    """TRPO as the trainer's outer rule. Stateless between iterations: its state_dict is empty."""

    trpo: TRPO
    trainer: Any
    meta_params: Any

    def step(self, batch: Any, iteration: int) -> dict[str, float]:
        # this process's tasks' share of the meta-batch means (all of it, 1.0, in one process)
        weight = num_tasks(batch.tasks) / self.trainer.meta_batch_size

        def objective(flat: Tensor) -> tuple[Tensor, Tensor]:
            loss, kl = self.trainer.tasks.objective(self.trainer, unflatten(flat, self.meta_params), batch.tasks)
            return (loss, kl) if weight == 1.0 else (weight * loss, weight * kl)

        new_flat, stats = self.trpo.step(objective, flatten(self.meta_params))
        checked = {"surrogate loss": stats.loss_before, "gradient norm": stats.grad_norm,
                   "updated meta-parameters": float(new_flat.abs().sum())}
        for name, value in checked.items():
            if not math.isfinite(value):
                raise FloatingPointError(f"TRPO's {name} became {value} at meta-iteration {iteration + 1}")
        with torch.no_grad():
            for leaf, new in zip(pytree.tree_leaves(self.meta_params), pytree.tree_leaves(
                    unflatten(new_flat, self.meta_params))):
                leaf.copy_(new)
        return {"trpo.kl": stats.kl_after, "trpo.loss_before": stats.loss_before, "trpo.loss_after": stats.loss_after,
                "trpo.step_fraction": stats.step_fraction, "trpo.grad_norm": stats.grad_norm}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        pass
