"""Fixed, seeded sine meta-test sets (meta-sgd.md §4.1 protocol).

For each K: ``curves`` sine curves; for each curve ``repeats`` independent draws of K support
inputs, and one set of query inputs evenly spaced over the input range. The same file is
used by every algorithm, so their numbers are comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from metalearning.core.task import Task
from metalearning.tasks.sine import SineTasks
from metalearning.tensorfile import load_versioned, save_versioned

FORMAT_VERSION = 1


def build_meta_test_set(tasks: SineTasks, *, shots: Sequence[int], curves: int, repeats: int,
                        seed: int) -> dict:
    """Sample the meta-test set; ``tasks`` supplies p(T), the input range and the query grid.

    The same ``curves`` are used for every K, so the testing-shot columns are comparable.

    Returns:
        ``{"version", "seed", "shots": {K: {"curves": [C,3], "support_x": [C,R,K,1],
        "support_y", "query_x": [C,Q,1], "query_y"}}}`` (float64 tensors; curves as A, ω, b).
    """
    generator = torch.Generator().manual_seed(seed)
    out: dict = {"version": FORMAT_VERSION, "seed": seed, "shots": {}}
    c = tasks.curves(curves, generator)
    for k in shots:
        xs = tasks.inputs(curves, repeats * k, generator).view(curves, repeats, k, 1)
        xq = tasks.grid(curves, tasks.query_size)
        out["shots"][int(k)] = {
            "curves": torch.stack([c.amplitude, c.frequency, c.phase], dim=1),
            "support_x": xs,
            "support_y": c(xs.view(curves, repeats * k, 1)).view(curves, repeats, k, 1),
            "query_x": xq,
            "query_y": c(xq),
        }
    return out


def as_tasks(block: dict, dtype: torch.dtype = torch.float32) -> Task:
    """Flatten one K-block into ``curves × repeats`` tasks (query repeated per draw)."""
    c, r, k, _ = block["support_x"].shape
    q = block["query_x"].shape[1]

    def rep(t: Tensor) -> Tensor:
        return t.unsqueeze(1).expand(c, r, q, 1).reshape(c * r, q, 1).to(dtype)

    return Task(
        support=(block["support_x"].reshape(c * r, k, 1).to(dtype),
                 block["support_y"].reshape(c * r, k, 1).to(dtype)),
        query=(rep(block["query_x"]), rep(block["query_y"])),
    )


def save_meta_test_set(data: dict, path: Path) -> None:
    save_versioned(data, path)


def load_meta_test_set(path: Path) -> dict:
    return load_versioned(path, version=FORMAT_VERSION, what="meta-test set", hint="run the split stage first")
