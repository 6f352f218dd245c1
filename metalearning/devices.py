"""Devices: resolving a setting (``cpu``, ``cuda``, ``cuda:N``, ``auto``) and moving task data.

Sampling stays on the CPU (CPU generators: the same seed draws the same tasks on every device);
a family's tasks move to the trainer's device in one place (:func:`to_device`). Under torchrun
each process on a CUDA machine takes the GPU of its local rank.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, ContextManager

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

CHOICES = "cpu, cuda, cuda:N or auto"


def resolve(spec: str | torch.device, binding: str = "device") -> torch.device:
    """The torch device a setting names.

    ``auto`` is CUDA when available, else CPU. ``cuda`` under torchrun is ``cuda:LOCAL_RANK``.
    ``meta`` (shapes without data) is accepted for the device-leak tests.

    Raises:
        ValueError: an unknown name, or CUDA asked for on a machine without it (one line
            naming ``binding``).
    """
    text = str(spec).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(text)
    except RuntimeError:
        raise ValueError(f"{binding}: unknown device {spec!r} (choose {CHOICES})") from None
    if device.type not in ("cpu", "cuda", "meta"):
        raise ValueError(f"{binding}: unsupported device {spec!r} (choose {CHOICES})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{binding}: {spec!r} asked for, but this machine has no usable CUDA device "
                             "(install torch for CUDA, or choose cpu)")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", torch.cuda.current_device())))
        if device.index >= torch.cuda.device_count():
            raise ValueError(f"{binding}: {spec!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str, binding: str = "precision") -> str:
    """``precision`` if it is one of :data:`PRECISIONS` (else ValueError naming ``binding``)."""
    if precision not in PRECISIONS:
        raise ValueError(f"{binding}: unknown precision {precision!r} (choose {' or '.join(PRECISIONS)})")
    return precision


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed precision for the meta-gradient: ``bf16`` runs the forward ops autocast supports
    (convolutions, matrix products) in bfloat16 on ``device`` (on CUDA the fast path; on the CPU the
    same arithmetic, which the tests check), with parameters, gradients and the optimiser in
    float32; ``fp32`` changes nothing."""
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def binding(device: str | None) -> list[str]:
    """The gin binding a ``--device`` option stands for (none when not given)."""
    return [] if device is None else [f"MetaTrainer.device = {str(device)!r}"]


def to_device(tree: Any, device: torch.device) -> Any:
    """Every tensor leaf of ``tree`` on ``device`` (a no-op for leaves already there)."""
    return pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, tree)


class DeviceLeakError(RuntimeError):
    """An op received tensors on two devices (a tensor created without ``like=``/``device=``)."""


class OneDevice(TorchDispatchMode):
    """Fail any op whose tensor arguments are on more than one device.

    Stricter than the devices themselves (the ``meta`` device accepts a CPU index in
    ``index_select`` or ``[]``, CUDA accepts some too): run the engine on the ``meta`` device
    inside this mode and any tensor it created on the CPU and used with device data raises,
    naming the op. 0-dim CPU tensors are allowed: every device accepts them as scalars.
    """

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        found = {t.device for t in pytree.tree_leaves((args, kwargs))
                 if isinstance(t, torch.Tensor) and not (t.device.type == "cpu" and t.dim() == 0)}
        if len(found) > 1:
            raise DeviceLeakError(f"{func} got tensors on {', '.join(sorted(map(str, found)))}")
        return func(*args, **kwargs)


def to_like(tree: Any, like: torch.Tensor) -> Any:
    """Every tensor leaf of ``tree`` on ``like``'s device, floating ones also in its dtype
    (episodes sampled in float32 on the CPU, for a policy that may be float64 or on a GPU)."""
    def convert(t: Any) -> Any:
        if not isinstance(t, torch.Tensor):
            return t
        return t.to(like) if t.is_floating_point() else t.to(like.device)

    return pytree.tree_map(convert, tree)
