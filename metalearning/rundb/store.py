"""Read Sacred runs from the embedded file store or from MongoDB, as the same ``RunRecord``s.

Both stores normalise to one shape so that every query and table is backend-blind: ids are
strings, times are naive UTC datetimes at millisecond precision (what BSON keeps), artifacts
are names, and a RUNNING run whose heartbeat stopped shows as DIED.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

from metalearning.rundb.target import MongoTarget, RunDBError, StoreUnavailable, connect, resolve_mongo_url

# Sacred beats every 10 s; a RUNNING run silent for 2 minutes was killed. Omniboard shows such a
# run as PROBABLY_DEAD after the same 120 s.
DIED_AFTER_S = 120
DIED = "DIED"  # not a Sacred status: shown for a RUNNING run that stopped beating


class UnknownRunError(RunDBError, KeyError):
    """No run with the requested id in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class RunRecord:
    """One Sacred run, minus its metrics and artifact contents (fetched on demand).

    ``status`` is Sacred's, except DIED for a RUNNING run silent too long (``shown_status``).
    """

    id: str
    name: str
    status: str
    start_time: datetime | None
    stop_time: datetime | None
    config: dict[str, Any]
    result: Any
    host: str = ""
    command: str = ""
    repositories: list[dict] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    fail_trace: list[str] = field(default_factory=list)
    heartbeat: datetime | None = None


class RunStore(Protocol):
    """What the queries need from a run store."""

    def describe(self) -> str:
        """Names the store in messages, e.g. ``file store runs/``."""

    def records(self) -> list[RunRecord]:
        """Every run, in id order."""

    def record(self, run_id: str) -> RunRecord:
        """One run; raises UnknownRunError naming the id and the store."""

    def metrics(self, run_id: str) -> dict[str, dict[str, list]]:
        """``{metric name: {"steps": [...], "values": [...]}}`` of one run."""

    def artifact(self, run_id: str, name: str) -> bytes:
        """An artifact's contents; raises UnknownRunError if the run or artifact is missing."""


def id_order(run_id: str) -> tuple:
    """Numeric ids in numeric order, then any others."""
    return (0, int(run_id), "") if run_id.isdigit() else (1, 0, run_id)


def _ms(value: Any) -> datetime | None:
    """A Sacred time (ISO text or datetime) truncated to BSON's millisecond precision."""
    if value is None:
        return None
    when = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return when.replace(microsecond=when.microsecond // 1000 * 1000, tzinfo=None)


def shown_status(status: str, last_sign_of_life: datetime | None, *, now: datetime,
                 died_after: float | None) -> str:
    """``status``, or DIED if it is RUNNING and ``last_sign_of_life`` is over ``died_after`` s before ``now``.

    A killed process (SIGKILL, out of memory, a lost machine) never writes a final status; its
    heartbeat stops. ``died_after=None`` keeps Sacred's status. Times are naive UTC, as Sacred
    records them (the recording machine's clock: keep the threshold well above clock skew).
    """
    if status != "RUNNING" or died_after is None or last_sign_of_life is None:
        return status
    return DIED if (now - last_sign_of_life).total_seconds() > died_after else status


def _record(run_id: str, run: dict, config: dict, info: dict, artifacts: list[str], *,
            died_after: float | None) -> RunRecord:
    experiment = run.get("experiment", {})
    start, heartbeat = _ms(run.get("start_time")), _ms(run.get("heartbeat"))
    status = shown_status(run.get("status", ""), heartbeat or start,  # no beat yet: started, then silent
                          now=datetime.now(timezone.utc).replace(tzinfo=None), died_after=died_after)
    return RunRecord(
        id=run_id, name=experiment.get("name", ""), status=status,
        start_time=start, stop_time=_ms(run.get("stop_time")), config=config,
        result=run.get("result"), host=run.get("host", {}).get("hostname", ""),
        command=run.get("command", ""),
        repositories=experiment.get("repositories", []), artifacts=artifacts, info=info,
        fail_trace=run.get("fail_trace") or [], heartbeat=heartbeat)


class FileRunStore:
    """Sacred's FileStorageObserver layout: ``<runs_dir>/<id>/{run,config,metrics,info}.json``.

    ``died_after``: seconds without a heartbeat after which a RUNNING run reads as DIED (None: never).
    """

    def __init__(self, runs_dir: Path, *, died_after: float | None = DIED_AFTER_S):
        self.runs_dir = Path(runs_dir)
        self.died_after = died_after

    def describe(self) -> str:
        return f"file store {self.runs_dir}/"

    def run_ids(self) -> list[str]:
        if not self.runs_dir.is_dir():
            return []
        ids = [d.name for d in self.runs_dir.iterdir() if d.name.isdigit() and (d / "run.json").is_file()]
        return sorted(ids, key=id_order)

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / str(run_id)

    def records(self) -> list[RunRecord]:
        out = []
        for run_id in self.run_ids():
            try:
                out.append(self.record(run_id))
            except ValueError as err:  # a run.json cut short by a crash must not hide the others
                warnings.warn(f"{self.run_dir(run_id)}: unreadable run record ({err}); skipped", stacklevel=2)
        return out

    def record(self, run_id: str) -> RunRecord:
        run_dir = self.run_dir(run_id)
        if not str(run_id).isdigit() or not (run_dir / "run.json").is_file():
            raise UnknownRunError(f"no run with id {run_id!r} in {self.describe()}")
        run = _read_json(run_dir / "run.json")
        return _record(str(run_id), run, _read_json(run_dir / "config.json", {}),
                       _read_json(run_dir / "info.json", {}), list(run.get("artifacts", [])),
                       died_after=self.died_after)

    def metrics(self, run_id: str) -> dict[str, dict[str, list]]:
        self.record(run_id)
        stored = _read_json(self.run_dir(run_id) / "metrics.json", {})
        return {name: {"steps": m["steps"], "values": m["values"]} for name, m in stored.items()}

    def artifact(self, run_id: str, name: str) -> bytes:
        if name not in self.record(run_id).artifacts:
            raise UnknownRunError(f"run {run_id} in {self.describe()} has no artifact {name!r}")
        return (self.run_dir(run_id) / name).read_bytes()


def _read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: {err}") from None


class MongoRunStore:
    """Sacred's MongoObserver layout: ``runs`` and ``metrics`` collections, GridFS artifacts.

    ``died_after``: as for ``FileRunStore``.
    """

    _LIGHT = {"captured_out": 0, "experiment.sources": 0, "experiment.dependencies": 0}

    def __init__(self, target: MongoTarget, *, died_after: float | None = DIED_AFTER_S):
        self.target = target
        self.died_after = died_after

    def describe(self) -> str:
        return self.target.describe()

    def records(self) -> list[RunRecord]:
        docs = self._read(lambda: list(self.target.db["runs"].find({}, self._LIGHT)))
        return sorted((self._to_record(d) for d in docs), key=lambda r: id_order(r.id))

    def record(self, run_id: str) -> RunRecord:
        return self._to_record(self._doc(run_id))

    def metrics(self, run_id: str) -> dict[str, dict[str, list]]:
        doc = self._doc(run_id)
        found = self._read(lambda: list(self.target.db["metrics"].find({"run_id": doc["_id"]})))
        found.sort(key=lambda m: m["name"])
        return {m["name"]: {"steps": m["steps"], "values": m["values"]} for m in found}

    def artifact(self, run_id: str, name: str) -> bytes:
        import gridfs

        for artifact in self._doc(run_id).get("artifacts", []):
            if artifact["name"] == name:
                return self._read(lambda: gridfs.GridFS(self.target.db).get(artifact["file_id"]).read())
        raise UnknownRunError(f"run {run_id} in {self.describe()} has no artifact {name!r}")

    def _doc(self, run_id: str) -> dict:
        key: Any = int(run_id) if str(run_id).isdigit() else run_id
        doc = self._read(lambda: self.target.db["runs"].find_one({"_id": key}, self._LIGHT))
        if doc is None:
            raise UnknownRunError(f"no run with id {run_id!r} in {self.describe()}")
        return doc

    def _read(self, query):
        """Run a query; a driver error becomes StoreUnavailable with a redacted message."""
        try:
            return query()
        except Exception as err:  # pymongo's connection errors share no useful base class
            raise StoreUnavailable(f"{self.describe()}: {self.target.reason(err)}") from None

    def _to_record(self, doc: dict) -> RunRecord:
        info = {k: v for k, v in (doc.get("info") or {}).items() if k != "metrics"}  # MongoDB-only refs
        return _record(str(doc["_id"]), doc, doc.get("config", {}), info,
                       [a["name"] for a in doc.get("artifacts", [])], died_after=self.died_after)


def open_store(runs_dir: Path = Path("runs"), mongo_url: str | None = None, *, local: bool = False,
               params_path: Path | None = None, timeout_ms: int | None = None,
               died_after: float | None = DIED_AFTER_S) -> RunStore:
    """The store the ``runs`` commands read: MongoDB when one is configured (and reachable), else files.

    MongoDB precedence as for recording: ``mongo_url`` > ``$METALEARNING_MONGO_URL`` >
    params.yaml ``run_db.mongo_url`` (when ``params_path`` is given); ``local`` forces the
    file store. ``died_after``: see ``shown_status``. Raises StoreUnavailable (redacted) if
    the configured MongoDB does not answer or the runs directory does not exist.
    """
    url = None if local else resolve_mongo_url(mongo_url, params_path=params_path)
    if url is None:
        if not Path(runs_dir).is_dir():
            raise StoreUnavailable(f"no file store at {runs_dir}/ (nothing recorded there yet?)")
        return FileRunStore(runs_dir, died_after=died_after)
    target = connect(url) if timeout_ms is None else connect(url, timeout_ms=timeout_ms)
    target.ping()
    return MongoRunStore(target, died_after=died_after)
