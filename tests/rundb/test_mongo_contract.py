"""The MongoDB mirror writes Sacred's standard documents (what Omniboard reads)."""

from __future__ import annotations

import json

import gridfs
import pytest

from metalearning.rundb.observers import MARKER, read_marker

from .conftest import OPERATIVE_GIN, RUNS


@pytest.fixture(scope="module")
def db(recorded):
    return recorded[1].db


def test_one_run_document_per_run_with_sacred_fields(db):
    docs = list(db.runs.find().sort("_id", 1))
    assert [d["_id"] for d in docs] == [1, 2, 3, 4]
    first = docs[0]
    assert first["format"] == "MongoObserver-0.7.0" and first["experiment"]["name"] == "meta-train"
    assert first["status"] == "COMPLETED" and first["result"] == {"final_meta_val_mse": 0.5}
    assert first["config"]["gin"]["MAML"] == {"inner_lr": "%inner_lr", "first_order": False}
    assert first["config"]["seed"] == 0
    assert len(first["experiment"]["repositories"][0]["commit"]) == 40
    assert {"start_time", "stop_time", "heartbeat", "host", "meta", "captured_out"} <= set(first)


def test_failed_run_document_keeps_status_and_trace(db):
    failed = db.runs.find_one({"_id": 4})
    assert failed["status"] == "FAILED" and "meta-iteration 1" in "".join(failed["fail_trace"])


def test_metrics_documents_hold_every_point(db):
    loss = db.metrics.find_one({"run_id": 1, "name": "meta_train.loss"})
    assert loss["steps"] == [1, 2, 3] and loss["values"] == RUNS[0][1] and len(loss["timestamps"]) == 3
    assert db.metrics.count_documents({"run_id": 1}) == 2
    refs = db.runs.find_one({"_id": 1})["info"]["metrics"]  # Sacred's cross-reference, for Omniboard
    assert {r["name"] for r in refs} == {"meta_train.loss", "meta_val.mse"}


def test_artifact_round_trips_through_gridfs(db):
    artifacts = db.runs.find_one({"_id": 3})["artifacts"]
    assert [a["name"] for a in artifacts] == ["operative_config.gin"]
    stored = gridfs.GridFS(db).get(artifacts[0]["file_id"])
    assert stored.read().decode() == OPERATIVE_GIN
    assert stored.filename == "artifact://runs/3/operative_config.gin"


def test_sources_are_in_gridfs(db):
    sources = db.runs.find_one({"_id": 1})["experiment"]["sources"]
    names = [name for name, _ in sources]
    assert "runs.py" in names
    code = gridfs.GridFS(db).get(dict(sources)["runs.py"]).read().decode()
    assert "def recorded_run" in code


def test_documents_name_their_local_origin_and_markers_map_ids(recorded, db):
    runs_dir, target = recorded
    doc = db.runs.find_one({"_id": 2})
    assert doc["meta"]["local_run"]["path"] == str((runs_dir / "2").resolve())
    assert doc["meta"]["local_run"]["id"] == "2"
    assert read_marker(runs_dir / "2") == {target.key: {"label": target.label, "_id": 2, "complete": True}}


def test_local_record_is_untouched_by_the_mirror(recorded):
    runs_dir, _ = recorded
    run = json.loads((runs_dir / "1" / "run.json").read_text())
    assert run["status"] == "COMPLETED" and run["artifacts"] == ["operative_config.gin"]
    assert not (runs_dir / "1" / "info.json").exists() or "metrics" not in json.loads(
        (runs_dir / "1" / "info.json").read_text())
    assert MARKER not in run["artifacts"]
