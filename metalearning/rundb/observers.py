"""A MongoDB mirror of the file store that never takes a run down with it.

``recorded_run`` always records to Sacred's ``FileStorageObserver`` (the complete, local
record) and, when MongoDB is configured, adds a ``MirrorObserver``: Sacred's own
``MongoObserver`` (standard ``runs``/``metrics`` documents, GridFS artifacts, what Omniboard
reads) behind a guard. If MongoDB is unreachable at start or fails mid-run the guard warns once
(``RunDBWarning``, URL redacted), stops talking to MongoDB, and the run goes on; the run
directory's marker (``mongo_sync.json``) then says the MongoDB copy is incomplete and
``metalearning runs sync`` uploads it later.

Run ids: the file store numbers runs (it has the higher priority), MongoDB numbers its
documents itself; the marker records the mapping, and every document carries
``meta.local_run = {"host", "path", "id"}`` naming its local origin.
"""

from __future__ import annotations

import json
import threading
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources (see metalearning.runs)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred.observers import MongoObserver
    from sacred.observers.base import RunObserver
    from sacred.observers.mongo import force_bson_encodeable

from metalearning.rundb.target import MongoTarget, RunDBWarning

MARKER = "mongo_sync.json"
MIRROR_PRIORITY = 10  # below FileStorageObserver's 20: the file store assigns the run id


class StrictMongoObserver(MongoObserver):
    """Sacred's MongoObserver, except that failed writes raise instead of being swallowed.

    Sacred's ``save`` drops ``AutoReconnect`` and ``final_save`` pickles the run to a failure
    directory; here the caller (``MirrorObserver`` or ``sync``) decides what a failure means.
    """

    @classmethod
    def for_target(cls, target: MongoTarget) -> StrictMongoObserver:
        import gridfs

        db = target.db
        return cls.create_from(db["runs"], gridfs.GridFS(db), metrics_collection=db["metrics"])

    def save(self) -> None:
        self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry})

    def final_save(self, attempts: int) -> None:
        import bson

        try:
            self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)
        except bson.InvalidDocument:  # e.g. a result Sacred could flatten but BSON cannot hold
            self.run_entry = force_bson_encodeable(self.run_entry)
            self.runs.update_one({"_id": self.run_entry["_id"]}, {"$set": self.run_entry}, upsert=True)


def local_origin(run_dir: Path, local_id: Any, hostname: str) -> dict[str, str]:
    """What ``meta.local_run`` holds: the recording host and the file-store run directory."""
    return {"host": hostname, "path": str(Path(run_dir).resolve()), "id": str(local_id)}


def read_marker(run_dir: Path) -> dict[str, dict]:
    """``{target key: {"label", "_id", "complete"}}`` for one local run (empty if never mirrored)."""
    path = Path(run_dir) / MARKER
    return json.loads(path.read_text()) if path.is_file() else {}


def write_marker(run_dir: Path, target: MongoTarget, mongo_id: Any, *, complete: bool) -> None:
    """Record that local run ``run_dir`` is MongoDB document ``mongo_id`` in ``target``."""
    marker = read_marker(run_dir)
    marker[target.key] = {"label": target.label, "_id": mongo_id, "complete": complete}
    tmp = Path(run_dir) / (MARKER + ".tmp")
    tmp.write_text(json.dumps(marker, indent=2, sort_keys=True))
    tmp.replace(Path(run_dir) / MARKER)


class MirrorObserver(RunObserver):
    """Mirrors a run into MongoDB; on the first MongoDB error it warns once and stands down.

    Args:
        target: the database (``metalearning.rundb.target.connect(url)`` or a mongomock client).
        runs_dir: the file store's directory, where the run's marker goes.
    """

    priority = MIRROR_PRIORITY

    def __init__(self, target: MongoTarget, runs_dir: Path):
        self.target = target
        self.runs_dir = Path(runs_dir)
        self.mongo: StrictMongoObserver | None = None
        self.run_dir: Path | None = None
        self.failed = False
        self._metric_refs: dict[str, Any] = {}  # info["metrics"] for MongoDB only, not info.json
        self._lock = threading.Lock()  # the heartbeat thread and the main thread both write

    def __repr__(self) -> str:  # Sacred names observers in its own log lines
        return f"MirrorObserver({self.target.describe()})"

    def started_event(self, ex_info, command, host_info, start_time, config, meta_info, _id):
        self.run_dir = self.runs_dir / str(_id)
        meta = {**meta_info, "local_run": local_origin(self.run_dir, _id, host_info.get("hostname", ""))}
        if self._guard("start", self._start, dict(ex_info), command, host_info, start_time, config, meta):
            write_marker(self.run_dir, self.target, self.mongo.run_entry["_id"], complete=False)
        return None  # the file store's id stays the run's id

    def _start(self, ex_info, command, host_info, start_time, config, meta):
        self.mongo = StrictMongoObserver.for_target(self.target)
        self.mongo.started_event(ex_info, command, host_info, start_time, config, meta, _id=None)

    def log_metrics(self, metrics_by_name, info):
        self._guard("metrics", self.mongo and self.mongo.log_metrics, metrics_by_name, self._metric_refs)

    def heartbeat_event(self, info, captured_out, beat_time, result):
        self._guard("heartbeat", self.mongo and self.mongo.heartbeat_event,
                    {**info, **self._metric_refs}, captured_out, beat_time, result)

    def artifact_event(self, name, filename, metadata=None, content_type=None):
        self._guard("artifact " + name, self.mongo and self.mongo.artifact_event,
                    name, filename, metadata, content_type)

    def resource_event(self, filename):
        self._guard("resource", self.mongo and self.mongo.resource_event, filename)

    def completed_event(self, stop_time, result):
        self._finish(self.mongo and self.mongo.completed_event, stop_time, result)

    def interrupted_event(self, interrupt_time, status):
        self._finish(self.mongo and self.mongo.interrupted_event, interrupt_time, status)

    def failed_event(self, fail_time, fail_trace):
        self._finish(self.mongo and self.mongo.failed_event, fail_time, fail_trace)

    def _finish(self, method, *args) -> None:
        if self._guard("final save", method, *args):
            write_marker(self.run_dir, self.target, self.mongo.run_entry["_id"], complete=True)

    def _guard(self, what: str, method, *args) -> bool:
        """Call ``method(*args)`` unless MongoDB already failed; True if it ran and succeeded."""
        with self._lock:
            if self.failed or not method:
                return False
            try:
                method(*args)
                return True
            except Exception as err:  # any driver/server error: the run must go on
                self.failed = True
                self._warn(what, err)
                return False

    def _warn(self, what: str, err: Exception) -> None:
        warnings.warn(
            f"{self.target.describe()} failed at {what} ({self.target.reason(err)}); the run goes on, "
            f"recorded locally in {self.run_dir}. Upload it later with `metalearning runs sync "
            f"--runs-dir {self.runs_dir}`.", RunDBWarning, stacklevel=2)
