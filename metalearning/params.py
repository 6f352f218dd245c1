"""params.yaml → gin bindings: the knobs DVC tracks (STYLE P6), templated into gin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

DEFAULT_PARAMS = Path("params.yaml")


def load_params(path: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    with open(path) as f:
        params = yaml.safe_load(f)
    if not isinstance(params, dict):
        raise ValueError(f"{path}: expected a mapping at top level")
    return params


def _get(params: dict, dotted: str, origin: Path) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{origin}: missing key {dotted!r}")
        node = node[part]
    return node


def active_profile(params: dict, origin: Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """The section of ``profiles`` named by ``profile`` (``cpu`` or ``paper``)."""
    name = _get(params, "profile", origin)
    profiles = _get(params, "profiles", origin)
    if name not in profiles:
        raise KeyError(f"{origin}: profile {name!r} is not one of profiles {sorted(profiles)}")
    return profiles[name]


def sine_bindings(params: dict, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """Gin bindings the active profile imposes on every sine experiment."""
    iterations = active_profile(params, origin).get("sine_meta_iterations")
    return [] if iterations is None else [f"MetaTrainer.meta_iterations = {int(iterations)}"]


def omniglot_variant(params: dict, origin: Path = DEFAULT_PARAMS) -> str:
    """The Omniglot variant (``small`` or ``full``) of the active profile."""
    return _get(active_profile(params, origin), "omniglot_variant", origin)


def experiment_bindings(params: dict, task: str, experiment: str, origin: Path = DEFAULT_PARAMS) -> list[str]:
    """Gin bindings the active profile imposes on one experiment of ``<task>.experiments``
    (``omniglot``, ``rl``).

    The ``cpu`` profile applies the experiment's ``cpu`` list; other profiles none.
    """
    entry = _get(params, f"{task}.experiments.{experiment}", origin)
    return [str(b) for b in entry.get(params["profile"], [])] if isinstance(entry, dict) else []


def episode_set_names(experiments: dict, name: str) -> list[str]:
    """The meta-test episode sets of experiment ``name`` in a params ``<task>.experiments`` section.

    ``episodes`` names one set or lists several: Meta-SGD's 5-shot Omniglot numbers come from
    its 1-shot model (meta-sgd.md §4.2), i.e. ``episodes: [5w1s, 5w5s]``.

    Raises:
        KeyError: no such experiment, or it names no episode set.
    """
    if name not in experiments:
        raise KeyError(f"no experiment {name!r} in params (known: {', '.join(experiments)})")
    sets = experiments[name].get("episodes") if isinstance(experiments[name], dict) else None
    sets = [sets] if isinstance(sets, str) else list(sets or [])
    if not sets:
        raise KeyError(f"experiment {name!r} names no meta-test episode set (key `episodes`)")
    return [str(s) for s in sets]


EXPERIMENT_DIRS = {"rl": Path("configs/rl/experiments")}  # every other section: configs/experiments


def task_threads(params: dict, task: str) -> int:
    """Torch threads of a stage of ``task``: the section's ``threads``, else the top-level one."""
    section = params.get(task, {})
    return int(section.get("threads", params["threads"]))


def stage_settings(params: dict, task: str, experiment: str,
                   origin: Path = DEFAULT_PARAMS) -> tuple[Path, list[str], int]:
    """(experiment gin file, the bindings the active profile imposes, torch threads) of one
    training stage of ``task`` (``sine``, ``omniglot``, ``rl``)."""
    config = EXPERIMENT_DIRS.get(task, Path("configs/experiments")) / f"{experiment}.gin"
    if task == "sine":
        bindings = sine_bindings(params, origin)
    else:
        bindings = experiment_bindings(params, task, experiment, origin)
    return config, bindings, task_threads(params, task)
