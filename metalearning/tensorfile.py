"""Versioned files of tensors and plain containers (meta-test sets, episode sets)."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def save_versioned(data: dict, path: os.PathLike | str) -> None:
    """``torch.save`` ``data`` (which carries its own ``"version"``), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)


def load_versioned(path: os.PathLike | str, *, version: int, what: str, hint: str) -> dict:
    """Load with ``weights_only=True`` and check the format version.

    Raises:
        FileNotFoundError: no file at ``path`` (the message names it, ``what`` it is and ``hint``).
        ValueError: the file's ``"version"`` is not ``version``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path} ({hint})")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if data.get("version") != version:
        raise ValueError(f"{path}: {what} format {data.get('version')!r}, expected {version}")
    return data
