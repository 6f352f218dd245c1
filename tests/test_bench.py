"""The benchmark's machinery on its tiny setting: the four paths compute the same meta-gradient
and reach the same meta-parameters, and the printed table has its columns. Timings are never
asserted (a benchmark, not a test of speed)."""

import pytest
import torch

from metalearning import bench
from metalearning.bench_measure import measure_memory
from metalearning.bench_paths import PATHS
from metalearning.bench_settings import pick_settings


def test_the_paths_agree_and_the_table_has_its_columns(capsys):
    (result,) = bench.main("tiny", iterations=2, threads=1, dtype=torch.float64, gemm_size=128, memory=False)
    assert [r.path for r in result.paths] == list(PATHS) and result.flops > 0
    for r in result.paths:
        # The same meta-batch from the same start: the paths differ by float64 rounding only.
        assert r.grad_diff < 1e-10, r
        # Adam turns rounding in the conv biases' meta-gradient (exactly 0: batch norm cancels a
        # bias) into steps of up to lr·1e-8 per iteration; 3 iterations stay well below 1e-9.
        assert r.max_diff < 1e-9, r
        assert r.seconds > 0, r
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["path"])
    positions = [lines[header].index(column) for column in bench.COLUMNS]
    assert positions == sorted(positions)
    for path, row in zip(PATHS, lines[header + 1:header + 1 + len(PATHS)]):
        values = row[len(f"  {path}"):].split()
        assert row.strip().startswith(path) and len(values) == len(bench.COLUMNS) - 1
        assert values[4:6] == ["-", "-"]  # no memory processes asked for
        assert all(float(v) >= 0 for v in values[:4] + values[6:])


def test_a_path_measures_its_memory_in_a_fresh_process():
    (path,) = rss = measure_memory("tiny", ["vmap chunk=1"], iterations=2, threads=1, seed=0, dtype=torch.float64)
    assert 0 <= rss[path]["added_mb"] < rss[path]["peak_mb"], rss


def test_settings_are_picked_by_key_or_group():
    assert [s.key for s in pick_settings("sine,o1")] == ["sine25", "sine-maml", "sine-metasgd", "o1"]
    assert "tiny" not in [s.key for s in pick_settings(None)]
    with pytest.raises(ValueError, match="unknown bench setting 'o2'"):
        pick_settings("o2")
