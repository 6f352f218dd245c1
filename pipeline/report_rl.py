"""DVC stage: the meta-RL report (tables beside the papers' numbers, plots) in reports/rl/."""

import argparse
from pathlib import Path

from metalearning.params import load_params
from metalearning.rl.report import load_rl_results, write_rl_report

parser = argparse.ArgumentParser(description=__doc__)
parser.add_argument("--metrics", type=Path, default=Path("metrics/rl"))
parser.add_argument("--models", type=Path, default=Path("models/rl"))
parser.add_argument("--out", type=Path, default=Path("reports/rl"))
parser.add_argument("--params", type=Path, default=Path("params.yaml"))
args = parser.parse_args()

params = load_params(args.params)
section, profile = params["rl"], params["profile"]
missing = sorted(set(section["locomotion"]) - set(section["experiments"]))
notes = [
    f"Profile `{profile}`: " + ("the experiment files' (papers') budgets." if profile != "cpu" else
                                "the papers' sizes (policy, meta-batch, trajectories, meta-test protocol) with "
                                "fewer meta-iterations, params.yaml `rl.experiments.<name>.cpu` (the papers: up to "
                                "500 for MAML, 100 for Meta-SGD's comparison)."),
    "Differences from the papers: TRPO's Hessian-vector products are exact (MAML used finite differences); the "
    "pretrained and random-init baselines are fine-tuned with MAML's α = 0.1 (halved after the first step) instead "
    "of a hand-tuned step size; Meta-SGD's α starts at 0.1 everywhere (its paper gives no RL initialisation).",
    f"Every model's new tasks and episodes are drawn with the same seed (params.yaml `rl.meta_test_seed` = "
    f"{section['meta_test_seed']}): all models of a task family meet the same 600 tasks.",
    "MAML's Table 4 curve is published for the squared-distance reward, but its 0-step return (−40.41) is what "
    "the distance-reward variant gives here (`maml_nav2d_fixed`: see its 0-step column), and MAML's rllab code "
    "computes −distance: the published curve was probably measured with the distance reward.",
]
if missing:
    notes.append(f"Not run in this profile: {', '.join(f'`{m}`' for m in missing)} (MuJoCo locomotion, paper profile).")
results = load_rl_results(list(section["experiments"]), args.metrics, args.models)
write_rl_report(results, args.out, notes=notes)
