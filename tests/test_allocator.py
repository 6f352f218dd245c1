"""glibc malloc keeps freed memory for the next tensors (metalearning.allocator): a loop that
frees and re-allocates large tensors no longer page-faults its memory back in every time; the
policy can be turned off, a bad value is one line, and every run records what was set."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from metalearning import allocator, commands
from tests.conftest import REPO

GLIBC = platform.libc_ver()[0] == "glibc"

# A process that allocates and writes 5 tensors of 40 MB (above the largest mmap threshold glibc's
# defaults reach, 32 MiB), frees them, three times, then counts the page faults of a fourth round.
ROUNDS = """
import resource, torch
import metalearning
def round_():
    tensors = [torch.empty(10_000_000).fill_(1.0) for _ in range(5)]
    del tensors
round_(); round_(); round_()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
round_()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _fourth_round_faults(policy: str) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), allocator.ENV: policy}
    done = subprocess.run([sys.executable, "-c", ROUNDS], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="the policy applies to glibc's malloc only")
def test_freed_tensors_memory_is_reused_without_page_faults():
    """200 MB in 40 MB tensors, freed and allocated again: glibc's defaults map every such block
    afresh and unmap it when freed, so every round faults all its pages in again (~49 000 4-KiB
    pages); with the policy the blocks come from the heap, which keeps them."""
    if allocator.applied().get("mmap_threshold") != allocator.MMAP_THRESHOLD:
        pytest.skip("this glibc refuses a 256 MiB mmap threshold: 40 MB blocks stay mapped")
    system, keep = _fourth_round_faults("system"), _fourth_round_faults("keep")
    assert system > 40_000
    assert keep < 1_000, (keep, system)


@pytest.mark.skipif(not GLIBC, reason="the policy applies to glibc's malloc only")
def test_the_policy_sets_glibc_values_or_none(monkeypatch):
    env = {**os.environ, "PYTHONPATH": str(REPO), allocator.ENV: "system"}
    done = subprocess.run([sys.executable, "-c", "import metalearning.allocator as a; print(a.applied())"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.stdout == "{}\n", done.stderr[-2000:]  # glibc's defaults: nothing set
    monkeypatch.setenv(allocator.ENV, "keep")
    applied = allocator.keep_freed_memory()
    assert applied == allocator.applied()
    assert applied.pop("mmap_threshold") in (allocator.MMAP_THRESHOLD, allocator.OLD_GLIBC_MMAP_THRESHOLD)
    assert applied == {"trim_threshold": allocator.TRIM_THRESHOLD, "top_pad": allocator.TOP_PAD}


def test_a_bad_policy_is_one_line_naming_the_variable(monkeypatch):
    monkeypatch.setenv(allocator.ENV, "fast")
    with pytest.raises(ValueError, match=r"^METALEARNING_MALLOC must be one of keep, system, got 'fast'$"):
        allocator.keep_freed_memory()
    env = {**os.environ, "PYTHONPATH": str(REPO), allocator.ENV: "fast"}
    done = subprocess.run([sys.executable, "-m", "metalearning", "--help"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and done.stderr == ("metalearning: error: METALEARNING_MALLOC must be one of keep, "
                                                    "system, got 'fast'\n")


def test_every_run_records_the_malloc_policy(tmp_path, monkeypatch):
    monkeypatch.delenv(allocator.ENV, raising=False)
    allocator.keep_freed_memory()
    commands.train([REPO / "configs" / "experiments" / "maml_sine_5shot.gin"], ["MetaTrainer.meta_iterations = 1"],
                   seed=0, out_dir=tmp_path / "m", runs_dir=tmp_path / "runs", progress=False)
    numerics = json.loads((tmp_path / "runs" / "1" / "run.json").read_text())["host"]["numerics"]
    assert numerics["malloc"] == (allocator.applied() if GLIBC else {})
    assert numerics["malloc"].get("trim_threshold", allocator.TRIM_THRESHOLD) == allocator.TRIM_THRESHOLD
