"""``runs ls|show|compare|export`` give the expected rows, the same on both backends."""

from __future__ import annotations

import io
import json
import math
from datetime import datetime, timedelta, timezone

import pandas as pd
import pytest

from metalearning.rundb.frame import runs_frame
from metalearning.rundb.query import QueryError, Where, algorithm
from metalearning.rundb.store import FileRunStore, MongoRunStore
from metalearning.runs import recorded_run

from .conftest import OPERATIVE_GIN, gin_config, runs_cli, table_rows


@pytest.fixture(params=["file", "mongo"])
def backend(request, recorded, use_mock_url):
    """CLI arguments that select one backend over the same recorded runs."""
    runs_dir, target = recorded
    if request.param == "mongo":
        use_mock_url(target)
        return ["--mongo", "mongodb://mock-host:27017", "--runs-dir", str(runs_dir / "elsewhere")]
    return ["--runs-dir", str(runs_dir)]


def _out(capsys, *argv) -> str:
    assert runs_cli(*argv) == 0, capsys.readouterr().err
    return capsys.readouterr().out


def _ids(capsys, backend, *argv) -> list[str]:
    return [cells[0] for cells in table_rows(_out(capsys, "ls", *backend, *argv))]


@pytest.mark.parametrize("where, ids", [
    ([], ["1", "2", "3", "4"]),
    (["--where", "algorithm=MAML"], ["1"]),
    (["--where", "algorithm=FOMAML"], ["2"]),
    (["--where", "gin.macros.shots=5"], ["1", "2"]),
    (["--where", "shots=10"], ["3", "4"]),
    (["--where", "gin.MAML.inner_lr=0.01"], ["1", "2"]),
    (["--where", "config.gin.Reptile.inner_lr>=0.015"], ["4"]),
    (["--where", "seed=0", "--where", "shots=10"], ["3"]),
    (["--where", "result.final_meta_val_mse<0.6"], ["1", "3"]),
    (["--where", "algorithm!=MAML"], ["2", "3", "4"]),
    (["--where", "gin_files~metasgd"], ["3"]),
    (["--status", "FAILED"], ["4"]),
    (["--status", "COMPLETED", "--sort=-result.final_meta_val_mse"], ["2", "1", "3"]),
    (["--sort", "shots,-seed"], ["2", "1", "4", "3"]),
    (["--sort=-id", "--limit", "2"], ["4", "3"]),
    (["--since", (datetime.utcnow() + timedelta(days=1)).date().isoformat()], []),
    (["--since", (datetime.utcnow() - timedelta(days=1)).date().isoformat()], ["1", "2", "3", "4"]),
    (["--until", (datetime.utcnow() - timedelta(days=1)).date().isoformat()], []),
    (["--until", (datetime.now(timezone.utc) - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5)))
      .isoformat()], []),  # an hour ago, written in UTC+5: compared in UTC, as Sacred records
])
def test_ls_filters_and_sorts(capsys, backend, where, ids):
    assert _ids(capsys, backend, *where) == ids


def test_ls_default_columns(capsys, backend):
    text = _out(capsys, "ls", *backend)
    header = next(line for line in text.splitlines() if "┃" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "id", "name", "status", "start_time", "duration_s", "algorithm", "shots", "seed", "result.final_meta_val_mse"]
    rows = table_rows(text)
    assert [r[2] for r in rows] == ["COMPLETED", "COMPLETED", "COMPLETED", "FAILED"]
    assert [r[5] for r in rows] == ["MAML", "FOMAML", "MetaSGD", "Reptile"]
    assert [r[8] for r in rows] == ["0.5", "0.8", "0.25", ""]
    assert "4 runs" in text


def test_ls_metric_columns_hold_last_values(capsys, backend):
    rows = table_rows(_out(capsys, "ls", *backend, "--columns", "id,metric.meta_train.loss,gin.MAML.first_order"))
    assert rows == [["1", "2", "false"], ["2", "3", "true"], ["3", "0.5", ""], ["4", "5", ""]]


def test_show_prints_config_gin_metrics_artifacts_git(capsys, backend):
    text = _out(capsys, "show", *backend, "1")
    assert "config.gin.MAML.inner_lr" in text and "meta-train" in text
    assert ["meta_train.loss", "3", "3", "2", "1", "2"] in table_rows(text)  # points, last step, last, min, at
    assert "operative_config.gin" in text and OPERATIVE_GIN.splitlines()[0] in text
    assert "dirty" in text or "clean" in text
    commit = json.loads((_runs_dir(backend) / "1" / "run.json").read_text())["experiment"]["repositories"][0]["commit"]
    assert commit in text


def _runs_dir(backend):
    from pathlib import Path

    path = Path(backend[backend.index("--runs-dir") + 1])
    return path.parent if path.name == "elsewhere" else path


def test_show_names_data_checksums_and_failures(capsys, backend):
    assert ["config.data_checksums.sine_metasgd", "md5:0123abcd"] in table_rows(_out(capsys, "show", *backend, "3"))
    assert "meta-iteration 1" in _out(capsys, "show", *backend, "4", "--no-gin")


def test_compare_shows_config_differences_and_final_metrics(capsys, backend):
    rows = {r[0]: r[1:] for r in table_rows(_out(capsys, "compare", *backend, "1", "2"))}
    assert rows["config.gin.MAML.first_order"] == ["false", "true"]
    assert rows["config.seed"] == ["0", "1"]
    assert "config.gin.MAML.inner_lr" not in rows  # equal in both runs
    assert rows["result.final_meta_val_mse"] == ["0.5", "0.8"]
    assert rows["metric.meta_train.loss"] == ["2", "3"]
    assert rows["algorithm"] == ["MAML", "FOMAML"]


def test_export_csv_and_json_have_one_row_per_selected_run(capsys, backend):
    csv = pd.read_csv(io.StringIO(_out(capsys, "export", *backend, "--where", "shots=5")))
    assert csv["id"].tolist() == [1, 2]
    assert csv["config.gin.MAML.inner_lr"].tolist() == [0.01, 0.01]
    assert csv["metric.meta_train.loss"].tolist() == [2.0, 3.0]
    records = json.loads(_out(capsys, "export", *backend, "--format", "json", "--status", "FAILED"))
    assert [(r["id"], r["algorithm"], r["status"]) for r in records] == [("4", "Reptile", "FAILED")]


@pytest.mark.parametrize("argv", [["ls"], ["ls", "--columns", "id,metric.meta_val.mse"], ["show", "3"],
                                  ["compare", "1", "2", "3", "--all"], ["export"], ["export", "--format", "json"]])
def test_both_backends_print_the_same(recorded, use_mock_url, capsys, argv):
    runs_dir, target = recorded
    local = _out(capsys, *argv, "--runs-dir", str(runs_dir))
    use_mock_url(target)
    assert _out(capsys, *argv, "--mongo", "mongodb://mock-host:27017") == local


@pytest.mark.parametrize("argv, named", [
    (["show", "99"], "'99'"),
    (["compare", "1", "77"], "'77'"),
    (["ls", "--where", "gin.MAML.inner_lr"], "gin.MAML.inner_lr"),
    (["ls", "--where", "shots<many"], "shots<many"),
    (["ls", "--where", "gin.MAML.innerlr=0.01"], "did you mean 'gin.MAML.inner_lr'"),
    (["ls", "--sort", "nonsense"], "nonsense"),
    (["ls", "--columns", "id,result.nope"], "result.nope"),
    (["ls", "--since", "yesterday"], "yesterday"),
])
def test_errors_name_the_thing_at_fault(capsys, backend, argv, named):
    assert runs_cli(*argv[:1], *backend, *argv[1:]) == 2
    err = capsys.readouterr().err
    assert named in err and f"metalearning runs {argv[0]}: error:" in err and "Traceback" not in err


def test_unreachable_mongo_is_named_redacted(capsys, tmp_path):
    url = "mongodb://bob:hunter2@127.0.0.1:1/"
    assert runs_cli("ls", "--mongo", url, "--timeout-ms", "100") == 2
    err = capsys.readouterr().err
    assert "mongodb://***@127.0.0.1:1/" in err and "unreachable" in err and "hunter2" not in err


def test_missing_runs_dir_is_named(capsys, tmp_path):
    assert runs_cli("ls", "--runs-dir", str(tmp_path / "typo")) == 2
    assert "no file store at" in capsys.readouterr().err


def test_a_run_record_cut_short_is_skipped_with_a_warning_naming_it(capsys, tmp_path):
    runs_dir = tmp_path / "runs"
    recorded_run("meta-train", lambda run: {"x": 1.0}, config={"seed": 0}, runs_dir=runs_dir)
    (runs_dir / "2").mkdir()
    (runs_dir / "2" / "run.json").write_text('{"status": "RUNN')  # the machine died mid-write
    with pytest.warns(UserWarning, match="runs/2/run.json"):
        assert _ids(capsys, ["--runs-dir", str(runs_dir)]) == ["1"]


def test_runs_frame_flattens_config_result_and_final_metrics(recorded):
    runs_dir, target = recorded
    for store in (FileRunStore(runs_dir), MongoRunStore(target)):
        df = runs_frame(store, where=["algorithm=MAML"])
        assert df["id"].tolist() == ["1"]
        assert df.loc[0, "config.gin.MAML.inner_lr"] == 0.01 and df.loc[0, "result.final_meta_val_mse"] == 0.5
        assert df.loc[0, "metric.meta_train.loss"] == 2.0 and df.loc[0, "metric.meta_val.mse"] == pytest.approx(0.2)
    assert runs_frame(runs_dir, status=["FAILED"])["algorithm"].tolist() == ["Reptile"]


def test_where_parses_values_as_json_else_text():
    row = {"config.gin.MAML.first_order": True, "shots": 5, "config.gin.x": [0.005, 0.1], "name": "meta-train"}
    assert Where.parse("gin.MAML.first_order=true").matches(row)
    assert not Where.parse("gin.MAML.first_order=1").matches(row)  # a bool is not a number here
    assert Where.parse("gin.x=[0.005, 0.1]").matches(row)
    assert Where.parse("name=meta-train").matches(row) and not Where.parse("name=meta").matches(row)
    assert not Where.parse("shots>5").matches(row) and Where.parse("shots>=5").matches(row)
    assert not Where.parse("missing!=3").matches(row)
    with pytest.raises(QueryError, match="needs a number"):
        Where.parse("shots>five")


@pytest.mark.parametrize("gin, expected", [
    ({"MetaTrainer": {"algorithm": "@MAML()"}, "MAML": {"first_order": False}}, "MAML"),
    ({"MetaTrainer": {"algorithm": "@MAML()"}, "MAML": {"first_order": True}}, "FOMAML"),
    ({"MetaTrainer": {"algorithm": "@MetaSGD()"}, "MAML": {"first_order": True}}, "MetaSGD"),
    ({"Reptile": {"inner_lr": 0.1}}, "Reptile"),
    ({"macros": {"shots": 5}}, None),
])
def test_algorithm_comes_from_the_gin_config(gin, expected):
    assert algorithm({"gin": gin}) == expected


def test_runs_group_over_seeds_with_a_student_t_interval(tmp_path, capsys):
    """Three training seeds of one configuration collapse into one row (mean, t-interval across
    seeds); a run with another α stays its own group."""
    runs_dir = tmp_path / "runs"
    finals = {0: 0.50, 1: 0.62, 2: 0.44}
    for seed, final in finals.items():
        recorded_run("meta-train", lambda run, final=final: {"final_meta_val_mse": final},
                     config={**gin_config("MAML", shots=5), "seed": seed}, runs_dir=runs_dir)
    recorded_run("meta-train", lambda run: {"final_meta_val_mse": 0.9},
                 config={**gin_config("MAML", shots=5, inner_lr=0.1), "seed": 0}, runs_dir=runs_dir)

    df = runs_frame(runs_dir, group_over=["seed"]).sort_values("runs", ascending=False)
    assert df["runs"].tolist() == [3, 1]
    three = df.iloc[0]
    assert three["config.seed"] == [0, 1, 2] and three["ids"] == ["1", "2", "3"]
    values = list(finals.values())
    mean = sum(values) / 3
    std = (sum((v - mean) ** 2 for v in values) / 2) ** 0.5
    assert three["result.final_meta_val_mse"] == pytest.approx(mean)
    assert three["result.final_meta_val_mse.ci95"] == pytest.approx(4.303 * std / 3**0.5)  # t with 2 df
    assert math.isnan(df.iloc[1]["result.final_meta_val_mse.ci95"])  # one seed: no interval
    assert df.iloc[1]["config.gin.macros.inner_lr"] == 0.1

    rows = table_rows(_out(capsys, "ls", "--runs-dir", str(runs_dir), "--group-over", "seed"))
    assert [r[4] for r in rows] == ["3", "1"] and rows[0][5] == "[0, 1, 2]"
    assert runs_cli("ls", "--runs-dir", str(runs_dir), "--group-over", "sed") == 2
    assert "--group-over key" in capsys.readouterr().err
