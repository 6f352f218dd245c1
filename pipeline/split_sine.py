"""DVC stage: the fixed, seeded meta-test set of one sine task family."""

import argparse
from pathlib import Path

from metalearning.params import stage_params
from metalearning.tasks.sine_metatest import split_sine

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--family", required=True, help="task config name under configs/tasks/")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

spec = stage_params(args.params)["sine"]["meta_test"]
split_sine([Path("configs/tasks") / f"{args.family}.gin"], [f"shots = {max(spec['shots'])}"],
           shots=spec["shots"], curves=spec["curves"], repeats=spec["repeats"], seed=spec["seed"], out=args.out)
