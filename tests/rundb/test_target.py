"""Which MongoDB, and how it is named: precedence and credential redaction."""

from __future__ import annotations

import pytest

from metalearning.rundb.target import connect, redact, resolve_mongo_url, scrub


def test_explicit_url_beats_environment_beats_params(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("run_db:\n  mongo_url: mongodb://from-params/\n")
    env = {"METALEARNING_MONGO_URL": "mongodb://from-env/"}
    assert resolve_mongo_url("mongodb://explicit/", environ=env, params_path=params) == "mongodb://explicit/"
    assert resolve_mongo_url(None, environ=env, params_path=params) == "mongodb://from-env/"
    assert resolve_mongo_url(None, environ={}, params_path=params) == "mongodb://from-params/"
    assert resolve_mongo_url(None, environ={"METALEARNING_MONGO_URL": ""}, params_path=params) == "mongodb://from-params/"


def test_no_url_anywhere_means_the_file_store(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("seed: 0\n")
    assert resolve_mongo_url(None, environ={}, params_path=params) is None
    assert resolve_mongo_url(None, environ={}) is None  # params.yaml is read only when named


@pytest.mark.parametrize("url, shown", [
    ("mongodb://alice:pw@db.example:27017/runs?authSource=admin", "mongodb://***@db.example:27017/runs?authSource=admin"),
    ("mongodb+srv://alice:p%40ss@cluster0.example/", "mongodb+srv://***@cluster0.example/"),
    ("mongodb://alice@db.example/", "mongodb://***@db.example/"),
    ("mongodb://db.example:27017/", "mongodb://db.example:27017/"),
])
def test_redact_hides_user_info(url, shown):
    assert redact(url) == shown


def test_scrub_hides_password_wherever_a_driver_puts_it():
    url = "mongodb://alice:p%40ss@db.example/"
    text = scrub(f"auth failed for {url}: bad password p@ss (p%40ss) for alice:p%40ss", url)
    assert "p@ss" not in text and "p%40ss" not in text and "mongodb://***@db.example/" in text


def test_connect_takes_the_database_from_the_url_and_never_keeps_the_password_in_its_name():
    target = connect("mongodb://alice:pw@127.0.0.1:1/experiments?serverSelectionTimeoutMS=50")
    assert target.db_name == "experiments" and "pw" not in target.label + target.key + target.describe()
    assert connect("mongodb://127.0.0.1:1").db_name == "sacred"
