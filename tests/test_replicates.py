"""Training seeds as a pipeline axis (metalearning.replicates): which seeds an experiment trains,
the across-seed summary of its meta-test files, and the parallel runner of the training stage."""

from __future__ import annotations

import math
import sys

import pytest

from metalearning.evaluation import mean_t_ci95
from metalearning.metrics_io import read_json, write_json
from metalearning.replicates import (
    MissingSeedCheckpoint,
    SeedTestError,
    meta_test_seeds,
    replicate_dir,
    replicate_seeds,
    run_parallel,
    seed_dirs,
    seed_summary,
    training_seeds,
    write_replicate_index,
    write_seed_summaries,
)


def test_an_experiment_trains_its_seeds_from_the_primary_seed_on():
    params = {"seed": 7, "sine": {"experiments": {"a": {"family": "f", "seeds": 3}, "b": {"family": "f", "seeds": 1}}}}
    assert training_seeds(params, "sine", "a") == [7, 8, 9]
    assert training_seeds(params, "sine", "b") == [7]


def test_the_summary_averages_every_estimate_across_seeds_with_a_t_interval():
    per_seed = {0: {"5shot": {"mse": 1.0, "ci95": 0.2}, "inner_steps": 1, "setting": {"a": "x"}},
                1: {"5shot": {"mse": 1.5, "ci95": 0.3}, "inner_steps": 1, "setting": {"a": "x"}},
                2: {"5shot": {"mse": 0.8, "ci95": 0.1}, "inner_steps": 1, "setting": {"a": "x"}}}
    summary = seed_summary(per_seed)
    assert set(summary) == {"5shot"}  # non-estimates are dropped
    mean, half = mean_t_ci95([1.0, 1.5, 0.8])
    assert summary["5shot"] == {"mse": mean, "ci95_seeds": half, "seeds": 3, "per_seed": [1.0, 1.5, 0.8],
                                "ci95_per_seed": [0.2, 0.3, 0.1]}
    assert half == pytest.approx(4.3027 * math.sqrt(((0.1 ** 2) + (0.4 ** 2) + (0.3 ** 2)) / 2) / math.sqrt(3),
                                 rel=1e-3)  # t with n - 1 = 2 degrees of freedom, not the normal 1.96


def test_the_summary_of_one_seed_has_no_interval_and_keeps_nested_paths():
    one = seed_summary({0: {"transductive": {"accuracy": 0.9, "ci95": 0.01}, "queries": 1}})
    assert one == {"transductive": {"accuracy": 0.9, "ci95_seeds": None, "seeds": 1, "per_seed": [0.9],
                                    "ci95_per_seed": [0.01]}}


def test_a_result_missing_for_one_seed_is_left_out():
    summary = seed_summary({0: {"1_steps": {"return": -1.0, "ci95": 0.1}, "2_steps": {"return": -0.5, "ci95": 0.1}},
                            1: {"1_steps": {"return": -2.0, "ci95": 0.1}}})
    assert set(summary) == {"1_steps"} and summary["1_steps"]["per_seed"] == [-1.0, -2.0]


def test_summaries_are_written_beside_every_primary_metrics_file(tmp_path):
    for seed, folder in [(0, tmp_path), (1, replicate_dir(tmp_path, 1))]:
        for name in ("5w1s", "5w5s"):
            write_json(folder / name / "metrics.json", {"transductive": {"accuracy": 0.9 + seed / 100, "ci95": 0.01}})
    written = write_seed_summaries(tmp_path, [0, 1])
    assert written == [tmp_path / "5w1s" / "seeds.json", tmp_path / "5w5s" / "seeds.json"]
    data = read_json(written[0])
    assert data["seeds"] == [0, 1] and data["results"]["transductive"]["accuracy"] == pytest.approx(0.905)
    assert not (replicate_dir(tmp_path, 1) / "5w1s" / "seeds.json").exists()  # the replicates are not summarised


def test_a_replicate_without_the_primarys_file_fails_naming_it(tmp_path):
    write_json(tmp_path / "metrics.json", {"5shot": {"mse": 1.0, "ci95": 0.1}})
    with pytest.raises(FileNotFoundError, match="training seed 1 has no .*seed1/metrics.json"):
        write_seed_summaries(tmp_path, [0, 1])


def test_the_replicate_index_round_trips_and_always_creates_the_folder(tmp_path):
    assert replicate_seeds(tmp_path) == []
    write_replicate_index(tmp_path, [])
    assert (tmp_path / "replicates").is_dir() and replicate_seeds(tmp_path) == []
    write_replicate_index(tmp_path, [1, 2])
    assert replicate_seeds(tmp_path) == [1, 2]


def _seed_checkpoints(models, seeds):
    for seed, folder in zip(seeds, seed_dirs(models, seeds)):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "checkpoint.pt").write_text(str(seed))
    return models / "checkpoint.pt"


def _fake_test(calls, fail_on=None):
    def test(checkpoint, out):  # a meta-test whose result is the seed the checkpoint holds
        seed = int(checkpoint.read_text())
        calls.append((checkpoint, out))
        if seed == fail_on:
            raise ValueError(f"checkpoint {checkpoint} is unreadable or corrupt")
        write_json(out / "metrics.json", {"5shot": {"mse": 1.0 + seed, "ci95": 0.1}})

    return test


def test_every_seed_is_meta_tested_into_its_folder_then_summarised(tmp_path):
    assert seed_dirs(tmp_path, [3, 4, 5]) == [tmp_path, replicate_dir(tmp_path, 4), replicate_dir(tmp_path, 5)]
    checkpoint, out, calls = _seed_checkpoints(tmp_path / "models", [3, 4, 5]), tmp_path / "metrics", []
    meta_test_seeds(checkpoint, out, [3, 4, 5], _fake_test(calls))
    assert calls == [(folder / "checkpoint.pt", metrics) for folder, metrics in
                     zip(seed_dirs(tmp_path / "models", [3, 4, 5]), seed_dirs(out, [3, 4, 5]))]
    assert replicate_seeds(out) == [4, 5]
    summary = read_json(out / "seeds.json")
    assert summary["seeds"] == [3, 4, 5] and summary["results"]["5shot"]["mse"] == pytest.approx(5.0)


def test_a_missing_seed_checkpoint_stops_before_any_seed_is_tested(tmp_path):
    checkpoint, calls = _seed_checkpoints(tmp_path / "models", [0, 1]), []
    with pytest.raises(MissingSeedCheckpoint, match="seed 2's checkpoint .*seed2/checkpoint.pt does not exist") as err:
        meta_test_seeds(checkpoint, tmp_path / "metrics", [0, 1, 2], _fake_test(calls))
    assert err.value.seed == 2 and calls == [] and not (tmp_path / "metrics").exists()


def test_a_failing_seed_is_named_and_the_seeds_before_it_keep_their_results(tmp_path):
    checkpoint, calls = _seed_checkpoints(tmp_path / "models", [0, 1, 2]), []
    with pytest.raises(SeedTestError, match="unreadable or corrupt") as err:
        meta_test_seeds(checkpoint, tmp_path / "metrics", [0, 1, 2], _fake_test(calls, fail_on=1))
    assert err.value.seed == 1 and len(calls) == 2
    assert (tmp_path / "metrics" / "metrics.json").is_file() and not (tmp_path / "metrics" / "seeds.json").exists()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_the_runner_runs_every_command_with_bounded_parallelism(tmp_path):
    running = tmp_path / "running"
    # each command announces itself, waits (up to 20 s) for a partner, then records how many were running
    code = ("import sys, time, pathlib; d = pathlib.Path(sys.argv[1]); d.mkdir(exist_ok=True); me = d / sys.argv[2]; "
            "me.touch(); end = time.time() + 20\n"
            "while len(list(d.iterdir())) < 2 and time.time() < end: time.sleep(0.01)\n"
            "time.sleep(0.2); seen = len(list(d.iterdir())); me.unlink()\n"
            "(pathlib.Path(sys.argv[3]) / (sys.argv[2] + '.seen')).write_text(str(seen))")
    commands = [[*_python(code), str(running), str(i), str(tmp_path)] for i in range(4)]
    run_parallel(commands, workers=2, poll_s=0.02)
    seen = [int((tmp_path / f"{i}.seen").read_text()) for i in range(4)]
    assert max(seen) == 2  # two at a time, never more


def test_a_failing_command_stops_the_others_and_is_named(tmp_path):
    slow = _python(f"import time, pathlib; time.sleep(30); pathlib.Path({str(tmp_path / 'finished')!r}).touch()")
    with pytest.raises(RuntimeError, match=r"exit status 3: .*raise SystemExit\(3\)"):
        run_parallel([slow, _python("raise SystemExit(3)")], workers=2, poll_s=0.02)
    assert not (tmp_path / "finished").exists()
