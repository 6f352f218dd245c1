"""Runs survive MongoDB faults, credentials never leak, and ``sync`` catches MongoDB up once."""

from __future__ import annotations

import json
import logging
import warnings

import gridfs
import mongomock
import pymongo.errors
import pytest

from metalearning.rundb.observers import MirrorObserver, read_marker
from metalearning.rundb.store import FileRunStore, MongoRunStore
from metalearning.rundb.sync import sync
from metalearning.rundb.target import RunDBWarning
from metalearning.runs import recorded_run

from .conftest import OPERATIVE_GIN, body_for, mock_target, runs_cli

SECRET = "s3cr3t-Pw"
DOWN = f"mongodb://alice:{SECRET}@127.0.0.1:1/?serverSelectionTimeoutMS=200"


def _record(runs_dir, **mongo):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _ = recorded_run("meta-train", body_for([3.0, 1.0, 2.0], {"final_meta_val_mse": 0.5}, runs_dir.parent),
                                 config={"seed": 0, "gin": {"macros": {"shots": 5}}}, runs_dir=runs_dir, **mongo)
    return result, [w for w in caught if issubclass(w.category, RunDBWarning)]


@pytest.fixture
def down_run(tmp_path, monkeypatch, caplog):
    """A run recorded while the MongoDB named by $METALEARNING_MONGO_URL is unreachable."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("METALEARNING_MONGO_URL", DOWN)
    runs_dir = tmp_path / "runs"
    result, warned = _record(runs_dir)
    return runs_dir, result, warned


def test_unreachable_mongo_leaves_a_complete_local_run_and_one_warning(down_run):
    runs_dir, result, warned = down_run
    assert result == {"final_meta_val_mse": 0.5}
    record = FileRunStore(runs_dir).record("1")
    assert record.status == "COMPLETED" and record.artifacts == ["operative_config.gin"]
    assert FileRunStore(runs_dir).metrics("1")["meta_train.loss"]["values"] == [3.0, 1.0, 2.0]
    assert len(warned) == 1
    message = str(warned[0].message)
    assert "mongodb://***@127.0.0.1:1" in message and "runs sync" in message and str(runs_dir / "1") in message
    assert read_marker(runs_dir / "1") == {}  # never reached MongoDB: nothing claims it is synced


def test_sync_uploads_the_local_run_once(down_run):
    runs_dir, _, _ = down_run
    target = mock_target()
    first = sync(runs_dir, target)
    again = sync(runs_dir, target)
    assert first.uploaded == {"1": 1} and again.uploaded == {} and again.already_synced == ["1"]
    doc = target.db.runs.find_one({"_id": 1})
    assert target.db.runs.count_documents({}) == 1 and doc["status"] == "COMPLETED"
    assert doc["result"] == {"final_meta_val_mse": 0.5} and doc["config"]["gin"]["macros"]["shots"] == 5
    assert target.db.metrics.find_one({"run_id": 1, "name": "meta_train.loss"})["values"] == [3.0, 1.0, 2.0]
    assert gridfs.GridFS(target.db).get(doc["artifacts"][0]["file_id"]).read().decode() == OPERATIVE_GIN
    local_sources = json.loads((runs_dir / "1" / "run.json").read_text())["experiment"]["sources"]
    assert [name for name, _ in doc["experiment"]["sources"]] == [name for name, _ in local_sources]
    assert "runs.py" in dict(doc["experiment"]["sources"])


def test_synced_run_reads_the_same_as_the_local_one(down_run):
    runs_dir, _, _ = down_run
    target = mock_target()
    sync(runs_dir, target)
    local, remote = FileRunStore(runs_dir), MongoRunStore(target)
    assert remote.record("1") == local.record("1")
    assert remote.metrics("1") == local.metrics("1")


def test_no_password_in_any_record_log_or_message(down_run, caplog, capsys):
    runs_dir, _, warned = down_run
    target = mock_target()
    sync(runs_dir, target)
    assert runs_cli("ls", "--runs-dir", str(runs_dir), "--mongo", DOWN, "--timeout-ms", "100") == 2
    stored = [str(doc) for name in target.db.list_collection_names() for doc in target.db[name].find()]
    files = [p.read_bytes().decode("utf-8", "replace") for p in runs_dir.rglob("*") if p.is_file()]
    out = capsys.readouterr()
    seen = [*stored, *files, *(str(w.message) for w in warned), caplog.text, out.out, out.err]
    assert "***@127.0.0.1:1" in out.err  # the check below looks where the URL did go
    assert not [text for text in seen if SECRET in text or "alice" in text]


def test_mongo_failing_mid_run_is_replaced_by_sync(tmp_path, monkeypatch):
    target = mock_target()
    runs_dir = tmp_path / "runs"

    def body(run):
        run.log_scalar("meta_train.loss", 3.0, 1)
        run.add_artifact(__file__, name="before.py")
        with monkeypatch.context() as broken:
            def down(*args, **kwargs):
                raise pymongo.errors.AutoReconnect("connection reset by peer")
            broken.setattr(mongomock.collection.Collection, "update_one", down)
            run.add_artifact(__file__, name="during.py")
        run.log_scalar("meta_train.loss", 2.0, 2)
        return {"final_meta_val_mse": 0.5}

    with pytest.warns(RunDBWarning, match="failed at artifact during.py") as warned:
        recorded_run("meta-train", body, config={"seed": 0}, runs_dir=runs_dir, mongo=target)
    assert len([w for w in warned if issubclass(w.category, RunDBWarning)]) == 1
    partial = target.db.runs.find_one({"_id": 1})
    assert partial["status"] == "RUNNING" and read_marker(runs_dir / "1")[target.key]["complete"] is False

    report = sync(runs_dir, target)
    doc = target.db.runs.find_one({"_id": 1})
    assert report.uploaded == {"1": 1} and target.db.runs.count_documents({}) == 1
    assert doc["status"] == "COMPLETED" and [a["name"] for a in doc["artifacts"]] == ["before.py", "during.py"]
    assert target.db.metrics.find_one({"run_id": 1})["values"] == [3.0, 2.0]
    artifacts = [f for f in target.db["fs.files"].find() if f["filename"].startswith("artifact://")]
    assert len(artifacts) == 2  # the partial copy's artifact was replaced, not left behind


def test_sync_does_not_replace_an_earlier_run_from_the_same_directory(tmp_path):
    """A runs directory wiped and started afresh reuses local id 1; the old document stays."""
    target = mock_target()
    runs_dir = tmp_path / "runs"
    _record(runs_dir, mongo=target)
    for path in sorted(runs_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    _record(runs_dir)  # MongoDB not configured this time
    assert sync(runs_dir, target).uploaded == {"1": 2}
    assert target.db.runs.count_documents({}) == 2


def test_sync_without_mongo_names_the_missing_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("METALEARNING_MONGO_URL", raising=False)
    assert runs_cli("sync", "--runs-dir", str(tmp_path)) == 2
    assert "METALEARNING_MONGO_URL" in capsys.readouterr().err


def test_sync_cli_reports_the_id_mapping(down_run, use_mock_url, capsys, monkeypatch):
    runs_dir, _, _ = down_run
    use_mock_url(mock_target())
    assert runs_cli("sync", "--runs-dir", str(runs_dir)) == 0
    assert "uploaded 1 run(s)" in capsys.readouterr().out
    assert runs_cli("sync", "--runs-dir", str(runs_dir)) == 0
    assert "uploaded 0 run(s)" in capsys.readouterr().out


def test_mirror_observer_repr_hides_credentials(tmp_path):
    from metalearning.rundb.target import connect

    assert SECRET not in repr(MirrorObserver(connect(DOWN), tmp_path))


def test_runs_still_running_wait_unless_asked_and_then_are_replaced_not_duplicated(down_run):
    runs_dir, _, _ = down_run
    run_json = runs_dir / "1" / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "status": "RUNNING", "stop_time": None}))
    target = mock_target()
    assert sync(runs_dir, target).still_running == ["1"] and target.db.runs.count_documents({}) == 0
    assert sync(runs_dir, target, include_running=True).uploaded == {"1": 1}
    assert sync(runs_dir, target, include_running=True).uploaded == {"1": 1}  # refreshed, same document
    assert target.db.runs.count_documents({}) == 1 and target.db.runs.find_one()["status"] == "RUNNING"
