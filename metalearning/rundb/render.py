"""rich tables for ``runs ls``, ``runs show`` and ``runs compare``.

Everything printed comes from ``RunRecord``s, rows and metrics, never from the store itself,
so the file store and MongoDB print the same thing for the same runs.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

from metalearning.rundb.query import cell, flatten, lookup, row
from metalearning.rundb.store import RunRecord, RunStore

CHECKSUM_WORDS = ("checksum", "md5", "sha1", "sha256")
OPERATIVE_GIN = "operative_config.gin"


def runs_table(selected: Sequence[dict], columns: Sequence[str]) -> Table:
    """One line per run, one column per key (cells empty where a run lacks the key)."""
    table = Table(caption=f"{len(selected)} run{'s' if len(selected) != 1 else ''}")
    for column in columns:
        table.add_column(column, overflow="fold")
    for values in selected:
        table.add_row(*(cell(lookup(values, c)) for c in columns))
    return table


def _pairs(title: str, pairs: Iterable[tuple[str, Any]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in pairs:
        table.add_row(key, cell(value))
    return table


def _names(title: str, names: Iterable[str]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("name")
    for name in names:
        table.add_row(name)
    return table


def metrics_summary(metrics: dict[str, dict[str, list]]) -> Table:
    """Per metric: points logged, last step and value, minimum and its step."""
    table = Table(title="metrics", title_justify="left")
    for column in ("metric", "points", "last step", "last", "min", "min step"):
        table.add_column(column)
    for name, series in sorted(metrics.items()):
        steps, values = series["steps"], series["values"]
        finite = [(v, s) for v, s in zip(values, steps) if isinstance(v, (int, float)) and not math.isnan(v)]
        low, low_step = min(finite, key=lambda p: p[0]) if finite else (None, None)
        table.add_row(name, str(len(values)), cell(steps[-1] if steps else None),
                      cell(values[-1] if values else None), cell(low), cell(low_step))
    return table


def _checksums(record: RunRecord) -> list[tuple[str, Any]]:
    """Data checksums recorded in the config or info (keys naming checksum/md5/sha*)."""
    leaves = {**flatten(record.config, "config"), **flatten(record.info, "info")}
    return [(k, v) for k, v in sorted(leaves.items()) if any(w in k.lower() for w in CHECKSUM_WORDS)]


def print_show(console: Console, store: RunStore, run_id: str, *, gin: bool = True) -> None:
    """Everything about one run: header, git, config, result, metrics, artifacts, checksums, gin."""
    record = store.record(run_id)
    metrics = store.metrics(run_id)
    values = row(record)
    head = ["name", "status", "algorithm", "shots", "start_time", "stop_time", "duration_s", "host"]
    console.print(_pairs(f"run {record.id}", [("command", record.command), *((k, values[k]) for k in head)]))
    console.print(_pairs("git", [(r.get("url", "?"), _commit(r)) for r in _unique(record.repositories)]))
    console.print(_pairs("config", sorted(flatten(record.config, "config").items())))
    if isinstance(record.result, dict):
        console.print(_pairs("result", sorted(flatten(record.result, "result").items())))
    console.print(metrics_summary(metrics))
    console.print(_names("artifacts", record.artifacts))
    checksums = _checksums(record)
    if checksums:
        console.print(_pairs("data checksums", checksums))
    if record.fail_trace:
        console.print(_pairs("failure", [("error", record.fail_trace[-1].strip())]))
    if gin and OPERATIVE_GIN in record.artifacts:
        console.rule(OPERATIVE_GIN)
        console.print(store.artifact(run_id, OPERATIVE_GIN).decode("utf-8", "replace"), markup=False)


def _commit(repository: dict) -> str:
    return f"{repository.get('commit')} ({'dirty' if repository.get('dirty') else 'clean'})"


def _unique(repositories: list[dict]) -> list[dict]:
    """Sacred lists the repository once per source file; show each once."""
    seen: dict[tuple, dict] = {}
    for repo in repositories:
        seen.setdefault((repo.get("url"), repo.get("commit")), repo)
    return list(seen.values())


def compare_rows(store: RunStore, run_ids: Sequence[str]) -> list[dict]:
    """Rows with final metrics for each requested run; UnknownRunError names a missing id."""
    records = [store.record(i) for i in run_ids]
    return [row(r, store.metrics(r.id)) for r in records]


def print_compare(console: Console, compared: Sequence[dict], *, all_keys: bool = False) -> None:
    """Config keys that differ (all with ``all_keys``), then results and final metrics, side by side."""
    ids = [str(r["id"]) for r in compared]
    keys = sorted({k for r in compared for k in r})
    head = ["name", "status", "algorithm", "shots", "git_commit", "git_dirty"]
    config = [k for k in keys if k.startswith("config.") and (all_keys or _differs(compared, k))]
    outcome = [k for k in keys if k.startswith(("result.", "metric."))]
    for title, chosen in (("run", head), ("config" if all_keys else "config (differences)", config),
                          ("result and final metrics", outcome)):
        table = Table(title=title, title_justify="left")
        table.add_column("key", style="bold")
        for run_id in ids:
            table.add_column(run_id, overflow="fold")
        for key in chosen:
            table.add_row(key, *(cell(lookup(r, key)) for r in compared))
        console.print(table)


def _differs(compared: Sequence[dict], key: str) -> bool:
    return len({cell(r[key]) if key in r else "\0missing" for r in compared}) > 1

