"""torch.distributed over the meta-batch (issue 12 item 2), with 2 gloo processes on the CPU.

N processes compute the same meta-batch as one (sampling keyed by the global task index, the
shards' weighted gradients summed by an all-reduce), so in float64 the 2-process meta-gradient
equals the 1-process one to rounding (1e-12) for every algorithm and supervised family; a
20-iteration run launched with torchrun matches the 1-process run; only rank 0 writes; a rank
that dies fails the run (no hang) and leaves a resumable checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import yaml

from metalearning import commands
from metalearning.checkpoints import load_checkpoint
from metalearning.core.shards import shard_bounds, task_slice, weighted_meta_gradient
from tests import distributed_workers as workers
from tests.conftest import REPO
from tests.test_families import ALGORITHMS, FAMILIES, REFUSED

SINE = [REPO / "configs" / "experiments" / "maml_sine_5shot.gin"]
SHORT = ["MetaTrainer.meta_iterations = 20", "MetaTrainer.log_every = 5", "MetaTrainer.meta_batch_size = 5",
         "MetaTrainer.meta_val_tasks = 4"]


def _records(runs_dir: Path) -> list[dict]:
    """Sacred's file-store records: run.json with the run's config.json as ``config``."""
    found = []
    for run in sorted(p for p in runs_dir.iterdir() if p.name.isdigit()):
        found.append({**json.loads((run / "run.json").read_text()),
                      "config": json.loads((run / "config.json").read_text())})
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, *args, world: int = 2) -> None:
    mp.start_processes(fn, args=(world, _free_port(), *args), nprocs=world, start_method="spawn", join=True)


def test_shards_sum_to_the_whole_meta_batch_gradient(small_model):
    """The identity the processes rely on, in one process: Σ_shards (n_j/n)·mean_j = mean (float64),
    for shards of any size and chunks of any size, MAML's second-order gradient included."""
    from metalearning.core.algorithms import MAML
    from metalearning.core.functional import make_loss
    from metalearning.tasks.sine import SineTasks

    loss = make_loss(small_model, torch.nn.functional.mse_loss)
    algo = MAML(inner_lr=0.01, inner_steps=2, eval_inner_steps=2, first_order=False)
    meta = algo.init_meta_params(dict(small_model.named_parameters()), torch.Generator())
    tasks = SineTasks(support_size=5, query_size=5).sample(7, torch.Generator().manual_seed(1), dtype=torch.float64)
    whole, whole_loss = algo.meta_gradient(meta, tasks, loss)
    for world, chunk in ((2, None), (3, 2), (7, 1), (1, 3)):
        total = {k: torch.zeros_like(v) for k, v in whole["theta"].items()}
        total_loss = 0
        for rank in range(world):
            start, stop = shard_bounds(7, rank, world)
            g, part = weighted_meta_gradient(algo, meta, task_slice(tasks, start, stop), loss, total=7, chunk=chunk)
            total = {k: total[k] + g["theta"][k] for k in total}
            total_loss = total_loss + part
        for k in total:
            torch.testing.assert_close(total[k], whole["theta"][k], rtol=0, atol=1e-12)
        torch.testing.assert_close(total_loss, whole_loss, rtol=0, atol=1e-12)


def test_shard_bounds_cover_the_meta_batch_once():
    for n in (1, 5, 32):
        for world in range(1, min(n, 5) + 1):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert [i for a, b in bounds for i in range(a, b)] == list(range(n))
            assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_two_processes_give_the_one_process_meta_update_for_every_algorithm_and_family(tmp_path):
    """float64, one meta-iteration of 3 tasks (shares of 2 and 1): the gradient rule's meta-gradient
    and, for meta-RL, the rollouts' returns and TRPO's update (its gradient, CG on the summed
    Hessian-vector products, the line search on summed losses, also in batches of trials) equal
    one process's to 1e-12."""
    cases = []
    for family in FAMILIES:
        for algo in ALGORITHMS:
            if (algo, family) in REFUSED:
                continue
            configs, bindings, _ = FAMILIES[family](algo, tmp_path / f"{family}_{algo}")
            size = "meta_batch_size = 3" if family == "rl" else "MetaTrainer.meta_batch_size = 3"
            if (algo, family) == ("reptile", "fewshot"):  # persistent moments chain the tasks: one process only
                bindings = [*bindings, "Reptile.persistent_moments = False"]
            cases.append((f"{algo}-{family}", configs, [*bindings, size]))
            if (algo, family) == ("maml", "rl"):  # the line search's trials in batches: summed [2, trials]
                cases.append(("maml-rl-ls_batch", configs, [*bindings, size, "TRPO.ls_batch = 3"]))
    _spawn(workers.float64_meta_gradients, cases, str(tmp_path))
    workers.float64_meta_gradients(0, 1, 0, cases, str(tmp_path))
    one = torch.load(tmp_path / "grads_1_0.pt")
    ranks = [torch.load(tmp_path / f"grads_2_{r}.pt") for r in range(2)]
    assert len(one) == 17
    for name, single in one.items():
        assert single["params"][0].dtype == torch.float64
        assert any((p - q).abs().max() > 0 for p, q in zip(single["params"], single["initial"])), name  # a step
        if single["grads"] is not None:
            assert any(g.abs().max() > 0 for g in single["grads"]), name  # a real gradient, not zeros
        for shared in ranks:
            for a, b in zip(single["grads"] or [], shared[name]["grads"] or []):
                torch.testing.assert_close(b, a, rtol=0, atol=1e-12, msg=f"{name} meta-gradient")
            # the sums' last-bit differences are amplified by the step itself: Adam's g/(|g| + ε) on
            # near-zero entries (~1e-11 here) and TRPO's conjugate-gradient solve (~1e-8)
            for a, b in zip(single["params"], shared[name]["params"]):
                torch.testing.assert_close(b, a, rtol=0, atol=1e-7, msg=f"{name} updated meta-parameters")
            # meta-RL: the rollouts' returns, TRPO's surrogate and its gradient norm before the step
            before = {k: v for k, v in single["scalars"].items() if not k.startswith(("trpo.kl", "trpo.loss_after"))}
            assert {k: shared[name]["scalars"][k] for k in before} == pytest.approx(before, rel=1e-12, abs=1e-12), name


def test_sharded_navigation_rollouts_end_where_one_process_ends_them(tmp_path):
    """Processes agree on when every episode has ended with one collective per
    SHARDED_FINISH_CHECK steps: their episodes and random stream equal one process's, whether the
    last episode ends before the first check (step 3), after it (step 13, on rank 1 only; rank 0's
    ended at step 3), on a check step (10), or never (the horizon, 25)."""
    from metalearning.rl.rollouts import SHARDED_FINISH_CHECK

    assert SHARDED_FINISH_CHECK == 10  # the step counts below straddle its checks
    cases = [([[0.25, 0.0], [0.0, 0.05], [-0.2, 0.1]], 40),  # ends at step 3, on both ranks
             ([[0.25, 0.0], [0.0, 0.05], [0.0, 1.25]], 40),  # step 13, rank 1's task
             ([[0.95, 0.0], [0.0, 0.05], [0.3, 0.0]], 40),   # step 10, rank 0's task
             ([[5.0, 5.0], [0.0, 0.05], [0.3, 0.0]], 25)]    # the horizon
    _spawn(workers.sharded_navigation, cases, str(tmp_path))
    workers.sharded_navigation(0, 1, 0, cases, str(tmp_path))
    one = torch.load(tmp_path / "navigation_1_0.pt")
    ranks = [torch.load(tmp_path / f"navigation_2_{r}.pt") for r in range(2)]
    lengths = [int(case["episodes"][3].sum(dim=1).max()) for case in one]  # mask: steps taken
    assert lengths == [3, 13, 10, 25]
    for index, single in enumerate(one):
        for shared in ranks:
            start, stop = shared[index]["tasks"]
            for got, want in zip(shared[index]["episodes"], single["episodes"]):
                assert torch.equal(got, want[start:stop]), (index, start)
            assert torch.equal(shared[index]["state"], single["state"]), index  # the same draws taken


def _train_kwargs(tmp_path: Path, name: str, extra=()) -> dict:
    return {"config_files": SINE, "bindings": [*SHORT, *extra], "seed": 3, "out_dir": tmp_path / name,
            "runs_dir": tmp_path / f"{name}_runs", "progress": False, "checkpoint_every": 5}


def _torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m metalearning ARGS`` (the user's command)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "metalearning",
           *args]
    done = subprocess.run(cmd, cwd=cwd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    """A 20-iteration sine MAML run under torchrun with 2 processes (seed 3, checkpoints every 5)."""
    tmp_path = tmp_path_factory.mktemp("torchrun")
    _torchrun(tmp_path, "train", "--config", str(SINE[0]), *[a for b in SHORT for a in ("--bind", b)], "--seed", "3",
              "--out", str(tmp_path / "two"), "--runs-dir", str(tmp_path / "two_runs"), "--quiet",
              "--checkpoint-every", "5")
    return tmp_path


def test_torchrun_matches_one_process_and_only_rank_0_writes(two_process_run, tmp_path):
    single = commands.train(**_train_kwargs(tmp_path, "one"))
    two = json.loads((two_process_run / "two" / "train_metrics.json").read_text())
    assert two["meta_iterations"] == 20
    assert two["final_meta_train_loss"] == pytest.approx(single["final_meta_train_loss"], rel=1e-5)
    p1, p2 = (load_checkpoint(d / "checkpoint.pt")["meta_params"]["theta"]
              for d in (tmp_path / "one", two_process_run / "two"))
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6)
    runs = _records(two_process_run / "two_runs")
    assert len(runs) == 1 and runs[0]["config"]["processes"] == 2  # one record: rank 0's
    assert sorted(p.name for p in (two_process_run / "two").iterdir()) == sorted(commands.RUN_FILES)
    assert not (two_process_run / "runs").exists()  # the other rank wrote no default run store in its cwd


def test_a_dying_rank_fails_the_run_without_a_hang_and_the_checkpoint_resumes(two_process_run, tmp_path, monkeypatch):
    monkeypatch.setenv("METALEARNING_DIST_TIMEOUT", "60")
    kwargs = _train_kwargs(tmp_path, "run")
    context = mp.start_processes(workers.train_command, args=(2, _free_port(), kwargs, 7), nprocs=2,
                                 start_method="spawn", join=False)
    rank0, rank1 = context.processes
    rank0.join(timeout=120)  # rank 0 notices the dead peer by itself, well before the timeout
    assert not rank0.is_alive(), "rank 0 hangs after its peer died"
    rank1.join(timeout=10)
    assert rank1.exitcode == 9 and rank0.exitcode == 1  # rank 0 failed with an error, not a signal
    saved = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert saved["iteration"] == 5  # the last checkpoint before the death, intact
    runs = _records(tmp_path / "run_runs")
    assert [r["status"] for r in runs] == ["FAILED"]
    assert "ProcessLost: another of the run's 2 processes died" in "".join(runs[0]["fail_trace"])
    # resumed under torchrun, the run ends bit-identical to the uninterrupted 2-process run
    _torchrun(tmp_path, "resume", "--checkpoint", str(tmp_path / "run" / "checkpoint.pt"), "--runs-dir",
              str(tmp_path / "run_runs"), "--quiet", "--checkpoint-every", "5")
    resumed = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    uninterrupted = load_checkpoint(two_process_run / "two" / "checkpoint.pt")
    assert resumed["iteration"] == uninterrupted["iteration"] == 20
    for k, p in uninterrupted["meta_params"]["theta"].items():
        assert torch.equal(resumed["meta_params"]["theta"][k], p), k
    assert [r["status"] for r in _records(tmp_path / "run_runs")] == ["FAILED", "COMPLETED"]


def test_a_training_stage_with_nproc_2_relaunches_itself_under_torchrun(tmp_path):
    """params.yaml ``nproc`` (issue 12): the stage script is its own launcher."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["cpu"].update(sine_meta_iterations=6, nproc=2)
    params["sine"]["experiments"]["maml_sine_5shot"]["seeds"] = 1  # one torchrun launch (training seeds: test_pipeline)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "configs").symlink_to(REPO / "configs")
    env = {**os.environ, "PYTHONPATH": str(REPO), "METALEARNING_NUMERICS": params["numerics"]}  # as dvc.yaml does
    done = subprocess.run([sys.executable, str(REPO / "pipeline" / "train.py"), "--task", "sine", "--experiment",
                           "maml_sine_5shot", "--out", "model"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "model" / "train_metrics.json").read_text())["meta_iterations"] == 6
    runs = _records(tmp_path / "runs")
    assert len(runs) == 1 and runs[0]["config"]["processes"] == 2


def test_a_training_stage_with_nproc_2_refuses_a_used_output_folder_in_one_line(tmp_path):
    """The launcher checks --out before it starts torchrun: one line, no rank's traceback, the
    other run's file kept."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["cpu"].update(nproc=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "configs").symlink_to(REPO / "configs")
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "checkpoint.pt").write_bytes(b"another run's")
    env = {**os.environ, "PYTHONPATH": str(REPO), "METALEARNING_NUMERICS": params["numerics"]}
    done = subprocess.run([sys.executable, str(REPO / "pipeline" / "train.py"), "--task", "sine", "--experiment",
                           "maml_sine_5shot", "--out", "model", "--seed", "0"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    err = done.stderr.strip()
    assert done.returncode == 1 and err.splitlines() == [err], err
    assert err == ("train.py: error: maml_sine_5shot: output folder model is not empty (checkpoint.pt); choose "
                   "another --out, or pass --force to replace the run in it")
    assert (tmp_path / "model" / "checkpoint.pt").read_bytes() == b"another run's" and not (tmp_path / "runs").exists()


def test_meta_rl_trains_in_two_processes_like_in_one(tmp_path):
    """Meta-RL under torchrun: each process rolls out its tasks; 4 meta-iterations (float32) match
    one process's run closely (the per-task baseline fits differ in the last float32 bits)."""
    from tests.test_families import RL_ALGORITHM, RL_NAV, RL_TINY

    bindings = [*RL_TINY, *RL_ALGORITHM["maml"], "meta_batch_size = 3", "MetaTrainer.meta_iterations = 4"]
    single = commands.train([RL_NAV], bindings, seed=1, out_dir=tmp_path / "one", runs_dir=tmp_path / "runs1",
                            progress=False)
    _torchrun(tmp_path, "train", "--config", str(RL_NAV), *[a for b in bindings for a in ("--bind", b)], "--seed", "1",
              "--out", str(tmp_path / "two"), "--runs-dir", str(tmp_path / "runs2"), "--quiet")
    two = json.loads((tmp_path / "two" / "train_metrics.json").read_text())
    for key in ("final_meta_train_pre_update_return", "final_meta_train_post_update_return", "best_iteration"):
        assert two[key] == pytest.approx(single[key], rel=1e-4), key
    assert len(_records(tmp_path / "runs2")) == 1


def test_meta_batch_chunks_give_the_same_training(tmp_path):
    """MetaTrainer.meta_batch_chunk changes peak memory, not the run (to float32 rounding)."""
    whole = commands.train(**_train_kwargs(tmp_path, "whole"))
    chunked = commands.train(**_train_kwargs(tmp_path, "chunked", ["MetaTrainer.meta_batch_chunk = 2"]))
    assert chunked["final_meta_train_loss"] == pytest.approx(whole["final_meta_train_loss"], rel=1e-5)
    p1, p2 = (load_checkpoint(tmp_path / d / "checkpoint.pt")["meta_params"]["theta"] for d in ("whole", "chunked"))
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6)


def test_a_meta_rl_meta_test_in_two_processes_writes_one_process_files(tmp_path):
    """``torchrun ... metalearning test`` on a meta-RL model: each process rolls out and adapts its
    share of every chunk of new tasks (7 tasks in chunks of 4 and 3, split 2 + 2 and 2 + 1), and
    rank 0 writes the files one process writes, with one Sacred record. The same tasks and noise:
    the numbers differ at most by float32 rounding (the policy's products on 6 rows instead of 12
    may take another kernel; at the pipeline's sizes the files are byte-identical)."""
    from tests.test_families import RL_NAV, RL_TINY

    commands.train([RL_NAV], RL_TINY, seed=1, out_dir=tmp_path / "model", runs_dir=tmp_path / "train_runs",
                   progress=False)
    checkpoint = tmp_path / "model" / "checkpoint.pt"
    bindings = ["eval_tasks = 7", "meta_test/AdaptationEval.chunk_size = 4", "eval_trajectories = 3",
                "BatchNavigation2D.horizon = 30"]
    commands.test(checkpoint, out_dir=tmp_path / "one", runs_dir=tmp_path / "runs1", bindings=bindings)
    _torchrun(tmp_path, "test", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "two"), "--runs-dir",
              str(tmp_path / "runs2"), *[a for b in bindings for a in ("--bind", b)])
    files = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert files == ["curves.json", "metrics.json", "trajectories.json"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == files
    one, two = ({name: json.loads((tmp_path / d / name).read_text()) for name in files} for d in ("one", "two"))
    assert two["trajectories.json"] == one["trajectories.json"]  # the plotted paths: one process's in each
    for key, value in one["metrics.json"].items():
        assert two["metrics.json"][key] == (pytest.approx(value, rel=1e-5) if isinstance(value, dict) else value), key
    assert one["metrics.json"]["tasks"] == 7
    for key, value in one["curves.json"].items():
        assert two["curves.json"][key] == (pytest.approx(value, rel=1e-5) if key.startswith("return_") else value), key
    runs = _records(tmp_path / "runs2")
    assert len(runs) == 1 and runs[0]["config"]["processes"] == 2 and runs[0]["status"] == "COMPLETED"
    assert _records(tmp_path / "runs1")[0]["config"]["processes"] == 1


def test_a_meta_test_that_runs_in_one_process_refuses_several(tmp_path, monkeypatch):
    """Sine's and few-shot's meta-tests are not split: under torchrun ``test`` says so in one line,
    before anything is recorded."""
    from metalearning import distributed

    commands.train(**_train_kwargs(tmp_path, "sine", ["MetaTrainer.meta_iterations = 1"]))
    monkeypatch.setattr(commands, "join_processes", lambda: distributed.World(0, 2))
    test_set = tmp_path / "sine_test.pt"
    with pytest.raises(ValueError, match=r"^the sine meta-test runs in one process, not in 2: run `metalearning "
                                         r"test` without torchrun$"):
        commands.test(tmp_path / "sine" / "checkpoint.pt", test_set, out_dir=tmp_path / "t", runs_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists() and not (tmp_path / "t").exists()


def test_a_batch_with_fewer_tasks_than_processes_is_refused(monkeypatch):
    from metalearning import distributed
    from metalearning.rl.meta_rl import process_share

    monkeypatch.setattr(distributed, "world", lambda: distributed.World(1, 3))
    goals = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"^2 tasks cannot be split over 3 processes \(each needs at least one\): "
                                         r"sample more tasks at once or run fewer processes$"):
        process_share(goals, torch.Generator())
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(2, 3))
    share, generator = process_share(torch.arange(8.0).view(4, 2), torch.Generator())
    assert share.tolist() == [[6.0, 7.0]] and generator.shard == (3, 4, 4)
