"""Small writers for the files DVC tracks as metrics and plots."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class CurveRecorder:
    """A metrics sink that keeps every logged point and forwards it to another sink."""

    def __init__(self, forward=None):
        self.forward = forward
        self.rows: dict[int, dict[str, float]] = {}

    def log_scalar(self, name: str, value: float, step: int) -> None:
        self.rows.setdefault(step, {"iteration": step})[name] = value
        if self.forward is not None:
            self.forward.log_scalar(name, value, step)

    def write_csv(self, path: Path) -> None:
        rows = [self.rows[k] for k in sorted(self.rows)]
        fields = list(dict.fromkeys(f for row in rows for f in row)) or ["iteration"]  # 0 iterations: header only
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)


def write_json(path: Path, data: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_csv(path: Path) -> list[dict[str, float]]:
    """Rows of a numeric CSV (e.g. ``learning_curve.csv``) as dicts of floats; empty cells dropped."""
    with open(path) as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
