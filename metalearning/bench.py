"""Benchmarks: meta-training iterations/s of the vmap path vs the per-task loop, and the share
of a meta-iteration spent loading data.

Both paths start from the same parameters and consume the same pre-sampled meta-batches, in
one process, so the printed ratio compares like with like. Not a test: timings are noisy.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from metalearning.core.algorithms import MAML, MetaLearner, MetaSGD, meta_leaves, set_meta_grads
from metalearning.core.functional import make_loss
from metalearning.learners.mlp import MLP
from metalearning.tasks.sine import SineTasks


@dataclass
class Setting:
    name: str
    algorithm: MetaLearner
    meta_batch_size: int
    shots: int


SETTINGS = [
    Setting("sine, 25 tasks x 5 second-order MAML steps", MAML(inner_lr=0.01, inner_steps=5,
            eval_inner_steps=5, first_order=False), meta_batch_size=25, shots=10),
    Setting("sine paper setting: MAML, 4 tasks x 1 step (meta-sgd.md 4.1)", MAML(inner_lr=0.01,
            inner_steps=1, eval_inner_steps=1, first_order=False), meta_batch_size=4, shots=5),
    Setting("sine paper setting: Meta-SGD, 4 tasks x 1 step", MetaSGD(inner_lr_init=(0.005, 0.1),
            inner_steps=1, eval_inner_steps=1), meta_batch_size=4, shots=5),
]


def _run(setting: Setting, batches: list, vectorize: bool, seed: int) -> tuple[float, dict]:
    """Seconds per meta-iteration (after a warm-up) and the final meta-parameters."""
    torch.manual_seed(seed)
    model = MLP((1, 40, 40, 1), "relu", 0.01)
    loss = make_loss(model, torch.nn.functional.mse_loss)
    algo = setting.algorithm
    meta = algo.init_meta_params(dict(model.named_parameters()), torch.Generator().manual_seed(seed))
    opt = torch.optim.Adam(meta_leaves(meta), lr=1e-3)
    warmup = 3
    for i, batch in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        grads, _ = algo.meta_gradient(meta, batch, loss, vectorize=vectorize)
        set_meta_grads(meta, grads)
        opt.step()
    return (time.perf_counter() - start) / (len(batches) - warmup), meta


def main(iterations: int = 50, threads: int | None = None, seed: int = 0) -> None:
    if threads:
        torch.set_num_threads(threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {iterations} timed iterations each")
    print(f"{'setting':<62} {'vmap it/s':>10} {'loop it/s':>10} {'vmap/loop':>10} {'max |dθ|':>10}")
    for s in SETTINGS:
        gen = torch.Generator().manual_seed(seed)
        tasks = SineTasks(support_size=s.shots, query_size=10)
        batches = [tasks.sample(s.meta_batch_size, gen) for _ in range(iterations + 3)]
        t_vmap, meta_vmap = _run(s, batches, vectorize=True, seed=seed)
        t_loop, meta_loop = _run(s, batches, vectorize=False, seed=seed)
        diff = max((meta_vmap[g][k] - meta_loop[g][k]).abs().max().item() for g in meta_vmap for k in meta_vmap[g])
        print(f"{s.name:<62} {1 / t_vmap:>10.1f} {1 / t_loop:>10.1f} {t_loop / t_vmap:>10.2f} {diff:>10.2e}")


def data_share(config_files: Sequence[Path], bindings: Sequence[str] = (), *, iterations: int = 30,
               seed: int = 0) -> dict[str, float]:
    """Median seconds of the family's meta-batch (sampling tasks; meta-RL: the rollouts) and of
    the outer step (meta-gradient and optimiser step; TRPO) of the configured experiment, timed
    alternately in one run, through the trainer's own pieces."""
    from metalearning.config import load_config
    from metalearning.training import MetaTrainer, init_state

    load_config(config_files, bindings)
    torch.manual_seed(seed)
    trainer = MetaTrainer()
    state = init_state(trainer, seed)
    sample_s, step_s = [], []
    for iteration in range(iterations + 2):
        start = time.perf_counter()
        batch = trainer.tasks.meta_batch(trainer, state.meta_params, trainer.meta_batch_size, state.generator)
        middle = time.perf_counter()
        state.outer.step(batch, iteration)
        sample_s.append(middle - start)
        step_s.append(time.perf_counter() - middle)
    sample, step = statistics.median(sample_s[2:]), statistics.median(step_s[2:])
    return {"sample_s": sample, "step_s": step, "share": sample / (sample + step)}


def print_data_share(config_files: Sequence[Path], bindings: Sequence[str] = (), iterations: int = 30,
                     threads: int | None = None) -> None:
    if threads:
        torch.set_num_threads(threads)
    r = data_share(config_files, bindings, iterations=iterations)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {iterations} timed iterations")
    print(f"{'experiment':<40} {'sample ms':>10} {'step ms':>10} {'data share':>11}")
    name = ", ".join(Path(f).stem for f in config_files)
    print(f"{name:<40} {1e3 * r['sample_s']:>10.2f} {1e3 * r['step_s']:>10.1f} {100 * r['share']:>10.2f}%")


if __name__ == "__main__":
    main()
