"""Upload local file-store runs that MongoDB missed; running it twice uploads nothing twice.

A run is synced when its marker (``mongo_sync.json``) says its MongoDB copy is complete. Any
other finished run is replayed through Sacred's ``MongoObserver`` events (so the documents are
Sacred's standard ones): a partial copy left by a mid-run failure (same ``meta.local_run`` and
start time) is replaced under the same MongoDB id; otherwise MongoDB numbers a new document.
"""

from __future__ import annotations

import json
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from metalearning.rundb.observers import StrictMongoObserver, local_origin, read_marker, write_marker
from metalearning.rundb.store import FileRunStore
from metalearning.rundb.target import MongoTarget, RunDBError

FINAL = {"COMPLETED", "FAILED", "INTERRUPTED", "TIMEOUT"}


@dataclass
class SyncReport:
    """What ``sync`` did: ``uploaded`` maps local run id -> MongoDB id."""

    uploaded: dict[str, Any] = field(default_factory=dict)
    already_synced: list[str] = field(default_factory=list)
    still_running: list[str] = field(default_factory=list)


def sync(runs_dir: Path, target: MongoTarget, *, include_running: bool = False) -> SyncReport:
    """Upload every finished local run under ``runs_dir`` whose MongoDB copy is missing or partial.

    ``include_running`` also uploads runs whose status is still RUNNING (e.g. killed hard); they
    stay unsynced, so each such sync replaces their copy with the latest local state.
    Raises StoreUnavailable (redacted) if MongoDB cannot be reached, RunDBError if an upload
    fails part way (that run stays marked incomplete, so the next sync replaces it).
    """
    target.ping()
    store = FileRunStore(runs_dir)
    report = SyncReport()
    for run_id in store.run_ids():
        run_dir = store.run_dir(run_id)
        if read_marker(run_dir).get(target.key, {}).get("complete"):
            report.already_synced.append(run_id)
        elif _status(run_dir) not in FINAL and not include_running:
            report.still_running.append(run_id)
        else:
            report.uploaded[run_id] = _upload(run_dir, run_id, target)
    return report


def _status(run_dir: Path) -> str:
    return _json(run_dir / "run.json").get("status", "")


def _json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.is_file() else default


def _upload(run_dir: Path, run_id: str, target: MongoTarget) -> Any:
    run = _json(run_dir / "run.json")
    origin = local_origin(run_dir, run_id, run.get("host", {}).get("hostname", ""))
    try:
        previous = _previous_copy(run_dir, origin, target)
        if previous is not None:
            _delete_copy(target, previous)
        mongo_id = _replay(run_dir, origin, target, previous["_id"] if previous else None)
    except Exception as err:  # driver errors, or a local file that vanished: name the run
        raise RunDBError(f"uploading run {run_dir} to {target.describe()} failed: "
                         f"{target.reason(err)}") from None
    write_marker(run_dir, target, mongo_id, complete=run.get("status") in FINAL)  # RUNNING: again next time
    return mongo_id


def _previous_copy(run_dir: Path, origin: dict, target: MongoTarget) -> dict | None:
    """The (partial) MongoDB copy of this local run: same host, directory and start time.

    The start time tells this run from an earlier one that had the same directory (a runs
    directory deleted and started afresh), whose document must not be replaced.
    """
    start = _time(_json(run_dir / "run.json")["start_time"])
    query = {"meta.local_run.host": origin["host"], "meta.local_run.path": origin["path"]}
    for doc in target.db["runs"].find(query, {"_id": 1, "start_time": 1}):
        when = doc.get("start_time")
        if isinstance(when, datetime) and abs(when - start) < timedelta(milliseconds=1):  # BSON keeps ms
            return doc
    return None


def _delete_copy(target: MongoTarget, doc: dict) -> None:
    """Remove a partial copy: its run document, metrics and artifacts (sources may be shared).

    Artifacts go by GridFS file name (``artifact://runs/<id>/…``), which also catches one
    uploaded just before the failure that cut the copy short and never listed in it.
    """
    import gridfs

    fs = gridfs.GridFS(target.db)
    prefix = re.escape(f"artifact://{target.db['runs'].name}/{doc['_id']}/")
    for stale in fs.find({"filename": {"$regex": f"^{prefix}"}}):
        fs.delete(stale._id)
    target.db["metrics"].delete_many({"run_id": doc["_id"]})
    target.db["runs"].delete_one({"_id": doc["_id"]})


def _replay(run_dir: Path, origin: dict, target: MongoTarget, mongo_id: Any) -> Any:
    """Send one local run through MongoObserver's events; return its MongoDB id."""
    run = _json(run_dir / "run.json")
    obs = StrictMongoObserver.for_target(target)
    ex_info = {**run["experiment"], "sources": []}  # uploaded below from the store's copies
    obs.started_event(ex_info, run["command"], run["host"], _time(run["start_time"]),
                      _json(run_dir / "config.json", {}), {**run.get("meta", {}), "local_run": origin},
                      _id=mongo_id)
    obs.run_entry["experiment"]["sources"] = _upload_sources(obs, run_dir.parent, run["experiment"])
    obs.run_entry["resources"] = _resources(run.get("resources", []))
    refs: dict[str, Any] = {}
    obs.log_metrics(_metrics(run_dir), refs)
    for name in run.get("artifacts", []):
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        obs.artifact_event(name, str(run_dir / name), None, content_type)
    cout = run_dir / "cout.txt"
    obs.heartbeat_event({**_json(run_dir / "info.json", {}), **refs},
                        cout.read_text(errors="replace") if cout.is_file() else "",
                        _time(run.get("heartbeat") or run["start_time"]), run.get("result"))
    _final_event(obs, run)
    return obs.run_entry["_id"]


def _final_event(obs: StrictMongoObserver, run: dict) -> None:
    stop = _time(run["stop_time"]) if run.get("stop_time") else None
    status = run.get("status")
    if status == "COMPLETED":
        obs.completed_event(stop, run.get("result"))
    elif status == "FAILED":
        obs.failed_event(stop, run.get("fail_trace", []))
    elif status in FINAL:
        obs.interrupted_event(stop, status)
    else:  # still RUNNING locally (include_running): keep the status, save what there is
        obs.final_save(attempts=1)


def _upload_sources(obs: StrictMongoObserver, runs_dir: Path, experiment: dict) -> list:
    """``[[name, GridFS id]]`` from the file store's ``_sources`` copies (as MongoObserver stores them)."""
    uploaded = []
    for name, stored in experiment.get("sources", []):
        with open(runs_dir / stored, "rb") as f:
            uploaded.append([name, obs.fs.put(f, filename=str(Path(experiment["base_dir"]) / name))])
    return uploaded


def _resources(local: list) -> list:
    """MongoObserver's ``[filename, md5]`` from the file store's ``[filename, stored copy]``."""
    from sacred.dependencies import get_digest  # imported by now, through observers

    return [[name, get_digest(stored)] for name, stored in local if Path(stored).is_file()]


def _metrics(run_dir: Path) -> dict[str, dict]:
    """metrics.json as MongoObserver.log_metrics takes it (timestamps back to datetimes)."""
    metrics = _json(run_dir / "metrics.json", {})
    return {name: {**m, "timestamps": [_time(t) for t in m["timestamps"]]} for name, m in metrics.items()}


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)
