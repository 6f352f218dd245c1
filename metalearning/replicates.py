"""Training seeds as a pipeline axis.

An experiment of a params.yaml section trains ``seeds`` times: the primary run with params
``seed`` into ``<out>/`` (what ``adapt``, ``resume`` and the tables' per-seed rows use), and
replicates with ``seed + 1``, ``seed + 2``, … into ``<out>/replicates/seed<k>/``. Each meta-test
output folder gets the same layout, and beside every ``metrics.json`` of the primary a
``seeds.json`` with the across-seed summary: the mean over training seeds of every reported
quantity with a Student-t 95% interval across seeds (n − 1 degrees of freedom), next to each
seed's own value and its over-test-tasks interval.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from metalearning.metrics_io import read_json, write_json
from metalearning.params import experiment_entry

REPLICATES = "replicates"  # the sub-folder of a primary output folder that holds the other seeds' runs
INDEX = "seeds.json"  # <out>/replicates/seeds.json: the replicate seeds; beside a metrics.json: the summary


def training_seeds(params: dict, task: str, experiment: str) -> list[int]:
    """The training seeds of ``<task>.experiments.<experiment>`` (or ``rl.shared``): params ``seed``,
    then the next ones, as many as the experiment's ``seeds``."""
    count = int(experiment_entry(params, task, experiment)["seeds"])
    return [int(params["seed"]) + i for i in range(count)]


def replicate_dir(primary: Path, seed: int) -> Path:
    """Where the run of training seed ``seed`` of the experiment whose primary folder is ``primary`` lives."""
    return Path(primary) / REPLICATES / f"seed{seed}"


def seed_dirs(primary: Path, seeds: Sequence[int]) -> list[Path]:
    """Each training seed's folder of the experiment whose primary folder is ``primary``:
    ``primary`` itself for ``seeds[0]``, :func:`replicate_dir` for the others."""
    return [Path(primary), *(replicate_dir(primary, seed) for seed in seeds[1:])]


class MissingSeedCheckpoint(FileNotFoundError):
    """Training seed ``seed`` has no checkpoint at ``path``."""

    def __init__(self, seed: int, path: Path):
        super().__init__(f"seed {seed}'s checkpoint {path} does not exist")
        self.seed, self.path = seed, path


class SeedTestError(RuntimeError):
    """The meta-test of training seed ``seed``'s model failed; the message is the cause's."""

    def __init__(self, seed: int, cause: Exception):
        super().__init__(str(cause))
        self.seed = seed


def seed_checkpoints(checkpoint: Path, seeds: Sequence[int]) -> list[Path]:
    """Every training seed's checkpoint: the primary's ``checkpoint``, then each replicate's (the
    same file name in its :func:`replicate_dir` beside it).

    Raises:
        MissingSeedCheckpoint: the first seed whose checkpoint does not exist.
    """
    checkpoints = [folder / Path(checkpoint).name for folder in seed_dirs(Path(checkpoint).parent, seeds)]
    for seed, path in zip(seeds, checkpoints):
        if not path.is_file():
            raise MissingSeedCheckpoint(seed, path)
    return checkpoints


def meta_test_seeds(checkpoint: Path, out: Path, seeds: Sequence[int], test: Callable[[Path, Path], Any], *,
                    summarise: bool = True) -> None:
    """Meta-test every training seed's model (:func:`seed_checkpoints`): ``test(checkpoint,
    out_dir)`` for the primary's into ``out`` and for each replicate's into its folder under
    ``out``; then, if ``summarise`` (the writing process of several), the replicate index and the
    across-seed summaries (:func:`write_seed_summaries`).

    Raises:
        MissingSeedCheckpoint: a seed's checkpoint does not exist; raised before any seed is
            tested, so nothing written before is replaced by a partial set.
        SeedTestError: ``test`` raised ``FileNotFoundError`` or ``ValueError`` (a corrupt
            checkpoint, a missing test set, a bad binding); the seeds tested before keep their results.
    """
    checkpoints = seed_checkpoints(checkpoint, seeds)
    for seed, path, out_dir in zip(seeds, checkpoints, seed_dirs(out, seeds)):
        try:
            test(path, out_dir)
        except (FileNotFoundError, ValueError) as err:
            raise SeedTestError(seed, err) from err
    if summarise:
        write_replicate_index(out, seeds[1:])
        write_seed_summaries(out, seeds)


def write_replicate_index(primary: Path, seeds: Sequence[int]) -> Path:
    """``<primary>/replicates/seeds.json``: the replicate seeds (the folder exists, possibly
    holding only this file, so a pipeline can always track it)."""
    path = Path(primary) / REPLICATES / INDEX
    write_json(path, {"seeds": [int(s) for s in seeds]})
    return path


def replicate_seeds(primary: Path) -> list[int]:
    """The replicate seeds recorded by :func:`write_replicate_index` (none if it never ran)."""
    path = Path(primary) / REPLICATES / INDEX
    return [int(s) for s in read_json(path)["seeds"]] if path.is_file() else []


def _is_estimate(node: Any) -> bool:
    """A ``{<quantity>: value, "ci95": half-width}`` pair, the shape every meta-test reports."""
    return (isinstance(node, dict) and "ci95" in node and len(node) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in node.values()))


def seed_summary(per_seed: Mapping[int, Any]) -> Any:
    """The across-seed summary of one metrics file's contents, given per training seed.

    Every ``{<quantity>: v, "ci95": h}`` pair (h: that seed's interval over test tasks) becomes
    ``{<quantity>: mean over seeds, "ci95_seeds": Student-t half-width across seeds (None for one
    seed), "seeds": n, "per_seed": [v…], "ci95_per_seed": [h…]}``; other values are dropped.
    Pairs are matched by their key path; a path missing for some seed is left out.
    """
    nodes = list(per_seed.values())
    if not nodes or not all(isinstance(n, dict) for n in nodes):
        return None
    if all(_is_estimate(n) for n in nodes):
        (quantity,) = [k for k in nodes[0] if k != "ci95"]
        if any(quantity not in n for n in nodes):
            return None
        from metalearning.evaluation import mean_t_ci95

        values = [float(n[quantity]) for n in nodes]
        mean, half = mean_t_ci95(values)
        return {quantity: mean, "ci95_seeds": None if math.isnan(half) else half, "seeds": len(values),
                "per_seed": values, "ci95_per_seed": [float(n["ci95"]) for n in nodes]}
    summary = {}
    for key in sorted(set.intersection(*(set(n) for n in nodes))):
        sub = seed_summary({seed: node[key] for seed, node in per_seed.items()})
        if sub:
            summary[key] = sub
    return summary


def write_seed_summaries(primary: Path, seeds: Sequence[int]) -> list[Path]:
    """Beside every ``metrics.json`` in meta-test folder ``primary`` (outside ``replicates/``),
    write ``seeds.json``: ``{"seeds": [...], "results": seed_summary(...)}`` over the primary
    (``seeds[0]``) and the replicates' same files.

    Raises:
        FileNotFoundError: a replicate lacks a metrics file the primary has.
    """
    primary, written = Path(primary), []
    for path in sorted(primary.rglob("metrics.json")):
        relative = path.relative_to(primary)
        if relative.parts[0] == REPLICATES:
            continue
        per_seed = {seeds[0]: read_json(path)}
        for seed in seeds[1:]:
            replica = replicate_dir(primary, seed) / relative
            if not replica.is_file():
                raise FileNotFoundError(f"training seed {seed} has no {replica} (the primary has {path})")
            per_seed[seed] = read_json(replica)
        out = path.with_name(INDEX)
        write_json(out, {"seeds": [int(s) for s in seeds], "results": seed_summary(per_seed)})
        written.append(out)
    return written


def run_parallel(commands: Sequence[Sequence[str]], workers: int, poll_s: float = 0.2) -> None:
    """Run ``commands`` as child processes, at most ``workers`` at a time, in order of start.

    Raises:
        RuntimeError: a command failed (the others still running are stopped first); the message
            names the command and its exit status.
    """
    pending, running = list(commands), []
    try:
        while pending or running:
            while pending and len(running) < max(1, workers):
                command = list(pending.pop(0))
                running.append((command, subprocess.Popen(command)))
            for command, proc in list(running):
                code = proc.poll()
                if code is None:
                    continue
                running.remove((command, proc))
                if code != 0:
                    raise RuntimeError(f"exit status {code}: {' '.join(command)}")
            time.sleep(poll_s)
    finally:
        for _, proc in running:
            proc.terminate()
        for _, proc in running:
            proc.wait()


def python_command(script: str | Path, *args: str) -> list[str]:
    """The command line running ``script`` with this interpreter."""
    return [sys.executable, str(script), *map(str, args)]
