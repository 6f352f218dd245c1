"""The Python API: runs as a pandas DataFrame (one row per run, flat columns).

    >>> from metalearning.rundb.frame import runs_frame
    >>> df = runs_frame("runs", where=["algorithm=MAML", "shots=5"])
    >>> df[["id", "config.gin.MAML.inner_lr", "result.final_meta_val_mse", "metric.meta_val.mse"]]

MongoDB: ``runs_frame(open_store(mongo_url=URL))`` (``metalearning.rundb.store.open_store``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd

from metalearning.rundb.query import Selection, Where, parse_date, rows
from metalearning.rundb.store import FileRunStore, RunStore

LEADING = ["id", "name", "status", "start_time", "stop_time", "duration_s", "host", "git_commit", "git_dirty",
           "algorithm", "shots"]


GROUPS = ("config", "result", "metric")


def _column_order(key: str) -> tuple[int, str]:
    group = key.split(".", 1)[0]
    return (GROUPS.index(group) if group in GROUPS else len(GROUPS), key)


def frame(selected: Sequence[dict]) -> pd.DataFrame:
    """Rows (``query.row``) as a DataFrame: the fixed columns, then config.*, result.*, metric.*."""
    keys = {k for r in selected for k in r if k not in LEADING}
    return pd.DataFrame(list(selected), columns=LEADING + sorted(keys, key=_column_order))


def to_csv(df: pd.DataFrame) -> str:
    """CSV text; list and dict cells (e.g. ``config.gin_files``) as JSON."""
    return df.convert_dtypes().apply(lambda column: column.map(_json_if_nested)).to_csv(index=False)


def _json_if_nested(value):
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def to_json(df: pd.DataFrame) -> str:
    """JSON records; missing cells null, times ISO 8601 at millisecond precision (UTC)."""
    records = [{k: _plain(v) for k, v in r.items()} for r in df.convert_dtypes().to_dict(orient="records")]
    return json.dumps(records, indent=2) + "\n"


def _plain(value):
    if isinstance(value, (list, dict)):
        return value
    if pd.isna(value):
        return None
    if isinstance(value, datetime):  # pd.Timestamp is one
        return value.isoformat(timespec="milliseconds")
    return value.item() if hasattr(value, "item") else value  # numpy scalars


def runs_frame(store: RunStore | str | Path = "runs", *, where: Iterable[str] = (),
               status: Iterable[str] = (), since: str | None = None, until: str | None = None,
               sort: Iterable[str] = (), metrics: bool = True, group_over: Sequence[str] = ()) -> pd.DataFrame:
    """Runs of ``store`` (a RunStore, or a file-store directory) that pass the filters.

    Args:
        where: ``KEY OP VALUE`` filters as for ``metalearning runs ls --where``.
        status: keep only these statuses (e.g. ``["COMPLETED"]``).
        since, until: ISO dates bounding the start time (UTC; ``until`` exclusive).
        sort: keys, ``-key`` for descending.
        metrics: add ``metric.<name>`` columns (the last logged value of each metric).
        group_over: keys (e.g. ``["seed"]``) to aggregate over: one row per group of runs that
            agree on everything else, with ``runs``, ``ids``, the keys' values as lists, and each
            numeric result/metric's mean and ``<key>.ci95`` across the group's runs
            (:func:`metalearning.rundb.query.group_rows`).

    Returns:
        One row per run (or group); columns ``id``, ``name``, ``status``, ``start_time`` … then
        ``config.<dotted path>``, ``result.<key>``, ``metric.<name>``.
    """
    if not hasattr(store, "records"):
        store = FileRunStore(Path(store))
    selection = Selection(where=tuple(Where.parse(w) for w in where), statuses=tuple(status),
                          since=parse_date(since, "since") if since else None,
                          until=parse_date(until, "until") if until else None, sort=tuple(sort))
    selected = selection.apply(rows(store, metrics=metrics))
    if group_over:
        from metalearning.rundb.query import group_rows

        grouped = group_rows(selected, list(group_over))
        keys = {k for r in grouped for k in r}
        return pd.DataFrame(grouped, columns=[c for c in LEADING if c in keys] + sorted(keys - set(LEADING),
                                                                                          key=_column_order))
    return frame(selected)
