"""A checkpoint turned back into a model: the one place that does it (STYLE P10).

``test``, ``adapt``, ``resume`` and the reports all rebuild algorithm, learner (or policy),
task family and meta-parameters through :func:`load_model`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from metalearning import devices
from metalearning.checkpoints import load_checkpoint
from metalearning.config import build, load_config_text
from metalearning.core.algorithms import MetaParams
from metalearning.training import MetaTrainer


@dataclass
class Model:
    """A trained (or partly trained) meta-learner as its checkpoint describes it.

    Attributes:
        trainer: the :class:`~metalearning.training.MetaTrainer` the stored gin config builds
            (algorithm, learner/policy, task family; a few-shot family loads no data until used).
        checkpoint: the checkpoint's contents (``iteration``, ``seed``, ``gin_config``, …).
        path: where it was read from.
    """

    trainer: MetaTrainer
    checkpoint: dict[str, Any]
    path: Path

    @property
    def meta_params(self) -> MetaParams:
        """What a meta-test uses: the best-scoring meta-parameters of a family that selects
        (meta-RL, maml.md A.2), else the latest."""
        return self.checkpoint.get("best_meta_params") or self.checkpoint["meta_params"]

    @property
    def algorithm(self):
        return self.trainer.algorithm

    @property
    def family(self):
        return self.trainer.tasks

    @property
    def iteration(self) -> int:
        return self.checkpoint["iteration"]

    @property
    def seed(self) -> int:
        return self.checkpoint["seed"]


def load_model(checkpoint: Path | str, bindings: Sequence[str] = (), device: str | None = None) -> Model:
    """Rebuild the model saved in ``checkpoint``, with ``bindings`` applied over its gin config.

    ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) overrides the device it was trained on,
    so a model trained on a GPU is tested, adapted or resumed on a CPU; the meta-parameters
    are put on the model's device.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a readable checkpoint, its config does not parse, or its
            meta-parameters do not fit the learner the config builds (names or shapes).
    """
    path = Path(checkpoint)
    ckpt = load_checkpoint(path)
    if any(key not in ckpt for key in ("gin_config", "meta_params", "seed")):
        raise ValueError(f"checkpoint {path} holds no gin config, meta-parameters and seed; it was not written by "
                         "`metalearning train`")
    origin = f"config stored in checkpoint {path}" + (f" with bindings {list(bindings)}" if bindings else "")
    load_config_text("\n".join([ckpt["gin_config"], *bindings, *devices.binding(device)]), origin=origin)
    torch.manual_seed(ckpt["seed"])  # builds the modules as training did; their parameters are the checkpoint's
    model = Model(build(MetaTrainer, origin), ckpt, path)
    for key in ("meta_params", "best_meta_params"):
        if key in ckpt:
            ckpt[key] = devices.to_device(ckpt[key], model.trainer.device)
    _check_fits(model)
    _check_finite(model)
    return model


def _check_finite(model: Model) -> None:
    for key in ("meta_params", "best_meta_params"):
        for group, params in (model.checkpoint.get(key) or {}).items():
            for name, p in params.items():
                if not bool(torch.isfinite(p).all()):
                    raise ValueError(f"checkpoint {model.path}: {key} {group}.{name} is not finite (a diverged "
                                     "run): refusing to test, adapt or resume from it")


def _check_fits(model: Model) -> None:
    theta = model.checkpoint["meta_params"]["theta"]
    expected = {k: tuple(p.shape) for k, p in model.trainer.learner.named_parameters()}
    stored = {k: tuple(p.shape) for k, p in theta.items()}
    if stored != expected:
        raise ValueError(f"checkpoint {model.path}: its parameters {stored} do not fit the learner its config "
                         f"builds {expected}")
