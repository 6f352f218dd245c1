"""The meta-training paths the benchmark compares, each a meta-parameter state plus a step.

* ``vmap`` — the platform's path: :meth:`MetaLearner.meta_gradient` with the meta-batch
  batched by ``torch.func.vmap`` (one graph, one backward).
* ``loop`` — the platform's per-task reference loop (``vectorize=False``; still one backward).
* ``autograd-loop`` — the pattern of the peer libraries' examples (learn2learn's ``clone()`` +
  ``adapt()``, higher's ``innerloop_ctx``), written here so the platform does not depend on them:
  per task, clone the module's parameters, take the inner steps with ``torch.autograd.grad``
  (``create_graph`` unless first order) on the module's forward, and call ``.backward()`` on the
  query loss, so the gradients accumulate over tasks and each task's graph is freed at once;
  then divide by the meta-batch size and step the optimiser.
* ``vmap chunk=1`` — :func:`metalearning.core.shards.weighted_meta_gradient` with one task per
  vmapped chunk and one backward per chunk (peak memory of one task's graph).

Every path starts from the same meta-parameters (``init_meta_params`` with the same seed) and
uses Adam with the same learning rate, so after the same meta-batches they agree up to rounding.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from metalearning.bench_settings import Problem
from metalearning.core.algorithms import MAML, MetaParams, MetaSGD, meta_leaves, set_meta_grads
from metalearning.core.batching import num_tasks
from metalearning.core.shards import weighted_meta_gradient

PATHS = ("vmap", "loop", "autograd-loop", "vmap chunk=1")
META_LR = 1e-3


@dataclass
class Runner:
    """``step(tasks)``: one meta-iteration (meta-gradient and Adam step) on ``meta`` in place."""

    step: Callable[[Any], None]
    meta: MetaParams


def _initial(problem: Problem, seed: int) -> MetaParams:
    return problem.algorithm.init_meta_params(dict(problem.model.named_parameters()),
                                              torch.Generator().manual_seed(seed))


def _platform_runner(problem: Problem, seed: int, path: str) -> Runner:
    algo, loss, meta = problem.algorithm, problem.loss, _initial(problem, seed)
    opt = torch.optim.Adam(meta_leaves(meta), lr=META_LR)

    def gradient(tasks):
        if path == "vmap chunk=1":
            return weighted_meta_gradient(algo, meta, tasks, loss, total=num_tasks(tasks), chunk=1)
        return algo.meta_gradient(meta, tasks, loss, vectorize=path == "vmap")

    def step(tasks) -> None:
        set_meta_grads(meta, gradient(tasks)[0])
        opt.step()

    return Runner(step, meta)


def autograd_loop_step(module: nn.Module, step_size: float | Mapping[str, Tensor], tasks: Any, *,
                       criterion: Callable[[Tensor, Tensor], Tensor], inner_steps: int, first_order: bool,
                       optimizer: torch.optim.Optimizer) -> None:
    """One meta-iteration of MAML / FOMAML / Meta-SGD as the peers' examples write it.

    Args:
        module: the learner; its parameters are θ.
        step_size: α, a float or Meta-SGD's per-parameter tensors (also in ``optimizer``).
        tasks: a meta-batch, ``support = (x [n, S, ...], y [n, S])``, ``query = (x, y, ...)``.
    """
    optimizer.zero_grad()
    n = tasks.support[0].shape[0]
    for i in range(n):
        fast = {k: p.clone() for k, p in module.named_parameters()}  # learn2learn's clone()
        for _ in range(inner_steps):  # learn2learn's adapt()
            out = torch.func.functional_call(module, fast, (tasks.support[0][i],))
            grads = torch.autograd.grad(criterion(out, tasks.support[1][i]), list(fast.values()),
                                        create_graph=not first_order)
            fast = {k: p - (step_size[k] if isinstance(step_size, Mapping) else step_size) * g
                    for (k, p), g in zip(fast.items(), grads)}
        out = torch.func.functional_call(module, fast, (tasks.query[0][i],))
        criterion(out, tasks.query[1][i]).backward()  # frees this task's graph
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                p.grad.div_(n)
    optimizer.step()


def _autograd_loop_runner(problem: Problem, seed: int) -> Runner:
    algo = problem.algorithm
    if type(algo) not in (MAML, MetaSGD):  # subclasses (ANIL, MAML++) change the inner loop
        raise ValueError(f"the autograd-loop path covers MAML, FOMAML and Meta-SGD, not {algo.label}")
    start = _initial(problem, seed)
    module = copy.deepcopy(problem.model)
    with torch.no_grad():
        for k, p in module.named_parameters():
            p.copy_(start["theta"][k])
    alphas = {k: nn.Parameter(a.detach().clone()) for k, a in start.get("alpha", {}).items()}  # Meta-SGD's α
    opt = torch.optim.Adam([*module.parameters(), *alphas.values()], lr=META_LR)
    step_size = alphas or algo.inner_lr

    def step(tasks) -> None:
        autograd_loop_step(module, step_size, tasks, criterion=problem.criterion, inner_steps=algo.inner_steps,
                           first_order=algo.first_order, optimizer=opt)

    meta = {"theta": dict(module.named_parameters()), **({"alpha": alphas} if alphas else {})}
    return Runner(step, meta)


def make_runner(problem: Problem, path: str, seed: int) -> Runner:
    """The state and step of ``path`` (one of :data:`PATHS`) on ``problem``, from ``seed``'s start."""
    if path not in PATHS:
        raise ValueError(f"unknown bench path {path!r}; choose from {PATHS}")
    if path == "autograd-loop":
        return _autograd_loop_runner(problem, seed)
    return _platform_runner(problem, seed, path)


def current_gradients(runner: Runner) -> MetaParams:
    """A copy of the meta-gradient of the runner's last step (what the optimiser consumed)."""
    return {g: {k: p.grad.detach().clone() for k, p in params.items()} for g, params in runner.meta.items()}


def max_difference(a: MetaParams, b: MetaParams) -> float:
    """max |a − b| over every meta-parameter entry."""
    return max((a[g][k] - b[g][k]).abs().max().item() for g in a for k in a[g])
