"""Against a real MongoDB server: only when METALEARNING_TEST_MONGO_URL names one."""

from __future__ import annotations

import os
import uuid

import gridfs
import pytest

from metalearning.rundb.store import FileRunStore, MongoRunStore
from metalearning.rundb.sync import sync
from metalearning.rundb.target import connect
from metalearning.runs import recorded_run

from .conftest import OPERATIVE_GIN, body_for

URL = os.environ.get("METALEARNING_TEST_MONGO_URL")
pytestmark = pytest.mark.skipif(not URL, reason="set METALEARNING_TEST_MONGO_URL to test against a real MongoDB")


@pytest.fixture
def target():
    target = connect(URL, db_name=f"metalearning_test_{uuid.uuid4().hex[:12]}")
    target.ping()
    yield target
    target.client.drop_database(target.db_name)


def test_live_run_and_sync_on_a_real_server(tmp_path, target):
    runs_dir = tmp_path / "runs"
    body = body_for([3.0, 1.0, 2.0], {"final_meta_val_mse": 0.5}, tmp_path)
    recorded_run("meta-train", body, config={"seed": 0, "gin": {"macros": {"shots": 5}}}, runs_dir=runs_dir,
                 mongo=target)
    recorded_run("meta-train", body, config={"seed": 1}, runs_dir=runs_dir)  # MongoDB not told
    report = sync(runs_dir, target)
    assert report.uploaded == {"2": 2} and report.already_synced == ["1"]
    assert sync(runs_dir, target).uploaded == {}
    doc = target.db.runs.find_one({"_id": 1})
    assert doc["status"] == "COMPLETED" and doc["config"]["gin"]["macros"]["shots"] == 5
    assert target.db.metrics.find_one({"run_id": 1, "name": "meta_train.loss"})["values"] == [3.0, 1.0, 2.0]
    assert gridfs.GridFS(target.db).get(doc["artifacts"][0]["file_id"]).read().decode() == OPERATIVE_GIN
    for run_id in ("1", "2"):
        assert MongoRunStore(target).record(run_id) == FileRunStore(runs_dir).record(run_id)
