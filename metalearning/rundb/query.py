"""Runs as flat rows, and the filters, sorting and columns the ``runs`` commands apply to them.

A row maps keys to values:

- ``id``, ``name``, ``status``, ``start_time``, ``stop_time``, ``duration_s``, ``host``,
  ``git_commit``, ``git_dirty``;
- ``algorithm`` (MAML, FOMAML, MetaSGD or Reptile, from the gin config) and ``shots``
  (the gin macro), when the config says;
- ``config.<dotted path>`` for every leaf of the Sacred config (``config.gin.MAML.inner_lr``),
  with gin macro references (``%inner_lr``) replaced by the macro's value, so that
  ``gin.MAML.inner_lr=0.01`` finds the runs whose MAML stepped with 0.01;
- ``result.<key>`` for a dict result; ``metric.<name>`` (last logged value) when asked for.

A key given by a person is looked up as written, then under ``config.``: ``gin.macros.shots``
and ``seed`` work without the prefix.
"""

from __future__ import annotations

import difflib
import json
import math
import operator
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Sequence

from metalearning.core.algorithms import MetaLearner, algorithm_label
from metalearning.rundb.store import RunRecord, RunStore
from metalearning.rundb.target import RunDBError

MISSING = object()
_WHERE = re.compile(r"^\s*([A-Za-z0-9_./@-]+?)\s*(!=|<=|>=|=|<|>|~)\s*(.*?)\s*$")
_ORDERED = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class QueryError(RunDBError, ValueError):
    """A malformed filter, sort key or column; the message names it."""


def algorithm(config: dict) -> str | None:
    """The algorithm a run's gin config selects: the configurable bound to ``MetaTrainer.algorithm``
    (``MetaRL.algorithm`` in runs recorded before the one trainer), named by
    :func:`~metalearning.core.algorithms.algorithm_label` (MAML with ``first_order = True`` is FOMAML).
    """
    gin = config.get("gin") or {}
    chosen = next((str(gin[owner]["algorithm"]) for owner in ("MetaTrainer", "MetaRL")
                   if "algorithm" in (gin.get(owner) or {})), "")
    match = re.fullmatch(r"@(?:\w+/)?(?:[\w.]+\.)?(\w+)(?:\(\))?", chosen)
    names = [match.group(1)] if match else [name for name in _algorithm_names() if name in gin]
    if len(names) != 1:
        return None
    return algorithm_label(names[0], (gin.get(names[0]) or {}).get("first_order") is True)


def _algorithm_names() -> set[str]:
    """The class names of every :class:`~metalearning.core.algorithms.MetaLearner` defined so far."""
    names, todo = set(), [MetaLearner]
    while todo:
        cls = todo.pop()
        names.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return names - {"MetaLearner"}


def shots(config: dict) -> Any:
    """The gin macro ``shots`` (K, support points per task), or None."""
    return ((config.get("gin") or {}).get("macros") or {}).get("shots")


def flatten(tree: Any, prefix: str) -> dict[str, Any]:
    """Leaves of nested dicts as ``{"prefix.a.b": leaf}``; lists are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}"))
    return out


def resolved_config(config: dict) -> dict[str, Any]:
    """``flatten(config, "config")`` with ``%macro`` values replaced by ``config.gin.macros``' values."""
    macros = (config.get("gin") or {}).get("macros") or {}
    return {k: _resolve(v, macros) for k, v in flatten(config, "config").items()}


def _resolve(value: Any, macros: dict, depth: int = 0) -> Any:
    if isinstance(value, list):
        return [_resolve(v, macros, depth) for v in value]
    if isinstance(value, str) and value.startswith("%") and value[1:] in macros and depth < 10:
        return _resolve(macros[value[1:]], macros, depth + 1)  # a macro may name another macro
    return value


def row(record: RunRecord, metrics: dict[str, dict] | None = None) -> dict[str, Any]:
    """The flat row of one run; ``metric.*`` keys only when ``metrics`` is given."""
    out: dict[str, Any] = {
        "id": record.id, "name": record.name, "status": record.status,
        "start_time": record.start_time, "stop_time": record.stop_time, "duration_s": _duration(record),
        "host": record.host, "git_commit": _git(record, "commit"), "git_dirty": _git(record, "dirty"),
        "algorithm": algorithm(record.config), "shots": shots(record.config),
    }
    out.update(resolved_config(record.config))
    if isinstance(record.result, dict):
        out.update(flatten(record.result, "result"))
    for name, series in (metrics or {}).items():
        out[f"metric.{name}"] = series["values"][-1] if series["values"] else None
    return out


def _duration(record: RunRecord) -> float | None:
    if record.start_time is None or record.stop_time is None:
        return None
    return round((record.stop_time - record.start_time).total_seconds(), 3)


def _git(record: RunRecord, field: str) -> Any:
    """The commit of the first repository; dirty if any repository is."""
    if not record.repositories:
        return None
    if field == "dirty":
        return any(bool(r.get("dirty")) for r in record.repositories)
    return record.repositories[0].get("commit")


def lookup(values: dict[str, Any], key: str) -> Any:
    """``values[key]``, else ``values["config." + key]``, else MISSING."""
    if key in values:
        return values[key]
    return values.get(f"config.{key}", MISSING)


def rows(store: RunStore, *, metrics: bool = False) -> list[dict[str, Any]]:
    """Every run of ``store`` as a row, in id order (``metric.*`` only if ``metrics``)."""
    return [row(r, store.metrics(r.id) if metrics else None) for r in store.records()]


def needs_metrics(keys: Iterable[str]) -> bool:
    return any(k.startswith("metric.") for k in keys)


def check_keys(all_rows: Sequence[dict], keys: Iterable[str], what: str) -> None:
    """Raise QueryError naming a key that no run has (with the nearest real key)."""
    if not all_rows:
        return
    known = set().union(*(r.keys() for r in all_rows))
    spellings = known | {k.removeprefix("config.") for k in known}
    for key in keys:
        if key not in spellings:
            close = difflib.get_close_matches(key, spellings, 1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise QueryError(f"{what} {key!r}: no run has this key{hint}")


@dataclass(frozen=True)
class Where:
    """One ``KEY OP VALUE`` filter; OP is one of = != < <= > >= ~ (contains)."""

    key: str
    op: str
    text: str

    @classmethod
    def parse(cls, spec: str) -> Where:
        match = _WHERE.match(spec)
        if not match or not match.group(3) and match.group(2) in _ORDERED:
            raise QueryError(f"bad --where {spec!r}: expected KEY=VALUE (or !=, <, <=, >, >=, ~), "
                             "e.g. gin.MAML.inner_lr=0.01")
        where = cls(*match.groups())
        if where.op in _ORDERED and _number(where.text) is None and _date(where.text) is None:
            raise QueryError(f"bad --where {spec!r}: {where.op!r} needs a number or an ISO date")
        return where

    def matches(self, values: dict[str, Any]) -> bool:
        """Whether a row passes; a run without the key never does (SQL's NULL)."""
        value = lookup(values, self.key)
        if value is MISSING or value is None:
            return False
        if self.op == "=":
            return _equal(value, self.text)
        if self.op == "!=":
            return not _equal(value, self.text)
        if self.op == "~":
            return self.text in cell(value)
        return _ordered(value, self.op, self.text)


def _literal(text: str) -> Any:
    """``0.01`` -> 0.01, ``5`` -> 5, ``true`` -> True, ``[1, 2]`` -> [1, 2]; else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _equal(value: Any, text: str) -> bool:
    literal = _literal(text)
    if isinstance(value, bool) != isinstance(literal, bool):  # True is not 1 here
        return cell(value) == text
    if isinstance(value, datetime):
        return _date(text) is not None and _date(text) == value
    return value == literal or cell(value) == text


def _ordered(value: Any, op: str, text: str) -> bool:
    if isinstance(value, datetime):
        bound = _date(text)
        return bound is not None and _ORDERED[op](value, bound)
    number = _number(value)
    bound = _number(text)
    return number is not None and bound is not None and _ORDERED[op](number, bound)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _date(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None


def parse_date(text: str, option: str) -> datetime:
    """An ISO date or date-time (UTC, as Sacred records), or QueryError naming the option."""
    when = _date(text)
    if when is None:
        raise QueryError(f"bad {option} {text!r}: expected an ISO date like 2024-05-01 or 2024-05-01T12:30")
    return when if when.tzinfo is None else when.astimezone(timezone.utc).replace(tzinfo=None)


def cell(value: Any) -> str:
    """How a value reads in a table cell, and as ``~`` and ``=`` compare it with text."""
    if value is None or value is MISSING:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)



@dataclass(frozen=True)
class Selection:
    """Which runs (filters), in which order, with which columns."""

    where: tuple[Where, ...] = ()
    statuses: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    sort: tuple[str, ...] = ()  # "-key" sorts descending
    limit: int | None = None

    def keys(self) -> list[str]:
        return [w.key for w in self.where] + [k.lstrip("-") for k in self.sort]

    def apply(self, all_rows: list[dict]) -> list[dict]:
        """Filter, sort and cut ``all_rows``; raises QueryError for a key no run has."""
        check_keys(all_rows, [w.key for w in self.where], "--where key")
        check_keys(all_rows, [k.lstrip("-") for k in self.sort], "--sort key")
        kept = [r for r in all_rows if self._keeps(r)]
        for key in reversed(self.sort):
            kept = _sorted(kept, key.lstrip("-"), descending=key.startswith("-"))
        return kept if self.limit is None else kept[: self.limit]

    def _keeps(self, values: dict) -> bool:
        start = values.get("start_time")
        if self.statuses and values.get("status") not in self.statuses:
            return False
        if self.since is not None and (start is None or start < self.since):
            return False
        if self.until is not None and (start is None or start >= self.until):
            return False
        return all(w.matches(values) for w in self.where)


def _sorted(all_rows: list[dict], key: str, *, descending: bool) -> list[dict]:
    """Stable sort on one key; numbers numerically, others as text; runs without it last."""
    present = [r for r in all_rows if lookup(r, key) not in (MISSING, None)]
    absent = [r for r in all_rows if lookup(r, key) in (MISSING, None)]
    return sorted(present, key=_sort_key(key), reverse=descending) + absent


def _sort_key(key: str) -> Callable[[dict], tuple]:
    def sort_key(values: dict) -> tuple:
        value = lookup(values, key)
        if key == "id":
            return (0, float(value), "") if str(value).isdigit() else (1, 0.0, str(value))
        number = _number(value) if not isinstance(value, datetime) else value.timestamp()
        return (0, number, "") if number is not None else (1, 0.0, cell(value))
    return sort_key


# Columns of a run row that identify the run rather than the experiment (never a grouping key).
RUN_COLUMNS = ("id", "start_time", "stop_time", "duration_s", "host", "git_commit", "git_dirty")


def config_key(key: str) -> str:
    """A config key as its row column: ``seed`` → ``config.seed`` (``config.*`` as it is)."""
    return key if key.startswith("config.") else f"config.{key}"


def group_rows(selected: Sequence[dict], over: Sequence[str]) -> list[dict[str, Any]]:
    """Runs that agree on everything but the ``over`` keys (e.g. ``seed``), one row per group.

    Two runs are in one group when their name, status and every ``config.*`` value other than
    the ``over`` keys (``seed`` means ``config.seed``) are equal. Each group row keeps those
    shared values and adds ``runs`` (how many), ``ids``, the ``over`` values as lists, and for
    every numeric ``result.*``/``metric.*`` key the mean over the group's runs and
    ``<key>.ci95``, the 95% half-width by Student's t across them (NaN for a single run): the
    spread over training seeds, not over test tasks.
    """
    from metalearning.evaluation import mean_t_ci95

    over_keys = {config_key(k) for k in over}
    groups: dict[str, list[dict]] = {}
    for values in selected:
        identity = {k: v for k, v in values.items()
                    if (k.startswith("config.") and k not in over_keys) or k in ("name", "status")}
        groups.setdefault(json.dumps(identity, sort_keys=True, default=str), []).append(values)
    out = []
    for members in groups.values():
        first = members[0]
        grouped: dict[str, Any] = {k: v for k, v in first.items()
                                   if k not in RUN_COLUMNS and not k.startswith(("result.", "metric."))
                                   and k not in over_keys}
        grouped.update(runs=len(members), ids=[m["id"] for m in members])
        for key in sorted(over_keys):
            grouped[key] = [m.get(key) for m in members]
        measured = sorted({k for m in members for k in m if k.startswith(("result.", "metric."))})
        for key in measured:
            numbers = [m[key] for m in members if isinstance(m.get(key), (int, float)) and not isinstance(m[key], bool)]
            if len(numbers) == len(members):
                grouped[key], grouped[f"{key}.ci95"] = mean_t_ci95([float(n) for n in numbers])
        out.append(grouped)
    return out
