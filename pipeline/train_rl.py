"""DVC stage: meta-train one meta-RL experiment of configs/rl/experiments/ under the active profile."""

import argparse
from pathlib import Path

import torch

from metalearning.params import experiment_bindings, load_params
from metalearning.rl.commands import train_rl
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--experiment", required=True, help="experiment config name under configs/rl/experiments/")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

params = load_params(args.params)
torch.set_num_threads(params["rl"]["threads"])
bindings = experiment_bindings(params, "rl", args.experiment, args.params)  # rl.experiments.<name>.<profile>
train_rl([Path("configs/rl/experiments") / f"{args.experiment}.gin"], bindings, seed=params["seed"], out_dir=args.out)
