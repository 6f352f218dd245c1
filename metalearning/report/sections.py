"""One report per params.yaml section (``sine``, ``omniglot``, ``rl``): what ``metalearning report``
and the pipeline's report stages write. Each family's tables and plots live beside it
(:mod:`metalearning.report.sine`, :mod:`metalearning.report.fewshot`, :mod:`metalearning.rl.report`);
this module adds the notes the params file implies (profile, budgets, data)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from metalearning.params import (
    active_profile,
    episode_set_names,
    load_params,
    meta_tested_experiments,
    omniglot_variant,
    shared_experiments,
)
from metalearning.report.deviations import deviations_section
from metalearning.report.seeds import seeds_section

FEWSHOT_SECTIONS = ("omniglot", "miniimagenet")


def _sine(params: dict, params_path: Path, metrics: Path, models: Path, out: Path) -> None:
    from metalearning.report.sine import load_results, write_report

    budget = active_profile(params).get("sine_meta_iterations")
    note = (f"Budget: every sine experiment was trained for {budget} meta-iterations (params.yaml "
            f"`profiles.{params['profile']}.sine_meta_iterations`); the papers use 60000 (Reptile's demo 30000)."
            if budget else "Budget: each experiment file's own (the papers') meta-iterations.")
    families = {name: entry["family"] for name, entry in params["sine"]["experiments"].items()}
    results = load_results(families, metrics, models)
    write_report(results, out, profile=params["profile"], params_note=note, meta_test=params["sine"]["meta_test"])


def _fewshot(task: str) -> Callable[[dict, Path, Path, Path, Path], None]:
    def write(params: dict, params_path: Path, metrics: Path, models: Path, out: Path) -> None:
        from metalearning.report.fewshot import load_fewshot_results, write_fewshot_report

        section, profile = params[task], params["profile"]
        notes = [f"Profile `{profile}`. Training budgets and sizes: each row's meta-iterations × meta-batch; the "
                 f"experiment files hold the papers' settings and params.yaml `{task}.experiments.<name>.{profile}` "
                 "lists what this profile changes." if profile == "cpu" else
                 f"Profile `{profile}`: the experiment files' (papers') settings."]
        if task == "omniglot":
            variant = omniglot_variant(params, params_path)
            notes.append(f"Data: Omniglot `{variant}` (`small` = images_background_small1 ∪ small2, 242 characters "
                         "of 8 alphabets; `full` = 1623 characters), characters split in the papers' 1200/1623 "
                         f"proportion (seed {section['split_seed']}), rotations by 90° as extra classes. The papers' "
                         "numbers are on full Omniglot with their own splits: comparable in kind, not digit for digit.")
        notes.append("Validation (learning curves, model selection) uses fixed episodes of validation characters held "
                     "out of the meta-training side (MAML's code: 100 of its 1200); the meta-test characters are never "
                     "seen in training. Each model is meta-tested with the meta-parameters of its best validation "
                     "accuracy (column \"selected at\": the meta-iteration; the papers test their final models)."
                     if task == "omniglot" else
                     "Validation (learning curves) uses episodes of the meta-training classes.")
        tests = {name: episode_set_names(section["experiments"], name) for name in section["experiments"]}
        write_fewshot_report(load_fewshot_results(tests, metrics, models), out, dataset=task,
                             title=f"{task.capitalize()} few-shot classification", notes=notes)

    return write


# The 2D-navigation environment as the RL report describes it (only with navigation results).
_NAV2D_NOTE = (
    "2D navigation as MAML's code runs it (cbfinn/maml_rl): the policy acts in [−1, 1], rllab's `normalize` "
    "wrapper maps that onto velocities in [−0.1, 0.1] (clipped), an episode ends within 0.01 of the goal in "
    "both coordinates, and the reward is −distance. maml.md §5.3's text says −squared distance, but its code "
    "computes −distance and its 0-step return (−40.41) is ~100 × the mean distance from the origin to a goal "
    "(0.38), so MAML's curve is compared on the distance reward.")


def _rl(params: dict, params_path: Path, metrics: Path, models: Path, out: Path) -> None:
    from metalearning.rl.report import load_rl_results, write_rl_report

    section, profile = params["rl"], params["profile"]
    missing = sorted(set(section["locomotion"]) - set(section["experiments"]))
    shared = shared_experiments(params, "rl")
    results = load_rl_results(meta_tested_experiments(params, "rl"), metrics, models, shared)
    navigation = any(r["setting"]["task"]["family"] == "nav2d" for r in results.values())
    notes = [
        f"Profile `{profile}`: " + ("the experiment files' (papers') budgets, except the bindings the generated "
                                    "deviations section lists." if profile != "cpu" else
                                    "the papers' sizes (policy, meta-batch, trajectories, meta-test protocol) with "
                                    "fewer meta-iterations, params.yaml `rl.experiments.<name>.cpu` (the papers: up "
                                    "to 500 for MAML, 100 for Meta-SGD's comparison)."),
        "Differences from the papers: TRPO's Hessian-vector products are exact by default (column \"TRPO H·v\"; "
        "MAML's code used finite differences, `TRPO.hvp = 'finite_difference'`); the pretrained and random-init "
        "baselines' fine-tuning α (column \"α\"; halved after the first step, as MAML's) comes from a small sweep "
        "on tasks of another seed (params.yaml comment above `rl.navigation`; the paper tuned it by hand); "
        "Meta-SGD's α starts at 0.1 everywhere (its paper gives no RL initialisation).",
        f"Every model's new tasks and episodes are drawn with the same seed (params.yaml `rl.meta_test_seed` = "
        f"{section['meta_test_seed']}): all models of a task family meet the same new tasks (their number: "
        "column \"meta-test tasks\" of the settings table).",
    ]
    if navigation:
        notes.append(_NAV2D_NOTE)
    for name, model in shared.items():
        notes.append(f"`{name}` is meta-tested on `{model}`'s trained models (params.yaml `rl.shared`): in this "
                     f"profile its files train the same model (checked against `{model}`'s operative config at test "
                     "time; they differ only in the meta-test protocol), so it is trained once.")
    if missing:
        notes.append(f"Not run in this profile: {', '.join(f'`{m}`' for m in missing)} (MuJoCo locomotion, "
                     "paper profile).")
    write_rl_report(results, out, notes=notes)


def write_section_report(task: str, *, params_path: Path = Path("params.yaml"), metrics: Path | None = None,
                         models: Path | None = None, out: Path | None = None) -> Path:
    """Write ``reports/<task>/`` (README.md and plots) from ``metrics/<task>`` and ``models/<task>``.

    Raises:
        ValueError: ``task`` is not a reported params.yaml section.
    """
    writers = {"sine": _sine, "rl": _rl, **{name: _fewshot(name) for name in FEWSHOT_SECTIONS}}
    if task not in writers:
        raise ValueError(f"no report for params section {task!r} (reports: {', '.join(writers)})")
    out = out or Path("reports") / task
    params = load_params(params_path)
    writers[task](params, params_path, metrics or Path("metrics") / task, models or Path("models") / task, out)
    page = out / "README.md"
    seeds = seeds_section(metrics or Path("metrics") / task, meta_tested_experiments(params, task))
    deviations = deviations_section(params, task, params_path)
    page.write_text(page.read_text().rstrip("\n") + "\n\n" + seeds + "\n" + deviations)
    return out
