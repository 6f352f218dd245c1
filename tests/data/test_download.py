"""Fetching archives: mirrors first, MD5 verification, resume, redo of corrupt files, clear errors."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.error
import urllib.request
from urllib.response import addinfourl

import pytest

from metalearning.data import download
from metalearning.data.archives import ARCHIVES, Archive, archive
from metalearning.data.download import ChecksumError, DownloadError, fetch, md5sum, mirror_dirs

from .conftest import OMNIGLOT_MIRROR, no_network

PAYLOAD = bytes(range(256)) * 40
URL = "https://example.invalid/toy.zip"


def toy_archive(payload: bytes = PAYLOAD) -> Archive:
    return Archive("toy.zip", "toy", URL, hashlib.md5(payload).hexdigest())


class Broken:
    """A response body that delivers ``data`` then fails like a dropped connection."""

    closed = False

    def __init__(self, data: bytes):
        self.data = data

    def read(self, n=-1):
        if self.data:
            data, self.data = self.data, b""
            return data
        raise ConnectionResetError("connection reset by peer")

    def close(self):
        pass


class FakeRemote:
    """``urlopen`` stand-in: serves ``bodies[i]`` on call ``i`` (the last one thereafter).

    A body may be a ``Broken`` (dropped mid-transfer, declaring the full length). With
    ``ranges`` it honours ``Range: bytes=N-`` with a 206; otherwise it always sends all (200).
    """

    def __init__(self, *bodies, ranges: bool = True, full_length: int | None = None):
        self.bodies, self.ranges, self.full_length = bodies, ranges, full_length
        self.ranges_asked: list[str | None] = []

    def __call__(self, request, timeout=None):
        assert request.full_url == URL
        rng = request.get_header("Range")
        self.ranges_asked.append(rng)
        body = self.bodies[min(len(self.ranges_asked), len(self.bodies)) - 1]
        if isinstance(body, Broken):
            return addinfourl(body, {"Content-Length": str(self.full_length)}, URL, 200)
        start = int(rng[len("bytes="):-1]) if rng and self.ranges else 0
        status = 206 if rng and self.ranges else 200
        return addinfourl(io.BytesIO(body[start:]), {"Content-Length": str(len(body) - start)}, URL, status)


def test_project_checksums_match_the_upstream_md5sums_file():
    listed = dict(line.split()[::-1] for line in (OMNIGLOT_MIRROR / "MD5SUMS").read_text().splitlines())
    assert {name: a.md5 for name, a in ARCHIVES.items()} == listed
    assert archive("images_evaluation.zip").url.endswith("/omniglot/raw/master/python/images_evaluation.zip")
    with pytest.raises(KeyError, match="known"):
        archive("nope.zip")


def test_mirror_order_argument_then_environment_then_defaults(tmp_path):
    environ = {download.MIRRORS_ENV: os.pathsep.join([str(tmp_path / "e1"), "", str(tmp_path / "e2")])}
    dirs = mirror_dirs("omniglot", [tmp_path / "a", tmp_path / "e1"], environ=environ)
    assert dirs[:3] == [tmp_path / "a", tmp_path / "e1", tmp_path / "e2"]
    assert download.REPO_ROOT.parent / "shared" / "datasets" / "omniglot" in dirs


def test_copies_from_a_mirror_without_downloading(tmp_path):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "toy.zip").write_bytes(PAYLOAD)
    path = fetch(toy_archive(), tmp_path / "dest", mirrors=[tmp_path / "mirror"], opener=no_network,
                 progress=False)
    assert path.read_bytes() == PAYLOAD
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.zip"]  # no temporary left


def test_mirror_found_through_the_environment(tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "toy.zip").write_bytes(PAYLOAD)
    monkeypatch.setenv(download.MIRRORS_ENV, str(tmp_path / "mirror"))
    assert fetch(toy_archive(), tmp_path / "d", opener=no_network, progress=False).read_bytes() == PAYLOAD


def test_real_archive_fetched_from_the_shared_mirror_with_its_official_md5(tmp_path):
    if not OMNIGLOT_MIRROR.is_dir():
        pytest.skip("no Omniglot mirror on this machine")
    a = archive("images_background_small2.zip")
    path = fetch(a, tmp_path, mirrors=[OMNIGLOT_MIRROR], opener=no_network, progress=False)
    assert md5sum(path) == a.md5 == "b75a71a51d3b13f821f212756fe481fd"


def test_corrupt_mirror_copy_is_skipped_and_the_archive_downloaded(tmp_path):
    (tmp_path / "mirror").mkdir()
    bad = tmp_path / "mirror" / "toy.zip"
    bad.write_bytes(PAYLOAD[:-1] + b"x")
    remote = FakeRemote(PAYLOAD)
    with pytest.warns(UserWarning, match="ignoring it"):
        path = fetch(toy_archive(), tmp_path / "d", mirrors=[tmp_path / "mirror"], opener=remote,
                     progress=False)
    assert path.read_bytes() == PAYLOAD and bad.exists()  # a mirror is never deleted
    assert remote.ranges_asked == [None]


def test_truncated_local_copy_is_deleted_and_fetched_again(tmp_path):
    (tmp_path / "toy.zip").write_bytes(PAYLOAD[:100])
    with pytest.warns(UserWarning, match="deleting it"):
        path = fetch(toy_archive(), tmp_path, opener=FakeRemote(PAYLOAD), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_corrupt_download_is_redone_once(tmp_path):
    remote = FakeRemote(PAYLOAD[:-10], PAYLOAD)  # first answer: a complete but truncated file
    with pytest.warns(UserWarning, match="expected"):
        path = fetch(toy_archive(), tmp_path, opener=remote, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert remote.ranges_asked == [None, None]  # the bad file was deleted, not resumed


def test_persistently_corrupt_download_gives_up_with_a_clear_error(tmp_path):
    remote = FakeRemote(b"garbage" * 100)
    expected = r"toy\.zip.*example\.invalid.*2 attempts"
    with pytest.warns(UserWarning), pytest.raises(ChecksumError, match=expected):
        fetch(toy_archive(), tmp_path, opener=remote, progress=False, retries=1)
    assert len(remote.ranges_asked) == 2
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a partial file is left


def test_partial_download_is_resumed_with_a_range_request(tmp_path):
    (tmp_path / "toy.zip.part").write_bytes(PAYLOAD[:1000])
    remote = FakeRemote(PAYLOAD)
    path = fetch(toy_archive(), tmp_path, opener=remote, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert remote.ranges_asked == ["bytes=1000-"]


def test_server_ignoring_range_restarts_from_zero(tmp_path):
    (tmp_path / "toy.zip.part").write_bytes(b"stale" * 10)
    path = fetch(toy_archive(), tmp_path, opener=FakeRemote(PAYLOAD, ranges=False), progress=False)
    assert path.read_bytes() == PAYLOAD


def test_dropped_connection_is_resumed_where_it_stopped(tmp_path):
    remote = FakeRemote(Broken(PAYLOAD[:3000]), PAYLOAD, full_length=len(PAYLOAD))
    path = fetch(toy_archive(), tmp_path, opener=remote, progress=False)
    assert path.read_bytes() == PAYLOAD
    assert remote.ranges_asked == [None, "bytes=3000-"]


def test_real_urlopen_on_a_file_url(tmp_path):
    (tmp_path / "remote.zip").write_bytes(PAYLOAD)
    a = toy_archive()._replace(url=(tmp_path / "remote.zip").as_uri())
    path = fetch(a, tmp_path / "d", opener=urllib.request.urlopen, progress=False)
    assert path.read_bytes() == PAYLOAD


def test_missing_archive_error_names_archive_url_and_every_mirror(tmp_path, monkeypatch):
    monkeypatch.setenv(download.MIRRORS_ENV, str(tmp_path / "from_env"))
    mirrors = [tmp_path / "m1", tmp_path / "m2"]
    with pytest.raises(DownloadError) as err:
        fetch(toy_archive(), tmp_path / "d", mirrors=mirrors, opener=no_network, progress=False)
    message = str(err.value)
    assert "toy.zip" in message and URL in message and "never touch the network" in message
    for directory in [*mirrors, tmp_path / "from_env", download.REPO_ROOT.parent / "shared/datasets/toy"]:
        assert str(directory / "toy.zip") in message


def test_http_error_is_reported_as_unavailable(tmp_path):
    def not_found(request, timeout=None):
        raise urllib.error.HTTPError(request.full_url, 404, "Not Found", {}, None)

    with pytest.raises(DownloadError, match="404"):
        fetch(toy_archive(), tmp_path, opener=not_found, progress=False)
