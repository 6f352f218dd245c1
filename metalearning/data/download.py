"""Obtaining verified archives: from a mirror directory first, else from the official URL.

Order of sources for an archive ``name`` of dataset ``d`` (first hit with the right MD5 wins):

1. ``dest_dir/name`` itself, if already there and intact;
2. ``<mirror>/name`` for each mirror: the ``mirrors`` argument, then the entries of
   ``$METALEARNING_DATA_MIRRORS`` (``os.pathsep``-separated), then the defaults
   ``<repo root>/../shared/datasets/d`` and ``<cwd>/../shared/datasets/d``;
3. the archive's URL, streamed to ``dest_dir/name.part`` (resumed with an HTTP ``Range``
   request when a partial file is there) and renamed into place only once its MD5 matches.

A corrupt or truncated file is deleted and fetched again; after ``retries`` more failed
attempts the fetch stops with :class:`ChecksumError`. Mirror files are only read, never
deleted (they may be shared and read-only).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from metalearning.data.archives import Archive

MIRRORS_ENV = "METALEARNING_DATA_MIRRORS"
REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60
CHUNK = 1 << 20

Opener = Callable[..., object]  # urllib.request.urlopen's signature: (request, timeout=...)


class DownloadError(RuntimeError):
    """An archive could be found neither in a mirror nor at its URL."""


class ChecksumError(DownloadError):
    """A downloaded archive kept failing its MD5 check."""


class _Interrupted(Exception):
    """The transfer stopped early; the partial file is kept for resuming."""


def md5sum(path: Path) -> str:
    """Hex MD5 of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def mirror_dirs(dataset: str, mirrors: Iterable[os.PathLike | str] = (),
                environ: Mapping[str, str] | None = None) -> list[Path]:
    """The mirror directories searched for ``dataset``'s archives, in search order, without repeats.

    Args:
        dataset: names the default mirrors ``../shared/datasets/<dataset>``.
        mirrors: directories searched first.
        environ: the environment to read ``METALEARNING_DATA_MIRRORS`` from (default ``os.environ``).
    """
    env = (os.environ if environ is None else environ).get(MIRRORS_ENV, "")
    candidates = [*map(Path, mirrors), *(Path(p) for p in env.split(os.pathsep) if p),
                  REPO_ROOT.parent / "shared" / "datasets" / dataset,
                  Path.cwd().parent / "shared" / "datasets" / dataset]
    unique: dict[Path, None] = {}
    for path in candidates:
        unique.setdefault(Path(os.path.abspath(path)), None)
    return list(unique)


def fetch(archive: Archive, dest_dir: os.PathLike | str, *, mirrors: Iterable[os.PathLike | str] = (),
          opener: Opener = urllib.request.urlopen, retries: int = 1, progress: bool = True) -> Path:
    """Make ``dest_dir/archive.name`` an intact copy of ``archive`` and return its path.

    Args:
        archive: what to fetch (its ``md5`` is checked on every candidate).
        dest_dir: where the archive is kept (created if missing).
        mirrors: directories searched before the defaults (see the module docstring).
        opener: ``urlopen``-compatible function (tests pass a fake "remote").
        retries: how many times a download failing its MD5 (or cut short) is redone.
        progress: show a tqdm progress bar while downloading.

    Raises:
        DownloadError: no mirror has it and the URL cannot be reached; the message names the
            archive, the URL and every mirror path tried.
        ChecksumError: every download attempt produced a file with the wrong MD5.
    """
    dest = Path(dest_dir) / archive.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if _intact(dest, archive.md5, discard=True):
        return dest
    tried = [d / archive.name for d in mirror_dirs(archive.dataset, mirrors)]
    for candidate in tried:
        if _intact(candidate, archive.md5, discard=False):
            _copy_atomic(candidate, dest)
            return dest
    return _download_verified(archive, dest, opener, retries, progress, tried)


def _intact(path: Path, md5: str, *, discard: bool) -> bool:
    """Whether ``path`` exists with MD5 ``md5``; a mismatching file is deleted if ``discard``."""
    if not path.is_file():
        return False
    digest = md5sum(path)
    if digest == md5:
        return True
    action = "deleting it" if discard else "ignoring it"
    warnings.warn(f"{path} has MD5 {digest}, expected {md5} (corrupt or truncated); {action}")
    if discard:
        path.unlink()
    return False


def _copy_atomic(src: Path, dest: Path) -> None:
    """Copy to a temporary file beside ``dest``, then rename, so ``dest`` is never partial."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _download_verified(archive: Archive, dest: Path, opener: Opener, retries: int, progress: bool,
                       tried: list[Path]) -> Path:
    """Download into ``dest.part`` until its MD5 matches, at most ``retries + 1`` attempts."""
    part = dest.with_name(dest.name + ".part")
    error: type[DownloadError] = ChecksumError
    for _ in range(retries + 1):
        try:
            _download(archive, part, opener, progress, tried)
        except _Interrupted as err:
            error, problem = DownloadError, f"transfer interrupted ({err}); partial file kept at {part}"
            continue
        if _intact(part, archive.md5, discard=True):
            os.replace(part, dest)
            return dest
        error, problem = ChecksumError, f"the downloaded file failed its MD5 check (expected {archive.md5})"
    raise error(f"giving up on {archive.name} from {archive.url} after {retries + 1} attempts: {problem}")


def _download(archive: Archive, part: Path, opener: Opener, progress: bool, tried: list[Path]) -> None:
    """Stream the URL into ``part``, appending when the server honours a Range request."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        response = opener(urllib.request.Request(archive.url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the MD5 check decides
            return
        raise DownloadError(unavailable_message(archive, tried, err)) from err
    except OSError as err:  # URLError included: no network, unknown host, missing file:// path
        raise DownloadError(unavailable_message(archive, tried, err)) from err
    with response:
        resumed = bool(offset) and getattr(response, "status", None) == 206
        _stream(response, part, offset if resumed else 0, archive.name, progress)


def _stream(response, part: Path, offset: int, name: str, progress: bool) -> None:
    """Write the response body to ``part`` from byte ``offset`` (0 truncates the file)."""
    length = response.headers.get("Content-Length")
    total = offset + int(length) if length else None
    written = offset
    with open(part, "ab" if offset else "wb") as f, tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
        disable=not progress, leave=False,
    ) as bar:
        try:
            for block in iter(lambda: response.read(CHUNK), b""):
                f.write(block)
                bar.update(len(block))
                written += len(block)
        except (OSError, http.client.HTTPException) as err:  # reset connection, timeout, IncompleteRead
            raise _Interrupted(str(err)) from err
    if total is not None and written < total:
        raise _Interrupted(f"got {written} of {total} bytes")


def unavailable_message(archive: Archive, tried: list[Path], cause: BaseException | str) -> str:
    """The error text for an archive found nowhere: names the archive, its URL and every mirror path."""
    paths = "\n".join(f"  {p}" for p in tried) or "  (none)"
    return (f"cannot obtain {archive.name} (MD5 {archive.md5}): download from {archive.url} failed "
            f"({cause}), and no mirror has an intact copy. Mirror paths tried:\n{paths}\n"
            f"Copy the archive into one of them, or list a directory holding it in ${MIRRORS_ENV}.")
