"""The "across training seeds" section of every report, from the meta-test stages' ``seeds.json``
files (:mod:`metalearning.replicates`): per experiment trained with several seeds, each reported
quantity's mean over the seeds with a Student-t 95% interval across them (the spread a rerun with
another seed shows), beside each seed's own value with its 95% interval over test tasks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator, Sequence

from metalearning.metrics_io import read_json
from metalearning.replicates import INDEX, REPLICATES


def _estimates(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str, dict]]:
    """(key path, quantity, summary) of every across-seed estimate in a ``seeds.json`` ``results``."""
    if not isinstance(node, dict):
        return
    if "per_seed" in node:
        (quantity,) = [k for k in node if k not in ("ci95_seeds", "seeds", "per_seed", "ci95_per_seed")]
        yield path, quantity, node
        return
    for key in sorted(node, key=_natural):
        yield from _estimates(node[key], (*path, key))


def _natural(key: str) -> list:
    """Sort key putting ``5shot`` before ``10shot`` and ``2_steps`` before ``10_steps``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", key)]


def _fmt(quantity: str, value: float | None) -> str:
    if value is None:
        return "—"
    return f"{100 * value:.2f}" if quantity == "accuracy" else f"{value:.3f}"


def _unit(quantity: str) -> str:
    return "%" if quantity == "accuracy" else ""


def seed_rows(metrics: Path, experiments: Sequence[str]) -> list[dict]:
    """One row per (experiment, result) of the experiments with a ``seeds.json`` over ≥ 2 seeds."""
    rows = []
    for name in experiments:
        folder = Path(metrics) / name
        for path in sorted(folder.rglob(INDEX)):
            relative = path.relative_to(folder)
            if relative.parts[0] == REPLICATES:
                continue
            data = read_json(path)
            if len(data["seeds"]) < 2:
                continue
            for keys, quantity, s in _estimates(data["results"]):
                rows.append({**s, "experiment": name, "result": " · ".join((*relative.parent.parts, *keys, quantity)),
                             "quantity": quantity, "seeds": data["seeds"]})
    return rows


def seeds_section(metrics: Path, experiments: Sequence[str]) -> str:
    """Markdown: the across-seed table, and which experiments ran one seed only."""
    rows = seed_rows(metrics, experiments)
    seeded = {r["experiment"] for r in rows}
    lines = ["## Across training seeds", "",
             "The tables above show the primary training seed's model (params.yaml `seed`) with a 95% interval over "
             "test tasks. Experiments with `seeds: n` in params.yaml were also trained with the next n − 1 seeds; "
             "here is each result's **mean over the training seeds ± a 95% Student-t interval across seeds** "
             "(n − 1 degrees of freedom: how far another training seed may land), beside each seed's own value "
             "± its interval over test tasks.", ""]
    if rows:
        lines += ["| experiment | result | seeds | mean over seeds ± 95% CI across seeds | each seed ± 95% CI over "
                  "test tasks |", "|---|---|---|---|---|"]
        for r in rows:
            q, unit = r["quantity"], _unit(r["quantity"])
            across = f"{_fmt(q, r[q])} ± {_fmt(q, r['ci95_seeds'])}{unit}"
            each = "; ".join(f"{seed}: {_fmt(q, v)} ± {_fmt(q, h)}{unit}"
                             for seed, v, h in zip(r["seeds"], r["per_seed"], r["ci95_per_seed"]))
            lines.append(f"| `{r['experiment']}` | {r['result']} | {len(r['seeds'])} | {across} | {each} |")
    else:
        lines.append("No experiment of this report was trained with more than one seed.")
    single = [name for name in experiments if name not in seeded]
    if rows and single:
        lines += ["", f"One training seed only: {', '.join(f'`{n}`' for n in single)}."]
    return "\n".join(lines) + "\n"
