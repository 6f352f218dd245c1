"""DVC stage: meta-test one trained experiment on its family's fixed meta-test set."""

import argparse
from pathlib import Path

import torch

from metalearning.commands import test
from metalearning.params import load_params
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--checkpoint", type=Path, required=True)
parser.add_argument("--test-set", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

torch.set_num_threads(load_params(args.params)["threads"])
test(args.checkpoint, args.test_set, out_dir=args.out)
