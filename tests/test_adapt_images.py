"""Adapting a meta-trained checkpoint to a user's own image folder: API, CLI and errors.

Two tiny checkpoints (MAML and Meta-SGD, 4 filters, 2 meta-iterations on a fake 4-character
Omniglot) are trained once per module through ``commands.train``, as ``dvc repro`` would.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from metalearning import adapt_images as ai
from metalearning import commands
from metalearning.checkpoints import load_checkpoint, save_checkpoint
from metalearning.cli import main
from metalearning.data import miniimagenet, omniglot
from metalearning.data.arrays import save_arrays
from metalearning.data.image_format import ImageFormat
from metalearning.learners.classification import classification_predictor

WAYS = 5
OMNIGLOT = ImageFormat(28, 1, True)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_omniglot(tmp_path_factory) -> tuple[Path, Path]:
    """A 26-character random Omniglot array file and its split (17 meta-train, 2 validation characters)."""
    root = tmp_path_factory.mktemp("omniglot")
    names = [f"alpha/char{i:02d}" for i in range(26)]
    images = np.random.default_rng(0).integers(0, 256, (26, 20, 28, 28), dtype=np.uint8)
    data, split = root / "omniglot.npz", root / "split.json"
    save_arrays(data, {"images": images, "characters": np.array(names), "alphabets": np.array(["alpha"] * 26)})
    omniglot.write_split(data, split, seed=0)
    return data, split


def _train(experiment: str, fake_omniglot, out: Path) -> Path:
    data, split = fake_omniglot
    bindings = [f"omniglot_classes.data_file = '{data}'", f"omniglot_classes.split_file = '{split}'",
                "filters = 4", "queries = 1", "MetaTrainer.meta_batch_size = 2", "MetaTrainer.meta_iterations = 2",
                "MetaTrainer.log_every = 2"]
    config = Path(__file__).resolve().parents[1] / "configs" / "experiments" / f"{experiment}.gin"
    commands.train([config], bindings, seed=0, out_dir=out, runs_dir=out / "runs", progress=False)
    return out / "checkpoint.pt"


@pytest.fixture(scope="module")
def maml_checkpoint(fake_omniglot, tmp_path_factory) -> Path:
    return _train("maml_omniglot_5w1s", fake_omniglot, tmp_path_factory.mktemp("maml"))


@pytest.fixture(scope="module")
def metasgd_checkpoint(fake_omniglot, tmp_path_factory) -> Path:
    return _train("metasgd_omniglot_5w1s", fake_omniglot, tmp_path_factory.mktemp("metasgd"))


def stripes(label: int, size: int = 60) -> np.ndarray:
    """Black ink on white: a vertical bar whose position is the class (easily told apart)."""
    image = np.full((size, size), 255, dtype=np.uint8)
    image[:, label * 10:label * 10 + 15] = 0
    return image


def save_png(pixels: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def task(tmp_path) -> Path:
    """``support/<bar_i>/a.png`` (one shot per class) and ``query/q<i>.png``, copies of the support."""
    for label in range(WAYS):
        save_png(stripes(label), tmp_path / "support" / f"bar_{label}" / "a.png")
        save_png(stripes(label), tmp_path / "query" / f"q{label}.png")
    (tmp_path / "support" / "bar_0" / "notes.txt").write_text("not an image: ignored")
    return tmp_path


# --- preprocessing -------------------------------------------------------------------------


def test_preprocessing_matches_the_datasets(tmp_path):
    rng = np.random.default_rng(1)
    drawing = np.where(rng.random((105, 105)) < 0.2, 0, 255).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(drawing).convert("1").save(png, format="PNG")  # Omniglot originals are 1-bit
    with Image.open(io.BytesIO(png.getvalue())) as image:
        ours = ai.preprocess(image, OMNIGLOT)
    assert np.array_equal(ours, omniglot.preprocess_image(png.getvalue()))

    photo = save_png(rng.integers(0, 256, (90, 100, 3), dtype=np.uint8), tmp_path / "photo.png")
    with Image.open(photo) as image:
        ours = ai.preprocess(image, ImageFormat(84, 3, False))
    assert np.array_equal(ours, miniimagenet.load_image(photo))


def test_load_image_is_learner_input_and_transparency_is_white(tmp_path):
    ink = stripes(1)
    on_white = ai.load_image(save_png(ink, tmp_path / "white.png"), OMNIGLOT)
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., 3] = 255 - ink  # black ink, fully transparent background
    on_clear = ai.load_image(save_png(rgba, tmp_path / "clear.png"), OMNIGLOT)
    assert on_white.shape == (1, 28, 28) and on_white.dtype == torch.float32
    assert 0 <= on_white.min() and on_white.max() <= 1 and on_white.max() > 0.9  # inverted: ink is bright
    torch.testing.assert_close(on_clear, on_white)


def test_interleave_by_class_visits_classes_round_robin():
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    assert labels[ai.interleave_by_class(labels)].tolist() == [0, 1, 2, 0, 1, 0]


def test_read_support_folder_labels_sorted_class_names(task):
    save_png(stripes(2), task / "support" / "bar_2" / "b.JPG")
    support = ai.read_support_folder(task / "support", OMNIGLOT)
    assert support.class_names == tuple(f"bar_{i}" for i in range(WAYS))
    assert support.images.shape == (WAYS + 1, 1, 28, 28)
    assert support.labels.tolist() == [0, 1, 2, 2, 3, 4]
    assert [f.name for f in support.files] == ["a.png", "a.png", "a.png", "b.JPG", "a.png", "a.png"]


# --- adaptation ----------------------------------------------------------------------------


def _load(checkpoint: Path, task: Path):
    model = ai.load_adaptable(checkpoint)
    return model, ai.read_support_folder(task / "support", model.image_format), \
        ai.read_query([task / "query"], model.image_format)


def test_load_adaptable_builds_model_without_training_data(maml_checkpoint, fake_omniglot, task):
    for path in fake_omniglot:
        path.rename(path.with_suffix(".moved"))  # the data must not be needed
    try:
        model = ai.load_adaptable(maml_checkpoint)
    finally:
        for path in fake_omniglot:
            path.with_suffix(".moved").rename(path)
    assert type(model.algorithm).__name__ == "MAML" and model.algorithm.eval_inner_steps == 3
    assert model.ways == WAYS and model.bn_mode == "transductive" and model.image_format == OMNIGLOT


def test_predictions_shape_names_and_probabilities(maml_checkpoint, task):
    model, support, query = _load(maml_checkpoint, task)
    predictions = ai.adapt_and_predict(model, support, query)
    assert predictions.steps == 3 and predictions.bn_mode == "transductive"
    assert predictions.probabilities.shape == (WAYS, WAYS)
    torch.testing.assert_close(predictions.probabilities.sum(dim=1), torch.ones(WAYS))
    assert [f.name for f in predictions.files] == [f"q{i}.png" for i in range(WAYS)]
    assert set(predictions.predicted) <= set(support.class_names)


def test_adapted_model_recognises_copies_of_its_support_images(maml_checkpoint, task):
    """The queries are the support images, so after adaptation this is fitting accuracy on five
    easily separated images: 30 SGD steps of α = 0.4 on their cross-entropy drive every one to its
    own label (all five correct from about 10 steps on, true-class probability ≈ 0.75 at 30 in
    this set-up). Unadapted, the 2-iteration model is near chance (probabilities ≈ 0.2)."""
    model, support, query = _load(maml_checkpoint, task)
    truth = torch.arange(WAYS)
    for bn_mode in ("transductive", "non_transductive"):
        before = ai.adapt_and_predict(model, support, query, steps=0, bn_mode=bn_mode)
        after = ai.adapt_and_predict(model, support, query, steps=30, bn_mode=bn_mode)
        assert torch.equal(after.labels, truth), bn_mode
        true_before = before.probabilities[truth, truth]
        true_after = after.probabilities[truth, truth]
        assert (true_after > 0.5).all() and (true_after > true_before + 0.2).all(), bn_mode


def test_non_transductive_query_does_not_depend_on_other_queries(maml_checkpoint, task, monkeypatch):
    model, support, query = _load(maml_checkpoint, task)
    monkeypatch.setattr(ai, "QUERY_CHUNK", 2)  # chunk boundaries must not matter either
    all_at_once = ai.adapt_and_predict(model, support, query, steps=2, bn_mode="non_transductive")
    alone = ai.adapt_and_predict(model, support, ai.QuerySet(query.images[3:4], query.files[3:4]), steps=2,
                                 bn_mode="non_transductive")
    torch.testing.assert_close(alone.probabilities[0], all_at_once.probabilities[3])


def test_metasgd_adapts_with_its_learned_alpha(metasgd_checkpoint, task):
    """One step must be θ − α∘∇L(θ; support) with the checkpoint's α, entry by entry: α is replaced
    by random per-entry values so a scalar step size (or none) cannot pass."""
    model, support, query = _load(metasgd_checkpoint, task)
    assert type(model.algorithm).__name__ == "MetaSGD" and set(model.meta_params) == {"theta", "alpha"}
    generator = torch.Generator().manual_seed(0)
    alpha = {k: 0.5 * torch.rand(a.shape, generator=generator) for k, a in model.meta_params["alpha"].items()}
    model = dataclasses.replace(model, meta_params={"theta": model.meta_params["theta"], "alpha": alpha})
    theta = model.meta_params["theta"]
    predict = classification_predictor(model.learner, "non_transductive")

    def support_loss(params):
        return F.cross_entropy(predict(params, (support.images, support.labels)), support.labels)

    grads = torch.func.grad(support_loss)(theta)
    stepped = {k: theta[k] - alpha[k] * grads[k] for k in theta}
    context = (query.images, torch.zeros(WAYS, dtype=torch.int64), support.images)
    expected = predict(stepped, context).softmax(dim=1)
    ours = ai.adapt_and_predict(model, support, query, steps=1, bn_mode="non_transductive")
    torch.testing.assert_close(ours.probabilities, expected, rtol=1e-4, atol=1e-5)
    unadapted = ai.adapt_and_predict(model, support, query, steps=0, bn_mode="non_transductive")
    assert (ours.probabilities - unadapted.probabilities).abs().max() > 1e-3


# --- the command line ----------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", ["maml_checkpoint", "metasgd_checkpoint"])
def test_cli_prints_one_line_per_query_and_writes_json(checkpoint, task, request, capsys):
    path = request.getfixturevalue(checkpoint)
    out = task / "predictions.json"
    queries = [str(task / "query" / "q0.png"), str(task / "query")]  # a file and a folder
    code = main(["adapt", "--checkpoint", str(path), "--support", str(task / "support"), "--query", *queries,
                 "--steps", "2", "--bn-mode", "non_transductive", "--json", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = [line.split("\t") for line in captured.out.strip().splitlines()]
    record = json.loads(out.read_text())
    assert len(lines) == len(record["predictions"]) == 1 + WAYS
    assert record["steps"] == 2 and record["bn_mode"] == "non_transductive"
    for (file, name, probability), row in zip(lines, record["predictions"]):
        assert file == row["file"] and name == row["predicted"] and name in record["classes"]
        assert float(probability) == pytest.approx(row["probability"], abs=1e-4)
        assert sum(row["probabilities"].values()) == pytest.approx(1, abs=1e-5)
        assert row["probability"] == max(row["probabilities"].values())
    assert lines[0][0].endswith("q0.png") and lines[0][1:] == lines[1][1:]  # same image, same answer


# --- errors --------------------------------------------------------------------------------


def _cli_error(capsys, checkpoint: Path, support: Path, query: Path) -> str:
    code = main(["adapt", "--checkpoint", str(checkpoint), "--support", str(support), "--query", str(query)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    return err


def test_missing_folders_are_named(maml_checkpoint, task, capsys):
    assert "nowhere" in _cli_error(capsys, maml_checkpoint, task / "nowhere", task / "query")
    assert "nothing_here" in _cli_error(capsys, maml_checkpoint, task / "support", task / "nothing_here")


def test_another_number_of_classes_than_trained_is_refused_by_the_api(maml_checkpoint, task):
    for extra in ("bar_5", "bar_6"):
        save_png(stripes(1), task / "support" / extra / "a.png")
    model, support, query = _load(maml_checkpoint, task)
    with pytest.raises(ValueError, match=r"has 7 classes.*5-way"):
        ai.adapt_and_predict(model, support, query)


@pytest.mark.parametrize("checkpoint", ["maml_checkpoint", "metasgd_checkpoint"])
@pytest.mark.parametrize("ways", [3, 7])
def test_a_5_way_model_adapts_to_another_number_of_classes(checkpoint, ways, task, request, tmp_path):
    """A zero-initialised M-way head on the trained body: uniform before adaptation, adapted after.
    (These fixture models are 2 iterations on random data; accuracy on a real 20-way task is
    measured with the pipeline's model, see the README.)"""
    path = request.getfixturevalue(checkpoint)
    for label in range(ways):
        save_png(stripes(label), tmp_path / "m" / "support" / f"bar_{label}" / "a.png")
        save_png(stripes(label), tmp_path / "m" / "query" / f"q{label}.png")
    model = ai.load_adaptable(path)
    support = ai.read_support_folder(tmp_path / "m" / "support", model.image_format)
    query = ai.read_query(tmp_path / "m" / "query", model.image_format)
    wide = ai.with_ways(model, ways, head_init="zero")
    assert wide.ways == ways and wide.meta_params["theta"][list(wide.meta_params["theta"])[-1]].shape == (ways,)
    before = ai.adapt_and_predict(wide, support, query, steps=0)
    torch.testing.assert_close(before.probabilities, torch.full((ways, ways), 1 / ways))  # zero head: uniform
    after = ai.adapt_and_predict(wide, support, query, bn_mode="non_transductive")
    assert after.probabilities.shape == (ways, ways) and not torch.allclose(after.probabilities, before.probabilities)
    torch.testing.assert_close(after.probabilities.sum(1), torch.ones(ways))
    body = [k for k in model.meta_params["theta"]][:-2]  # everything but the output layer is the trained one
    assert all(wide.meta_params["theta"][k] is model.meta_params["theta"][k] for k in body)


def test_a_prototype_head_is_the_nearest_class_mean_before_adaptation(maml_checkpoint, tmp_path):
    """w_k = 2c_k, b_k = −‖c_k‖²: the logits are −‖h − c_k‖² + ‖h‖², so with 0 inner steps each
    query that copies a support image (its own prototype, 1 shot) is classified as its class
    (batch norm over the support set alone, as the prototypes were computed)."""
    model = ai.load_adaptable(maml_checkpoint)
    for label in range(3):
        save_png(stripes(label), tmp_path / "support" / f"bar_{label}" / "a.png")
    support = ai.read_support_folder(tmp_path / "support", model.image_format)
    wide = ai.with_ways(model, 3, support)
    query = ai.QuerySet(support.images, support.files)
    predictions = ai.adapt_and_predict(wide, support, query, steps=0, bn_mode="transductive")
    assert predictions.predicted == ["bar_0", "bar_1", "bar_2"]
    with pytest.raises(ValueError, match="needs a support set of 4 classes"):
        ai.with_ways(model, 4, support)
    with pytest.raises(ValueError, match="head_init must be one of"):
        ai.with_ways(model, 3, support, head_init="random")


def test_cli_adapts_a_5_way_model_to_7_classes(maml_checkpoint, task, capsys):
    for label in (5, 6):
        save_png(stripes(label), task / "support" / f"bar_{label}" / "a.png")
    assert main(["adapt", "--checkpoint", str(maml_checkpoint), "--support", str(task / "support"), "--query",
                 str(task / "query"), "--bn-mode", "non_transductive"]) == 0
    out = capsys.readouterr()
    assert "a new 7-way output layer initialised from prototypes" in out.err and len(out.out.strip().splitlines()) == 5


def test_class_folder_without_images_is_named(maml_checkpoint, task, capsys):
    (task / "support" / "bar_3" / "a.png").unlink()
    err = _cli_error(capsys, maml_checkpoint, task / "support", task / "query")
    assert "bar_3" in err and "no images" in err


def test_corrupt_image_is_named(maml_checkpoint, task, capsys):
    (task / "support" / "bar_2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    err = _cli_error(capsys, maml_checkpoint, task / "support", task / "query")
    assert "broken.png" in err and "corrupt" in err
    with pytest.raises(ValueError, match="broken.png"):
        ai.read_query([task / "support" / "bar_2" / "broken.png"], OMNIGLOT)


def test_bad_steps_and_bn_mode_are_refused(maml_checkpoint, task):
    model, support, query = _load(maml_checkpoint, task)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        ai.adapt_and_predict(model, support, query, steps=-1)
    with pytest.raises(ValueError, match="bn_mode must be one of transductive, non_transductive, got 'batch'"):
        ai.adapt_and_predict(model, support, query, bn_mode="batch")


def test_checkpoint_without_gin_config_is_named(maml_checkpoint, task, capsys):
    bare = task / "bare.pt"
    save_checkpoint(bare, meta_params=load_checkpoint(maml_checkpoint)["meta_params"], iteration=2)
    err = _cli_error(capsys, bare, task / "support", task / "query")
    assert "bare.pt" in err and "gin config" in err


def test_non_image_checkpoint_is_refused(tmp_path, repo):
    """A sine regressor is refused, naming the checkpoint and its family."""
    commands.train([repo / "configs" / "experiments" / "maml_sine_5shot.gin"], ["MetaTrainer.meta_iterations = 2"],
                   seed=0, out_dir=tmp_path / "sine", runs_dir=tmp_path / "runs", progress=False)
    with pytest.raises(ValueError, match=r"sine/checkpoint.pt is a sine model.*image classifiers"):
        ai.load_adaptable(tmp_path / "sine" / "checkpoint.pt")


def test_a_16_bit_grey_png_is_scaled_by_its_bit_depth_not_clipped(tmp_path):
    """A 16-bit scan with grey ink (0x8080 = 32896) reads as 128 of 255, as its 8-bit twin would;
    PIL's own conversion clipped it to 255 (a blank image that still got a class)."""
    pixels = np.full((28, 28), 0x8080, dtype=np.uint16)
    pixels[:, :14] = 0xFFFF
    Image.fromarray(pixels).save(tmp_path / "scan.png")
    with Image.open(tmp_path / "scan.png") as image:
        assert image.mode.startswith("I")
        out = ai.preprocess(image, ImageFormat(28, 1, False))
    assert out.dtype == np.uint8 and out[0, 0] == 255 and out[0, -1] == 128
