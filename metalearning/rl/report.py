"""The meta-RL report: average return ± 95% CI after 0, 1, … PG steps on new tasks beside the
papers' numbers (maml.md Table 4 / Fig. 4 and Table 5, meta-sgd.md Table 4), the return-vs-steps
plot, the pre-/post-update paths of a few 2D-navigation tasks, and the learning curves."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from metalearning.metrics_io import read_csv, read_json
from metalearning.report.figures import plt, save_figure
from metalearning.rl.paper_values import (
    MAML_CHEETAH_DIR_RETURNS,
    MAML_META_ITERATIONS,
    MAML_NAV2D_RETURNS,
    MAML_NAV2D_TRAJECTORIES,
    METASGD_META_ITERATIONS,
    METASGD_TABLE4,
    METASGD_TABLE4_TRAJECTORIES,
)

METHOD_ORDER = ("MAML", "FOMAML", "MetaSGD", "ANIL", "pretrained", "random init", "oracle")
# Result groups (task family / the paper whose protocol the meta-test follows), in report order.
NAV2D_TITLES = {
    "nav2d-distance-fixed/maml": "2D navigation, MAML's Fig. 4 (reward −distance, as MAML's code computes it; "
                                 "40 trajectories per step)",
    "nav2d-squared-fixed/maml": "2D navigation, MAML's Fig. 4 protocol with the reward of maml.md §5.3's text "
                                "(−squared distance)",
    "nav2d-distance-fixed/metasgd": "2D navigation, distance, fixed start (Meta-SGD's)",
    "nav2d-distance-random/metasgd": "2D navigation, distance, varying start (Meta-SGD's)",
}
GROUP_TITLES = {
    **NAV2D_TITLES,
    "HalfCheetahVel/maml": "Half-cheetah goal velocity, MAML's Fig. 5 (reward −|v − v*| − 0.05‖a‖², v* ~ U[0, 2]; "
                           "v: centre-of-mass velocity, 0.01 s steps, as MAML's code)",
    "HalfCheetahDir/maml": "Half-cheetah forward/backward, MAML's Fig. 5 and Table 5 (reward d·v − 0.05‖a‖², d = ±1; "
                           "v: centre-of-mass velocity, 0.01 s steps, as MAML's code)",
    "AntVel/maml": "Ant goal velocity, MAML's Fig. 5 (reward −|v − v*| + MAML's bonus and terms, v* ~ U[0, 3]; "
                   "v: centre-of-mass velocity, 0.02 s steps, as MAML's code)",
    "AntDir/maml": "Ant forward/backward, MAML's Fig. 5 (reward d·v + MAML's terms, d = ±1; v: centre-of-mass "
                   "velocity, 0.02 s steps, as MAML's code)",
}
# Published curves drawn beside ours: group -> (label, {steps: return}).
PAPER_CURVES = {
    "nav2d-distance-fixed/maml": ("MAML (paper, maml.md Table 4)", MAML_NAV2D_RETURNS),
    "HalfCheetahDir/maml": ("MAML (paper, maml.md Table 5)", MAML_CHEETAH_DIR_RETURNS),
}


HVP_LABELS = {"composed": "exact (Jᵀ∇²KL J)", "direct": "exact (3rd derivatives)",
              "finite_difference": "finite differences (MAML's code)"}


def load_rl_results(experiments: list[str], metrics_dir: Path, models_dir: Path,
                    models: dict[str, str] | None = None) -> dict[str, dict]:
    """Per experiment: ``curves.json`` (setting, protocol, curve), its paths and its learning curve
    (from the experiment's model folder: its own, or ``models[name]``'s for one meta-tested on
    another experiment's models)."""
    models = models or {}
    return {name: {**read_json(metrics_dir / name / "curves.json"),
                   "trajectories": read_json(metrics_dir / name / "trajectories.json"),
                   **_training_record(models_dir / models.get(name, name))}
            for name in experiments}


def _training_record(model_dir: Path) -> dict[str, Any]:
    """A model folder's learning curve and its ``train_metrics.json`` (``{}`` for a folder without one)."""
    metrics = model_dir / "train_metrics.json"
    return {"learning_curve": read_csv(model_dir / "learning_curve.csv"),
            "training": read_json(metrics) if metrics.exists() else {}}


def task_key(task: dict[str, Any]) -> str:
    """The task family a result belongs to (the oracle shares its family's key)."""
    if task["family"] == "nav2d":
        return f"nav2d-{task['reward']}-{task['start']}"
    return task["family"]


def group_key(result: dict[str, Any]) -> str:
    """The report group of a result: its task family and the paper whose meta-test protocol it
    follows (``AdaptationEval.paper``), e.g. ``nav2d-distance-fixed/maml``."""
    paper = result.get("meta_test", {}).get("paper", "")
    return task_key(result["setting"]["task"]) + (f"/{paper}" if paper else "")


def _title(key: str) -> str:
    return GROUP_TITLES.get(key, key)


def _panel_title(key: str) -> str:
    """:func:`_title` wrapped to a plot panel's width."""
    return textwrap.fill(_title(key), 55)


def _ordered(results: dict[str, dict]) -> list[tuple[str, dict]]:
    def rank(item: tuple[str, dict]) -> tuple:
        method = item[1]["setting"]["method"]
        return group_key(item[1]), METHOD_ORDER.index(method), item[0]

    return sorted(results.items(), key=rank)


def _ret(mean: float, ci: float) -> str:
    return f"{mean:.2f} ± {ci:.2f}"


def _budget(setting: dict) -> str:
    return f"{setting['meta_iterations']} ({setting['best_iteration']})"


def steps_table(results: dict[str, dict], key: str) -> str:
    """Return after 0 … k steps for every model of task family ``key``, the paper's curve last."""
    chosen = [(n, r) for n, r in _ordered(results) if group_key(r) == key]
    steps = max([len(r["return_mean"]) for _, r in chosen] + [len(PAPER_CURVES.get(key, ("", {}))[1])])
    columns = " | ".join(f"{k} step{'' if k == 1 else 's'}" for k in range(steps))
    head = f"| experiment | model | meta-iterations (best) | {columns} |\n|---|---|---|" + "---|" * steps
    rows = []
    for name, r in chosen:
        cells = [_ret(m, c) for m, c in zip(r["return_mean"], r["return_ci95"])]
        if r["setting"]["method"] == "oracle":
            cells = cells[:1] + ["(no adaptation)"] * (steps - 1)
        cells += ["—"] * (steps - len(cells))
        rows.append(f"| `{name}` | {r['setting']['method']} | {_budget(r['setting'])} | " + " | ".join(cells) + " |")
    if key in PAPER_CURVES:
        label, curve = PAPER_CURVES[key]
        cells = [f"{curve[k]:.2f}" if k in curve else "—" for k in range(steps)]
        rows.append(f"| | {label} | {MAML_META_ITERATIONS} (best) | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def metasgd_table4(results: dict[str, dict]) -> str:
    """meta-sgd.md Table 4's layout: MAML vs Meta-SGD after one PG step, fixed vs varying start,
    ours (the paper's) in every cell."""
    head = "| model | fixed start position | varying start position |\n|---|---|---|"
    rows = []
    for method in ("MAML", "MetaSGD"):
        cells = []
        for start in ("fixed", "random"):
            ours = [r for _, r in _ordered(results)
                    if r["setting"]["method"] == method and group_key(r) == f"nav2d-distance-{start}/metasgd"]
            paper = "(paper {:.2f} ± {:.2f})".format(*METASGD_TABLE4[(method, start)])
            text = "; ".join(_ret(r["return_mean"][1], r["return_ci95"][1]) for r in ours if len(r["return_mean"]) > 1)
            cells.append(f"{text or 'not run'} {paper}")
        rows.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def papers_maml_note(results: dict[str, dict]) -> str:
    """The two papers' numbers for one cell, MAML after one step on the fixed-start task, and ours
    under each paper's protocol. Meta-SGD's MAML is well above MAML's own, with fewer trajectories
    per step (a noisier step) and a fifth of the meta-iterations."""
    (theirs, ci), own = METASGD_TABLE4[("MAML", "fixed")], MAML_NAV2D_RETURNS[1]
    ours = [f"{_ret(r['return_mean'][1], r['return_ci95'][1])} on {r['meta_test']['trajectories']} trajectories "
            f"(`{name}`)" for name, r in _ordered(results)
            if r["setting"]["method"] == "MAML" and len(r["return_mean"]) > 1
            and group_key(r) in ("nav2d-distance-fixed/maml", "nav2d-distance-fixed/metasgd")]
    return (f"The two papers disagree on this MAML cell. maml.md Table 4 gives MAML {own:.2f} after one step on "
            f"{MAML_NAV2D_TRAJECTORIES} trajectories, trained up to {MAML_META_ITERATIONS} meta-iterations; "
            f"meta-sgd.md gives {theirs:.2f} ± {ci:.2f} after one step on {METASGD_TABLE4_TRAJECTORIES} trajectories, "
            f"trained {METASGD_META_ITERATIONS}: {theirs - own:.2f} higher and outside its own interval, although "
            f"its step uses fewer trajectories (a noisier step) and a smaller budget."
            + (f" Ours after one step, under each paper's protocol: {'; '.join(ours)}." if ours else ""))


def selection_table(results: dict[str, dict]) -> str:
    """For every model trained through an inner step: the post-update return on which best-model
    selection (maml.md A.2) chose it, on that meta-iteration's own training tasks, beside the same
    model's return after one step on the meta-test's new tasks. ``""`` when there is none."""
    head = ("| experiment | model | selected after meta-steps | its post-update return on that iteration's "
            "training tasks (the maximum of the run) | after 1 step on the meta-test's new tasks | difference |\n"
            "|---|---|---|---|---|---|")
    rows = []
    for name, r in _ordered(results):
        setting, chosen = r["setting"], r["training"].get("best_post_update_return")
        if not setting["inner_steps"] or chosen is None or len(r["return_mean"]) < 2:
            continue
        test = r["return_mean"][1]
        rows.append(f"| `{name}` | {setting['method']} | {setting['best_iteration']} | {chosen:.2f} | "
                    f"{_ret(test, r['return_ci95'][1])} | {test - chosen:+.2f} |")
    return "\n".join([head, *rows]) if rows else ""


def settings_table(results: dict[str, dict]) -> str:
    """Every experiment's training budget and meta-test protocol."""
    head = ("| experiment | model | task | meta-iterations (best) × tasks × trajectories | TRPO H·v | "
            "meta-test tasks × trajectories, steps | α | eval seed |\n|---|---|---|---|---|---|---|---|")
    rows = []
    for name, r in _ordered(results):
        s, p = r["setting"], r["meta_test"]
        task = _title(group_key(r)) + (" + goal input" if s["task"]["oracle"] else "")
        hvp = HVP_LABELS.get(s.get("hvp"), "—") if s["meta_iterations"] else "— (not trained)"
        rows.append(f"| `{name}` | {s['method']} | {task} | {_budget(s)} × {s['meta_batch_size']} × "
                    f"{s['trajectories']} | {hvp} | {p['tasks']} × {p['trajectories']}, 0–{p['steps']} | "
                    f"{_alpha(p)} | {p['eval_seed']} |")
    return "\n".join([head, *rows])


def _alpha(protocol: dict) -> str:
    """The first meta-test step's α: a number, "learned" (Meta-SGD's per-parameter α, recorded as
    null) or "—" (not recorded)."""
    if "alpha" not in protocol:
        return "—"
    return "learned" if protocol["alpha"] is None else f"{protocol['alpha']:g}"


def _task_keys(results: dict[str, dict]) -> list[str]:
    """The result groups present: MAML's navigation first, then Meta-SGD's, then the rest by name."""
    keys = {group_key(r) for r in results.values()}
    return [k for k in NAV2D_TITLES if k in keys] + sorted(keys - set(NAV2D_TITLES))


def plot_return_vs_steps(results: dict[str, dict], path: Path) -> None:
    """Average return vs PG steps at meta-test (mean ± 95% CI over tasks), one panel per task family,
    the papers' numbers dashed; the oracle (no adaptation) is a horizontal line."""
    keys = _task_keys(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        chosen = [(n, r) for n, r in _ordered(results) if group_key(r) == key]
        width = max(len(r["return_mean"]) for _, r in chosen)
        for name, r in chosen:
            if r["setting"]["method"] == "oracle":
                ax.axhline(r["return_mean"][0], color="black", linestyle=":", label=f"{name} (oracle)")
                continue
            ax.errorbar(range(len(r["return_mean"])), r["return_mean"], yerr=r["return_ci95"], marker="o",
                        markersize=3, capsize=2, label=name)
        _paper_marks(ax, key, width)
        ax.set(xlabel="policy-gradient steps at meta-test", ylabel="average return", title=_panel_title(key),
               xticks=range(width))
        ax.legend(fontsize=7)
    save_figure(fig, path)


def _paper_marks(ax, key: str, width: int) -> None:
    if key in PAPER_CURVES:
        label, curve = PAPER_CURVES[key]
        steps = [k for k in sorted(curve) if k < width]
        ax.plot(steps, [curve[k] for k in steps], "k--", marker="x", label=label)
    start = key.removeprefix("nav2d-distance-").removesuffix("/metasgd")
    for method, marker in (("MAML", "s"), ("MetaSGD", "^")):
        if (method, start) in METASGD_TABLE4:
            mean, ci = METASGD_TABLE4[(method, start)]
            ax.errorbar([1], [mean], yerr=[ci], fmt=marker, color="black", mfc="none", capsize=3,
                        label=f"{method} (paper, meta-sgd.md Table 4)")


def plot_trajectories(results: dict[str, dict], path: Path) -> bool:
    """Paths to the goal before adaptation and after each PG step (maml.md Fig. 4, meta-sgd.md
    Fig. 4): one row per 2D-navigation experiment, one column per plotted task. False if none."""
    rows = [(n, r) for n, r in _ordered(results) if r["trajectories"]["tasks"]]
    if not rows:
        return False
    cols = max(len(r["trajectories"]["tasks"]) for _, r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.2 * cols, 3.2 * len(rows)), squeeze=False)
    for (name, r), row in zip(rows, axes):
        for ax, task in zip(row, r["trajectories"]["tasks"]):
            _draw_task(ax, task)
        row[0].set_ylabel(f"{name}\n({r['setting']['method']})", fontsize=8)
        for ax in row[len(r["trajectories"]["tasks"]):]:
            ax.axis("off")
    save_figure(fig, path)
    return True


def _draw_task(ax, task: dict) -> None:
    for step, points in enumerate(task["paths"]):
        xs, ys = zip(*points)
        label = "pre-update" if step == 0 else f"{step} step{'s' if step > 1 else ''}"
        ax.plot(xs, ys, linestyle="--" if step == 0 else "-", linewidth=1,
                label=f"{label} ({task['returns'][step]:.1f})")
    ax.plot(*task["start"], "ko", markersize=4)
    ax.plot(*task["goal"], "r*", markersize=10)
    ax.set(xlim=(-0.6, 0.6), ylim=(-0.6, 0.6), aspect="equal")
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5, loc="best")


def plot_learning_curves(results: dict[str, dict], path: Path) -> None:
    """Meta-training returns (pre-update dashed, post-update solid) per meta-iteration, one panel per task."""
    keys = _task_keys(results)
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, r in _ordered(results):
            rows = r["learning_curve"]
            if group_key(r) != key or not rows:
                continue
            iterations = [row["iteration"] for row in rows]
            (line,) = ax.plot(iterations, [row["meta_train.post_update_return"] for row in rows], label=name)
            ax.plot(iterations, [row["meta_train.pre_update_return"] for row in rows], "--", color=line.get_color())
        ax.set(xlabel="meta-iteration", ylabel="average return (- - pre-update, — post-update)",
               title=_panel_title(key))
        ax.legend(fontsize=7)
    save_figure(fig, path)


def write_rl_report(results: dict[str, dict], out_dir: Path, *, notes: list[str]) -> None:
    """``out_dir/README.md`` (tables beside the papers', notes) and ``return_vs_steps.png``,
    ``trajectories.png`` (when there are navigation paths), ``learning_curves.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_return_vs_steps(results, out_dir / "return_vs_steps.png")
    plot_learning_curves(results, out_dir / "learning_curves.png")
    has_paths = plot_trajectories(results, out_dir / "trajectories.png")
    keys = _task_keys(results)
    table4_before = next((k for k in keys if k.endswith("/metasgd")), None)  # the first Meta-SGD-protocol group
    text = ["# Meta-reinforcement learning", "", "Generated by `dvc repro` (stage `report_rl`); do not edit.", "",
            "Average return on new tasks after 0, 1, … vanilla policy-gradient steps, mean ± 95% confidence "
            "interval over tasks; each step samples fresh trajectories with the current policy, whose returns are "
            "averaged per task, then adapts on them. The models evaluated are the meta-parameters with the best "
            "post-update return during training (maml.md A.2); \"meta-iterations (best)\" gives the budget and "
            "how many meta-steps the evaluated model had taken.", ""]
    for key in keys:
        if key == table4_before:
            text += ["## Meta-SGD's Table 4 (2D navigation, distance reward, one PG step)", "",
                     metasgd_table4(results), "", papers_maml_note(results), ""]
        text += [f"## {_title(key)}", "", steps_table(results, key), ""]
    selection = selection_table(results)
    if selection:
        text += ["## Best-model selection", "",
                 "maml.md A.2 evaluates \"the model with the best average return during training\": the "
                 "meta-parameters whose post-update return, averaged over one meta-iteration's own meta-batch, was "
                 "the highest of the run. That maximum over noisy batch averages is optimistic; the difference to the "
                 "same model's return on new tasks measures by how much.", "", selection, ""]
    text += ["## Settings", "", settings_table(results), "", *[f"- {note}" for note in notes], "",
             "![return vs steps](return_vs_steps.png)", ""]
    if has_paths:
        text += ["Paths of one sampled trajectory per step (start ●, goal ★; the legend gives each step's "
                 "average return on that task):", "", "![trajectories](trajectories.png)", ""]
    text += ["![learning curves](learning_curves.png)", ""]
    (out_dir / "README.md").write_text("\n".join(text))
