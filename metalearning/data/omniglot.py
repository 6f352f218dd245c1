"""Omniglot (Lake et al. 2015) as a compact array of 28×28 characters, its character split and
the rotation augmentation of MAML (maml.md §5.2) and Santoro et al. (2016).

Variants:
    ``full``: images_background + images_evaluation, 50 alphabets, 1623 characters.
    ``small``: images_background_small1 ∪ images_background_small2. The two share the Greek and
        Latin alphabets (byte-identical files), so characters are de-duplicated by
        ``"<alphabet>/<character>"`` name: 136 + 156 − 50 = 242 characters, 8 alphabets.

Preprocessing (done once): each 105×105 binary PNG is resized to 28×28 with PIL's LANCZOS
filter (the antialiasing resize of MAML's Omniglot script) and inverted so ink is 255 and
background 0. The result is one ``omniglot_<variant>.npz`` (see :mod:`metalearning.data.arrays`)::

    images      uint8 [characters, 20, 28, 28]   drawers in file-name order
    characters  str   [characters]               "<alphabet>/<character>", sorted
    alphabets   str   [characters]

PNGs are read straight from the archives: nothing is extracted to disk.
"""

from __future__ import annotations

import io
import json
import os
import urllib.request
import zipfile
from pathlib import Path
from typing import Iterable, Sequence

import gin
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from metalearning.data.archives import archive
from metalearning.data.arrays import checksum_path, load_arrays, save_arrays, sha256sum
from metalearning.data.download import Opener, fetch
from metalearning.data.image_format import ImageFormat

VARIANTS = {
    "full": ("images_background.zip", "images_evaluation.zip"),
    "small": ("images_background_small1.zip", "images_background_small2.zip"),
}
DRAWERS = 20
SIZE = 28
# The split of MAML / Santoro et al.: 1200 of the 1623 characters for meta-training; MAML's code
# holds 100 of those 1200 out for validation (cbfinn/maml data_generator.py: num_val = 100).
PAPER_META_TRAIN, PAPER_CHARACTERS, PAPER_VALIDATION = 1200, 1623, 100
SPLIT_VERSION = 2  # 2: validation characters (meta_val) held out of the meta-training side


def read_characters(zip_path: os.PathLike | str) -> dict[str, list[bytes]]:
    """The PNG files of every character in an Omniglot archive.

    Members are ``<top>/<alphabet>/<character>/<file>.png``.

    Returns:
        ``{"<alphabet>/<character>": [png bytes, ...]}`` with files in name order.
    """
    groups: dict[str, list[str]] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) == 4 and parts[3].endswith(".png"):
                groups.setdefault(f"{parts[1]}/{parts[2]}", []).append(name)
        return {key: [zf.read(n) for n in names] for key, names in groups.items()}


def merge_characters(archives: Sequence[dict[str, list[bytes]]]) -> dict[str, list[bytes]]:
    """Union of characters by name; a name in several archives must have identical files.

    Raises:
        ValueError: the same character name holds different images in two archives.
    """
    merged: dict[str, list[bytes]] = {}
    for characters in archives:
        for name, files in characters.items():
            if merged.setdefault(name, files) != files:
                raise ValueError(f"character {name} appears in two archives with different images")
    return merged


def preprocess_image(png: bytes) -> np.ndarray:
    """A 105×105 Omniglot PNG as uint8 ``[28, 28]``, LANCZOS-resized, ink = 255."""
    with Image.open(io.BytesIO(png)) as image:
        return ImageFormat(SIZE, channels=1, invert=True).pixels(image)


def build_arrays(characters: dict[str, list[bytes]]) -> dict[str, np.ndarray]:
    """The preprocessed arrays (see the module docstring) of ``{name: [png bytes]}``.

    Raises:
        ValueError: a character does not have exactly 20 drawings.
    """
    names = sorted(characters)
    for name in names:
        if len(characters[name]) != DRAWERS:
            raise ValueError(f"character {name} has {len(characters[name])} images, expected {DRAWERS}")
    images = np.stack([np.stack([preprocess_image(png) for png in characters[n]]) for n in names])
    return {"images": images, "characters": np.array(names),
            "alphabets": np.array([n.split("/")[0] for n in names])}


def variant_archives(variant: str) -> tuple[str, ...]:
    """Archive names of ``variant``; ValueError naming the known variants otherwise."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown Omniglot variant {variant!r}; known: {sorted(VARIANTS)}")
    return VARIANTS[variant]


def download_omniglot(variant: str, raw_dir: os.PathLike | str, *, mirrors: Iterable[os.PathLike | str] = (),
                      opener: Opener = urllib.request.urlopen, progress: bool = True) -> list[Path]:
    """Fetch (mirror first, then the official URL) and MD5-verify the archives of ``variant``
    into ``raw_dir``; returns their paths (see :func:`metalearning.data.download.fetch`)."""
    mirrors = list(mirrors)
    return [fetch(archive(name), raw_dir, mirrors=mirrors, opener=opener, progress=progress)
            for name in variant_archives(variant)]


def preprocess_omniglot(zips: Sequence[os.PathLike | str], out: os.PathLike | str) -> Path:
    """Resize, invert and merge the characters of ``zips`` into the array file ``out`` (+ checksum)."""
    save_arrays(out, build_arrays(merge_characters([read_characters(z) for z in zips])))
    return Path(out)


def prepare_omniglot(variant: str, data_dir: os.PathLike | str, *, mirrors: Iterable[os.PathLike | str] = (),
                     opener: Opener = urllib.request.urlopen, progress: bool = True) -> Path:
    """Fetch the archives of ``variant`` into ``data_dir/raw`` and write ``data_dir/omniglot_<variant>.npz``.

    An existing file whose recorded SHA-256 matches is kept as is. Returns the ``.npz`` path.
    """
    out = Path(data_dir) / f"omniglot_{variant}.npz"
    if is_current(out):
        return out
    zips = download_omniglot(variant, Path(data_dir) / "raw", mirrors=mirrors, opener=opener, progress=progress)
    return preprocess_omniglot(zips, out)


def is_current(path: Path) -> bool:
    """Whether ``path`` and its checksum file exist and agree."""
    record = checksum_path(path)
    return path.is_file() and record.is_file() and record.read_text().split()[0] == sha256sum(path)


def meta_train_size(characters: int) -> int:
    """Characters for meta-training: the paper's 1200/1623 proportion (1200 for the full set)."""
    return round(characters * PAPER_META_TRAIN / PAPER_CHARACTERS)


def validation_size(meta_train: int) -> int:
    """Validation characters held out of ``meta_train`` meta-training-side characters: MAML's
    100 of 1200."""
    return round(meta_train * PAPER_VALIDATION / PAPER_META_TRAIN)


def split_characters(characters: Sequence[str], *, meta_train: int, seed: int,
                     validation: int = 0) -> dict[str, list[str]]:
    """A seeded random split by character, irrespective of alphabet.

    ``meta_train`` characters go to the meta-training side, the rest to meta-test; then
    ``validation`` of the meta-training side's characters are held out (a second seeded draw),
    so the meta-test characters do not depend on ``validation``.

    Returns:
        ``{"meta_train": [...], "meta_val": [...], "meta_test": [...]}``, disjoint, each sorted.
    """
    names = sorted(characters)
    if len(set(names)) != len(names) or not 0 <= meta_train <= len(names):
        raise ValueError(f"need {meta_train} of {len(names)} distinct character names")
    if not 0 <= validation < max(meta_train, 1):
        raise ValueError(f"cannot hold {validation} validation characters out of {meta_train} meta-training ones")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(names), generator=generator).tolist()
    train_side = order[:meta_train]
    held = torch.randperm(len(train_side), generator=generator)[:validation].tolist()
    val = {train_side[i] for i in held}
    return {"meta_train": sorted(names[i] for i in train_side if i not in val),
            "meta_val": sorted(names[i] for i in val),
            "meta_test": sorted(names[i] for i in order[meta_train:])}


def write_split(data_file: os.PathLike | str, split_file: os.PathLike | str, *, seed: int) -> dict:
    """Split the characters of ``data_file`` in the paper's proportions and write the JSON split file.

    The file holds ``{"version", "seed", "data_sha256", "meta_train": [...], "meta_val": [...],
    "meta_test": [...]}``: 1200/1623 of the characters on the meta-training side, 100/1200 of
    those held out for validation (full Omniglot: 1100 / 100 / 423).
    """
    names = [str(n) for n in load_arrays(data_file)["characters"]]
    train_side = meta_train_size(len(names))
    split = split_characters(names, meta_train=train_side, seed=seed, validation=validation_size(train_side))
    record = {"version": SPLIT_VERSION, "seed": seed, "data_sha256": sha256sum(data_file), **split}
    Path(split_file).parent.mkdir(parents=True, exist_ok=True)
    Path(split_file).write_text(json.dumps(record, indent=1) + "\n")
    return record


def write_synthetic(directory: os.PathLike | str, characters: int, *, alphabets: int = 4) -> list[str]:
    """Random images in the layout of the Omniglot array file (``characters × 20 × 28 × 28``
    uint8), and their split, in ``directory``; returns the gin bindings that read them. For
    benchmarks and tests: speed does not depend on the pixels."""
    directory = Path(directory)
    rng = np.random.default_rng(0)
    names = np.array([f"alphabet{i % alphabets}/character{i:02d}" for i in range(characters)])
    save_arrays(directory / "omniglot.npz", {
        "images": rng.integers(0, 256, (characters, 20, 28, 28), dtype=np.uint8),
        "characters": names, "alphabets": np.array([n.split("/")[0] for n in names])})
    write_split(directory / "omniglot.npz", directory / "split.json", seed=0)
    return [f"omniglot_classes.data_file = '{directory / 'omniglot.npz'}'",
            f"omniglot_classes.split_file = '{directory / 'split.json'}'"]


def read_split(split_file: os.PathLike | str) -> dict:
    """The split record written by :func:`write_split`; FileNotFoundError naming the file if absent."""
    path = Path(split_file)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path} (run the split step first)")
    return json.loads(path.read_text())


def with_rotations(images: Tensor) -> Tensor:
    """Rotations by multiples of 90° as new classes: ``[C, M, H, W]`` → ``[4C, M, H, W]``.

    Class ``4c + r`` is class ``c`` rotated by ``r × 90°`` counter-clockwise (``torch.rot90``).
    """
    return torch.stack([torch.rot90(images, r, dims=(-2, -1)) for r in range(4)], dim=1).flatten(0, 1)


def select_characters(data: dict[str, np.ndarray], names: Sequence[str]) -> Tensor:
    """The uint8 images ``[len(names), 20, 28, 28]`` of the named characters, in that order."""
    index = {str(n): i for i, n in enumerate(data["characters"])}
    missing = [n for n in names if n not in index]
    if missing:
        raise KeyError(f"{len(missing)} characters not in the data file, e.g. {missing[:3]}")
    return torch.from_numpy(data["images"][[index[n] for n in names]])


@gin.configurable
def omniglot_classes(*, data_file: str, split_file: str, split: str, rotations: bool) -> Tensor:
    """The class tensor of one split: uint8 ``[C, 20, 28, 28]``, ``C`` ×4 with ``rotations``.

    Args:
        data_file: the ``.npz`` of :func:`prepare_omniglot` (checksum verified on load).
        split_file: the JSON of :func:`write_split`.
        split: ``"meta_train"``, ``"meta_val"`` (validation characters) or ``"meta_test"``.
        rotations: add the 90°, 180°, 270° rotations of every character as classes.
    """
    record = read_split(split_file)
    if split not in record:
        present = ", ".join(k for k in record if k.startswith("meta_"))
        raise KeyError(f"{split_file} has no split {split!r} (it has {present}; a split file older than "
                       "version 2 has no validation characters: run the split step again)")
    classes = select_characters(load_arrays(data_file), record[split])
    return with_rotations(classes) if rotations else classes
