"""Safe extraction of zip and tar archives.

Every member name is checked before anything is written: absolute paths (``/x``, ``C:\\x``)
and ``..`` components would let a crafted archive write outside the target ("zip slip"), and
tar links or device files could point outside it. The archive is unpacked into a temporary
directory beside the target, which is renamed into place only when extraction succeeded, so
an existing target is always complete.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path


class UnsafeArchiveError(ValueError):
    """An archive member would be written outside the extraction directory."""


def unsafe_reason(name: str) -> str | None:
    """Why member ``name`` must not be extracted, or None if it is a plain relative path."""
    path = name.replace("\\", "/")
    if path.startswith("/") or re.match(r"[A-Za-z]:", path):
        return "absolute path"
    if ".." in path.split("/"):
        return "'..' path component"
    return None


def _check_names(archive: Path, names: list[str]) -> None:
    for name in names:
        reason = unsafe_reason(name)
        if reason:
            raise UnsafeArchiveError(f"{archive}: refusing to extract member {name!r} ({reason})")


def _check_tar_kinds(archive: Path, tar: tarfile.TarFile) -> None:
    for member in tar.getmembers():
        if not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: refusing to extract member {member.name!r} "
                                     "(link or special file)")


def _extract_into(archive: Path, directory: Path) -> None:
    """Check every member of ``archive`` and unpack it into ``directory``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_names(archive, zf.namelist())
            zf.extractall(directory)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tar:
            _check_names(archive, tar.getnames())
            _check_tar_kinds(archive, tar)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(directory, **extra)
    else:
        raise ValueError(f"{archive}: neither a zip nor a tar archive")


def safe_extract(archive: os.PathLike | str, target: os.PathLike | str) -> Path:
    """Unpack ``archive`` (zip or tar) so that its members lie under ``target``; return ``target``.

    An existing ``target`` is returned untouched (it was renamed into place complete).

    Raises:
        FileNotFoundError: ``archive`` does not exist.
        UnsafeArchiveError: a member is absolute, has a ``..`` component, or is a tar link or
            special file; the message names the member. Nothing is left behind.
    """
    archive, target = Path(archive), Path(target)
    if target.exists():
        return target
    if not archive.is_file():
        raise FileNotFoundError(f"archive not found: {archive}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp"))
    try:
        _extract_into(archive, tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
