"""The sine report: tables next to the papers' numbers, learning curves, the qualitative figure."""

from __future__ import annotations

import math
from pathlib import Path

from metalearning.metrics_io import read_csv, read_json
from metalearning.report.figures import plt, save_figure
from metalearning.report.paper_values import MAML_TABLE2, METASGD_TABLE1, PRETRAINED_TABLE2


def load_results(experiments: dict[str, str], metrics_dir: Path, models_dir: Path) -> dict[str, dict]:
    """Per experiment (name → its task family, params.yaml ``sine.experiments``): meta-test
    curves/setting, qualitative data, the training curve rows and the family."""
    results = {}
    for name, family in experiments.items():
        curves = read_json(metrics_dir / name / "curves.json")
        results[name] = {**curves, "qualitative": read_json(metrics_dir / name / "qualitative.json"),
                         "learning_curve": read_csv(models_dir / name / "learning_curve.csv"), "family": family}
    return results


FAMILIES = {"sine_metasgd": "Meta-SGD's (ω ∈ [0.8, 1.2])", "sine_maml": "MAML's (ω = 1)",
            "sine_reptile": "Reptile's (ω = 1, b ∈ [0, 2π])"}


DIVERGED = 1e3  # an adaptation whose mean MSE passes this has blown up (targets are ≤ 5 in size)
CLIP_FACTOR = 2.0  # the test-curve plot's y-axis ends at this multiple of the largest un-adapted MSE


def _diverged(mse: float) -> bool:
    return not math.isfinite(mse) or mse > DIVERGED


def _mse(mse: float, ci95: float, digits: int = 2) -> str:
    return "diverged" if _diverged(mse) else f"{mse:.{digits}f} ± {ci95:.{digits}f}"


def _cell(ours: dict, paper: tuple[float, float] | None) -> str:
    text = _mse(ours["mse"], ours["ci95"])
    return f"{text} ({paper[0]:.2f} ± {paper[1]:.2f})" if paper else f"{text} (—)"


def _in_table1(result: dict) -> bool:
    """Meta-SGD's Table 1 compares MAML and Meta-SGD (and our FOMAML) after one step, on its family."""
    setting = result["setting"]
    return (result.get("family", "sine_metasgd") == "sine_metasgd"
            and setting["algorithm"] in ("MAML", "MetaSGD", "FOMAML") and setting["eval_inner_steps"] == 1)


def table1(results: dict[str, dict]) -> str:
    """Meta-SGD Table 1 layout: rows training shots × algorithm, columns testing shots."""
    rows = []
    for name, r in sorted(results.items(), key=lambda kv: (kv[1]["setting"]["train_shots"], kv[0])):
        s = r["setting"]
        if not _in_table1(r):
            continue
        paper = METASGD_TABLE1.get((s["algorithm"], s["train_shots"]), {})
        cells = [_cell(r["shots"][f"{k}shot"], paper.get(k)) for k in (5, 10, 20)]
        rows.append(f"| {s['train_shots']}-shot | {s['algorithm']} | `{name}` | {s['meta_iterations']} | "
                    + " | ".join(cells) + " |")
    header = ("| training | algorithm | experiment | meta-iterations | 5-shot testing | 10-shot testing "
              "| 20-shot testing |\n|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows)


def maml_steps_table(results: dict[str, dict]) -> str:
    """MAML's Table 2 rows (5-shot MSE after 1/5/10 steps: MAML and "pretrain on all tasks") next
    to our MAML and pretrained runs' curves, MAML's own family first (the comparable rows)."""
    papers = {"MAML": MAML_TABLE2, "pretrained": PRETRAINED_TABLE2}
    rows = []
    ordered = sorted(results.items(), key=lambda kv: (kv[1].get("family") != "sine_maml",
                                                      kv[1]["setting"]["algorithm"] != "MAML", kv[0]))
    for name, r in ordered:
        method = r["setting"]["algorithm"]
        if method not in papers or "5shot" not in r["shots"]:
            continue
        curve, ci = r["shots"]["5shot"]["curve_mse"], r["shots"]["5shot"]["curve_ci95"]
        cells = [f"{_mse(curve[k], ci[k])} ({papers[method][k]:.2f})" for k in (1, 5, 10)]
        family = FAMILIES.get(r.get("family", "sine_metasgd"), r.get("family"))
        rows.append(f"| `{name}` | {method} | {family} | {r['setting']['train_shots']} | " + " | ".join(cells) + " |")
    header = ("| experiment | method | family | training shots | 1 step | 5 steps | 10 steps |\n"
              "|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows)


def other_table(results: dict[str, dict]) -> str:
    """Every experiment outside Table 1: no published sine number (Reptile's is a figure only;
    ANIL and MAML++ report none)."""
    rows = []
    for name, r in sorted(results.items()):
        s = r["setting"]
        if _in_table1(r):
            continue
        by_k = sorted(r["shots"].items(), key=lambda kv: int(kv[0][:-4]))
        cells = [_mse(v["mse"], v["ci95"], digits=3) for _, v in by_k]
        rows.append(f"| `{name}` | {s['algorithm']} | {s['eval_inner_steps']} | {s['meta_iterations']} | "
                    + " | ".join(cells) + " |")
    header = ("| experiment | algorithm | inner steps at test | meta-iterations | 5-shot | 10-shot | 20-shot |\n"
              "|---|---|---|---|---|---|---|")
    return header + "\n" + "\n".join(rows)


def plot_learning_curves(results: dict[str, dict], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in sorted(results.items()):
        rows = r["learning_curve"]
        ax.plot([row["iteration"] for row in rows], [row["meta_val.mse"] for row in rows], label=name)
    ax.set(xlabel="meta-iteration", ylabel="validation MSE after adaptation", yscale="log",
           title="Sine meta-training (100 fixed validation tasks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_test_curves(results: dict[str, dict], path: Path, shots: str = "5shot") -> None:
    """MSE against number of inner steps at meta-test (maml.md Figure 3)."""
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, r in sorted(results.items()):
        curve = r["shots"][shots]
        kept = [(s, m, h) for s, (m, h) in enumerate(zip(curve["curve_mse"], curve["curve_ci95"]))
                if not _diverged(m)]
        steps, mse, ci = zip(*kept)
        ax.errorbar(steps, mse, yerr=ci, label=name, capsize=2, marker=".")
    # the axis spans what adaptation does to the un-adapted error, not a blow-up to 10³ (a curve
    # that leaves the top grows past it: e.g. Meta-SGD after its one trained step)
    top = CLIP_FACTOR * max(r["shots"][shots]["curve_mse"][0] for r in results.values())
    ax.set_ylim(top=top)
    ax.set(xlabel="inner gradient steps at meta-test", ylabel=f"{shots} meta-test MSE", yscale="log",
           title=f"Adaptation curve, {shots} (mean ± 95% CI; curves leaving the top keep growing)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_qualitative(results: dict[str, dict], path: Path) -> None:
    """True curve, K support points, prediction before and after adaptation (maml.md Fig. 2)."""
    names = sorted(results)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        q = results[name]["qualitative"]
        steps = q["inner_steps"]
        ax.plot(q["x"], q["true"], color="k", label="ground truth")
        ax.plot(q["x"], q["before"], "--", color="tab:blue", label="pre-update")
        ax.plot(q["x"], q["after"], color="tab:red", label=f"after {steps} step{'s' if steps != 1 else ''}")
        ax.scatter(q["support_x"], q["support_y"], color="tab:purple", zorder=3, label=f"{len(q['support_x'])} "
                   "support points")
        ax.set_title(f"{name} ({steps} inner step{'s' if steps != 1 else ''})", fontsize=9)
        ax.set(xlabel="x", ylabel="y")
        ax.legend(fontsize=6, loc="lower left")  # each panel's own step count
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    save_figure(fig, path, dpi=110)


def write_report(results: dict[str, dict], out_dir: Path, *, profile: str, params_note: str,
                 meta_test: dict) -> Path:
    """Write the PNGs and ``README.md`` linking them; returns the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_learning_curves(results, out_dir / "learning_curves.png")
    plot_test_curves(results, out_dir / "test_curves.png")
    plot_qualitative(results, out_dir / "qualitative.png")
    page = out_dir / "README.md"
    page.write_text(_page(results, profile=profile, params_note=params_note, meta_test=meta_test))
    return page


def _page(results: dict[str, dict], *, profile: str, params_note: str, meta_test: dict) -> str:
    return f"""# Sine regression: meta-test results

Generated by the `report` stage of `dvc.yaml` (profile **{profile}**). {params_note}
Every number is the meta-test MSE ± 95% confidence interval over {meta_test['curves']} fixed sine
curves, each the mean over {meta_test['repeats']} draws of the K support points, scored on evenly spaced
query points (meta-sgd.md §4.1: 100 curves, 100 draws, 100 points; Reptile's family: 50 points); the
meta-test sets (seed {meta_test['seed']}) are written once by the `split_sine` stage and shared by
all algorithms. Paper values in parentheses; "—" where the paper has none. Batch norm: not used
(the sine learner is an MLP without normalisation).

## Meta-SGD Table 1 setting (ω ∈ [0.8, 1.2], one inner step)

{table1(results)}

## MAML Table 2: 5-shot MSE after 1 / 5 / 10 inner steps

The paper's numbers are for MAML's own family (ω = 1, trained with K = 10 and one step):
`maml_paper_sine_10shot` is that experiment, with MAML's released code's meta-batch 25 and
α = 0.001 (the code's default, which its documented sinusoid command keeps; the paper's text says
0.01). With α = 0.01 the same run blows up from the third step, while MAML's Figure 3 keeps
improving to 10 steps (see the experiment file). `pretrained_paper_sine_10shot` is the paper's
baseline "pretrain on all tasks" (the same network and Adam regressing random sinusoids directly,
then fine-tuned at meta-test with a swept step size; Figure 2 right, Table 2). The Meta-SGD-family
MAML runs below them (α = 0.01, a different family, evaluated with more steps than trained) show
that blow-up. "diverged" means the mean MSE
over curves passed {DIVERGED:g}.

{maml_steps_table(results)}

## Other experiments

Reptile on its own family (reptile.md §4: b ∈ [0, 2π], loss on 50 grid points; trained as the
authors' demonstration does, on minibatches of 10 of each task's 50 grid points, tanh MLP;
meta-tested on 10 random points; no published number, a figure only); ANIL (only the output
layer adapted) and MAML++ (5 steps, multi-step loss, learned per-step rates; its paper has no
sine experiment) on Meta-SGD's family, 5-shot training, evaluated after their own test steps;
MAML on its own family (its Table 2 is above).

{other_table(results)}

## Plots

- Learning curves (validation MSE during meta-training): ![learning curves](learning_curves.png)
- Meta-test MSE against inner steps, 5-shot: ![test curves](test_curves.png)
- One 5-shot task per experiment (the papers' qualitative figure): ![qualitative](qualitative.png)
"""
