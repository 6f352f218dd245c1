"""The benchmark's settings: a learner, its loss, an algorithm and a sampler of meta-batches.

The sine settings are built here as they always were (MAML's 1-40-40-1 MLP). The image settings
are built from the shipped experiment files through gin, exactly as training builds them
(:class:`~metalearning.training.MetaTrainer`'s learner, loss and algorithm), but their
meta-batches are drawn from synthetic random uint8 classes of the configured image shape: speed
does not depend on pixel values, so no data set has to be downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gin
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from metalearning.core.adapt import LossFn
from metalearning.core.algorithms import MAML, MetaLearner, MetaSGD
from metalearning.core.functional import make_loss
from metalearning.learners.mlp import MLP
from metalearning.tasks.sine import SineTasks


@dataclass
class Problem:
    """What one setting meta-trains.

    Attributes:
        loss: the platform's ``loss(params, batch)``; equal to
            ``criterion(model(batch[0]), batch[1])`` (what the peers' pattern computes).
        sample: ``sample(n, generator, dtype)`` → a meta-batch of ``n`` tasks.
    """

    algorithm: MetaLearner
    model: nn.Module
    loss: LossFn
    criterion: Callable[[Tensor, Tensor], Tensor]
    meta_batch_size: int
    sample: Callable[..., Any]


@dataclass(frozen=True)
class Setting:
    """A named benchmark setting: ``build(seed)`` → :class:`Problem`; ``iterations`` timed after
    ``warmup`` by default (fewer for the slow image settings)."""

    key: str
    name: str
    build: Callable[[int], Problem]
    iterations: int
    warmup: int


def prepare(setting: Setting, batches: int, seed: int, dtype: torch.dtype,
            device: torch.device = torch.device("cpu")) -> tuple[Problem, list[Any]]:
    """The setting's problem in ``dtype`` on ``device`` and ``batches`` meta-batches drawn on the
    CPU with a generator seeded ``seed`` (then moved): what every path of one run, and every
    process of it, starts from."""
    from metalearning.devices import to_device

    problem = setting.build(seed)
    problem.model.to(device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    return problem, [to_device(problem.sample(problem.meta_batch_size, generator, dtype), device)
                     for _ in range(batches)]


def _sine(algorithm: Callable[[], MetaLearner], meta_batch_size: int, shots: int) -> Callable[[int], Problem]:
    def build(seed: int) -> Problem:
        torch.manual_seed(seed)
        model = MLP((1, 40, 40, 1), "relu", 0.01)
        tasks = SineTasks(support_size=shots, query_size=10)
        return Problem(algorithm(), model, make_loss(model, F.mse_loss), F.mse_loss, meta_batch_size, tasks.sample)

    return build


def synthetic_classes(generator: torch.Generator, *, classes: int, per_class: int, size: int,
                      channels: int) -> Tensor:
    """Random uint8 images ``[classes, per_class, size, size(, 3)]``: the layout of the data files."""
    shape = (classes, per_class, size, size) + ((3,) if channels == 3 else ())
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)


def _experiment(file: str, bindings: Sequence[str] = ()) -> Callable[[int], Problem]:
    """A shipped image experiment built through gin, its classes replaced by synthetic ones."""

    def build(seed: int) -> Problem:
        from metalearning.config import PACKAGE_CONFIGS, load_config
        from metalearning.data.episodes import FewShotTasks
        from metalearning.training import MetaTrainer

        load_config([PACKAGE_CONFIGS / "experiments" / file], bindings)
        torch.manual_seed(seed)
        trainer = MetaTrainer()
        if getattr(trainer.predict, "bn_mode", "transductive") != "transductive":
            raise ValueError(f"{file}: the peers' pattern here evaluates model(inputs): transductive batch norm only")
        t = trainer.tasks
        pixels = synthetic_classes(torch.Generator().manual_seed(seed), classes=2 * t.ways,
                                   per_class=t.shots + t.queries, size=gin.query_parameter("image_format.size"),
                                   channels=gin.query_parameter("image_format.channels"))
        gin.clear_config()  # everything is built: leave no bindings behind for the caller
        tasks = FewShotTasks(classes=pixels, ways=t.ways, shots=t.shots, queries=t.queries)
        return Problem(trainer.algorithm, trainer.learner, trainer.loss, t.criterion, trainer.meta_batch_size,
                       tasks.sample)

    return build


def _maml(inner_steps: int) -> Callable[[], MetaLearner]:
    return lambda: MAML(inner_lr=0.01, inner_steps=inner_steps, eval_inner_steps=inner_steps, first_order=False)


SETTINGS = {s.key: s for s in [
    Setting("sine25", "sine, 25 tasks x 5 second-order MAML steps", _sine(_maml(5), 25, 10), 50, 3),
    Setting("sine-maml", "sine paper setting: MAML, 4 tasks x 1 step (meta-sgd.md 4.1)", _sine(_maml(1), 4, 5),
            50, 3),
    Setting("sine-metasgd", "sine paper setting: Meta-SGD, 4 tasks x 1 step", _sine(
        lambda: MetaSGD(inner_lr_init=(0.005, 0.1), inner_steps=1, eval_inner_steps=1), 4, 5), 50, 3),
    Setting("o1", "O1: Omniglot conv4-64 5-way 1-shot, MAML 2nd order, 1 step, 32 tasks (maml.md 5.2)",
            _experiment("maml_omniglot_5w1s.gin"), 10, 2),
    Setting("o1-fomaml", "O1 with FOMAML", _experiment("fomaml_omniglot_5w1s.gin"), 10, 2),
    Setting("o3", "O3: MiniImagenet conv4-32 5-way 1-shot, MAML 2nd order, 5 steps, 4 tasks (maml.md A.1)",
            _experiment("maml_miniimagenet_5w1s.gin"), 3, 1),
    # A seconds-long smoke setting for the tests: O1's network with 4 filters, 3 tasks, 2 steps.
    Setting("tiny", "tiny: O1 with 4 filters, 3 tasks x 2 steps (tests)", _experiment(
        "maml_omniglot_5w1s.gin", ["filters = 4", "MetaTrainer.meta_batch_size = 3", "inner_steps = 2"]), 3, 1),
]}
DEFAULT_SETTINGS = ("sine25", "sine-maml", "sine-metasgd", "o1", "o1-fomaml", "o3")
GROUPS = {"all": DEFAULT_SETTINGS, "sine": DEFAULT_SETTINGS[:3]}


def pick_settings(spec: str | None) -> list[Setting]:
    """Settings from a comma-separated list of keys or groups (``None``: every real setting)."""
    keys: list[str] = []
    for key in (spec.split(",") if spec else DEFAULT_SETTINGS):
        key = key.strip()
        for k in GROUPS.get(key, (key,)):
            if k not in SETTINGS:
                raise ValueError(f"unknown bench setting {k!r}; choose from {', '.join([*SETTINGS, *GROUPS])}")
            if k not in keys:
                keys.append(k)
    return [SETTINGS[k] for k in keys]
