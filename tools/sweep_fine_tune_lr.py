"""Choose a fine-tuning baseline's step size the way maml.md §5.3 did by hand, as a small sweep.

    python tools/sweep_fine_tune_lr.py models/rl/pretrained_nav2d/checkpoint.pt \
        --lr 0.05 0.1 0.2 0.5 1.0 --tasks 100 --seed 1

Meta-tests the checkpoint with each ``--key`` value (default ``fine_tune_lr``, the baselines' macro
for ``MAML.inner_lr``: the first step's α; later steps use half,
as MAML's protocol) on ``--tasks`` new tasks drawn with ``--seed`` — a seed other than
params.yaml ``rl.meta_test_seed``, so the step size is not chosen on the reported tasks — and
prints the average return after each step and the mean over steps 1…k, the criterion: the α whose
adapted policies do best over the whole curve. Put the winner in params.yaml
``rl.experiments.<name>.test``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import metalearning  # noqa: F401  (OpenMP policy before torch)
from metalearning.commands import test
from metalearning.metrics_io import read_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--lr", type=float, nargs="+", required=True, help="first-step α values to try")
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1, help="eval seed of the sweep's tasks (not the reported one)")
    parser.add_argument("--key", default="fine_tune_lr", help="the gin key of the first step's α (MAML.inner_lr for "
                        "a model whose config binds it directly)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lr in args.lr:
            out = Path(tmp) / str(lr)
            test(args.checkpoint, out_dir=out, runs_dir=Path(tmp) / "runs",
                 bindings=[f"MetaRL.eval_seed = {args.seed}",
                           f"meta_test/AdaptationEval.num_tasks = {args.tasks}", f"{args.key} = {lr}"])
            curve = read_json(out / "curves.json")["return_mean"]
            rows.append((lr, curve, sum(curve[1:]) / max(len(curve) - 1, 1)))
    best = max(rows, key=lambda row: row[2])
    print(f"{args.checkpoint}: {args.tasks} tasks, eval seed {args.seed}")
    for lr, curve, score in rows:
        steps = "  ".join(f"{value:8.2f}" for value in curve)
        print(f"  alpha {lr:<6g} returns after 0..{len(curve) - 1} steps: {steps}   mean of steps 1+: {score:8.2f}"
              + ("   <- best" if lr == best[0] else ""))


if __name__ == "__main__":
    main()
