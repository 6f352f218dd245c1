"""The few-shot classification report: accuracy ± 95% CI per algorithm × setting, each number
with its batch-norm mode and episode count, the papers' numbers beside them, and plots."""

from __future__ import annotations

from pathlib import Path

from metalearning.metrics_io import read_csv, read_json
from metalearning.report.convergence import convergence_section
from metalearning.report.figures import plt, save_figure
from metalearning.report.paper_values import FEWSHOT, FEWSHOT_INTERVAL

MODES = ("transductive", "non_transductive")


def load_fewshot_results(experiments: dict[str, list[str]], metrics_dir: Path,
                         models_dir: Path) -> dict[str, dict]:
    """Per meta-test ``<experiment>/<episode set>``: its ``curves.json`` (setting, episodes,
    per-mode accuracy), the experiment's name, its learning curve and the meta-iteration model
    selection chose (``selected``; None: the final meta-parameters).

    Args:
        experiments: experiment name → the episode sets it was meta-tested on.
    """
    def selected(name: str) -> int | None:
        path = models_dir / name / "train_metrics.json"
        return read_json(path).get("best_iteration") if path.is_file() else None

    return {f"{name}/{episodes}": {**read_json(metrics_dir / name / episodes / "curves.json"), "experiment": name,
                                   "learning_curve": read_csv(models_dir / name / "learning_curve.csv"),
                                   "selected": selected(name)}
            for name, sets in experiments.items() for episodes in sets}


def _pct(accuracy: float, ci95: float) -> str:
    return f"{100 * accuracy:.2f} ± {100 * ci95:.2f}%"


def _paper(dataset: str, setting: dict, shots: int) -> str:
    """The paper's numbers as printed there (its precision), each with its BN mode and what its ± is."""
    published = FEWSHOT.get((setting["algorithm"], dataset, setting["ways"], shots))
    if not published:
        return "—"
    kind = FEWSHOT_INTERVAL[(setting["algorithm"], dataset)]
    return "; ".join(f"{acc}{'' if ci is None else f' ± {ci}'}% ({mode.replace('_', '-')}; {kind})"
                     for mode, (acc, ci) in published.items())


def paper_point(dataset: str, setting: dict, shots: int) -> tuple[float, float | None] | None:
    """The paper's transductive (else only) accuracy and ± for a plot marker, or None."""
    published = FEWSHOT.get((setting["algorithm"], dataset, setting["ways"], shots))
    if not published:
        return None
    acc, ci = published.get("transductive") or next(iter(published.values()))
    return float(acc), None if ci is None else float(ci)


def accuracy_table(results: dict[str, dict], dataset: str) -> str:
    """One row per experiment: setting, budget, episodes, accuracy under both BN modes, the paper's."""
    head = ("| experiment | algorithm | test | learner (params) | meta-iterations × batch | selected at | trained BN | "
            "inner steps (test) | episodes | transductive | non-transductive | paper |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for name, r in sorted(results.items(), key=lambda kv: (kv[1]["setting"]["algorithm"], kv[0])):
        s, e, m = r["setting"], r["episodes"], r["modes"]
        test = f"{e['ways']}-way {e['shots']}-shot ({e['queries']} query/class)"
        cells = [f"`{r['experiment']}`", s["algorithm"], test, f"{s['learner']} ({s['parameters']:,})",
                 f"{s['meta_iterations']} × {s['meta_batch_size']}",
                 "final" if r.get("selected") is None else f"{r['selected']}", s["train_bn_mode"].replace("_", "-"),
                 str(s["eval_inner_steps"]), str(e["episodes"]),
                 *(_pct(m[mode]["accuracy"], m[mode]["ci95"]) for mode in MODES), _paper(dataset, s, e["shots"])]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, *rows])


def plot_accuracy_vs_steps(results: dict[str, dict], path: Path, dataset: str = "omniglot") -> None:
    """Meta-test accuracy against inner steps (0..k), one line per experiment and BN mode, and the
    paper's number (a star at the paper's test steps, its ± as the bar) where there is one."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, r in sorted(results.items()):
        color = None
        for mode, style in zip(MODES, ("-", "--")):
            curve = r["modes"][mode]
            line = ax.errorbar(curve["curve_steps"], [100 * a for a in curve["curve_accuracy"]],
                               yerr=[100 * h for h in curve["curve_ci95"]], linestyle=style, marker="o",
                               markersize=3, capsize=2, label=f"{name} ({mode})", color=color)
            color = line.lines[0].get_color()
        paper = paper_point(dataset, r["setting"], r["episodes"]["shots"])
        if paper:
            ax.errorbar([r["setting"]["eval_inner_steps"]], [paper[0]], yerr=None if paper[1] is None else [paper[1]],
                        marker="*", markersize=10, color=color, linestyle="none", capsize=3,
                        label=f"{r['setting']['algorithm']} paper")
    ax.set_xscale("symlog", linthresh=1)  # 0 steps on a log axis of 1..50 steps
    ticks = sorted({step for r in results.values() for c in r["modes"].values() for step in c["curve_steps"]})
    ax.set_xticks(ticks, labels=[str(t) for t in ticks], fontsize=7)
    ax.set(xlabel="inner steps at meta-test", ylabel="query accuracy (%)",
           title="Meta-test accuracy vs adaptation steps (mean ± 95% CI over episodes; ★ paper)")
    ax.legend(fontsize=6)
    save_figure(fig, path)


def plot_learning_curves(results: dict[str, dict], path: Path) -> None:
    """Validation accuracy against meta-iterations, the selected model's point circled."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    curves = {r["experiment"]: (r["learning_curve"], r.get("selected")) for r in results.values()}  # one per model
    for name, (curve, selected) in sorted(curves.items()):
        rows = [row for row in curve if "meta_val.accuracy" in row]
        line, = ax.plot([row["iteration"] for row in rows], [100 * row["meta_val.accuracy"] for row in rows],
                        label=name)
        chosen = [row for row in rows if row["iteration"] == selected]
        if chosen:
            ax.plot([selected], [100 * chosen[0]["meta_val.accuracy"]], "o", markersize=8, fillstyle="none",
                    color=line.get_color())
    ax.set(xlabel="meta-iteration", ylabel="validation query accuracy (%)",
           title="Meta-training: validation accuracy (○ the model selected for meta-test)")
    ax.legend(fontsize=7)
    save_figure(fig, path)


METASGD_REGULARISER = ("Meta-SGD's few-shot objective has \"a regularization term\" (meta-sgd.md §4.2: \"We add a "
                       "regularization term to the objective function\"); the paper defines neither the term nor its "
                       "weight, so it is not implemented here.")


def write_fewshot_report(results: dict[str, dict], out_dir: Path, *, dataset: str, title: str,
                         notes: list[str]) -> None:
    """``out_dir/README.md`` with the table and notes, plus ``accuracy_vs_steps.png`` and ``learning_curves.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(r["setting"]["algorithm"] == "MetaSGD" for r in results.values()):
        notes = [*notes, METASGD_REGULARISER]
    plot_accuracy_vs_steps(results, out_dir / "accuracy_vs_steps.png", dataset)
    plot_learning_curves(results, out_dir / "learning_curves.png")
    text = [f"# {title}", "", "Generated by `dvc repro` (stage `report_{}`); do not edit.".format(dataset), "",
            "Meta-test accuracy, mean ± 95% confidence interval over a fixed, seeded set of episodes of held-out "
            "classes (the same file for every model). Every model is adapted once per episode with its own inner "
            "loop; its query predictions are then scored under both batch-norm modes (reptile.md §6): "
            "*transductive* normalises the whole query set as one batch (MAML's evaluation), "
            "*non-transductive* normalises each query image with the support set plus that one image. "
            "\"trained BN\" is the mode of the meta-training query loss.", "",
            accuracy_table(results, dataset), "", *[f"- {note}" for note in notes], "",
            "![accuracy vs steps](accuracy_vs_steps.png)", "", "![learning curves](learning_curves.png)", "",
            convergence_section({r["experiment"]: r["learning_curve"] for r in results.values()})]
    (out_dir / "README.md").write_text("\n".join(text))
