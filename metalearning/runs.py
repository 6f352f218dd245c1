"""Sacred run records: every train and test run is observed (STYLE: nothing unrecorded).

The embedded default is Sacred's ``FileStorageObserver`` under a git-ignored run directory; it
is always written, as the complete local record. When MongoDB is configured (an explicit
``mongo_url``/``mongo`` argument, else ``$METALEARNING_MONGO_URL``) the run is mirrored there
by Sacred's ``MongoObserver`` behind a guard that keeps the run going if MongoDB fails
(``metalearning.rundb.observers``); ``metalearning runs sync`` uploads what it missed.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources (hence setuptools<82 in the lock)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred import SETTINGS, Experiment
    from sacred.host_info import host_info_gatherer
    from sacred.observers import FileStorageObserver

from metalearning.rundb.observers import MirrorObserver
from metalearning.rundb.target import MongoTarget, RunDBWarning, StoreUnavailable, connect, resolve_mongo_url

SETTINGS.CAPTURE_MODE = "sys"  # keep the terminal's progress bar; "fd" capture swallows it
SETTINGS.CONFIG.READ_ONLY_CONFIG = False

DEFAULT_RUNS_DIR = Path("runs")


@host_info_gatherer("numerics")
def _numerics() -> dict[str, Any]:
    """The run's numerics (mode, pinned kernel paths, CPU model and SIMD flags, torch build), so a
    result can be traced to the kernels that computed it (metalearning.numerics)."""
    from metalearning.numerics import numerics_info

    return numerics_info()


@host_info_gatherer("environments")
def _environments() -> dict[str, Any]:
    """Versions of the simulators a meta-RL result depends on: gymnasium and MuJoCo (None when
    not installed; the 2D navigation needs only gymnasium)."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(package: str) -> str | None:
        try:
            return version(package)
        except PackageNotFoundError:
            return None

    return {"gymnasium": installed("gymnasium"), "mujoco": installed("mujoco")}


def recorded_run(name: str, body: Callable[[Any], dict], *, config: dict[str, Any],
                 runs_dir: Path = DEFAULT_RUNS_DIR, mongo_url: str | None = None,
                 mongo: MongoTarget | None = None) -> tuple[dict, Any]:
    """Run ``body(sacred_run)`` as a Sacred run named ``name`` and return (result, run).

    ``config`` becomes the run's config (it must hold ``seed``); ``body`` logs metrics with
    ``run.log_scalar`` (Python floats), adds artifacts with ``run.add_artifact`` and returns
    a dict of floats that Sacred stores as the run's result. Sacred records the git commit
    and dirty flag of the repository holding this package, host info (with the numerics in
    force: :func:`metalearning.numerics.numerics_info`, and the gymnasium and MuJoCo versions)
    and the sources.

    Stores: always the file store in ``runs_dir`` (which numbers the run). Also MongoDB, the
    first of: ``mongo`` (a ready ``MongoTarget``, e.g. over a mongomock client), ``mongo_url``,
    ``$METALEARNING_MONGO_URL``. If MongoDB is unreachable or fails mid-run, the run goes on and
    one ``RunDBWarning`` (URL redacted) says so.
    """
    ex = Experiment(name, save_git_info=True, additional_host_info=[_numerics, _environments])
    ex.observers.append(FileStorageObserver(str(runs_dir)))
    target = mongo if mongo is not None else _mongo_target(mongo_url)
    if target is not None:
        ex.observers.append(MirrorObserver(target, Path(runs_dir)))
    ex.add_config(config)

    @ex.main
    def _main(_run):
        return body(_run)

    run = ex.run(options={"--loglevel": "WARNING"})
    return run.result, run


def _mongo_target(mongo_url: str | None) -> MongoTarget | None:
    """A lazy client for ``mongo_url`` or ``$METALEARNING_MONGO_URL``; None if neither is set.

    A URL the driver rejects outright (malformed, or an SRV name that does not resolve) is
    warned about, not raised: the run still records to the file store.
    """
    url = resolve_mongo_url(mongo_url)
    if url is None:
        return None
    try:
        return connect(url)
    except StoreUnavailable as err:
        warnings.warn(f"{err}; recording to the file store only (upload later with `metalearning runs sync`)",
                      RunDBWarning, stacklevel=3)
        return None
