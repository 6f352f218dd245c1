"""The few-shot classification family's meta-test protocol: fixed episode sets and scoring on them.

Every trained model is scored on the same seeded episode file (e.g. 600 5-way 1-shot tasks
of held-out characters), so numbers are comparable across algorithms and reruns. Each model
is adapted once per episode and its query predictions scored under both batch-norm modes
(reptile.md §6): transductive (the query set is one batch) and non-transductive (support set
plus one query example); the report labels every number with its mode. The accuracy is scored
after the algorithm's evaluation steps and at the points of :func:`curve_steps` on the way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import gin
from torch import Tensor

from metalearning.config import load_config
from metalearning.core.family import MetaTestResult
from metalearning.data.episodes import (
    FewShotTasks,
    accuracy,
    build_episode_set,
    episode_set_task,
    load_episode_set,
    save_episode_set,
)
from metalearning.evaluation import adapted_scores, mean_ci95, metric_scores
from metalearning.learners.classification import BN_MODES, ClassificationPredictor

if TYPE_CHECKING:
    from metalearning.model import Model

EVAL_CHUNK = 100  # episodes adapted per vmap call: bounds memory for 20-way / 50-step evaluation


def meta_test_tasks(*, ways: int, shots: int, queries: int) -> FewShotTasks:
    """The configured task distribution's ``meta_test`` scope (held-out classes), N-way K-shot."""
    with gin.config_scope("meta_test"):
        return FewShotTasks(ways=ways, shots=shots, queries=queries)


def split_episodes(config_files: Sequence[Path], bindings: Sequence[str] = (), *, ways: int, shots: int,
                   queries: int, episodes: int, seed: int, out: Path) -> dict:
    """Write a fixed, seeded meta-test episode set over the meta-test classes of ``config_files``.

    The file holds indices plus the SHA-256 of the class tensor they index (see
    :func:`~metalearning.data.episodes.build_episode_set`). Returns its summary.
    """
    # The task files bind N, K and Q through the macros the experiment files define.
    load_config(config_files, [*bindings, f"ways = {ways}", f"shots = {shots}", f"queries = {queries}"])
    data = build_episode_set(meta_test_tasks(ways=ways, shots=shots, queries=queries), episodes=episodes, seed=seed)
    save_episode_set(data, out)
    return {k: data[k] for k in ("ways", "shots", "queries", "seed")} | {"episodes": episodes}


def describe(model: Model) -> dict:
    """What the report needs to place a result: algorithm, N-way K-shot of training, budget, BN mode."""
    algo, trainer = model.algorithm, model.trainer
    tasks = trainer.tasks
    return {"algorithm": algo.label, "ways": tasks.ways, "train_shots": tasks.shots, "train_queries": tasks.queries,
            "meta_iterations": model.iteration, "meta_batch_size": trainer.meta_batch_size,
            "inner_steps": algo.inner_steps, "eval_inner_steps": algo.eval_inner_steps,
            "train_bn_mode": trainer.predict.bn_mode,
            "learner": type(trainer.learner).__name__,
            "parameters": sum(p.numel() for p in trainer.learner.parameters()), "seed": model.seed}


def curve_steps(steps: int) -> list[int]:
    """The inner steps at which the accuracy-vs-steps curve is scored: all of 0..``steps`` up to
    10, else 0, 1, 2, 5 and every tenth step up to ``steps`` (Reptile's 50 evaluation steps
    would otherwise spend most of the meta-test scoring, not adapting)."""
    if steps <= 10:
        return list(range(steps + 1))
    return sorted({0, 1, 2, 5, *range(10, steps, 10), steps})


def score_episodes(model: Model, task, at: Sequence[int]) -> dict[str, Tensor]:
    """Query accuracy ``[episodes, len(at)]`` under each BN mode after each of the inner steps
    ``at``, from one adaptation per episode."""
    scores = {}
    for mode in BN_MODES:
        scores |= metric_scores(ClassificationPredictor(model.trainer.learner, mode), {mode: accuracy})
    return adapted_scores(model.algorithm, model.meta_params, task, model.trainer.loss, max(at), scores,
                          chunk_size=EVAL_CHUNK, at=at)


def summarise(per_episode: dict[str, Tensor], at: Sequence[int]) -> dict:
    """Mean accuracy ± 95% CI over episodes after the last of the inner steps ``at``, and at each."""
    out = {}
    for mode, acc in per_episode.items():
        curve = [mean_ci95(acc[:, i]) for i in range(acc.shape[1])]
        out[mode] = {"accuracy": curve[-1][0], "ci95": curve[-1][1], "curve_steps": list(at),
                     "curve_accuracy": [m for m, _ in curve], "curve_ci95": [h for _, h in curve]}
    return out


def meta_test(model: Model, episodes: Path | None) -> MetaTestResult:
    """Meta-test ``model`` on the episode set ``episodes``: accuracy ± 95% CI under both BN modes
    (``metrics.json``) and on the way (``curves.json``). Reads only the meta-test classes.

    Raises:
        ValueError: no episode set given, its N differs from the model's, or its class tensor
            differs from the configured meta-test classes (different data file or split).
    """
    if episodes is None:
        raise ValueError("a few-shot meta-test needs --test-set (an episode set, e.g. data/omniglot/episodes/5w1s.pt)")
    data, ways = load_episode_set(episodes), model.family.ways
    if data["ways"] != ways:
        raise ValueError(f"{episodes} holds {data['ways']}-way episodes; {model.path} is a {ways}-way model")
    classes = meta_test_tasks(ways=data["ways"], shots=data["shots"], queries=data["queries"]).classes
    task = episode_set_task(data, classes)
    steps, at = model.algorithm.eval_inner_steps, curve_steps(model.algorithm.eval_inner_steps)
    summary = summarise(score_episodes(model, task, at), at)
    episode_info = {k: data[k] for k in ("ways", "shots", "queries", "seed")} | {
        "episodes": int(data["class_ids"].shape[0])}
    metrics = {mode: {k: v[k] for k in ("accuracy", "ci95")} for mode, v in summary.items()}
    files = {"metrics.json": {**metrics, "inner_steps": steps, **episode_info},
             "curves.json": {"setting": describe(model), "episodes": episode_info, "modes": summary}}
    return MetaTestResult({f"{mode}_{stat}": v for mode, stats in metrics.items() for stat, v in stats.items()}, files)
