"""Several processes over one meta-batch (torch.distributed; STYLE P11).

Launched by ``torchrun --nproc_per_node N python -m metalearning train …`` (or the pipeline's
``nproc``), every process runs the same command: it samples the same meta-batch from the same
seeded generator, computes the meta-gradient of its shard of the tasks
(:func:`metalearning.core.shards.shard_bounds`, keyed by the global task index), and an
all-reduce sums the shards' weighted gradients before every process takes the same meta-
optimiser step. Only rank 0 writes the Sacred record, checkpoints and metrics.

gloo on CPU, NCCL on CUDA. A collective that waits longer than ``METALEARNING_DIST_TIMEOUT``
seconds (default 600) fails the run instead of hanging, e.g. when another rank died.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

TIMEOUT_ENV = "METALEARNING_DIST_TIMEOUT"


class ProcessLost(RuntimeError):
    """Another process of the run died or stopped answering during a collective."""


def _collective(function, *args, **kwargs) -> None:
    try:
        function(*args, **kwargs)
    except RuntimeError as err:  # DistBackendError and gloo's connection errors
        raise ProcessLost(f"another of the run's {world().size} processes died or stopped answering "
                          f"(rank {world().rank} lost it in {function.__name__}: {str(err).splitlines()[0]})") from err


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes."""

    rank: int = 0
    size: int = 1

    @property
    def writer(self) -> bool:
        """Whether this process writes records, checkpoints and metrics (rank 0)."""
        return self.rank == 0


def world() -> World:
    """The current process group's rank and size (one process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def launched_size() -> int:
    """The number of processes torchrun started this one among (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank among those torchrun started (0 outside torchrun), before any group is joined."""
    return int(os.environ.get("RANK", "0"))


def relaunch(script: str, argv: Sequence[str], nproc: int) -> None:
    """Run ``script argv`` in ``nproc`` processes: outside torchrun with ``nproc > 1``, replace this
    process by ``torchrun --standalone --nproc_per_node nproc script argv`` (a pipeline stage is
    its own launcher); otherwise (one process, or already one of torchrun's) return."""
    if nproc > 1 and launched_size() == 1:
        os.execv(sys.executable, [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                  f"--nproc_per_node={nproc}", script, *argv])


def init_from_env(device: torch.device) -> World:
    """Join the process group torchrun described in the environment (no-op for one process).

    Raises:
        ValueError: ``METALEARNING_DIST_TIMEOUT`` is not a positive number.
    """
    if launched_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return world()
    raw = os.environ.get(TIMEOUT_ENV, "600")
    try:
        timeout = float(raw)
        if timeout <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {raw!r}") from None
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout))
    return world()


def shutdown() -> None:
    """Leave the process group (end of a command), if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensors: Iterable[Tensor]) -> None:
    """Sum every tensor over the processes, in place, with one collective (flattened; on the
    backend's device, so NCCL also sums CPU tensors such as meta-RL's returns)."""
    tensors = list(tensors)
    if world().size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1).to(_collective_device()) for t in tensors])
    _collective(dist.all_reduce, flat)
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()


def reduced_sum(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the processes (a new tensor; ``tensor`` for one process)."""
    if world().size == 1:
        return tensor
    total = tensor.detach().clone()
    all_reduce_sum([total])
    return total


def broadcast_from_writer(tensors: Iterable[Tensor]) -> None:
    """Give every process rank 0's values of ``tensors`` (e.g. the initial meta-parameters)."""
    if world().size == 1:
        return
    with torch.no_grad():
        for t in tensors:
            _collective(dist.broadcast, t, src=0)


def all_agree(flag: bool) -> bool:
    """True on every process iff ``flag`` is true on every process (a collective)."""
    if world().size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=_collective_device())
    _collective(dist.all_reduce, value, op=dist.ReduceOp.MIN)
    return bool(value.item() == 1.0)


def any_true(flag: bool) -> bool:
    """True on every process iff ``flag`` is true on some process (a collective)."""
    return not all_agree(not flag)


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
