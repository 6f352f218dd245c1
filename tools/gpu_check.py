"""The GPU check (issue 12 item 5): how fast the platform trains on a CUDA machine.

    make gpu-check                      # = python tools/gpu_check.py
    python tools/gpu_check.py [--iterations 300] [--bench-iterations 10] [--device cuda]

On a CUDA machine (torch for CUDA installed first, then `pip install -e .`; see README):

1. the environment: torch, CUDA, the GPUs;
2. the benchmark on the device: the vmap path vs the per-task loop on O1 (Omniglot conv4,
   64 filters, 5-way 1-shot, meta-batch 32, second-order MAML) and on the MiniImagenet 5-way
   1-shot MAML setting (O3), synthetic images (`python -m metalearning bench --device …`);
3. MAML Omniglot 5-way 1-shot at the paper's setting (64 filters, meta-batch 32) through the
   trainer for ``--iterations`` meta-iterations: ms per meta-iteration (after a warm-up, the
   device synchronised) and the projected time for the paper's 60 000. It uses
   data/omniglot/omniglot.npz when `make repro`'s data stages made it (the full variant under the
   paper profile, the small one under cpu), else a synthetic array of the full dataset's shape:
   the speed does not depend on the pixels;
4. with two or more GPUs: the same training under torchrun with 2 processes (NCCL) for 20
   iterations against one process: final meta-loss and meta-parameters, and ms per iteration.

Goal on one H100/H200: vmap ≥ 10× the per-task loop on O1, 60 000 iterations projected ≤ 30 min.
``--device cpu`` runs every step on the CPU with tiny sizes (what the tests run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import metalearning  # noqa: F401  (sets OpenMP's wait policy before torch loads)

# isort: split
import torch

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "configs" / "experiments" / "maml_omniglot_5w1s.gin"
PAPER_ITERATIONS = 60_000
FULL_CHARACTERS = 1623


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
            "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}
    print(f"torch {info['torch']}, CUDA {info['cuda']}, {len(info['gpus'])} GPU(s): {', '.join(info['gpus']) or '-'}")
    return info


def omniglot_bindings(work: Path, characters: int) -> tuple[list[str], str]:
    """Bindings to the pipeline's Omniglot arrays if present, else to a synthetic array."""
    data, split = REPO / "data" / "omniglot" / "omniglot.npz", REPO / "data" / "omniglot" / "split.json"
    if not (data.is_file() and split.is_file()):
        from metalearning.data.omniglot import write_synthetic

        return write_synthetic(work, characters, alphabets=50), f"synthetic ({characters} characters)"
    return ([f"omniglot_classes.data_file = '{data}'", f"omniglot_classes.split_file = '{split}'"],
            str(data.relative_to(REPO)))


def paper_setting(data: list[str], device: str, tiny: bool) -> list[str]:
    sizes = ["filters = 4", "MetaTrainer.meta_batch_size = 4"] if tiny else []
    return [*data, f"MetaTrainer.device = '{device}'", "MetaTrainer.meta_val_tasks = 2", *sizes]


def time_training(bindings: list[str], iterations: int, warmup: int) -> dict:
    """ms per meta-iteration of MAML Omniglot 5w1s through the trainer (sampling included)."""
    from metalearning.config import load_config
    from metalearning.training import MetaTrainer, _step, init_state

    load_config([EXPERIMENT], bindings)
    torch.manual_seed(0)
    trainer = MetaTrainer()
    state = init_state(trainer, seed=0)
    seconds = []
    for i in range(warmup + iterations):
        _sync(trainer.device)
        start = time.perf_counter()
        _step(trainer, state)
        _sync(trainer.device)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
    ms = 1e3 * statistics.median(seconds)
    memory = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if trainer.device.type == "cuda" else None
    return {"ms_per_iteration": ms, "projected_paper_minutes": ms * PAPER_ITERATIONS / 6e4,
            "iterations_timed": iterations, "peak_gpu_memory_gib": memory}


def bench(device: str, iterations: int, settings: str) -> int:
    cmd = [sys.executable, "-m", "metalearning", "bench", "--settings", settings, "--device", device,
           "--iterations", str(iterations), "--no-memory"]
    print("$", " ".join(cmd[1:]), flush=True)
    return subprocess.run(cmd, cwd=REPO).returncode


def distributed_check(work: Path, bindings: list[str]) -> dict:
    """20 iterations under torchrun with 2 processes vs the same run in one process."""
    from metalearning import commands
    from metalearning.checkpoints import load_checkpoint

    common = [*bindings, "MetaTrainer.meta_iterations = 20", "MetaTrainer.log_every = 10"]
    start = time.perf_counter()
    single = commands.train([EXPERIMENT], common, seed=0, out_dir=work / "one", runs_dir=work / "runs", progress=False)
    one_s = time.perf_counter() - start
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "metalearning",
           "train", "--config", str(EXPERIMENT), *[a for b in common for a in ("--bind", b)],
           "--out", str(work / "two"), "--runs-dir", str(work / "runs"), "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    two_s = time.perf_counter() - start
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return {"ok": False}
    two = json.loads((work / "two" / "train_metrics.json").read_text())
    p1, p2 = (load_checkpoint(work / d / "checkpoint.pt")["meta_params"]["theta"] for d in ("one", "two"))
    gap = max(float((p1[k] - p2[k]).abs().max()) for k in p1)
    return {"ok": True, "loss_one": single["final_meta_train_loss"], "loss_two": two["final_meta_train_loss"],
            "max_param_gap": gap, "seconds_one_process": one_s, "seconds_two_processes": two_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N (default: cuda) or cpu (tiny sizes)")
    parser.add_argument("--iterations", type=int, default=300, help="timed meta-iterations of the training")
    parser.add_argument("--bench-iterations", type=int, default=10, help="timed iterations per bench path")
    parser.add_argument("--bench-settings", default="o1,o3", help="bench settings (see `metalearning bench --help`)")
    parser.add_argument("--skip-bench", action="store_true", help="only the training (and distributed) checks")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--distributed", action="store_true", help="run the 2-process check even with fewer than "
                        "2 GPUs (with --device cpu: gloo)")
    args = parser.parse_args(argv)
    from metalearning.devices import resolve

    try:
        device = resolve(args.device, "--device")
    except ValueError as err:
        print(f"gpu_check: error: {err}", file=sys.stderr)
        return 2
    tiny = device.type == "cpu"
    results = {"environment": environment(device)}
    if not args.skip_bench:
        results["bench_exit_code"] = bench(str(device), args.bench_iterations, args.bench_settings)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data, source = omniglot_bindings(work, 40 if tiny else FULL_CHARACTERS)
        bindings = paper_setting(data, args.device, tiny)  # "cuda": each torchrun process takes its own GPU
        print(f"\nMAML Omniglot 5w1s, {'tiny (cpu)' if tiny else 'paper'} setting, data: {source}", flush=True)
        training = time_training(bindings, args.iterations, warmup=min(10, args.iterations))
        results["training"] = training
        print(f"  {training['ms_per_iteration']:.1f} ms per meta-iteration (median of {args.iterations}); "
              f"{PAPER_ITERATIONS} iterations projected: {training['projected_paper_minutes']:.1f} min"
              + (f"; peak GPU memory {training['peak_gpu_memory_gib']:.2f} GiB" if training["peak_gpu_memory_gib"]
                 else ""))
        if torch.cuda.device_count() >= 2 or args.distributed:
            check = distributed_check(work, bindings)
            results["distributed"] = check
            print(f"  2 processes vs 1, 20 iterations: {json.dumps(check)}")
        else:
            print("  distributed (NCCL) check skipped: fewer than 2 GPUs")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0 if results.get("bench_exit_code", 0) == 0 and results.get("distributed", {"ok": True})["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
