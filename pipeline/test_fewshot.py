"""DVC stage: meta-test one trained few-shot experiment on its fixed episode set."""

import argparse
from pathlib import Path

import torch

from metalearning.fewshot import meta_test_fewshot
from metalearning.params import load_params
from metalearning.rundb.target import adopt_params_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", required=True, help="params.yaml section, e.g. omniglot")
parser.add_argument("--checkpoint", type=Path, required=True)
parser.add_argument("--episodes", type=Path, required=True)
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
adopt_params_mongo_url(args.params)

torch.set_num_threads(load_params(args.params)[args.task]["threads"])
meta_test_fewshot(args.checkpoint, args.episodes, out_dir=args.out)
