"""DVC stage: meta-test one trained meta-RL experiment on new tasks drawn with the params' eval seed."""

import argparse
from pathlib import Path

import torch

from metalearning.params import load_params
from metalearning.rl.commands import test_rl
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--checkpoint", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

section = load_params(args.params)["rl"]
torch.set_num_threads(section["threads"])
test_rl(args.checkpoint, out_dir=args.out, bindings=[f"RLExperiment.eval_seed = {int(section['meta_test_seed'])}"])
