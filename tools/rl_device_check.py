"""Issue 15 item 4 on a lent many-core machine, as one prepared run: `make rl-device-check`.

    python tools/rl_device_check.py --out DIR [--train-minutes 4] [--timing-iterations 3] [--tiny]

1. the machine: the cores this process may use, torch, gymnasium and MuJoCo versions;
2. ``metalearning bench --rollouts``: the cheetah's env-steps/s with 40 envs split over 1, 2 and all
   the cores' processes (as the trainer's torch.distributed ranks roll out their shares) against
   gymnasium's ``AsyncVectorEnv`` — the measurement item 4 asks for on 16 cores (``rollouts.txt``);
3. ``maml_cheetah_vel`` at the paper's sizes under torchrun with one process per core (at most
   the meta-batch): seconds per meta-iteration, from two trainings that differ only in their
   budget (start-up and the first iteration cancel), and the projected time of MAML's 500;
4. a training of as many meta-iterations as fit in ``--train-minutes`` at that rate, and its
   meta-test in the same processes with the pipeline's meta-test seed: ``model/`` (checkpoint,
   learning curve) and ``metrics/maml_cheetah_vel/`` for ``pipeline/report.py``'s cheetah
   section, beside the 200-iteration 2-core runs of params.yaml (comment above ``rl.locomotion``).

Everything is written under ``--out`` (``results.json`` holds the numbers); nothing in the
repository changes. Numerics are the caller's (``METALEARNING_NUMERICS``). ``--tiny``: toy sizes
and no rollout bench, on any machine (what the test runs).

Sized for the device tool's lease (one command ≤ 10 minutes, 15 minutes of device time in all):
the default 4-minute training leaves the rest of one command to the rollout bench, the timing runs
and the meta-test (on the 2-core development host, at the paper's sizes with 2 processes: 9 s,
174 s at 20.6 s per meta-iteration, and 71 s for 100 tasks; not yet measured on 16 cores). Its
files come back from a flat folder:
``python tools/rl_device_check.py --out /tmp/check && cp /tmp/check/results.json
/tmp/check/rollouts.txt /tmp/check/model/maml_cheetah_vel/{learning_curve.csv,checkpoint.pt}
/tmp/check/metrics/maml_cheetah_vel/{metrics.json,curves.json} "$OUT"/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = REPO / "configs" / "rl" / "experiments" / "maml_cheetah_vel.gin"
PAPER_ITERATIONS = 500  # maml.md A.2: every RL model trained up to 500 meta-iterations
TINY = ["GaussianMLPPolicy.hidden = (8,)", "meta_batch_size = 2", "trajectories = 2", "TRPO.cg_iters = 2",
        "LocomotionFamily.horizon = 5", "eval_tasks = 2", "eval_trajectories = 2", "eval_inner_steps = 1"]


def machine() -> dict:
    """The cores and package versions; raises ``PackageNotFoundError`` for a missing package."""
    info = {"cores": len(os.sched_getaffinity(0)), "python": sys.version.split()[0],
            **{name: version(name) for name in ("torch", "gymnasium", "mujoco")}}
    print(f"{info['cores']} cores; torch {info['torch']}, gymnasium {info['gymnasium']}, mujoco {info['mujoco']}",
          flush=True)
    return info


def meta_batch_size(bindings: list[str]) -> int:
    from metalearning import config as cfg
    from metalearning.training import MetaTrainer

    cfg.load_config([EXPERIMENT], bindings)
    return cfg.build(MetaTrainer, str(EXPERIMENT)).meta_batch_size


def torchrun(processes: int, *args: str) -> float:
    """Run ``metalearning <args>`` under torchrun in ``processes`` processes; its wall seconds.

    Raises:
        RuntimeError: the command failed (its error output's tail in the message).
    """
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
           "-m", "metalearning", *args]
    print("$", shlex.join(cmd[2:]), flush=True)
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd[2:])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def train(processes: int, bindings: list[str], iterations: int, out: Path, runs: Path) -> float:
    binds = [a for b in [*bindings, f"MetaTrainer.meta_iterations = {iterations}"] for a in ("--bind", b)]
    return torchrun(processes, "train", "--config", str(EXPERIMENT), *binds, "--seed", "0", "--out", str(out),
                    "--runs-dir", str(runs), "--quiet")


def meta_test_seed() -> int:
    import yaml

    return yaml.safe_load((REPO / "params.yaml").read_text())["rl"]["meta_test_seed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for every output (created; must be empty)")
    parser.add_argument("--train-minutes", type=float, default=4.0, help="the training's budget (step 4)")
    parser.add_argument("--timing-iterations", type=int, default=3, help="the timed iterations' count (step 3)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes and no rollout bench (any machine)")
    args = parser.parse_args(argv)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        print(f"rl_device_check: error: --out {args.out} is not an empty folder", file=sys.stderr)
        return 2
    if args.train_minutes <= 0 or args.timing_iterations < 1:
        print("rl_device_check: error: --train-minutes must be > 0 and --timing-iterations >= 1", file=sys.stderr)
        return 2
    try:
        info = machine()
    except PackageNotFoundError as err:
        print(f"rl_device_check: error: the package {err.name} is not installed (environment.lock pins it)",
              file=sys.stderr)
        return 2
    from metalearning.config import ConfigError

    args.out.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, info)
    except ConfigError as err:  # the experiment's config with the check's bindings: one line
        print(f"rl_device_check: error: {err}", file=sys.stderr)
        return 2
    except RuntimeError as err:  # a torchrun step failed: its command, then its error output's tail
        print(f"rl_device_check: error: {err}", file=sys.stderr)
        return 1


def run(args: argparse.Namespace, info: dict) -> int:
    """Steps 2–4 of the module docstring into ``args.out``; 0, or 1 when the rollout bench failed."""
    bindings = TINY if args.tiny else []
    results: dict = {"machine": info, "experiment": str(EXPERIMENT.relative_to(REPO)), "tiny": args.tiny}
    if not args.tiny:
        done = subprocess.run([sys.executable, "-m", "metalearning", "bench", "--rollouts"], cwd=REPO,
                              capture_output=True, text=True)
        (args.out / "rollouts.txt").write_text(done.stdout + done.stderr)
        print(done.stdout, flush=True)
        results["rollouts_exit_code"] = done.returncode

    processes = min(info["cores"], meta_batch_size(bindings))
    runs, timing = args.out / "runs", args.out / "timing"
    short = train(processes, bindings, 2, timing / "short", runs)
    longer = train(processes, bindings, 2 + args.timing_iterations, timing / "long", runs)
    per_iteration = max(longer - short, 1e-3) / args.timing_iterations
    iterations = max(1, min(PAPER_ITERATIONS, math.floor(60 * args.train_minutes / per_iteration)))
    results["timing"] = {"processes": processes, "seconds_2_iterations": short,
                         f"seconds_{2 + args.timing_iterations}_iterations": longer,
                         "seconds_per_iteration": per_iteration,
                         "projected_minutes_500_iterations": per_iteration * PAPER_ITERATIONS / 60}
    print(f"{processes} processes: {per_iteration:.2f} s per meta-iteration; {PAPER_ITERATIONS} iterations "
          f"projected: {per_iteration * PAPER_ITERATIONS / 60:.1f} min; training {iterations}", flush=True)

    model, metrics = args.out / "model" / "maml_cheetah_vel", args.out / "metrics" / "maml_cheetah_vel"
    trained = train(processes, bindings, iterations, model, runs)
    tested = torchrun(processes, "test", "--checkpoint", str(model / "checkpoint.pt"), "--bind",
                      f"MetaRL.eval_seed = {meta_test_seed()}", *[a for b in bindings for a in ("--bind", b)],
                      "--out", str(metrics), "--runs-dir", str(runs))
    returns = json.loads((metrics / "metrics.json").read_text())
    results["training"] = {"iterations": iterations, "seconds": trained, "meta_test_seconds": tested,
                           "train_metrics": json.loads((model / "train_metrics.json").read_text()),
                           "meta_test": returns}
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results["training"], indent=2))
    return 0 if results.get("rollouts_exit_code", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
