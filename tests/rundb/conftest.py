"""Run-database fixtures: a mongomock MongoDB with GridFS, and small recorded runs.

The runs are Sacred runs made by ``recorded_run`` with bodies that log scalars, add an
artifact and return a result; no training happens.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import mongomock
import mongomock.gridfs
import pytest

from metalearning.rundb.cli import add_runs_parser
from metalearning.rundb.target import MongoTarget, RunDBWarning
from metalearning.runs import recorded_run

mongomock.gridfs.enable_gridfs_integration()

OPERATIVE_GIN = "MAML.inner_lr = 0.01\nMAML.inner_steps = 1\n"


def mock_target(db_name: str = "sacred") -> MongoTarget:
    """A fresh in-memory MongoDB (each mongomock client has its own data)."""
    return MongoTarget(mongomock.MongoClient(), db_name, "mongodb://mock-host:27017")


def gin_config(algorithm: str, *, shots: int, inner_lr: float = 0.01, first_order: bool = False) -> dict:
    """A Sacred config shaped like ``commands.train``'s (seed added by the caller)."""
    gin = {"macros": {"shots": shots, "inner_lr": inner_lr}, "MetaTrainer": {"algorithm": f"@{algorithm}()",
                                                                           "meta_iterations": 3}}
    if algorithm == "MAML":  # bound through the macro, as configs/algorithms/maml.gin does
        gin["MAML"] = {"inner_lr": "%inner_lr", "first_order": first_order}
    elif algorithm == "MetaSGD":
        gin["MetaSGD"] = {"inner_lr_init": [0.005, 0.1]}
    else:
        gin["Reptile"] = {"inner_lr": "%inner_lr", "inner_steps": 5}
    return {"gin": gin, "gin_files": [f"configs/experiments/{algorithm.lower()}.gin"], "gin_bindings": []}


# (config, losses logged at steps 1.., result or None for a run that fails)
RUNS = [
    ({**gin_config("MAML", shots=5), "seed": 0}, [3.0, 1.0, 2.0], {"final_meta_val_mse": 0.5}),
    ({**gin_config("MAML", shots=5, first_order=True), "seed": 1}, [4.0, 3.0], {"final_meta_val_mse": 0.8}),
    ({**gin_config("MetaSGD", shots=10), "seed": 0, "data_checksums": {"sine_metasgd": "md5:0123abcd"}},
     [2.0, 0.5], {"final_meta_val_mse": 0.25}),
    ({**gin_config("Reptile", shots=10, inner_lr=0.02), "seed": 2}, [5.0], None),
]


def body_for(losses: list[float], result: dict | None, out_dir: Path):
    """A run body: log ``meta_train.loss``, add the operative gin artifact, return or fail."""
    def body(run):
        for step, loss in enumerate(losses, start=1):
            run.log_scalar("meta_train.loss", loss, step)
            run.log_scalar("meta_val.mse", loss / 10, step)
        gin_file = Path(tempfile.mkdtemp(dir=out_dir)) / "operative_config.gin"
        gin_file.write_text(OPERATIVE_GIN)
        run.add_artifact(str(gin_file))
        if result is None:
            raise FloatingPointError("meta-loss became nan at meta-iteration 1")
        return result
    return body


def record_all(runs_dir: Path, target: MongoTarget | None) -> None:
    """Record RUNS (the last one fails, as training would)."""
    for config, losses, result in RUNS:
        try:
            recorded_run("meta-train", body_for(losses, result, runs_dir.parent), config=config,
                         runs_dir=runs_dir, mongo=target)
        except FloatingPointError:
            assert result is None


@pytest.fixture(scope="package")
def recorded(tmp_path_factory):
    """RUNS recorded once into a file store mirrored to a mongomock MongoDB: (runs_dir, target)."""
    runs_dir = tmp_path_factory.mktemp("recorded") / "runs"
    target = mock_target()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record_all(runs_dir, target)
    assert not [w for w in caught if issubclass(w.category, RunDBWarning)]  # a healthy MongoDB is quiet
    return runs_dir, target


def runs_cli(*argv: str) -> int:
    """Parse ``metalearning runs …`` the way the platform CLI does and run the handler."""
    parser = argparse.ArgumentParser(prog="metalearning")
    add_runs_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["runs", *argv])
    return args.fn(args)


@pytest.fixture
def use_mock_url(monkeypatch):
    """Make ``--mongo URL`` (any URL) open the given mongomock target."""
    def install(target: MongoTarget) -> None:
        def connect(url, **kwargs):
            return target
        monkeypatch.setattr("metalearning.rundb.target.connect", connect)
        monkeypatch.setattr("metalearning.rundb.store.connect", connect)
    return install


def table_rows(text: str) -> list[list[str]]:
    """The body rows of rich tables in ``text`` (cells stripped)."""
    return [[c.strip() for c in line.strip().strip("│").split("│")] for line in text.splitlines()
            if line.startswith("│")]


@pytest.fixture(autouse=True)
def _no_ambient_mongo(monkeypatch):
    """Tests choose their MongoDB explicitly; a developer's own setting must not leak in."""
    monkeypatch.delenv("METALEARNING_MONGO_URL", raising=False)
