"""DVC stage: the sine report (tables beside the papers' values, plots) in reports/sine/."""

import argparse
from pathlib import Path

from metalearning.params import active_profile, load_params
from metalearning.report.sine import load_results, write_report

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--metrics", type=Path, default=Path("metrics/sine"))
parser.add_argument("--models", type=Path, default=Path("models/sine"))
parser.add_argument("--out", type=Path, default=Path("reports/sine"))
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = load_params(args.params)
budget = active_profile(params).get("sine_meta_iterations")
note = (f"Budget: every sine experiment was trained for {budget} meta-iterations (params.yaml "
        f"`profiles.{params['profile']}.sine_meta_iterations`); the papers use 60000 (Reptile's demo 30000)."
        if budget else "Budget: each experiment file's own (the papers') meta-iterations.")
results = load_results(list(params["sine"]["experiments"]), args.metrics, args.models)
write_report(results, args.out, profile=params["profile"], params_note=note, meta_test=params["sine"]["meta_test"])
