"""Compare the pipeline outputs of two checkouts (e.g. a parent commit's and a refactor's, each
after `make repro` on the same host): every metrics JSON, train_metrics.json and learning curve
of OLD must be the same in NEW.

    python tools/compare_outputs.py OLD NEW

Differences that the one-engine refactor (issue 11) makes on purpose are mapped before comparing:
meta-RL's "Meta-SGD" method label is the algorithm label "MetaSGD"; meta-RL's final_<x>_return
keys are final_meta_train_<x>_return (every learning-curve column gets a final_ key; new trpo ones
are not compared); meta-RL learning-curve rows are numbered 1..n (the row after meta-iteration i),
not 0..n-1. Sacred run ids are ignored.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

RL_KEYS = {"final_pre_update_return": "final_meta_train_pre_update_return",
           "final_post_update_return": "final_meta_train_post_update_return"}


def compare(old_root: Path, new_root: Path) -> tuple[list[str], list[str]]:
    same, different = [], []

    def record(rel: Path, equal: bool) -> None:
        (same if equal else different).append(str(rel))

    for old in sorted(old_root.glob("metrics/**/*.json")):
        rel = old.relative_to(old_root)
        new = new_root / rel
        if not new.exists():
            record(rel, False)
            continue
        a, b = json.loads(old.read_text()), json.loads(new.read_text())
        if rel.name == "curves.json" and rel.parts[1] == "rl":
            a["setting"]["method"] = a["setting"]["method"].replace("Meta-SGD", "MetaSGD")
        record(rel, a == b)
    for old in sorted(old_root.glob("models/*/*/train_metrics.json")):
        rel = old.relative_to(old_root)
        a, b = json.loads(old.read_text()), json.loads((new_root / rel).read_text())
        a = {RL_KEYS.get(k, k): v for k, v in a.items() if k != "sacred_run_id"}
        record(rel, a == {k: v for k, v in b.items() if k in a})
    for old in sorted(old_root.glob("models/*/*/learning_curve.csv")):
        rel = old.relative_to(old_root)
        rows_a = list(csv.DictReader(old.open()))
        rows_b = list(csv.DictReader((new_root / rel).open()))
        if rel.parts[1] == "rl":
            rows_a = [{**r, "iteration": str(int(r["iteration"]) + 1)} for r in rows_a]
        record(rel, rows_a == rows_b)
    return same, different


if __name__ == "__main__":
    same, different = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"identical: {len(same)} files; different: {len(different)}")
    for rel in different:
        print("DIFFERENT:", rel)
    sys.exit(1 if different else 0)
