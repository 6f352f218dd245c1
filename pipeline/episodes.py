"""DVC stage: one fixed, seeded meta-test episode set over a task config's held-out classes."""

import argparse
from pathlib import Path

from metalearning.fewshot import split_episodes
from metalearning.params import DATA_DIR, data_bindings, stage_params

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", required=True, help="task config under configs/tasks/, e.g. omniglot")
parser.add_argument("--set", required=True, help="name of the set in params.yaml <task>.meta_test.sets")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the data stages' directory (a second "
                    "pipeline's own, e.g. paper/data)")
args = parser.parse_args()

meta_test = stage_params(args.params)[args.task]["meta_test"]
shape = meta_test["sets"][args.set]
split_episodes([Path("configs/tasks") / f"{args.task}.gin"], data_bindings(args.task, args.data_dir),
               ways=shape["ways"], shots=shape["shots"], queries=shape["queries"], episodes=meta_test["episodes"],
               seed=meta_test["seed"], out=args.out)
