"""Measure torch's OpenMP thread settings on an idle machine and on one with a busy core.

    python tools/measure_thread_policy.py [EXPERIMENT] [ITERATIONS] [ROUNDS]

For each background (idle; one core kept busy by a spinning process) and each setting
(2 threads with OpenMP's default wait policy, 2 threads with OMP_WAIT_POLICY=PASSIVE, 1 thread),
a fresh process times ITERATIONS meta-iterations (meta-batch + outer step, medians) of the
experiment's cpu-profile training through the trainer's own pieces (`bench.data_share`). The
settings are interleaved over ROUNDS rounds, so drift in the machine's load hits all alike.
Run it from the repository root after `make repro`'s data stages (data/omniglot).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

EXPERIMENT = sys.argv[1] if len(sys.argv) > 1 else "maml_omniglot_5w1s"
ITERATIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 30
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
SETTINGS = {"2 threads, OpenMP default wait policy": (2, None),
            "2 threads, OMP_WAIT_POLICY=PASSIVE": (2, {"OMP_WAIT_POLICY": "PASSIVE"}),
            "2 threads, GOMP_SPINCOUNT=10000": (2, {"GOMP_SPINCOUNT": "10000"}),
            "2 threads, GOMP_SPINCOUNT=30000": (2, {"GOMP_SPINCOUNT": "30000"}),
            "1 thread": (1, None)}
CHILD = """
import json, sys, torch
from metalearning.bench import data_share
from metalearning.params import load_params, stage_settings
torch.set_num_threads(int(sys.argv[2]))
params = load_params()
config, bindings, _ = stage_settings(params, "omniglot", sys.argv[1])
r = data_share([config], bindings, iterations=int(sys.argv[3]))
print(json.dumps(r["sample_s"] + r["step_s"]))
"""


def one_run(threads: int, policy: dict | None) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(policy or {})
    out = subprocess.run([sys.executable, "-c", CHILD, EXPERIMENT, str(threads), str(ITERATIONS)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(background: str) -> dict[str, float]:
    spinner = None
    if background == "one core busy":
        spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        times: dict[str, list[float]] = {name: [] for name in SETTINGS}
        for _ in range(ROUNDS):
            for name, (threads, policy) in SETTINGS.items():
                times[name].append(one_run(threads, policy))
    finally:
        if spinner is not None:
            spinner.kill()
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    print(f"{EXPERIMENT} (cpu profile), median ms per meta-iteration over {ITERATIONS} iterations, "
          f"median of {ROUNDS} interleaved rounds; {os.cpu_count()} cores")
    for background in ("idle", "one core busy"):
        result = measure(background)
        base = result["1 thread"]
        print(f"\n{background}:")
        for name, seconds in result.items():
            print(f"  {name:<40} {1e3 * seconds:8.1f} ms   {seconds / base:5.2f}x of 1 thread")


if __name__ == "__main__":
    main()
