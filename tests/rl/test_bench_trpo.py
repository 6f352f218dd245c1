"""``metalearning bench --trpo``: every Hessian-vector-product method timed on the same meta-batches,
phases printed, and the exact methods' steps equal to rounding (not a timing test)."""

from __future__ import annotations

import re
from pathlib import Path

from metalearning.cli import main

EXPERIMENT = Path(__file__).resolve().parents[2] / "configs" / "rl" / "experiments" / "maml_nav2d.gin"

TINY = ["GaussianMLPPolicy.hidden = (16,)", "meta_batch_size = 3", "trajectories = 4", "TRPO.cg_iters = 3",
        "BatchNavigation2D.horizon = 20"]


def test_bench_trpo_prints_the_split_for_every_hvp_method(capsys):
    binds = [arg for b in TINY for arg in ("--bind", b)]
    assert main(["bench", "--trpo", "--config", str(EXPERIMENT), *binds,
                 "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert "maml_nav2d: 3 tasks x 4 trajectories, MAML" in out and "median of 2" in out
    header = next(line for line in out.splitlines() if line.startswith("hvp"))
    for column in ("setup ms", "cg ms", "line search ms", "iteration ms", "x direct"):
        assert column in header
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("composed", "direct", "finite_difference")}
    assert set(rows) == {"composed", "direct", "finite_difference"}
    assert rows["direct"][-2] == "1.00x" and float(rows["direct"][-1]) == 0.0
    assert float(rows["composed"][-1]) < 1e-3  # the same exact step, up to float32 rounding
    assert all(re.fullmatch(r"\d+\.\d\dx", row[-2]) for row in rows.values())
    # the line search by trials per pass, on the same full steps: the sequential search's step every time
    header = next(line for line in out.splitlines() if line.startswith("ls_batch"))
    for column in ("ms", "passes", "trials", "x ls_batch 1", "same step"):
        assert column in header
    searches = {line.split()[0]: line.split() for line in out.splitlines()
                if line.split() and line.split()[0] in ("1", "2", "4")}
    assert set(searches) == {"1", "2", "4"} and all(row[-1] == "yes" for row in searches.values())
    for batch, row in searches.items():  # passes ⌈trials / batch⌉ of the sequential search's trials
        assert float(row[2]) <= float(searches["1"][2]) and float(row[3]) >= float(searches["1"][3])
