"""DVC stage: meta-train one experiment of configs/experiments/ under the active profile."""

import argparse
from pathlib import Path

import torch

from metalearning.commands import train
from metalearning.params import experiment_bindings, load_params, sine_bindings
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--experiment", required=True, help="experiment config name under configs/experiments/")
parser.add_argument("--task", default="sine", help="params.yaml section the experiment is listed in")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

params = load_params(args.params)
if args.task == "sine":
    bindings, threads = sine_bindings(params, args.params), params["threads"]
else:
    bindings = experiment_bindings(params, args.task, args.experiment, args.params)
    threads = params[args.task]["threads"]
torch.set_num_threads(threads)
train([Path("configs/experiments") / f"{args.experiment}.gin"], bindings, seed=params["seed"], out_dir=args.out)
