"""The generated "deviations" section of every report: for each experiment, each setting the
active profile changes, with the paper's value (the experiment file, which holds the paper's
setting) beside the value the run used (the file plus the profile's bindings, exactly as the
training stage built it: :func:`metalearning.params.stage_settings`). Nothing here is written by
hand, so a changed budget or width shows up in the report by itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Sequence

import gin

from metalearning.config import load_config
from metalearning.params import meta_tested_experiments, omniglot_variant, rl_experiment_test_bindings, stage_settings


class Deviation(NamedTuple):
    experiment: str
    setting: str  # a gin binding key, or a macro name
    paper: Any  # the experiment file's value
    ours: Any  # the value with the profile's bindings


def _query(key: str) -> Any:
    """A bound value by binding key (``MetaTrainer.meta_iterations``) or macro name (``filters``);
    a binding to a macro (``MAML.inner_lr = %fine_tune_lr``) gives the macro's value."""
    try:
        value = gin.query_parameter(key if "." in key or "/" in key else f"%{key}")
    except ValueError:
        return NOT_BOUND
    for _ in range(10):  # macros bound to macros
        if not (isinstance(value, gin.config.ConfigurableReference) and value.selector == "gin.macro"):
            break
        value = gin.query_parameter(f"%{value.scoped_selector.split('/')[0]}")
    return value


def binding_deviations(experiment: str, config: Path, bindings: Sequence[str]) -> list[Deviation]:
    """Each of ``bindings`` whose value differs from the experiment file's, as a :class:`Deviation`."""
    keys = list(dict.fromkeys(b.split("=", 1)[0].strip() for b in bindings))
    values = []
    for with_bindings in ((), bindings):
        load_config([config], with_bindings)
        values.append({k: _query(k) for k in keys})
    gin.clear_config()
    paper, ours = values
    return [Deviation(experiment, k, paper[k], ours[k]) for k in keys if paper[k] != ours[k]]


def section_deviations(params: dict, task: str, origin: Path) -> list[Deviation]:
    """The deviations of every experiment of params section ``task`` (``sine``, ``omniglot``, ``rl``)."""
    found = []
    for name in meta_tested_experiments(params, task):
        config, bindings, _ = stage_settings(params, task, name, origin)
        if task == "rl":  # and the meta-test's own bindings (e.g. a baseline's swept fine-tuning α)
            bindings = [*bindings, *rl_experiment_test_bindings(params, name, origin)]
        found += binding_deviations(name, config, bindings)
    return found


NOT_BOUND = "(not bound: the configurable's default)"


def _value(value: Any) -> str:
    if value == NOT_BOUND:
        return "default"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def deviations_section(params: dict, task: str, origin: Path) -> str:
    """Markdown: the table of :func:`section_deviations` and what no gin file records (data, seeds)."""
    rows = [f"| `{d.experiment}` | `{d.setting}` | {_value(d.paper)} | {_value(d.ours)} |"
            for d in section_deviations(params, task, origin)]
    lines = ["## Deviations from the papers' settings (generated)", "",
             f"Computed for profile `{params['profile']}` from each experiment file (the paper's setting) and the "
             "bindings the profile adds (params.yaml), as the training stage built them.", ""]
    if rows:
        lines += ["| experiment | setting | paper (experiment file) | this run |", "|---|---|---|---|", *rows]
    else:
        lines += ["None: this profile trains every experiment file as it is."]
    counts = sorted({int(e["seeds"]) for e in params[task]["experiments"].values() if isinstance(e, dict)})
    lines += ["", f"- Training seeds: {' or '.join(map(str, counts))} per experiment (params.yaml "
              f"`{task}.experiments.<name>.seeds`, from `seed` = {params['seed']}); the tables' ± are over test tasks "
              "for the primary seed, the across-seed intervals are in their own section. Reptile's and MAML++'s "
              "published ± come from 3 training seeds."]
    if task == "omniglot" and omniglot_variant(params, origin) != "full":
        lines.append(f"- Data: Omniglot `{omniglot_variant(params, origin)}` instead of the papers' full 1623 "
                     "characters.")
    lines.append(f"- Numerics: `{params.get('numerics', 'native')}` (params.yaml `numerics`).")
    return "\n".join(lines) + "\n"
