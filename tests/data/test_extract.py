"""Safe extraction: zip-slip and link members are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

from metalearning.data.extract import UnsafeArchiveError, safe_extract, unsafe_reason


def make_zip(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name verbatim
    return path


@pytest.mark.parametrize("name, reason", [
    ("a/b.png", None), ("a/..b/c", None), ("../evil", "'..'"), ("a/../../evil", "'..'"),
    ("a\\..\\evil", "'..'"), ("/abs", "absolute"), ("\\abs", "absolute"), ("C:/x", "absolute"),
])
def test_unsafe_reason(name, reason):
    result = unsafe_reason(name)
    assert (result is None) if reason is None else (reason in result)


@pytest.mark.parametrize("evil", ["../evil", "/abs", "ok/../../evil"])
def test_zip_slip_is_rejected_naming_the_member(tmp_path, evil):
    archive = make_zip(tmp_path / "bad.zip", {"ok/file.txt": b"fine", evil: b"pwned"})
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(UnsafeArchiveError, match=repr(evil).replace(".", r"\.")):
        safe_extract(archive, work / "out")
    assert list(work.iterdir()) == []  # no target, no temporary directory, nothing outside
    assert not (tmp_path / "evil").exists()


def test_tar_symlink_is_rejected(tmp_path):
    path = tmp_path / "bad.tar"
    with tarfile.open(path, "w") as tar:
        link = tarfile.TarInfo("data/link")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    with pytest.raises(UnsafeArchiveError, match="data/link"):
        safe_extract(path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_tar_with_parent_member_is_rejected(tmp_path):
    path = tmp_path / "bad.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("../evil")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./evil'"):
        safe_extract(path, tmp_path / "out")


def test_good_archives_are_extracted_and_kept(tmp_path):
    archive = make_zip(tmp_path / "good.zip", {"top/a/1.txt": b"one", "top/b.txt": b"two"})
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "top" / "a" / "1.txt").read_bytes() == b"one"
    (out / "marker").write_text("kept")
    assert (safe_extract(archive, out) / "marker").exists()  # an existing target is complete: reused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.zip", "out"]


def test_missing_and_unknown_archives(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.zip"):
        safe_extract(tmp_path / "nothere.zip", tmp_path / "out")
    (tmp_path / "plain.txt").write_text("not an archive")
    with pytest.raises(ValueError, match="neither a zip nor a tar"):
        safe_extract(tmp_path / "plain.txt", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.txt"]
