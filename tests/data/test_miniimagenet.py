"""MiniImagenet on generated JPEGs named as in the Ravi & Larochelle CSVs."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metalearning.data import download
from metalearning.data import miniimagenet as mi
from metalearning.data.arrays import load_arrays

from .conftest import REPO

CSV_DIR = REPO.parent / "shared" / "datasets" / "miniimagenet"
CLASSES, PER_CLASS = 5, 3


@pytest.fixture(scope="module")
def rows() -> list[mi.Row]:
    """The first 3 images of the first 5 classes of the real train.csv."""
    if not (CSV_DIR / "train.csv").is_file():
        pytest.skip(f"MiniImagenet CSVs not present in {CSV_DIR}")
    groups = mi.group_by_class(mi.read_split_csv(CSV_DIR / "train.csv"))
    return [(f, label) for label in list(groups)[:CLASSES] for f in groups[label][:PER_CLASS]]


def colour(class_index: int, image_index: int) -> tuple[int, int, int]:
    return (40 * class_index + 20, 200 - 50 * image_index, 90)


def write_images(rows, root: Path, *, per_class_folders: bool) -> Path:
    """Solid-colour JPEGs (a colour per class and image) of assorted sizes and modes."""
    labels = list(dict.fromkeys(label for _, label in rows))
    for n, (filename, label) in enumerate(rows):
        folder = root / label if per_class_folders else root
        folder.mkdir(parents=True, exist_ok=True)
        size = [(84, 84), (120, 90), (50, 64)][n % 3]
        Image.new("RGB", size, colour(labels.index(label), n % PER_CLASS)).save(folder / filename)
    return root


def check_arrays(arrays: dict, rows) -> None:
    assert arrays["images"].shape == (CLASSES, PER_CLASS, 84, 84, 3) and arrays["images"].dtype == np.uint8
    assert list(arrays["labels"]) == list(dict.fromkeys(label for _, label in rows))
    assert arrays["filenames"].ravel().tolist() == [f for f, _ in rows]
    means = arrays["images"].mean(axis=(2, 3))  # [classes, images, 3]
    expected = np.array([[colour(c, i) for i in range(PER_CLASS)] for c in range(CLASSES)])
    assert np.abs(means - expected).max() < 3  # right image in the right slot, RGB order kept


@pytest.mark.parametrize("per_class_folders", [True, False])
def test_build_from_a_folder(rows, tmp_path, per_class_folders):
    root = write_images(rows, tmp_path / "images", per_class_folders=per_class_folders)
    paths = mi.prepare_miniimagenet(root, tmp_path / "out", {"meta_train": rows})
    assert paths == {"meta_train": tmp_path / "out" / "miniimagenet_meta_train.npz"}
    check_arrays(load_arrays(paths["meta_train"]), rows)
    classes = mi.miniimagenet_classes(data_file=str(paths["meta_train"]))
    assert tuple(classes.shape) == (CLASSES, PER_CLASS, 84, 84, 3)


def test_build_from_a_prebuilt_archive(rows, tmp_path):
    root = write_images(rows, tmp_path / "images", per_class_folders=True)
    archive = tmp_path / "mini.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*.jpg")):
            zf.write(path, Path("images") / path.relative_to(root))
    paths = mi.prepare_miniimagenet(archive, tmp_path / "out", {"meta_test": rows})
    check_arrays(load_arrays(paths["meta_test"]), rows)


def test_missing_image_is_named(rows, tmp_path):
    root = write_images(rows, tmp_path / "images", per_class_folders=False)
    (root / rows[4][0]).unlink()
    with pytest.raises(FileNotFoundError, match=rows[4][0]):
        mi.prepare_miniimagenet(root, tmp_path / "out", {"meta_train": rows})
    with pytest.raises(FileNotFoundError, match="nowhere"):
        mi.prepare_miniimagenet(tmp_path / "nowhere", tmp_path / "out", {"meta_train": rows})


def test_duplicate_file_names_are_refused(rows, tmp_path):
    root = write_images(rows, tmp_path / "images", per_class_folders=True)
    (root / rows[0][0]).write_bytes((root / rows[0][1] / rows[0][0]).read_bytes())
    with pytest.raises(ValueError, match="more than once"):
        mi.build_split(rows, root)


def test_unequal_classes_are_refused(rows):
    with pytest.raises(ValueError, match="different numbers"):
        mi.group_by_class(rows[:-1])


def test_ravi_split_has_64_16_20_classes_of_600(rows):
    splits = mi.ravi_split_rows([CSV_DIR])
    sizes = {split: {len(f) for f in mi.group_by_class(r).values()} for split, r in splits.items()}
    counts = {split: len(mi.group_by_class(r)) for split, r in splits.items()}
    assert counts == {"meta_train": 64, "meta_val": 16, "meta_test": 20}
    assert sizes == {"meta_train": {600}, "meta_val": {600}, "meta_test": {600}}
    labels = [set(mi.group_by_class(r)) for r in splits.values()]
    assert not (labels[0] & labels[1] or labels[0] & labels[2] or labels[1] & labels[2])


def test_missing_or_malformed_csv_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="train.csv"):
        mi.read_split_csv(tmp_path / "train.csv")
    monkeypatch.setattr(download, "REPO_ROOT", tmp_path / "repo")  # hide the default mirrors
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(download.MIRRORS_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty" / "val.csv")):
        mi.find_split_csv("meta_val", [tmp_path / "empty"])
    (tmp_path / "bad.csv").write_text("file,class\na.jpg,n1\n")
    with pytest.raises(ValueError, match="filename,label"):
        mi.read_split_csv(tmp_path / "bad.csv")
