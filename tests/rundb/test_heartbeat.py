"""A run killed without a final status shows as DIED once its heartbeat is old, on both stores."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from metalearning.rundb.store import DIED_AFTER_S, FileRunStore, MongoRunStore, shown_status

from .conftest import mock_target, runs_cli, table_rows


def _run(status: str, heartbeat_age_s: float | None, start_age_s: float = 3600) -> dict:
    """A Sacred run entry (as both observers write it) started and last beating that long ago."""
    now = datetime.now(timezone.utc).replace(tzinfo=None)  # naive UTC, as Sacred records
    return {"experiment": {"name": "meta-train"}, "command": "main", "host": {"hostname": "h"},
            "status": status, "start_time": now - timedelta(seconds=start_age_s), "stop_time": None,
            "heartbeat": None if heartbeat_age_s is None else now - timedelta(seconds=heartbeat_age_s)}


def _write_file_store(runs_dir, runs: list[dict]) -> list[str]:
    for run_id, run in enumerate(runs, start=1):
        (runs_dir / str(run_id)).mkdir(parents=True)
        text = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in run.items()}
        (runs_dir / str(run_id) / "run.json").write_text(json.dumps(text))
    return ["--runs-dir", str(runs_dir)]


def _write_mongo(use_mock_url, runs: list[dict]) -> list[str]:
    target = mock_target()
    target.db.runs.insert_many([{"_id": run_id, **run} for run_id, run in enumerate(runs, start=1)])
    use_mock_url(target)
    return ["--mongo", "mongodb://mock-host:27017"]


def _runs() -> list[dict]:
    """The runs, timed from now (not from when the module was imported: a long test session would
    age the beating run past the threshold)."""
    return [_run("RUNNING", 3600),  # killed an hour ago
            _run("RUNNING", 5),  # beating
            _run("RUNNING", None, start_age_s=3600),  # killed before its first heartbeat
            _run("RUNNING", None, start_age_s=5),  # just started, no heartbeat yet
            _run("COMPLETED", 3600),  # a final status stays whatever the heartbeat
            _run("RUNNING", DIED_AFTER_S + 60)]  # silent a minute longer than the default threshold


@pytest.fixture(params=["file", "mongo"])
def backend(request, tmp_path, use_mock_url):
    if request.param == "file":
        return _write_file_store(tmp_path / "runs", _runs())
    return _write_mongo(use_mock_url, _runs())


def _statuses(capsys, *argv) -> dict[str, str]:
    assert runs_cli("ls", *argv, "--columns", "id,status") == 0, capsys.readouterr().err
    return dict(table_rows(capsys.readouterr().out))


def test_runs_ls_shows_a_silent_running_run_as_died(capsys, backend):
    assert _statuses(capsys, *backend) == {"1": "DIED", "2": "RUNNING", "3": "DIED", "4": "RUNNING",
                                           "5": "COMPLETED", "6": "DIED"}


def test_died_after_sets_the_threshold(capsys, backend):
    assert _statuses(capsys, *backend, "--died-after", str(DIED_AFTER_S + 600))["6"] == "RUNNING"
    assert _statuses(capsys, *backend, "--died-after", "1")["2"] == "DIED"


def test_died_runs_are_selected_by_status(capsys, backend):
    assert list(_statuses(capsys, *backend, "--status", "DIED")) == ["1", "3", "6"]
    assert list(_statuses(capsys, *backend, "--where", "status=RUNNING")) == ["2", "4"]


def test_show_names_a_died_run(capsys, backend):
    assert runs_cli("show", *backend, "1") == 0
    assert ["status", "DIED"] in table_rows(capsys.readouterr().out)


def test_both_stores_read_the_same_status(tmp_path):
    target = mock_target()
    runs = _runs()
    target.db.runs.insert_many([{"_id": i, **run} for i, run in enumerate(runs, start=1)])
    _write_file_store(tmp_path, runs)
    assert [r.status for r in FileRunStore(tmp_path).records()] == [r.status for r in MongoRunStore(target).records()]


@pytest.mark.parametrize("status, beat_s, expected", [
    ("RUNNING", DIED_AFTER_S + 1, "DIED"), ("RUNNING", DIED_AFTER_S - 1, "RUNNING"),
    ("FAILED", 10 * DIED_AFTER_S, "FAILED"), ("QUEUED", 10 * DIED_AFTER_S, "QUEUED"),
])
def test_shown_status(status, beat_s, expected):
    now = datetime(2024, 5, 1, 12)
    assert shown_status(status, now - timedelta(seconds=beat_s), now=now, died_after=DIED_AFTER_S) == expected
    assert shown_status(status, now - timedelta(seconds=beat_s), now=now, died_after=None) == status


def test_died_after_must_be_positive(capsys, tmp_path):
    with pytest.raises(SystemExit):
        runs_cli("ls", "--runs-dir", str(tmp_path), "--died-after", "0")
    assert "--died-after" in capsys.readouterr().err
