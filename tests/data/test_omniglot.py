"""Omniglot: preprocessing of the real small archives, de-duplication, split and rotations."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from metalearning.data import omniglot as og
from metalearning.data.arrays import load_arrays, recorded_checksum, sha256sum

from .conftest import OMNIGLOT_MIRROR, no_network


def character_names(zip_name: str) -> set[str]:
    """``alphabet/character`` names listed in a mirror archive, read independently of the code."""
    with zipfile.ZipFile(OMNIGLOT_MIRROR / zip_name) as zf:
        return {"/".join(n.split("/")[1:3]) for n in zf.namelist() if n.endswith(".png")}


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_small_variant_is_the_deduplicated_union(omniglot_small):
    data = load_arrays(omniglot_small)
    s1, s2 = character_names("images_background_small1.zip"), character_names("images_background_small2.zip")
    assert (len(s1), len(s2), len(s1 & s2)) == (136, 156, 50)  # Greek (24) and Latin (26) shared
    assert list(data["characters"]) == sorted(s1 | s2)
    assert data["images"].shape == (242, 20, 28, 28) and data["images"].dtype == np.uint8
    assert sorted(set(data["alphabets"])) == ["Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)",
                                              "Korean", "Latin", "Sanskrit", "Tagalog"]


def test_images_have_ink_high_on_a_black_background(omniglot_small):
    images = load_arrays(omniglot_small)["images"]
    ink = (images > 127).mean(axis=(2, 3))
    assert 0.005 < ink.min() and ink.max() < 0.4  # every drawing has strokes, none is mostly ink
    assert np.median(images[:, :, 0, :]) == 0  # top rows are background
    assert len(np.unique(images)) > 100  # antialiased grey levels, not a binary image


def test_preprocessing_keeps_orientation_and_antialiases():
    raw = np.full((105, 105), 255, np.uint8)
    raw[:32, :62] = 0  # ink block: top left, wider than tall; edges at 8.5 and 16.5 pixels of 28
    small = og.preprocess_image(png(raw))
    assert small.shape == (28, 28) and small.dtype == np.uint8
    assert small[:7, :15].min() > 235 and small[10:, :].max() < 15 and small[:, 18:].max() < 15
    assert 60 < small[3, 16] < 200 and 60 < small[8, 5] < 200  # blended edge pixels


def test_checksum_is_recorded_and_stable_across_runs(omniglot_small_builds):
    first, second = omniglot_small_builds
    assert sha256sum(first) == sha256sum(second) == recorded_checksum(first) == recorded_checksum(second)
    assert first.read_bytes() == second.read_bytes()


def test_prepare_reuses_an_intact_file(omniglot_small):
    before = omniglot_small.stat().st_mtime_ns
    again = og.prepare_omniglot("small", omniglot_small.parent, opener=no_network, progress=False)
    assert again == omniglot_small
    assert omniglot_small.stat().st_mtime_ns == before


def test_a_file_not_matching_its_checksum_is_refused(omniglot_small, tmp_path):
    copy = tmp_path / omniglot_small.name
    copy.write_bytes(omniglot_small.read_bytes())
    (tmp_path / (copy.name + ".sha256")).write_text(f"{'0' * 64}  {copy.name}\n")
    with pytest.raises(ValueError, match="differs from the recorded"):
        load_arrays(copy)
    assert not og.is_current(copy)


def test_missing_data_file_error_names_it(tmp_path):
    (tmp_path / "s.json").write_text(json.dumps({"meta_train": ["a/b"], "meta_test": []}))
    with pytest.raises(FileNotFoundError, match="omniglot_small.npz"):
        og.omniglot_classes(data_file=str(tmp_path / "omniglot_small.npz"),
                            split_file=str(tmp_path / "s.json"), split="meta_train", rotations=False)


def test_conflicting_duplicates_and_wrong_drawer_counts_are_refused():
    with pytest.raises(ValueError, match="Greek/character01"):
        og.merge_characters([{"Greek/character01": [b"a"]}, {"Greek/character01": [b"b"]}])
    merged = og.merge_characters([{"x/c": [b"a"]}, {"x/c": [b"a"], "y/c": [b"b"]}])
    assert merged == {"x/c": [b"a"], "y/c": [b"b"]}
    with pytest.raises(ValueError, match="19 images"):
        og.build_arrays({"x/c": [png(np.zeros((105, 105), np.uint8))] * 19})
    with pytest.raises(ValueError, match="unknown Omniglot variant"):
        og.variant_archives("medium")


def test_paper_split_sizes():
    assert og.meta_train_size(1623) == 1200
    assert og.meta_train_size(242) == 179
    assert og.validation_size(1200) == 100  # MAML's code: 1100 training, 100 validation characters
    assert og.validation_size(179) == 15


def test_split_is_seeded_disjoint_and_in_the_paper_proportion(omniglot_small, tmp_path):
    a = og.write_split(omniglot_small, tmp_path / "a.json", seed=0)
    again = og.write_split(omniglot_small, tmp_path / "again.json", seed=0)
    other = og.write_split(omniglot_small, tmp_path / "other.json", seed=1)
    assert (tmp_path / "a.json").read_text() == (tmp_path / "again.json").read_text()
    assert a["meta_train"] != other["meta_train"]
    assert (len(a["meta_train"]), len(a["meta_val"]), len(a["meta_test"])) == (164, 15, 63)
    parts = [set(a[k]) for k in ("meta_train", "meta_val", "meta_test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    names = set(load_arrays(omniglot_small)["characters"])
    assert set().union(*parts) == names
    assert json.loads((tmp_path / "a.json").read_text())["data_sha256"] == sha256sum(omniglot_small)
    assert og.read_split(tmp_path / "a.json") == again | {"seed": 0}


def test_validation_characters_come_from_the_meta_training_side_and_leave_meta_test_untouched():
    names = [f"A{a}/c{c}" for a in range(10) for c in range(10)]
    without = og.split_characters(names, meta_train=70, seed=3)
    with_val = og.split_characters(names, meta_train=70, seed=3, validation=6)
    assert with_val["meta_test"] == without["meta_test"] and without["meta_val"] == []
    assert len(with_val["meta_val"]) == 6 and set(with_val["meta_val"]) <= set(without["meta_train"])
    assert sorted(with_val["meta_train"] + with_val["meta_val"]) == without["meta_train"]
    assert og.split_characters(names, meta_train=70, seed=4, validation=6)["meta_val"] != with_val["meta_val"]
    with pytest.raises(ValueError, match="cannot hold 70 validation characters"):
        og.split_characters(names, meta_train=70, seed=3, validation=70)


def test_an_old_split_file_without_validation_characters_is_named(omniglot_small, tmp_path):
    split = tmp_path / "old.json"
    split.write_text(json.dumps({"version": 1, "meta_train": ["x"], "meta_test": ["y"]}))
    with pytest.raises(KeyError, match="has no split 'meta_val'.*run the split step again"):
        og.omniglot_classes(data_file=str(omniglot_small), split_file=str(split), split="meta_val", rotations=False)


def test_split_ignores_alphabets_and_input_order():
    names = [f"A{a}/c{c}" for a in range(10) for c in range(10)]
    split = og.split_characters(names, meta_train=50, seed=3)
    assert split == og.split_characters(names[::-1], meta_train=50, seed=3)
    alphabets = {n.split("/")[0] for n in split["meta_test"]}
    assert len(alphabets) > 1  # characters, not whole alphabets, are split
    with pytest.raises(ValueError):
        og.split_characters(["a/b", "a/b"], meta_train=1, seed=0)


def test_missing_split_file_and_unknown_split(omniglot_small, tmp_path):
    with pytest.raises(FileNotFoundError, match="nosplit.json"):
        og.read_split(tmp_path / "nosplit.json")
    og.write_split(omniglot_small, tmp_path / "s.json", seed=0)
    with pytest.raises(KeyError, match="has no split 'validation' .*meta_train, meta_val, meta_test"):
        og.omniglot_classes(data_file=str(omniglot_small), split_file=str(tmp_path / "s.json"),
                            split="validation", rotations=False)


def test_rotations_are_counter_clockwise_and_new_classes():
    x = torch.tensor([[1, 2], [3, 4]], dtype=torch.uint8).view(1, 1, 2, 2)
    rotated = og.with_rotations(x)[:, 0]
    expected = [[[1, 2], [3, 4]], [[2, 4], [1, 3]], [[4, 3], [2, 1]], [[3, 1], [4, 2]]]
    assert rotated.tolist() == expected


def test_split_class_tensor_with_rotations(omniglot_small, tmp_path):
    og.write_split(omniglot_small, tmp_path / "s.json", seed=0)
    kwargs = dict(data_file=str(omniglot_small), split_file=str(tmp_path / "s.json"))
    plain = og.omniglot_classes(**kwargs, split="meta_test", rotations=False)
    rotated = og.omniglot_classes(**kwargs, split="meta_test", rotations=True)
    assert plain.shape == (63, 20, 28, 28) and rotated.shape == (4 * 63, 20, 28, 28)
    data = load_arrays(omniglot_small)
    second = list(data["characters"]).index(og.read_split(tmp_path / "s.json")["meta_test"][1])
    for r in range(4):
        assert np.array_equal(rotated[4 + r].numpy(), np.rot90(data["images"][second], r, axes=(1, 2)))
    assert len({rotated[4 + r, 0].numpy().tobytes() for r in range(4)}) == 4  # all four differ
