"""DVC stage: meta-test one trained few-shot experiment on each of its fixed episode sets
(params.yaml ``<task>.experiments.<name>.episodes``) into ``<out>/<set>/``."""

import argparse
from pathlib import Path

import torch

from metalearning.fewshot import meta_test_fewshot
from metalearning.params import episode_set_names, load_params
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", required=True, help="params.yaml section, e.g. omniglot")
parser.add_argument("--experiment", required=True)
parser.add_argument("--checkpoint", type=Path, required=True)
parser.add_argument("--episodes-dir", type=Path, required=True, help="holds <set>.pt")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

section = load_params(args.params)[args.task]
torch.set_num_threads(section["threads"])
for name in episode_set_names(section["experiments"], args.experiment):
    meta_test_fewshot(args.checkpoint, args.episodes_dir / f"{name}.pt", out_dir=args.out / name)
