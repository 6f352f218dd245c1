"""Cost of a meta-RL meta-iteration, split into its phases, for each way TRPO forms its
Hessian-vector products: ``metalearning bench --trpo``.

For each experiment (default: the papers' 2D-navigation sizes, MAML-TRPO and Meta-SGD-TRPO:
20 tasks × 20 trajectories × 100 steps, a 2-100-100-2 policy), the meta-batches are sampled once
(the "rollouts" phase: support episodes, inner step, query episodes) and every HVP method then
takes the TRPO step on the same meta-batches from the same meta-parameters, one method after the
other with the order rotating, so the medians compare like with like on a shared machine.
Phases of the TRPO step (:meth:`~metalearning.rl.trpo.TRPO.step` is exactly these three calls):

* ``setup``: the objective through the inner update, its gradient g, and what the products reuse;
* ``cg``: ``cg_iters`` conjugate-gradient iterations, one product each, and the step scaling (sᵀHs
  from CG's residual: no product);
* ``line search``: backtracking, one objective evaluation per trial.

Also printed: the largest relative difference of each method's step from the direct one's (the
exact methods agree to rounding; finite differences to their approximation); and the line search
with ``TRPO.ls_batch`` trials per pass (:func:`~metalearning.rl.trpo.backtracking_line_search`)
on the same full steps: its time, passes, trials evaluated, and whether it accepted the
sequential search's step. Not a test: timings are noisy.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import Tensor

from metalearning import config as cfg
from metalearning.rl.trpo import HVP_METHODS, SplitObjective, backtracking_line_search, flatten, unflatten
from metalearning.training import MetaTrainer, init_state

EXPERIMENTS = ("maml_nav2d", "metasgd_nav2d_fixed")
CONFIG_DIR = Path("configs/rl/experiments")
PHASES = ("setup", "cg", "line search")
LS_BATCHES = (1, 2, 4)


def _timed(fn, *args, **kwargs) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


class Step(NamedTuple):
    """One timed TRPO step: the new flat parameters, the full step and surrogate loss the line
    search started from, and the seconds of every phase."""

    new: Tensor
    full_step: Tensor
    loss: float
    seconds: dict[str, float]


def trpo_phases(trpo: Any, objective: SplitObjective, flat: Tensor) -> Step:
    """One TRPO step as :meth:`TRPO.step` takes it (one process), timed per phase."""
    (loss, g, hvp), setup = _timed(trpo.gradient_and_hvp, objective, flat)
    full_step, cg = _timed(trpo.step_direction, g, hvp)
    (new, _), search = _timed(backtracking_line_search, objective, flat, full_step, float(loss), max_kl=trpo.max_kl,
                              backtrack_ratio=trpo.ls_backtrack_ratio, max_steps=trpo.ls_max_steps,
                              batch=trpo.ls_batch)
    return Step(new, full_step, float(loss), {"setup": setup, "cg": cg, "line search": search})


class Search(NamedTuple):
    """One timed line search: seconds, passes over the objective, trials evaluated, new flat."""

    seconds: float
    passes: int
    trials: int
    new: Tensor


def line_search_rows(trpo: Any, objective: SplitObjective, flat: Tensor, step: Step,
                     order: Sequence[int]) -> dict[int, Search]:
    """The line search from ``step``'s full step with every ``TRPO.ls_batch`` in ``order``
    (run in that order), by batch."""
    rows = {}
    for batch in order:
        passes = []

        def counted(x: Tensor) -> tuple[Tensor, Tensor]:
            passes.append(x)  # once per pass: a vmap pass calls it once with every trial in it
            return objective(x)

        (new, _), seconds = _timed(backtracking_line_search, counted, flat, step.full_step, step.loss,
                                   max_kl=trpo.max_kl, backtrack_ratio=trpo.ls_backtrack_ratio,
                                   max_steps=trpo.ls_max_steps, batch=batch)
        rows[batch] = Search(seconds, len(passes), min(len(passes) * batch, trpo.ls_max_steps), new)
    return rows


def bench_experiment(path: Path, methods: Sequence[str], iterations: int, bindings: Sequence[str] = (),
                     ls_batches: Sequence[int] = LS_BATCHES) -> None:
    """Print the phase medians (ms) of every method on ``iterations`` meta-batches of the
    experiment file ``path``."""
    cfg.load_config([path], bindings)
    trainer = cfg.build(MetaTrainer, str(path))
    name = path.stem
    state = init_state(trainer, seed=0)
    family, meta_params, flat = trainer.tasks, state.meta_params, flatten(state.meta_params)
    batches, rollouts = [], []
    for _ in range(iterations + 1):  # the first is a warm-up
        batch, seconds = _timed(family.meta_batch, trainer, meta_params, trainer.meta_batch_size, state.generator)
        batches.append(batch.tasks)
        rollouts.append(seconds)
    times: dict[str, dict[str, list[float]]] = {m: {p: [] for p in PHASES} for m in methods}
    steps: dict[str, list[Tensor]] = {m: [] for m in methods}
    searches: dict[int, list[Search]] = {b: [] for b in ls_batches}
    searched = trainer.outer_rule.hvp if trainer.outer_rule.hvp in methods else methods[0]
    for index, tasks in enumerate(batches):
        inner, outer = family.objective_parts(trainer, tasks)
        objective = SplitObjective(lambda x, inner=inner: inner(unflatten(x, meta_params)), outer)
        order = list(methods[index % len(methods):]) + list(methods[:index % len(methods)])
        taken = {}
        for method in order:
            trpo = dataclasses.replace(trainer.outer_rule, hvp=method)
            taken[method] = trpo_phases(trpo, objective, flat)
            if index:
                for phase, seconds in taken[method].seconds.items():
                    times[method][phase].append(seconds)
            steps[method].append(taken[method].new - flat)
        if index:  # the line search from the configured method's step, by trials per pass
            shift = index % len(ls_batches)
            rows = line_search_rows(trainer.outer_rule, objective, flat, taken[searched],
                                    list(ls_batches[shift:]) + list(ls_batches[:shift]))
            for batch, row in rows.items():
                searches[batch].append(row)
    rollout_ms = 1000 * statistics.median(rollouts[1:])
    reference = "direct" if "direct" in methods else methods[0]
    print(f"\n{name}: {trainer.meta_batch_size} tasks x {family.support_trajectories} trajectories, "
          f"{type(trainer.algorithm).__name__}, {flat.numel()} meta-parameters, median of {iterations} "
          f"(rollouts {rollout_ms:.0f} ms per meta-iteration, the same for every method)")
    print(f"{'hvp':<18}" + "".join(f"{p + ' ms':>15}" for p in PHASES)
          + f"{'iteration ms':>15}{'x ' + reference:>12}{'max |dstep|/|step|':>20}")
    totals = {m: rollout_ms + sum(1000 * statistics.median(times[m][p]) for p in PHASES) for m in methods}
    for method in methods:
        cells = "".join(f"{1000 * statistics.median(times[method][p]):>15.0f}" for p in PHASES)
        diff = max(float((a - b).norm() / b.norm().clamp_min(1e-30))
                   for a, b in zip(steps[method], steps[reference]))
        print(f"{method:<18}{cells}{totals[method]:>15.0f}{totals[reference] / totals[method]:>11.2f}x{diff:>20.1e}")
    sequential = ls_batches[0]
    print(f"line search of the {searched} step by trials per pass (TRPO.ls_batch), median ms and "
          f"mean passes / trials evaluated per step")
    print(f"{'ls_batch':<18}{'ms':>15}{'passes':>15}{'trials':>15}{'x ls_batch ' + str(sequential):>16}"
          f"{'same step':>12}")
    median_ms = {b: 1000 * statistics.median(row.seconds for row in searches[b]) for b in ls_batches}
    for batch in ls_batches:
        rows = searches[batch]
        same = all(torch.equal(row.new, ref.new) for row, ref in zip(rows, searches[sequential]))
        print(f"{batch:<18}{median_ms[batch]:>15.0f}{statistics.mean(r.passes for r in rows):>15.1f}"
              f"{statistics.mean(r.trials for r in rows):>15.1f}{median_ms[sequential] / median_ms[batch]:>15.2f}x"
              f"{'yes' if same else 'no':>12}")


def main(configs: Sequence[Path] = (), bindings: Sequence[str] = (), iterations: int | None = None,
         threads: int | None = None, methods: Sequence[str] = HVP_METHODS) -> None:
    """``metalearning bench --trpo [--config F ...] [--bind B ...] [--iterations N] [--threads T]``."""
    torch.set_num_threads(threads or 1)  # one core, as the target; the policy is small
    print(f"TRPO meta-iteration split, {torch.get_num_threads()} torch thread(s); the speed-up is against "
          f"the direct (third-derivative) products")
    for path in configs or [CONFIG_DIR / f"{name}.gin" for name in EXPERIMENTS]:
        bench_experiment(Path(path), list(methods), iterations or 3, bindings)

