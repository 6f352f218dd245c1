"""Which kernel paths change results on this host, and what pinning them costs.

    python tools/measure_numerics.py [ROUNDS]

Each case runs in a fresh process (the libraries read their variables when torch loads): a MAML
sine run (200 meta-iterations) and a MAML Omniglot conv run (random images, 16 filters,
meta-batch 4, 30 iterations), under native numerics with one kernel path limited the way a
weaker CPU would (MKL, oneDNN, ATen), and under portable numerics (metalearning.numerics). It
prints a hash of the final meta-parameters per case and the median seconds per run of native vs
portable, interleaved over ROUNDS rounds.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import hashlib, sys, tempfile, time
from pathlib import Path
import metalearning
import torch
from metalearning.config import load_config
from metalearning.core.algorithms import meta_leaves
from metalearning.training import MetaTrainer, _step, init_state
from tests.conftest import fake_omniglot
torch.set_num_threads(int(sys.argv[2]))
if sys.argv[1] == "sine":
    load_config(["configs/experiments/maml_sine_5shot.gin"], [])
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 200
else:
    data = fake_omniglot(Path(tempfile.mkdtemp()))
    load_config(["configs/experiments/maml_omniglot_5w1s.gin"],
                [*data, "filters = 16", "MetaTrainer.meta_batch_size = 4"])
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else 30
torch.manual_seed(0)
trainer = MetaTrainer()
state = init_state(trainer, 0)
start = time.perf_counter()
for _ in range(iterations):
    _step(trainer, state)
seconds = time.perf_counter() - start
digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in meta_leaves(state.meta_params)))
print(digest.hexdigest()[:16], seconds)
"""
CASES = {
    "native": {},
    "native, MKL limited to AVX2 (MKL_ENABLE_INSTRUCTIONS)": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "native, oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA)": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "native, ATen without vector kernels (ATEN_CPU_CAPABILITY=default)": {"ATEN_CPU_CAPABILITY": "default"},
    "native, 2 threads": {"THREADS": "2"},
    "portable": {"METALEARNING_NUMERICS": "portable"},
    "portable, MKL limited to AVX2": {"METALEARNING_NUMERICS": "portable", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "portable, 2 threads": {"METALEARNING_NUMERICS": "portable", "THREADS": "2"},
}
PINNED = ("METALEARNING_NUMERICS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def run(case: dict, which: str, iterations: int | None = None) -> tuple[str, float]:
    """(hash of the final meta-parameters, seconds) of one fresh process under ``case``'s environment."""
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    env.update({k: v for k, v in case.items() if k != "THREADS"})
    env["PYTHONPATH"] = str(REPO)
    args = [which, case.get("THREADS", "1"), *([] if iterations is None else [str(iterations)])]
    out = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=REPO, env=env, check=True, capture_output=True,
                         text=True).stdout.split()
    return out[-2], float(out[-1])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    for which in ("sine", "omniglot"):
        print(f"\n{which}:")
        for name, case in CASES.items():
            print(f"  {name:<68} {run(case, which)[0]}")
        times: dict[str, list[float]] = {"native": [], "portable": []}
        for _ in range(rounds):
            for mode in times:
                times[mode].append(run(CASES[mode], which)[1])
        native, portable = (statistics.median(times[m]) for m in ("native", "portable"))
        print(f"  seconds per run (median of {rounds}, 1 thread): native {native:.2f}, portable {portable:.2f}, "
              f"portable/native {portable / native:.2f}")


if __name__ == "__main__":
    main()
