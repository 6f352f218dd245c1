"""DVC stage: the seeded meta-train/meta-test character split of the Omniglot array file."""

import argparse
from pathlib import Path

from metalearning.data.omniglot import write_split
from metalearning.params import stage_params

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--data", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

write_split(args.data, args.out, seed=stage_params(args.params)["omniglot"]["split_seed"])
