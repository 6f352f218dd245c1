"""DVC stage: meta-train one experiment of any task family under the active profile, on the
profile's device, in ``nproc`` processes (this script relaunches itself under torchrun), once per
training seed (metalearning.replicates): the primary seed into ``--out``, the others into
``--out/replicates/seed<k>``, as many at once as the cores allow."""

import argparse
import os
import sys
from pathlib import Path

from metalearning.commands import check_output_folder, train
from metalearning.distributed import launched_size, relaunch
from metalearning.openmp import set_threads
from metalearning.params import DATA_DIR, data_bindings, stage_launch, stage_params, stage_settings
from metalearning.replicates import python_command, run_parallel, seed_dirs, training_seeds, write_replicate_index
from metalearning.rundb.target import resolve_mongo_url

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", default="sine", help="params.yaml section the experiment is listed in: sine, "
                    "omniglot or rl")
parser.add_argument("--experiment", required=True, help="experiment config name (configs/experiments/, "
                    "configs/rl/experiments/ for rl)")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="the data stages' directory (a second "
                    "pipeline's own, e.g. paper/data); the task config's data files are bound under it")
parser.add_argument("--seed", type=int, default=None, help="train this one training seed into --out (default: "
                    "every seed of the experiment, params.yaml `seeds`)")
parser.add_argument("--quiet", action="store_true", help="no progress bar")
args = parser.parse_args()

params = stage_params(args.params)
device, nproc = stage_launch(params, args.params, args.task)
config, bindings, threads = stage_settings(params, args.task, args.experiment, args.params)
bindings = [*data_bindings(args.task, args.data_dir), *bindings]
if args.seed is None:  # the stage: every training seed, each in its own process(es)
    seeds = training_seeds(params, args.task, args.experiment)
    base = [*sys.argv[1:]]
    jobs = [python_command(__file__, *base, "--seed", str(seed), *(("--out", str(out), "--quiet") if i else ()))
            for i, (seed, out) in enumerate(zip(seeds, seed_dirs(args.out, seeds)))]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        run_parallel(jobs, workers=cores // (threads * nproc))
    except RuntimeError as err:
        print(f"{Path(__file__).name}: error: {args.experiment}: a training seed failed ({err})", file=sys.stderr)
        raise SystemExit(1) from None
    write_replicate_index(args.out, seeds[1:])
    raise SystemExit(0)
try:
    if nproc > 1 and launched_size() == 1:  # the seed's launcher: torchrun runs this script N times
        check_output_folder(args.out)  # here, once, rather than in every process torchrun starts
        relaunch(__file__, sys.argv[1:], nproc)
    set_threads(threads)
    train([config], bindings, seed=args.seed, out_dir=args.out, mongo_url=resolve_mongo_url(params_path=args.params),
          device=device, progress=not args.quiet)
except ValueError as err:  # the output folder holds another run, a bad binding
    print(f"{Path(__file__).name}: error: {args.experiment}: {err}", file=sys.stderr)
    raise SystemExit(1) from None
