"""Meta-testing one experiment's trained models under another experiment's protocol.

Two experiment files can train the very same model and differ only in how it is meta-tested: in
the cpu profile, MAML's 2D-navigation curve (``maml_nav2d``: 40 trajectories per step, beside
MAML's paper) and Meta-SGD's Table-4 MAML cell (``maml_nav2d_fixed``: 20 trajectories, beside
Meta-SGD's) both train MAML-TRPO on the fixed-start distance task for 100 meta-iterations with the
same seeds. params.yaml ``rl.shared`` names such an experiment and the one whose models it uses;
the pipeline trains once and meta-tests twice.

That the two really train the same model is checked, not assumed: the shared experiment's
operative config (its files and profile bindings, built as training would build it) must equal
the model's recorded ``operative_config.gin`` in every setting but the meta-test protocol's
(:func:`is_protocol_key`). The protocol settings that differ become the meta-test's bindings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import gin

from metalearning.devices import binding
from metalearning.params import shared_experiments, stage_settings

PROTOCOL_MACROS = ("eval_trajectories", "eval_tasks", "eval_inner_steps")
PROTOCOL_PARAMETERS = ("MetaRL.eval_seed", "MetaRL.plotted_tasks")
_ENTRY = re.compile(r"^([A-Za-z_][\w./]*) = (.*)$")


def is_protocol_key(key: str) -> bool:
    """Whether an operative-config key is read by the meta-test only (not by training)."""
    return (key.startswith("meta_test/") or key in PROTOCOL_MACROS or key in PROTOCOL_PARAMETERS
            or key.endswith(".eval_inner_steps"))


def parse_operative(text: str) -> dict[str, str]:
    """``{key: value text}`` of a gin operative config (comments skipped; a value continued on
    indented lines is joined)."""
    entries: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENTRY.match(line)
        if match:
            key = match.group(1)
            entries[key] = match.group(2).strip()
        elif key is not None and line[:1].isspace():
            entries[key] += " " + line.strip()
        else:
            raise ValueError(f"unexpected line in an operative config: {line!r}")
    return entries


def operative_config(config_files: Sequence[Path], bindings: Sequence[str]) -> str:
    """The operative config that training ``config_files`` with ``bindings`` starts from (the
    trainer built, nothing trained)."""
    from metalearning.config import load_config
    from metalearning.training import MetaTrainer

    load_config(config_files, bindings)
    MetaTrainer()
    return gin.operative_config_str()


def protocol_bindings(model_config: str, experiment_config: str, *, model: str, experiment: str) -> list[str]:
    """The bindings that meta-test ``model``'s checkpoints with ``experiment``'s protocol.

    Args:
        model_config: the model's recorded operative config (``operative_config.gin``).
        experiment_config: ``experiment``'s operative config (:func:`operative_config`).
        model, experiment: their names, for messages.

    Settings only one side has (a parameter added to the code after the model was trained) are
    not compared.

    Raises:
        ValueError: the two differ in a training setting (one line naming the settings).
    """
    ours, theirs = parse_operative(model_config), parse_operative(experiment_config)
    differ = sorted(k for k in ours.keys() & theirs.keys() if ours[k] != theirs[k])
    training = [f"{k} ({ours[k]} vs {theirs[k]})" for k in differ if not is_protocol_key(k)]
    if training:
        raise ValueError(f"{experiment} would not train the same model as {model}, so it cannot be meta-tested on "
                         f"its models: they differ in {'; '.join(training)}")
    return [f"{k} = {theirs[k]}" for k in differ]


def shared_protocol(params: dict, task: str, experiment: str, model_dir: Path, device: str | None,
                    origin: Path) -> list[str]:
    """The meta-test bindings that give the models in ``model_dir`` the protocol of ``experiment``
    when it is meta-tested on another experiment's models (params ``<task>.shared``), after the
    check of :func:`protocol_bindings`; ``[]`` for an experiment that tests its own models.

    Args:
        device: the stage's device (None: the CPU), bound as training bound it.
        origin: the params file, for messages.

    Raises:
        ValueError, OSError: the experiment would train another model, or ``model_dir`` has no
            ``operative_config.gin``.
    """
    model = shared_experiments(params, task).get(experiment)
    if model is None:
        return []
    config, training, _ = stage_settings(params, task, experiment, origin)
    return protocol_bindings((Path(model_dir) / "operative_config.gin").read_text(),
                             operative_config([config], [*training, *binding(device)]),
                             model=model, experiment=experiment)
