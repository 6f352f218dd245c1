"""OpenMP's wait policy (issue 14, item 8): every entry point sets PASSIVE before torch loads its
OpenMP runtime, and never overrides a policy the user exported (tools/measure_thread_policy.py
has the measurement behind the choice)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

# Runs an entry point with `--help` and fails (exit 3) if torch is imported while
# OMP_WAIT_POLICY is still unset, i.e. before the platform could choose the policy.
GUARD = """
import builtins, os, runpy, sys
real_import = builtins.__import__
def guarded(name, *args, **kwargs):
    if name.split(".")[0] == "torch" and "torch" not in sys.modules and "OMP_WAIT_POLICY" not in os.environ:
        sys.stderr.write("torch imported before OMP_WAIT_POLICY was set\\n")
        os._exit(3)
    return real_import(name, *args, **kwargs)
builtins.__import__ = guarded
kind, target = sys.argv[1], sys.argv[2]
sys.argv = [target, "--help"]
try:
    runpy.run_module(target, run_name="__main__") if kind == "module" else runpy.run_path(target, run_name="__main__")
except SystemExit as e:
    if e.code not in (0, None):
        raise
import torch  # the entry point may import torch lazily; the policy must be set by now
print(os.environ["OMP_WAIT_POLICY"])
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(extra)
    return env


def _run(kind: str, target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", GUARD, kind, target], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("kind,target", [("module", "metalearning"), ("path", "pipeline/train.py"),
                                         ("path", "pipeline/test.py")])
def test_entry_points_set_passive_before_torch_loads(kind: str, target: str) -> None:
    result = _run(kind, target, _env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "PASSIVE"


def test_a_policy_the_user_exported_is_kept() -> None:
    result = _run("module", "metalearning", _env(OMP_WAIT_POLICY="ACTIVE"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "ACTIVE"


def test_the_guard_catches_torch_imported_first(tmp_path) -> None:
    """Negative control: a stage script that imports torch before metalearning is caught."""
    script = tmp_path / "stage.py"
    script.write_text("import torch\nimport metalearning\n")
    result = _run("path", str(script), _env())
    assert result.returncode == 3 and "before OMP_WAIT_POLICY" in result.stderr
