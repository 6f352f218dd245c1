"""Preprocessed datasets as one ``.npz`` file with its SHA-256 recorded beside it.

The ``.npz`` is written deterministically (members in sorted order, fixed timestamps), so the
same arrays give the same bytes and the same checksum on every run; ``<file>.sha256`` holds
that checksum in ``sha256sum`` format, and loading verifies it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Mapping

import numpy as np

FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def sha256sum(path: os.PathLike | str) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_path(path: os.PathLike | str) -> Path:
    """Where the checksum of ``path`` is recorded: ``<path>.sha256``."""
    return Path(f"{path}.sha256")


def _write_npz(path: Path, arrays: Mapping[str, np.ndarray], compress: bool) -> None:
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for key in sorted(arrays):
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_TIME)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(arrays[key]), allow_pickle=False)


def save_arrays(path: os.PathLike | str, arrays: Mapping[str, np.ndarray], *, compress: bool = True) -> str:
    """Write ``arrays`` (no object dtypes) to ``path`` atomically, record and return its SHA-256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        _write_npz(Path(tmp), arrays, compress)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    digest = sha256sum(path)
    checksum_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def recorded_checksum(path: os.PathLike | str) -> str:
    """The SHA-256 recorded for ``path``; FileNotFoundError naming the checksum file if absent."""
    record = checksum_path(path)
    if not record.is_file():
        raise FileNotFoundError(f"checksum file not found: {record} (rebuild {Path(path).name})")
    return record.read_text().split()[0]


def load_arrays(path: os.PathLike | str, *, verify: bool = True) -> dict[str, np.ndarray]:
    """Read a file written by :func:`save_arrays`.

    Raises:
        FileNotFoundError: the data file or its checksum file is missing (the message names it).
        ValueError: the file's SHA-256 differs from the recorded one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path} (run the data preparation step first)")
    if verify:
        expected, actual = recorded_checksum(path), sha256sum(path)
        if actual != expected:
            raise ValueError(f"{path}: SHA-256 {actual} differs from the recorded {expected}; rebuild it")
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}
