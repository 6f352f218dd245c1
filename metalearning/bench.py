"""Benchmarks: the cost of a meta-iteration on each meta-training path, and the share of a
meta-iteration spent loading data.

For each setting (:mod:`metalearning.bench_settings`), the paths of
:mod:`metalearning.bench_paths` start from the same meta-parameters and consume the same
pre-sampled meta-batches in one process, one iteration of each in turn (the order rotating), so
the medians and their ratios compare like with like on a shared machine. Printed per path:
milliseconds per meta-iteration, the ratio to the vmap path, achieved GFLOP/s and their share of
a GEMM peak measured at the same thread count, peak and added resident memory of the path run
alone in a fresh process (:mod:`metalearning.bench_measure`), and the largest difference from
the vmap path of the first meta-gradient (``max |dg1|``, all paths at the same meta-parameters)
and of the meta-parameters after the timed iterations (``max |dθ|``; Adam turns rounding in the
meta-gradient of a conv bias, exactly zero under batch norm, into steps of up to about half the
meta learning rate, so on the image settings this reaches ~1e-3 in float32). Not a test:
timings are noisy.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from metalearning.bench_measure import count_flops, gemm_peak, measure_memory, synchronize
from metalearning.bench_paths import PATHS, current_gradients, make_runner, max_difference
from metalearning.bench_settings import Problem, Setting, pick_settings, prepare

COLUMNS = ("path", "ms/it", "x vmap", "GFLOP/s", "% peak", "peak RSS MiB", "+RSS MiB", "max |dg1|", "max |dθ|")
MEMORY_ITERATIONS = 2  # the first meta-iteration allocates everything; the second shows nothing grows


@dataclass
class PathResult:
    path: str
    seconds: float  # median seconds per meta-iteration
    grad_diff: float  # max |Δ meta-gradient| against the first path on the first meta-batch
    max_diff: float  # max |Δθ| against the first path after the timed iterations
    peak_mb: float | None = None
    added_mb: float | None = None


@dataclass
class SettingResult:
    setting: Setting
    iterations: int  # timed, after the setting's warm-up
    flops: int  # of one meta-iteration, counted on the per-task loop path
    paths: list[PathResult]


def time_paths(problem: Problem, paths: Sequence[str], batches: list, *, warmup: int, seed: int,
               device: torch.device = torch.device("cpu")) -> tuple[dict[str, float], dict[str, Any], dict[str, Any]]:
    """(median seconds per meta-iteration after ``warmup``, meta-gradient of the first
    meta-batch, final meta-parameters) of each path, one meta-iteration of each in turn, the
    order rotating by one every iteration."""
    runners = {p: make_runner(problem, p, seed) for p in paths}
    times: dict[str, list[float]] = {p: [] for p in paths}
    first: dict[str, Any] = {}
    for i, batch in enumerate(batches):
        shift = i % len(paths)
        for p in [*paths[shift:], *paths[:shift]]:
            synchronize(device)
            start = time.perf_counter()
            runners[p].step(batch)
            synchronize(device)
            if i >= warmup:
                times[p].append(time.perf_counter() - start)
            if i == 0:
                first[p] = current_gradients(runners[p])
    return ({p: statistics.median(t) for p, t in times.items()}, first, {p: r.meta for p, r in runners.items()})


def measure_setting(setting: Setting, *, iterations: int | None = None, threads: int | None = None, seed: int = 0,
                    dtype: torch.dtype = torch.float32, memory: bool = True, paths: Sequence[str] = PATHS,
                    device: torch.device = torch.device("cpu")) -> SettingResult:
    """Time, count and (``memory``, CPU only) measure the memory of ``paths`` (the first is the
    reference) on ``device``."""
    timed = setting.iterations if iterations is None else iterations
    problem, batches = prepare(setting, timed + setting.warmup, seed, dtype, device)
    flops = count_flops(problem, batches[0], seed)
    seconds, grads, metas = time_paths(problem, paths, batches, warmup=setting.warmup, seed=seed, device=device)
    ref = paths[0]
    results = [PathResult(p, seconds[p], max_difference(grads[p], grads[ref]), max_difference(metas[p], metas[ref]))
               for p in paths]
    if memory and device.type == "cpu":  # process RSS says nothing about a GPU's memory
        rss = measure_memory(setting.key, list(paths), iterations=MEMORY_ITERATIONS, threads=threads, seed=seed,
                             dtype=dtype)
        for r in results:
            r.peak_mb, r.added_mb = rss[r.path]["peak_mb"], rss[r.path]["added_mb"]
    return SettingResult(setting, timed, flops, results)


def _row(values: Sequence[str]) -> str:
    return f"  {values[0]:<14}" + "".join(f" {v:>{max(8, len(c))}}" for v, c in zip(values[1:], COLUMNS[1:]))


def format_setting(result: SettingResult, peak_gflops: float) -> list[str]:
    """The setting's table: a title line, the column header, one row per path."""
    s = result.setting
    lines = [f"{s.name}  [{s.key}: {result.flops / 1e9:.3g} GFLOP/it counted on loop; {result.iterations} timed "
             f"iterations after {s.warmup}]",
             _row(COLUMNS)]
    reference = result.paths[0].seconds
    for r in result.paths:
        achieved = result.flops / r.seconds / 1e9
        memory = ("-", "-") if r.peak_mb is None else (f"{r.peak_mb:.0f}", f"{r.added_mb:.0f}")
        lines.append(_row([r.path, f"{1e3 * r.seconds:.2f}", f"{r.seconds / reference:.2f}", f"{achieved:.2f}",
                           f"{100 * achieved / peak_gflops:.1f}", *memory, f"{r.grad_diff:.1e}", f"{r.max_diff:.1e}"]))
    return lines


def main(settings: str | None = None, iterations: int | None = None, threads: int | None = None, seed: int = 0, *,
         memory: bool = True, dtype: torch.dtype = torch.float32, gemm_size: int = 2048,
         device: str = "cpu") -> list[SettingResult]:
    """Print the table of every setting in ``settings`` (comma-separated keys or groups of
    :mod:`metalearning.bench_settings`; default: all but the tests' tiny one) at ``threads``
    torch threads (restored afterwards), on ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``)."""
    from metalearning.devices import resolve

    if iterations is not None and iterations < 1:
        raise ValueError(f"bench --iterations must be at least 1, got {iterations}")
    where = resolve(device, "bench --device")
    chosen = pick_settings(settings)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        peak = gemm_peak(gemm_size, device=where)
        on = torch.cuda.get_device_name(where) if where.type == "cuda" else f"{torch.get_num_threads()} thread(s)"
        print(f"torch {torch.__version__}, {where}: {on}, {str(dtype).removeprefix('torch.')}; "
              f"GEMM peak {peak:.1f} GFLOP/s ({gemm_size}x{gemm_size} float32 matmul); paths interleaved, medians; "
              "|dg1|, |dθ|: against vmap, first meta-gradient and final meta-parameters")
        results = []
        for setting in chosen:
            result = measure_setting(setting, iterations=iterations, threads=threads, seed=seed, dtype=dtype,
                                     memory=memory, device=where)
            print("\n".join(format_setting(result, peak)), flush=True)
            results.append(result)
        return results
    finally:
        torch.set_num_threads(previous)


def data_share(config_files: Sequence[Path], bindings: Sequence[str] = (), *, iterations: int = 30,
               seed: int = 0) -> dict[str, float]:
    """Median seconds of the family's meta-batch (sampling tasks; meta-RL: the rollouts) and of
    the outer step (meta-gradient and optimiser step; TRPO) of the configured experiment, timed
    alternately in one run, through the trainer's own pieces."""
    from metalearning.config import load_config
    from metalearning.training import MetaTrainer, init_state

    load_config(config_files, bindings)
    torch.manual_seed(seed)
    trainer = MetaTrainer()
    state = init_state(trainer, seed)
    sample_s, step_s = [], []
    for iteration in range(iterations + 2):
        start = time.perf_counter()
        batch = trainer.tasks.meta_batch(trainer, state.meta_params, trainer.meta_batch_size, state.generator)
        middle = time.perf_counter()
        state.outer.step(batch, iteration)
        sample_s.append(middle - start)
        step_s.append(time.perf_counter() - middle)
    sample, step = statistics.median(sample_s[2:]), statistics.median(step_s[2:])
    return {"sample_s": sample, "step_s": step, "share": sample / (sample + step)}


def print_data_share(config_files: Sequence[Path], bindings: Sequence[str] = (), iterations: int = 30,
                     threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(threads)
    r = data_share(config_files, bindings, iterations=iterations)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {iterations} timed iterations")
    print(f"{'experiment':<40} {'sample ms':>10} {'step ms':>10} {'data share':>11}")
    name = ", ".join(Path(f).stem for f in config_files)
    print(f"{name:<40} {1e3 * r['sample_s']:>10.2f} {1e3 * r['step_s']:>10.1f} {100 * r['share']:>10.2f}%")

