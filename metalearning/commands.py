"""The platform's commands as importable functions, for every task family; the CLI and the
pipeline stages call these. The family comes from the config or checkpoint, never the verb."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import gin
import torch

from metalearning import devices, distributed
from metalearning.config import build, config_as_dict, load_config
from metalearning.metrics_io import CurveRecorder, write_json
from metalearning.model import load_model
from metalearning.runs import DEFAULT_RUNS_DIR, recorded_run
from metalearning.training import (
    CheckpointPolicy,
    MetaTrainer,
    TrainingState,
    TrainResult,
    init_state,
    meta_train,
    save_state,
)

RUN_FILES = ("checkpoint.pt", "config.gin", "operative_config.gin", "learning_curve.csv", "train_metrics.json")


def train(config_files: Sequence[Path], bindings: Sequence[str] = (), *, seed: int, out_dir: Path,
          runs_dir: Path = DEFAULT_RUNS_DIR, progress: bool = True, checkpoint_every: int = 1000,
          mongo_url: str | None = None, force: bool = False, device: str | None = None) -> dict:
    """Meta-train the experiment described by ``config_files`` (+ ``bindings``) into ``out_dir``.

    Writes ``checkpoint.pt`` (also every ``checkpoint_every`` iterations and on Ctrl-C),
    ``config.gin`` (all bindings), ``operative_config.gin``, ``learning_curve.csv`` and
    ``train_metrics.json``; records a Sacred run (also to MongoDB at ``mongo_url``, if given).
    ``device`` binds ``MetaTrainer.device``. Under torchrun every process runs this; they share
    the meta-batch (:mod:`metalearning.distributed`) and only rank 0 writes.

    Raises:
        ValueError: ``out_dir`` already holds files and ``force`` is not set (a folder's files
            always belong to one run; with ``force`` the old run's files are removed first), or
            ``checkpoint_every`` < 1, or the config is invalid; all before anything is recorded.
    """
    if checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be a positive number of meta-iterations, got {checkpoint_every}")
    bindings = [*bindings, *devices.binding(device)]
    config_text = load_config(config_files, bindings)
    join_processes()
    origin = f"gin config {', '.join(map(str, config_files))}" + (f" + {list(bindings)}" if bindings else "")
    with all_processes_ready():
        if distributed.world().writer:
            _claim(Path(out_dir), force)
        with torch.random.fork_rng():  # check the whole config (and the algorithm × family) before any record
            build(MetaTrainer, origin)
    config = {"seed": seed, "gin_files": [str(f) for f in config_files], "gin_bindings": list(bindings),
              "checkpoint_every": checkpoint_every, "processes": distributed.world().size, "gin": config_as_dict()}

    def start() -> tuple[MetaTrainer, TrainingState, dict]:
        torch.manual_seed(seed)  # the learner's initial weights
        trainer = MetaTrainer()
        return trainer, init_state(trainer, seed), {}

    return _record_training(config_text, config, start, seed=seed, out_dir=Path(out_dir), runs_dir=runs_dir,
                            progress=progress, mongo_url=mongo_url)


def join_processes() -> distributed.World:
    """Join torchrun's process group (when launched by it), on the configured device's backend."""
    try:
        spec = gin.query_parameter("MetaTrainer.device")
    except ValueError:  # not bound: MetaTrainer's default
        spec = "cpu"
    return distributed.init_from_env(devices.resolve(spec, "MetaTrainer.device"))


@contextmanager
def all_processes_ready() -> Iterator[None]:
    """Checks every process makes before any compute: if one fails, all stop (none waits for it)."""
    try:
        yield
    except BaseException:
        distributed.all_agree(False)
        raise
    if not distributed.all_agree(True):
        raise RuntimeError(f"another process (of {distributed.world().size}) failed its checks before training; "
                           "rank 0's error says why")


def check_output_folder(out_dir: Path) -> None:
    """Refuse an output folder holding another run's files (what :func:`train` does without ``force``).

    Raises:
        ValueError: one line naming the folder and some of the files in it.
    """
    # hidden files are not a run's (DVC keeps a .gitignore for the cached checkpoint there), nor are
    # folders (a pipeline stage keeps its other training seeds' runs in replicates/)
    out_dir = Path(out_dir)
    present = (sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(".") and not p.is_dir())
               if out_dir.is_dir() else [])
    if present:
        raise ValueError(f"output folder {out_dir} is not empty ({', '.join(present[:5])}); choose another --out, "
                         "or pass --force to replace the run in it")


def _claim(out_dir: Path, force: bool) -> None:
    """Refuse an output folder holding another run's files, unless ``force`` (then remove them)."""
    if not force:
        check_output_folder(out_dir)
    for name in RUN_FILES if force else ():
        (out_dir / name).unlink(missing_ok=True)


def resume(checkpoint: Path, *, out_dir: Path | None = None, runs_dir: Path = DEFAULT_RUNS_DIR, progress: bool = True,
           checkpoint_every: int = 1000, mongo_url: str | None = None, device: str | None = None) -> dict:
    """Continue a killed or interrupted run of any family from ``checkpoint`` to the end of its budget.

    The continuation is a new Sacred run linked to the old one by ``resumed_from`` (checkpoint
    path and Sacred run id) and ``resumed_at_iteration``; its metrics start after that iteration.
    On CPU the final parameters and metrics are bit-identical to an uninterrupted run (with the
    same number of processes). ``device`` overrides the device the run was trained on. Under
    torchrun every process reads the checkpoint (a filesystem all nodes share).
    """
    if checkpoint_every < 1:
        raise ValueError(f"--checkpoint-every must be a positive number of meta-iterations, got {checkpoint_every}")
    model = load_model(checkpoint, device=device)  # every process reads the same file: fails alike
    join_processes()
    saved = model.checkpoint
    if "training_state" not in saved:
        raise ValueError(f"checkpoint {checkpoint} holds no training state to resume from")
    config = {"seed": model.seed, "resumed_from": {"checkpoint": str(checkpoint),
                                                   "sacred_run_id": saved.get("sacred_run_id")},
              "resumed_at_iteration": model.iteration, "checkpoint_every": checkpoint_every,
              "processes": distributed.world().size, "gin": config_as_dict()}

    def start() -> tuple[MetaTrainer, TrainingState, dict]:
        state = init_state(model.trainer, model.seed)
        state.load_state_dict(saved["training_state"], saved["meta_params"])
        return model.trainer, state, saved["learning_curve"]

    return _record_training(saved["gin_config"], config, start, seed=model.seed,
                            out_dir=Path(out_dir or Path(checkpoint).parent), runs_dir=runs_dir,
                            progress=progress, mongo_url=mongo_url)


def _record_training(config_text: str, config: dict, start: Callable[[], tuple[MetaTrainer, TrainingState, dict]],
                     *, seed: int, out_dir: Path, runs_dir: Path, progress: bool, mongo_url: str | None) -> dict:
    if not distributed.world().writer:  # the other processes compute their shards and write nothing
        trainer, state, _ = start()
        result = meta_train(trainer, state, sink=CurveRecorder(), val_tasks=trainer.validation_tasks(seed),
                            progress=False)
        return train_summary(trainer, result, state)

    def body(run) -> dict:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.gin").write_text(config_text)
        run.add_artifact(str(out_dir / "config.gin"))
        trainer, state, curve_rows = start()
        curve = CurveRecorder(forward=run)
        curve.rows.update(curve_rows)
        policy = CheckpointPolicy(out_dir / "checkpoint.pt", config["checkpoint_every"],
                                  extra={"gin_config": config_text, "seed": seed, "sacred_run_id": run._id,
                                         "learning_curve": curve.rows})  # live: saved as it grows
        result = meta_train(trainer, state, sink=curve, val_tasks=trainer.validation_tasks(seed), checkpoint=policy,
                            progress=progress)
        save_state(policy, state)
        return _write_training_outputs(run, out_dir, curve, trainer, result, state)

    result, _ = recorded_run("meta-train", body, config=config, runs_dir=runs_dir, mongo_url=mongo_url)
    return result


def train_summary(trainer: MetaTrainer, result: TrainResult, state: TrainingState) -> dict[str, float]:
    """``train_metrics.json``: the budget, the last logged value of every learning-curve column
    (``final_<column>``), and for families that select, the best iteration and its score."""
    metrics = {"meta_iterations": result.iterations,
               **{f"final_{name.replace('.', '_')}": value for name, value in result.logged.items()}}
    if trainer.tasks.selects_best:
        metrics["best_iteration"] = state.best_iteration
        if result.best_iteration is not None:
            metrics[f"best_{trainer.tasks.score_name}"] = state.best_score
    return metrics


def _write_training_outputs(run, out_dir: Path, curve: CurveRecorder, trainer: MetaTrainer, result: TrainResult,
                            state: TrainingState) -> dict:
    (out_dir / "operative_config.gin").write_text(gin.operative_config_str())
    curve.write_csv(out_dir / "learning_curve.csv")
    for name in ("operative_config.gin", "checkpoint.pt", "learning_curve.csv"):
        run.add_artifact(str(out_dir / name))
    metrics = train_summary(trainer, result, state)
    write_json(out_dir / "train_metrics.json", {**metrics, "sacred_run_id": run._id})
    return metrics


def test(checkpoint: Path, test_set: Path | None = None, *, out_dir: Path, runs_dir: Path = DEFAULT_RUNS_DIR,
         bindings: Sequence[str] = (), mongo_url: str | None = None, device: str | None = None) -> dict:
    """Meta-test ``checkpoint`` by its family's protocol; writes its JSON files to ``out_dir``.

    Args:
        test_set: the fixed test set the family needs (sine: a ``split-sine`` file; few-shot: an
            episode set); meta-RL draws its new tasks from ``MetaRL.eval_seed`` and takes none.
        bindings: gin bindings applied over the stored config (e.g. ``MetaRL.eval_seed = 1``).
        device: where to meta-test (default: where the model was trained).

    Under torchrun a family whose meta-test splits its work (``parallel_meta_test``: meta-RL)
    runs it in every process, each with its share; only rank 0 records and writes.

    Raises:
        ValueError: under torchrun, a family whose meta-test runs in one process.
    """
    model, out_dir = load_model(checkpoint, bindings, device=device), Path(out_dir)
    processes = join_processes()
    if processes.size > 1 and not model.family.parallel_meta_test:
        raise ValueError(f"the {model.family.kind} meta-test runs in one process, not in {processes.size}: run "
                         "`metalearning test` without torchrun")
    if not processes.writer:  # the other processes compute their share and write nothing
        return model.family.meta_test(model, test_set).result
    config = {"seed": model.seed, "checkpoint": str(checkpoint), "gin_bindings": list(bindings),
              "test_set": None if test_set is None else str(test_set), "processes": processes.size,
              "gin": config_as_dict()}

    def body(run) -> dict:
        outcome = model.family.meta_test(model, test_set)
        for name, data in outcome.files.items():
            write_json(out_dir / name, data)
            run.add_artifact(str(out_dir / name), name=f"meta_test_{name}")
        return outcome.result

    result, _ = recorded_run("meta-test", body, config=config, runs_dir=runs_dir, mongo_url=mongo_url)
    return result
