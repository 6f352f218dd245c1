"""DVC stage: meta-train one experiment of any task family under the active profile, on the
profile's device, in ``nproc`` processes (this script relaunches itself under torchrun)."""

import argparse
import os
import sys
from pathlib import Path

from metalearning.commands import train
from metalearning.openmp import set_threads
from metalearning.params import stage_launch, stage_params, stage_settings
from metalearning.rundb.target import resolve_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", default="sine", help="params.yaml section the experiment is listed in: sine, "
                    "omniglot or rl")
parser.add_argument("--experiment", required=True, help="experiment config name (configs/experiments/, "
                    "configs/rl/experiments/ for rl)")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = stage_params(args.params)
device, nproc = stage_launch(params, args.params, args.task)
if nproc > 1 and "WORLD_SIZE" not in os.environ:  # the stage is the launcher: torchrun runs this script N times
    os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                              f"--nproc_per_node={nproc}", __file__, *sys.argv[1:]])
config, bindings, threads = stage_settings(params, args.task, args.experiment, args.params)
set_threads(threads)
train([config], bindings, seed=params["seed"], out_dir=args.out, mongo_url=resolve_mongo_url(params_path=args.params),
      device=device)
