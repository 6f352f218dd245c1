"""Sacred run records: every train and test run is observed (STYLE: nothing unrecorded).

The embedded default is Sacred's ``FileStorageObserver`` under a git-ignored run directory.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable

with warnings.catch_warnings():  # sacred 0.8.7 imports pkg_resources (hence setuptools<82 in the lock)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from sacred import SETTINGS, Experiment
    from sacred.observers import FileStorageObserver

SETTINGS.CAPTURE_MODE = "sys"  # keep the terminal's progress bar; "fd" capture swallows it
SETTINGS.CONFIG.READ_ONLY_CONFIG = False

DEFAULT_RUNS_DIR = Path("runs")


def recorded_run(name: str, body: Callable[[Any], dict], *, config: dict[str, Any],
                 runs_dir: Path = DEFAULT_RUNS_DIR) -> tuple[dict, Any]:
    """Run ``body(sacred_run)`` as a Sacred run named ``name`` and return (result, run).

    ``config`` becomes the run's config (it must hold ``seed``); ``body`` logs metrics with
    ``run.log_scalar`` (Python floats), adds artifacts with ``run.add_artifact`` and returns
    a dict of floats that Sacred stores as the run's result. Sacred records the git commit
    and dirty flag of the repository holding this package, host info and the sources.
    """
    ex = Experiment(name, save_git_info=True)
    ex.observers.append(FileStorageObserver(str(runs_dir)))
    ex.add_config(config)

    @ex.main
    def _main(_run):
        return body(_run)

    run = ex.run(options={"--loglevel": "WARNING"})
    return run.result, run
