"""Checkpoint files: meta-parameters, optimiser state and the config that built them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from metalearning.core.algorithms import MetaParams


def save_checkpoint(path: Path, *, meta_params: MetaParams, iteration: int, **extra: Any) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a torn checkpoint.

    ``extra`` carries the rest (config text, seed, the trainer's full ``training_state``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "meta_params": {g: {k: p.detach().clone() for k, p in ps.items()} for g, ps in meta_params.items()},
        "iteration": iteration,
        **extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with ``weights_only=True``: tensors and plain containers only, no pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} is unreadable or corrupt ({_load_error_cause(err)})") from err


def _load_error_cause(err: Exception) -> str:
    """One line for ``torch.load``'s error: the unpickler's own words where torch wraps them in its
    multi-line advice about ``weights_only`` (which does not apply to a corrupt file)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        words = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].strip()
        return f"{type(err).__name__}: {words}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
