"""DVC stage: the report of one params.yaml section (sine, omniglot, rl) in reports/<task>/."""

import argparse
from pathlib import Path

from metalearning.params import stage_params
from metalearning.report.sections import write_section_report

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--task", default="sine", help="params.yaml section: sine, omniglot or rl")
parser.add_argument("--metrics", type=Path, default=None, help="default: metrics/<task>")
parser.add_argument("--models", type=Path, default=None, help="default: models/<task>")
parser.add_argument("--out", type=Path, default=None, help="default: reports/<task>")
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()
stage_params(args.params)  # a bad params file: one line naming the key, exit 2
write_section_report(args.task, params_path=args.params, metrics=args.metrics, models=args.models, out=args.out)
