"""DVC stage: the few-shot classification report of one task (e.g. reports/omniglot/)."""

import argparse
from pathlib import Path

from metalearning.params import episode_set_names, load_params, omniglot_variant
from metalearning.report.fewshot import load_fewshot_results, write_fewshot_report

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", required=True, help="params.yaml section, e.g. omniglot")
parser.add_argument("--metrics", type=Path, default=None, help="default: metrics/<task>")
parser.add_argument("--models", type=Path, default=None, help="default: models/<task>")
parser.add_argument("--out", type=Path, required=True)
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = load_params(args.params)
section = params[args.task]
profile = params["profile"]
notes = [f"Profile `{profile}`. Training budgets and sizes: each row's meta-iterations × meta-batch; "
         f"the experiment files hold the papers' settings and params.yaml `{args.task}.experiments.<name>.{profile}` "
         "lists what this profile changes." if profile == "cpu" else
         f"Profile `{profile}`: the experiment files' (papers') settings."]
if args.task == "omniglot":
    variant = omniglot_variant(params, args.params)
    notes.append(f"Data: Omniglot `{variant}` (`small` = images_background_small1 ∪ small2, 242 characters of 8 "
                 "alphabets; `full` = 1623 characters), characters split in the papers' 1200/1623 proportion "
                 f"(seed {section['split_seed']}), rotations by 90° as extra classes. The papers' numbers are on "
                 "full Omniglot with their own splits: comparable in kind, not digit for digit.")
notes.append("Validation (learning curves) uses episodes of the meta-training classes; the Omniglot split has no "
             "validation classes.")
tests = {name: episode_set_names(section["experiments"], name) for name in section["experiments"]}
results = load_fewshot_results(tests, args.metrics or Path("metrics") / args.task,
                               args.models or Path("models") / args.task)
write_fewshot_report(results, args.out, dataset=args.task, title=f"{args.task.capitalize()} few-shot classification",
                     notes=notes)
