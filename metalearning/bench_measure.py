"""What the benchmark measures besides time: FLOPs, a GEMM peak, and peak memory per path.

* FLOPs of one meta-iteration are counted with ``torch.utils.flop_counter.FlopCounterMode`` on
  the per-task loop path only: under ``vmap`` it counts a batched convolution's backward once per
  task too many (the meta-batch factor), so the vmap path is never counted. It counts matrix
  products and convolutions (forward and backward), not element-wise work (batch norm, ReLU,
  the inner SGD update), so achieved GFLOP/s are those of the GEMM-like kernels.
* The peak is that of a large float32 matrix product (``2·n³`` FLOPs) timed here at the
  current thread count.
* Memory: each path runs alone in a fresh Python process (:func:`memory_child`), which reports
  its peak resident set during its timed meta-iterations (:func:`peak_since_now`) and that peak
  minus the resident set right before them. One warm-up meta-iteration on the first task alone
  comes before that baseline, so the baseline holds the learner, the meta-parameters, Adam's
  state, the pre-sampled meta-batches and what the first call of each kernel loads; what is
  added is the whole meta-batch's graph and gradients.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from metalearning.bench_settings import SETTINGS, Problem, prepare
from metalearning.core.shards import task_slice

MB = 2**20


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (CUDA runs them asynchronously); no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(size: int = 2048, repeats: int = 5, device: torch.device = torch.device("cpu")) -> float:
    """GFLOP/s of the fastest of ``repeats`` float32 ``[size, size] @ [size, size]`` products on ``device``."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b  # warm-up: thread pool, page faults, CUDA context
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def count_flops(problem: Problem, tasks, seed: int) -> int:
    """FLOPs of one meta-gradient of ``tasks`` on the per-task loop path (see the module docstring)."""
    meta = problem.algorithm.init_meta_params(dict(problem.model.named_parameters()),
                                              torch.Generator().manual_seed(seed))
    with FlopCounterMode(display=False) as counter:
        problem.algorithm.meta_gradient(meta, tasks, problem.loss, vectorize=False)
    return counter.get_total_flops()


def _status_bytes(field: str) -> int | None:
    """``VmRSS`` / ``VmHWM`` of /proc/self/status in bytes (None without /proc)."""
    try:
        with open("/proc/self/status") as f:
            lines = [line.split() for line in f if line.startswith(field + ":")]
    except OSError:
        return None
    return int(lines[0][1]) * 1024 if lines else None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS (Linux ≥ 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def peak_since_now() -> Callable[[], tuple[int, int]]:
    """Start measuring; the returned function gives (peak RSS since the start, RSS at the start).

    Linux: the kernel's VmHWM, reset to the current RSS here. ``ru_maxrss`` is not used there: a
    process started by a large parent reports the parent's size through exec. Elsewhere: the
    ``ru_maxrss`` of the whole process and, as the start, its value so far."""
    rss = _status_bytes("VmRSS")
    if rss is not None and _reset_peak():
        return lambda: (_status_bytes("VmHWM") or 0, rss)
    before = _ru_maxrss_bytes()
    return lambda: (_ru_maxrss_bytes(), before)


def memory_child(key: str, path: str, iterations: int, threads: int, seed: int, dtype: str) -> None:
    """Run ``path`` of setting ``key`` alone for ``iterations`` meta-iterations; print a JSON line
    ``{"peak_mb", "added_mb"}``. The entry point of :func:`measure_memory`'s processes."""
    from metalearning.bench_paths import make_runner

    if threads:
        torch.set_num_threads(threads)
    problem, batches = prepare(SETTINGS[key], iterations, seed, getattr(torch, dtype))
    runner = make_runner(problem, path, seed)
    runner.step(task_slice(batches[0], 0, 1))  # loads the kernels, allocates Adam's state
    measure = peak_since_now()
    for batch in batches:
        runner.step(batch)
    peak, baseline = measure()
    print(json.dumps({"peak_mb": peak / MB, "added_mb": (peak - baseline) / MB}))


def measure_memory(key: str, paths: list[str], *, iterations: int, threads: int | None, seed: int,
                   dtype: torch.dtype) -> dict[str, dict[str, float]]:
    """Peak and added resident memory (MiB) of each path, each in its own fresh process. The
    processes run at the same time, up to one per ``threads`` cores (they are not timed)."""
    code = "import sys, json; from metalearning.bench_measure import memory_child as m; m(**json.loads(sys.argv[1]))"
    args = {"key": key, "iterations": iterations, "threads": threads or 0, "seed": seed,
            "dtype": str(dtype).removeprefix("torch.")}
    width = max(1, (os.cpu_count() or 1) // (threads or torch.get_num_threads()))
    results: dict[str, dict[str, float]] = {}
    for start in range(0, len(paths), width):
        group = paths[start:start + width]
        procs = {p: subprocess.Popen([sys.executable, "-c", code, json.dumps({**args, "path": p})],
                                     stdout=subprocess.PIPE, text=True) for p in group}
        for p, proc in procs.items():
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"bench memory process for {key!r} / {p!r} failed (exit {proc.returncode})")
            results[p] = json.loads(out.strip().splitlines()[-1])
    return results
