"""The sine family's meta-test protocol (meta-sgd.md §4.1): MSE ± 95% CI after adaptation on a
fixed, seeded set of curves for every K, the adaptation curve, and the paper figure's example."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gin
import torch

from metalearning.config import load_config
from metalearning.core.algorithms import method_label
from metalearning.core.family import MetaTestResult
from metalearning.devices import to_device
from metalearning.evaluation import adapted_query_losses, mean_ci95
from metalearning.tasks.sine import SineTasks
from metalearning.tasks.sine_testset import as_tasks, build_meta_test_set, load_meta_test_set, save_meta_test_set

if TYPE_CHECKING:
    from metalearning.model import Model

CURVE_STEPS = 10  # the adaptation curve is scored up to this many steps (or eval_inner_steps if more)


def split_sine(config_files: Sequence[Path], bindings: Sequence[str] = (), *, shots: Sequence[int],
               curves: int, repeats: int, seed: int, out: Path) -> None:
    """Write the fixed meta-test set of the sine family configured in ``config_files``.

    The family's ``meta_test/SineTasks`` scope sets the query grid (e.g. 100 evenly spaced points).
    """
    load_config(config_files, bindings)
    with gin.config_scope("meta_test"):
        tasks = SineTasks(support_size=max(shots))
    save_meta_test_set(build_meta_test_set(tasks, shots=shots, curves=curves, repeats=repeats, seed=seed), out)


def evaluate_block(model: Model, block: dict, max_steps: int) -> dict:
    """Meta-test one K-block: per-curve mean over the repeats, then mean ± 95% CI over curves."""
    algo, loss = model.algorithm, model.trainer.loss
    c, r = block["support_x"].shape[:2]
    losses = adapted_query_losses(algo, model.meta_params, as_tasks(block), loss, max_steps)
    per_curve = losses.view(c, r, max_steps + 1).mean(dim=1)
    steps = [mean_ci95(per_curve[:, s]) for s in range(max_steps + 1)]
    mse, ci95 = steps[algo.eval_inner_steps]
    return {"mse": mse, "ci95": ci95, "curve_mse": [m for m, _ in steps], "curve_ci95": [h for _, h in steps]}


def qualitative_example(model: Model, block: dict, points: int = 200) -> dict:
    """The paper figure's data: true curve, K support points, prediction before/after adaptation."""
    algo, learner, device = model.algorithm, model.trainer.learner, model.trainer.device
    support = (block["support_x"][0, 0].float(), block["support_y"][0, 0].float())
    amplitude, frequency, phase = block["curves"][0].tolist()
    x = torch.linspace(float(block["query_x"][0, 0]), float(block["query_x"][0, -1]), points).view(-1, 1)
    with torch.no_grad():
        path = algo.adaptation_path(model.meta_params, to_device(support, device), model.trainer.loss,
                                    algo.eval_inner_steps)
        before, after = (torch.func.functional_call(learner, p, (x.to(device),)) for p in (path[0], path[-1]))
    return {"x": x.flatten().tolist(), "true": (amplitude * torch.sin(frequency * x + phase)).flatten().tolist(),
            "before": before.flatten().tolist(), "after": after.flatten().tolist(),
            "support_x": support[0].flatten().tolist(), "support_y": support[1].flatten().tolist(),
            "inner_steps": algo.eval_inner_steps}


def describe(model: Model) -> dict:
    """What the report needs to place a result: algorithm, training shots, budget, test steps."""
    algo, trainer = model.algorithm, model.trainer
    return {"algorithm": method_label(algo), "train_shots": trainer.tasks.support_size,
            "meta_iterations": model.iteration, "meta_batch_size": trainer.meta_batch_size,
            "inner_steps": algo.inner_steps, "eval_inner_steps": algo.eval_inner_steps, "seed": model.seed}


def meta_test(model: Model, test_set: Path | None) -> MetaTestResult:
    """MSE ± 95% CI per K of the fixed meta-test set ``test_set`` (``metalearning test --test-set``)."""
    if test_set is None:
        raise ValueError("a sine meta-test needs --test-set (a file written by `metalearning split-sine`)")
    data = load_meta_test_set(test_set)
    max_steps = max(CURVE_STEPS, model.algorithm.eval_inner_steps)
    per_k = {f"{k}shot": evaluate_block(model, block, max_steps) for k, block in sorted(data["shots"].items())}
    summary = {name: {"mse": v["mse"], "ci95": v["ci95"]} for name, v in per_k.items()}
    files = {"metrics.json": {**summary, "inner_steps": model.algorithm.eval_inner_steps},
             "curves.json": {"setting": describe(model), "shots": per_k},
             "qualitative.json": qualitative_example(model, data["shots"][min(data["shots"])])}
    return MetaTestResult({f"{name}_{stat}": v for name, stats in summary.items() for stat, v in stats.items()}, files)
