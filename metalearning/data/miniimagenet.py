"""MiniImagenet (Vinyals et al. 2016) with the split of Ravi & Larochelle (2017), as compact arrays.

The split CSVs (``train.csv``/``val.csv``/``test.csv``, columns ``filename,label``; 64/16/20
classes × 600 images) name the images, e.g. ``n0153282900000005.jpg,n01532829``. They map to
``meta_train``/``meta_val``/``meta_test``.

The images are user-supplied, as either
    * a directory holding the files named as in the CSVs, flat or in subfolders (e.g. one per
      class, ``<dir>/n01532829/n0153282900000005.jpg``): the tree is searched recursively, and a
      file name must occur only once; or
    * a pre-built zip or tar archive of such a tree, safely extracted first
      (:func:`metalearning.data.extract.safe_extract`).

Each image is converted to RGB and, unless already 84×84, resized to 84×84 with PIL's LANCZOS
filter (as in the usual MiniImagenet generation script). One ``miniimagenet_<split>.npz`` per
split (see :mod:`metalearning.data.arrays`)::

    images     uint8 [classes, images_per_class, 84, 84, 3]   CSV order
    labels     str   [classes]                                WordNet ids, CSV order
    filenames  str   [classes, images_per_class]
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import gin
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from metalearning.data.arrays import load_arrays, save_arrays
from metalearning.data.download import mirror_dirs
from metalearning.data.extract import safe_extract
from metalearning.data.image_format import ImageFormat

SIZE = 84
CSV_FILES = {"meta_train": "train.csv", "meta_val": "val.csv", "meta_test": "test.csv"}
Row = tuple[str, str]  # (filename, label)


def read_split_csv(path: os.PathLike | str) -> list[Row]:
    """The ``(filename, label)`` rows of a split CSV (header ``filename,label``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split CSV not found: {path}")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != ["filename", "label"]:
            raise ValueError(f"{path}: expected columns filename,label, got {reader.fieldnames}")
        return [(row["filename"], row["label"]) for row in reader]


def find_split_csv(split: str, mirrors: Iterable[os.PathLike | str] = ()) -> Path:
    """The CSV of ``split`` from the first mirror directory holding it (see ``download.mirror_dirs``)."""
    tried = [d / CSV_FILES[split] for d in mirror_dirs("miniimagenet", mirrors)]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(f"{CSV_FILES[split]} not found; tried: {', '.join(map(str, tried))}")


def group_by_class(rows: Sequence[Row]) -> dict[str, list[str]]:
    """``{label: [filenames]}`` with labels and files in row order; classes must be equally sized."""
    groups: dict[str, list[str]] = {}
    for filename, label in rows:
        groups.setdefault(label, []).append(filename)
    sizes = {len(files) for files in groups.values()}
    if len(sizes) > 1:
        raise ValueError(f"classes have different numbers of images: {sorted(sizes)}")
    return groups


def index_images(root: Path) -> dict[str, list[Path]]:
    """Every file under ``root`` (recursively) by file name."""
    index: dict[str, list[Path]] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            index.setdefault(name, []).append(Path(folder) / name)
    return index


def locate(filenames: Sequence[str], index: dict[str, list[Path]], root: Path) -> list[Path]:
    """The path of each file name; errors name the missing or ambiguous files."""
    missing = [f for f in filenames if f not in index]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(filenames)} images are missing under {root}, "
                                f"e.g. {missing[:5]}")
    repeated = [f for f in filenames if len(index[f]) > 1]
    if repeated:
        raise ValueError(f"{len(repeated)} images occur more than once under {root}, e.g. "
                         f"{[str(p) for p in index[repeated[0]]]}")
    return [index[f][0] for f in filenames]


def load_image(path: Path) -> np.ndarray:
    """An image as uint8 ``[84, 84, 3]`` RGB (LANCZOS-resized unless already 84×84)."""
    with Image.open(path) as image:
        return ImageFormat(SIZE, channels=3, invert=False).pixels(image)


def image_root(source: os.PathLike | str, work_dir: os.PathLike | str) -> Path:
    """``source`` itself if a directory, else the directory it is safely extracted to under ``work_dir``."""
    source = Path(source)
    if source.is_dir():
        return source
    if not source.is_file():
        raise FileNotFoundError(f"MiniImagenet image folder or archive not found: {source}")
    return safe_extract(source, Path(work_dir) / (source.name + ".extracted"))


def build_split(rows: Sequence[Row], root: Path) -> dict[str, np.ndarray]:
    """The arrays of one split (module docstring) from the images under ``root`` named in ``rows``."""
    groups = group_by_class(rows)
    filenames = [f for files in groups.values() for f in files]
    paths = locate(filenames, index_images(root), root)
    per_class = len(filenames) // max(len(groups), 1)
    images = np.empty((len(groups) * per_class, SIZE, SIZE, 3), dtype=np.uint8)
    for i, path in enumerate(paths):  # one-off preprocessing, not the sampling hot path
        images[i] = load_image(path)
    return {"images": images.reshape(len(groups), per_class, SIZE, SIZE, 3),
            "labels": np.array(list(groups)),
            "filenames": np.array(filenames).reshape(len(groups), per_class)}


def prepare_miniimagenet(source: os.PathLike | str, data_dir: os.PathLike | str,
                         split_rows: Mapping[str, Sequence[Row]]) -> dict[str, Path]:
    """Write ``data_dir/miniimagenet_<split>.npz`` for every split in ``split_rows``.

    Args:
        source: image folder or archive (module docstring).
        data_dir: output directory; an archive is extracted under it.
        split_rows: ``{split: rows}``, e.g. :func:`ravi_split_rows`, or a subset of its rows.

    Returns:
        ``{split: path of its .npz}``.
    """
    root = image_root(source, data_dir)
    return {split: _save_split(Path(data_dir) / f"miniimagenet_{split}.npz", build_split(rows, root))
            for split, rows in split_rows.items()}


def _save_split(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    save_arrays(path, arrays, compress=False)  # photo pixels barely deflate; skip the cost
    return path


def ravi_split_rows(mirrors: Iterable[os.PathLike | str] = ()) -> dict[str, list[Row]]:
    """The rows of the three Ravi & Larochelle CSVs, by split, found through the mirror directories."""
    mirrors = list(mirrors)
    return {split: read_split_csv(find_split_csv(split, mirrors)) for split in CSV_FILES}


@gin.configurable
def miniimagenet_classes(*, data_file: str) -> Tensor:
    """The class tensor of one split file: uint8 ``[classes, images_per_class, 84, 84, 3]``."""
    return torch.from_numpy(load_arrays(data_file)["images"])
