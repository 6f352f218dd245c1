"""DVC stage: meta-train one experiment of configs/experiments/ under the active profile."""

import argparse
from pathlib import Path

import torch

from metalearning.commands import train
from metalearning.params import load_params, sine_bindings
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--experiment", required=True, help="experiment config name under configs/experiments/")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

params = load_params(args.params)
torch.set_num_threads(params["threads"])
train([Path("configs/experiments") / f"{args.experiment}.gin"], sine_bindings(params, args.params),
      seed=params["seed"], out_dir=args.out)
