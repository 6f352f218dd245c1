"""DVC stage: meta-test one trained experiment of any task family by its protocol: sine on its
family's fixed meta-test set, few-shot on each of its episode sets (params.yaml
``<task>.experiments.<name>.episodes``, into ``<out>/<set>/``), meta-RL on new tasks drawn with
``rl.meta_test_seed`` and the experiment's ``test`` bindings. Every training seed's model is
tested (the primary's results into ``--out``, the others' into ``--out/replicates/seed<k>``), and
``seeds.json`` beside each ``metrics.json`` summarises them across seeds (metalearning.replicates).
An experiment of ``rl.shared`` is meta-tested on another experiment's models (``--checkpoint``) with
its own protocol, once its training is checked to be the same (metalearning.shared_models).
Meta-RL's meta-tests run in ``rl.nproc`` processes (this script relaunches itself under torchrun;
each process rolls out and adapts a share of the new tasks, with one process's tasks and noise);
the other families' in one."""

import argparse
import sys
from pathlib import Path

from metalearning.commands import test
from metalearning.distributed import launched_rank, relaunch
from metalearning.openmp import set_threads
from metalearning.params import episode_set_names, rl_test_bindings, stage_launch, stage_params, task_threads
from metalearning.replicates import (
    MissingSeedCheckpoint,
    SeedTestError,
    meta_test_seeds,
    seed_checkpoints,
    training_seeds,
)
from metalearning.rundb.target import resolve_mongo_url
from metalearning.shared_models import shared_protocol

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", default="sine", help="params.yaml section: sine, omniglot or rl")
parser.add_argument("--experiment", required=True)
parser.add_argument("--checkpoint", type=Path, required=True, help="the primary seed's checkpoint; the other "
                    "seeds' are in replicates/seed<k>/ beside it")
parser.add_argument("--test-set", type=Path, help="sine: the family's meta-test set")
parser.add_argument("--episodes-dir", type=Path, help="few-shot: the folder holding <set>.pt")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = stage_params(args.params)
set_threads(task_threads(params, args.task))
mongo_url = resolve_mongo_url(params_path=args.params)
device, nproc = stage_launch(params, args.params, args.task)
seeds = training_seeds(params, args.task, args.experiment)


def missing_seed(err: MissingSeedCheckpoint) -> SystemExit:
    print(f"{Path(__file__).name}: error: {args.experiment}: {args.params} trains seeds {seeds}, but {err} (train "
          f"it with pipeline/train.py, or lower {args.task}.experiments.{args.experiment}.seeds)", file=sys.stderr)
    return SystemExit(1)


try:  # rl.shared: this experiment's protocol on the models of another, which trains identically
    protocol = shared_protocol(params, args.task, args.experiment, args.checkpoint.parent, device, args.params)
    seed_checkpoints(args.checkpoint, seeds)  # checked here, once, before torchrun starts the processes
except MissingSeedCheckpoint as err:
    raise missing_seed(err) from None
except (OSError, ValueError) as err:
    print(f"{Path(__file__).name}: error: {err}", file=sys.stderr)
    raise SystemExit(1) from None
if args.task == "rl":  # meta-RL's meta-test splits its tasks over the processes (MetaRL.parallel_meta_test)
    relaunch(__file__, sys.argv[1:], nproc)


def test_seed(checkpoint: Path, out: Path) -> None:
    """One training seed's model by the task family's protocol, into ``out``."""
    if args.task == "sine":
        test(checkpoint, args.test_set, out_dir=out, mongo_url=mongo_url, device=device)
    elif args.task == "rl":
        test(checkpoint, out_dir=out, bindings=[*protocol, *rl_test_bindings(params, args.experiment, args.params)],
             mongo_url=mongo_url, device=device)
    else:
        for name in episode_set_names(params[args.task]["experiments"], args.experiment):
            test(checkpoint, args.episodes_dir / f"{name}.pt", out_dir=out / name, mongo_url=mongo_url, device=device)


try:
    meta_test_seeds(args.checkpoint, args.out, seeds, test_seed, summarise=launched_rank() == 0)
except MissingSeedCheckpoint as err:
    raise missing_seed(err) from None
except SeedTestError as err:
    print(f"{Path(__file__).name}: error: {args.experiment}, seed {err.seed}: {err}", file=sys.stderr)
    raise SystemExit(1) from None
