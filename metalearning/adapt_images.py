"""Adapt a meta-trained checkpoint to your own few-shot task: a folder of images → predictions.

This is how a model is used after ``dvc repro``::

    model = load_adaptable("models/omniglot/maml_omniglot_5w1s/checkpoint.pt")
    support = read_support_folder("my_task/support", model.image_format)  # one sub-folder per class
    query = read_query(["my_task/query"], model.image_format)
    predictions = adapt_and_predict(model, support, query)

Only the learner and the algorithm are rebuilt from the gin config stored in the checkpoint; the
meta-training data is not needed. Adaptation is the algorithm's own inner loop
(``MetaLearner.adaptation_path``): MAML's fixed α, Meta-SGD's learned per-parameter α, Reptile's
inner Adam on its meta-test minibatches, for ``eval_inner_steps`` steps unless told otherwise,
on the cross-entropy of the support set. Queries are then classified under the batch-norm mode
the model was trained with (``classification_predictor.bn_mode``) unless told otherwise
(reptile.md §6): ``"transductive"`` normalises the query set with its own statistics, so a
prediction depends on the other query images; ``"non_transductive"`` normalises each query image
with the support set, so it does not.

Images are preprocessed as the training data was (``image_format`` of the task config): decoded
with PIL, converted to grey or RGB, resized to ``size × size`` with LANCZOS, and inverted for
Omniglot (stored as ink 255 on a 0 background; drawings are dark ink on white), then scaled to
[0, 1] as :func:`~metalearning.data.episodes.to_inputs` does. Transparent pixels are composited
onto white first, and EXIF orientation is applied (both no-ops on the datasets' own files).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor, nn

from metalearning.core.algorithms import MetaLearner, MetaParams
from metalearning.data.episodes import to_inputs
from metalearning.data.image_format import ImageFormat, image_format
from metalearning.learners.classification import BN_MODES, ClassificationPredictor, make_classification_loss
from metalearning.model import load_model

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
QUERY_CHUNK = 32  # non-transductive queries per vmap call: bounds memory (each sees S + 1 images)


@dataclass(frozen=True)
class Adaptable:
    """A meta-trained few-shot image classifier, ready to adapt to a new task.

    Attributes:
        checkpoint: the file it was loaded from (named in errors).
        algorithm: the meta-learning algorithm, whose ``adaptation_path`` is the inner loop.
        learner: the network (its own parameters are unused; ``meta_params`` are applied).
        meta_params: ``{"theta": Params}`` and, for Meta-SGD, ``{"alpha": Params}``.
        image_format: how images are preprocessed (size, channels, inversion).
        ways: N, the number of classes the model tells apart.
        bn_mode: the batch-norm mode of meta-training.
    """

    checkpoint: Path
    algorithm: MetaLearner
    learner: nn.Module
    meta_params: MetaParams
    image_format: ImageFormat
    ways: int
    bn_mode: str


class SupportSet(NamedTuple):
    """A labelled support set read from a folder.

    Attributes:
        images: float ``[S, C, H, W]`` in [0, 1].
        labels: int64 ``[S]``; label ``i`` is ``class_names[i]``.
        class_names: the class sub-folder names, sorted.
        files: the image of each row of ``images``.
        folder: the folder they were read from (named in errors).
    """

    images: Tensor
    labels: Tensor
    class_names: tuple[str, ...]
    files: tuple[Path, ...]
    folder: Path


class QuerySet(NamedTuple):
    """Unlabelled query images: ``images`` float ``[Q, C, H, W]`` in [0, 1], one per ``files`` entry."""

    images: Tensor
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Predictions:
    """Class probabilities of each query image after adaptation.

    Attributes:
        files: the query images, in the order of the rows of ``probabilities``.
        class_names: the support classes, in the order of the columns.
        probabilities: ``[Q, N]``, rows sum to 1 (softmax of the adapted model's logits).
        steps: inner steps taken.
        bn_mode: the batch-norm mode the queries were classified under.
    """

    files: tuple[Path, ...]
    class_names: tuple[str, ...]
    probabilities: Tensor
    steps: int
    bn_mode: str

    @property
    def labels(self) -> Tensor:
        """int64 ``[Q]``: the most probable class of each query."""
        return self.probabilities.argmax(dim=1)

    @property
    def predicted(self) -> list[str]:
        """The most probable class name of each query."""
        return [self.class_names[i] for i in self.labels.tolist()]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record: settings, then one entry per query with all class probabilities."""
        rows = [{"file": str(f), "predicted": name, "probability": float(p[i]),
                 "probabilities": dict(zip(self.class_names, map(float, p)))}
                for f, name, i, p in zip(self.files, self.predicted, self.labels.tolist(), self.probabilities)]
        return {"classes": list(self.class_names), "steps": self.steps, "bn_mode": self.bn_mode,
                "predictions": rows}


# --- the model -----------------------------------------------------------------------------


def _image_format(checkpoint: Path) -> ImageFormat:
    try:
        return image_format()
    except TypeError as err:  # gin: required image_format arguments not bound
        raise ValueError(f"the config stored in {checkpoint} binds no image_format (size, channels, invert), "
                         "so it does not say how to preprocess images") from err


def output_ways(learner: nn.Module, theta: dict[str, Tensor], fmt: ImageFormat) -> int:
    """N of a classifier: the width of its logits on two blank ``fmt`` images.

    Raises:
        ValueError: the learner does not accept ``[B, channels, size, size]`` inputs.
    """
    blank = torch.zeros(2, fmt.channels, fmt.size, fmt.size, dtype=next(iter(theta.values())).dtype)
    try:
        with torch.no_grad():
            logits = torch.func.functional_call(learner, theta, (blank,))
    except RuntimeError as err:
        raise ValueError(f"the learner does not take {fmt.size}×{fmt.size} images with {fmt.channels} "
                         f"channel(s): {err}") from err
    return int(logits.shape[-1])


def load_adaptable(checkpoint: Path | str) -> Adaptable:
    """Rebuild the learner and algorithm of ``checkpoint`` (:func:`~metalearning.model.load_model`).

    The meta-training data is not read (the few-shot family loads its classes on first use).
    Note: like every command that loads a checkpoint, this replaces the process's global gin
    config with the stored one.

    Raises:
        FileNotFoundError: no such checkpoint.
        ValueError: the checkpoint is corrupt, holds no gin config, or is not a few-shot image
            classifier (another family, no ``image_format`` or no ``@classification_predictor``);
            the message names the checkpoint.
    """
    checkpoint = Path(checkpoint)
    model = load_model(checkpoint)
    if model.family.kind != "fewshot":
        raise ValueError(f"{checkpoint} is a {model.family.kind} model; `metalearning adapt` adapts few-shot image "
                         "classifiers")
    predict = model.trainer.predict
    if not isinstance(predict, ClassificationPredictor):
        raise ValueError(f"{checkpoint} was trained with MetaTrainer.predictor = {predict!r}, not "
                         "@classification_predictor: it is not a few-shot image classifier")
    fmt, learner, theta = _image_format(checkpoint), model.trainer.learner, model.meta_params["theta"]
    return Adaptable(checkpoint=checkpoint, algorithm=model.algorithm, learner=learner,
                     meta_params=model.meta_params, image_format=fmt,
                     ways=output_ways(learner, theta, fmt), bn_mode=predict.bn_mode)


# --- the images ----------------------------------------------------------------------------


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit grey images scaled to 8 bits by their bit depth (PIL's own conversion clips
    everything above 255: a 16-bit scan would turn white and still get a class)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return Image.fromarray((np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8), mode="L")
    if image.mode == "I":  # 32-bit signed: PNG's 16-bit grey often decodes to this mode
        pixels = np.asarray(image, dtype=np.int64)
        depth = 16 if pixels.max(initial=0) < 2**16 else 32
        return Image.fromarray((pixels.clip(0) >> (depth - 8)).astype(np.uint8), mode="L")
    return image


def _flatten_alpha(image: Image.Image) -> Image.Image:
    """RGB(A)/LA/P images with transparency composited onto white (drawings exported with a
    transparent background would otherwise turn black)."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image


def preprocess(image: Image.Image, fmt: ImageFormat) -> np.ndarray:
    """A PIL image as the dataset stores its images: uint8 ``[size, size]`` (grey) or
    ``[size, size, 3]`` (RGB).

    Camera orientation (EXIF) and transparency are settled first; the rest is the datasets' own
    preprocessing, :meth:`~metalearning.data.image_format.ImageFormat.pixels`.
    """
    return fmt.pixels(_flatten_alpha(_to_8_bit(ImageOps.exif_transpose(image))))


def load_image(path: Path, fmt: ImageFormat) -> Tensor:
    """The image file ``path`` as a learner input: float ``[C, size, size]`` in [0, 1].

    Raises:
        ValueError: the file is not a readable image (the message names it).
    """
    try:
        with Image.open(path) as image:
            image.load()
            pixels = preprocess(image, fmt)
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # PIL's errors for bad files
        raise ValueError(f"image {path} is unreadable or corrupt: {err}") from err
    return to_inputs(torch.from_numpy(pixels.copy()))


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (extensions in :data:`IMAGE_EXTENSIONS`, any case),
    sorted by name; hidden files are skipped."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS)


def _require_folder(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")


def _load_all(paths: Sequence[Path], fmt: ImageFormat) -> Tensor:
    """float ``[len(paths), C, size, size]``."""
    return torch.stack([load_image(p, fmt) for p in paths])


def read_support_folder(folder: Path | str, fmt: ImageFormat) -> SupportSet:
    """A labelled support set from ``folder/<class name>/<image>``.

    Every (non-hidden) sub-folder is a class; label ``i`` is the ``i``-th class name in sorted
    order. Images are the files listed by :func:`list_images`; other files are ignored.

    Returns:
        :class:`SupportSet` with ``images`` ``[S, C, size, size]`` and ``labels`` ``[S]``,
        grouped by class in label order.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: it has no class sub-folders, a class folder holds no images, or an image is
            unreadable; the message names the folder or file.
    """
    folder = Path(folder)
    _require_folder(folder, "support")
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"support folder {folder} has no class sub-folders (expected {folder}/<class>/<image>)")
    per_class = [list_images(c) for c in classes]
    for class_dir, files in zip(classes, per_class):
        if not files:
            raise ValueError(f"class folder {class_dir} holds no images "
                             f"(extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    files = [f for fs in per_class for f in fs]
    labels = torch.tensor([i for i, fs in enumerate(per_class) for _ in fs], dtype=torch.int64)
    return SupportSet(images=_load_all(files, fmt), labels=labels, class_names=tuple(c.name for c in classes),
                      files=tuple(files), folder=folder)


def query_files(paths: Iterable[Path | str]) -> list[Path]:
    """Image files named by ``paths``: a file as given, a folder as its :func:`list_images`.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no images at all.
    """
    paths, files = [Path(p) for p in paths], []
    for path in paths:
        if path.is_dir():
            files += list_images(path)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"query image or folder not found: {path}")
    if not files:
        raise ValueError(f"no query images in {', '.join(map(str, paths)) or '(nothing given)'}")
    return files


def read_query(paths: Path | str | Iterable[Path | str], fmt: ImageFormat) -> QuerySet:
    """Query images from files and/or folders (see :func:`query_files`), in the order given.

    Returns:
        :class:`QuerySet` with ``images`` ``[Q, C, size, size]``.

    Raises:
        FileNotFoundError, ValueError: as :func:`query_files`; ValueError naming an unreadable image.
    """
    files = query_files([paths] if isinstance(paths, (str, Path)) else paths)
    return QuerySet(images=_load_all(files, fmt), files=tuple(files))


# --- adaptation ----------------------------------------------------------------------------


def interleave_by_class(labels: Tensor) -> Tensor:
    """A permutation of ``[S]`` labels visiting the classes round-robin (1st of every class,
    then 2nd, …), so inner minibatches of at least N examples (Reptile's meta-test batches)
    contain every class, as a shuffled support set would on average; deterministic.

    Returns:
        int64 ``[S]`` indices into ``labels``.
    """
    rank = torch.zeros_like(labels)
    for c in labels.unique():
        members = labels == c
        rank[members] = torch.arange(int(members.sum()))
    return torch.argsort(rank * (int(labels.max()) + 1) + labels, stable=True)


HEAD_INITS = ("prototypes", "zero")


def with_ways(adaptable: Adaptable, ways: int, support: SupportSet | None = None,
              head_init: str = "prototypes") -> Adaptable:
    """The model with an M-way output layer, for a task with another number of classes than the
    N it was meta-trained on (e.g. a 5-way model on a 20-way 1-shot task).

    The trained N-way output layer (the learner's last weight ``[N, F]`` and bias ``[N]``) is
    replaced and the body kept:

    * ``"prototypes"`` (Proto-MAML's initialisation, Triantafillou et al. 2020): with c_k the
      mean body feature of class k's support images, w_k = 2·c_k and b_k = −‖c_k‖², so before any
      inner step the model is the nearest-prototype classifier (squared Euclidean distance), and
      the inner steps refine it. Needs ``support``.
    * ``"zero"``: zeros; every class starts equally likely, and the first inner step sets class
      k's weights to a prototype-like α·Σ(y_k − 1/M)·features. Needs more inner steps.

    A learned per-entry step size (Meta-SGD) gets, for every class row, the mean of the trained rows.

    Raises:
        ValueError: the learner's last two parameters are not an N-way linear output layer, an
            unknown ``head_init``, or ``"prototypes"`` without a support set of M classes.
    """
    if ways == adaptable.ways:
        return adaptable
    if head_init not in HEAD_INITS:
        raise ValueError(f"head_init must be one of {', '.join(HEAD_INITS)}, got {head_init!r}")
    theta = adaptable.meta_params["theta"]
    weight, bias = list(theta)[-2:]
    n = adaptable.ways
    if theta[weight].dim() != 2 or theta[weight].shape[0] != n or tuple(theta[bias].shape) != (n,):
        raise ValueError(f"{adaptable.checkpoint}: its last parameters ({weight}, {bias}) are not an {n}-way "
                         f"linear output layer, so it cannot be adapted to {ways} classes")
    if head_init == "prototypes":
        if support is None or len(support.class_names) != ways:
            raise ValueError(f"prototype initialisation of a {ways}-way head needs a support set of {ways} classes")
        head = _prototype_head(adaptable, weight, support)
    else:
        head = (torch.zeros(ways, theta[weight].shape[1], dtype=theta[weight].dtype),
                torch.zeros(ways, dtype=theta[bias].dtype))
    meta_params = {}
    for group, params in adaptable.meta_params.items():
        meta_params[group] = dict(params)
        for name, new in zip((weight, bias), head):
            p = params[name]
            if group == "theta":
                meta_params[group][name] = new
            elif p.shape[:1] == (n,):  # per-class entries (Meta-SGD's α): the mean class row for every class
                meta_params[group][name] = p.mean(0, keepdim=True).expand(ways, *p.shape[1:]).clone()
    return dataclasses.replace(adaptable, meta_params=meta_params, ways=ways)


def _prototype_head(adaptable: Adaptable, weight: str, support: SupportSet) -> tuple[Tensor, Tensor]:
    """(2·c_k, −‖c_k‖²) from the mean input c_k of the output layer (the body's features) per class."""
    layer = adaptable.learner.get_submodule(weight.rsplit(".", 1)[0])
    seen: list[Tensor] = []
    hook = layer.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    try:
        with torch.no_grad():
            torch.func.functional_call(adaptable.learner, adaptable.meta_params["theta"], (support.images,))
    finally:
        hook.remove()
    features, ways = seen[0], len(support.class_names)
    prototypes = torch.stack([features[support.labels == k].mean(0) for k in range(ways)])
    return 2 * prototypes, -(prototypes * prototypes).sum(1)


def check_ways(adaptable: Adaptable, support: SupportSet) -> None:
    """ValueError naming the folder and checkpoint unless the support set has N classes."""
    if len(support.class_names) != adaptable.ways:
        raise ValueError(f"support folder {support.folder} has {len(support.class_names)} classes "
                         f"({', '.join(support.class_names)}) but {adaptable.checkpoint} is a "
                         f"{adaptable.ways}-way model: give exactly {adaptable.ways} class folders")


def _query_logits(predict, params, query: Tensor, context: Tensor, bn_mode: str) -> Tensor:
    """``[Q, N]`` logits; non-transductive queries in chunks (each is independent of the others)."""
    size = QUERY_CHUNK if bn_mode == "non_transductive" else query.shape[0]
    chunks = [predict(params, (x, torch.zeros(x.shape[0], dtype=torch.int64), context))
              for x in query.split(size)]
    return torch.cat(chunks)


def adapt_and_predict(adaptable: Adaptable, support: SupportSet, query: QuerySet, *, steps: int | None = None,
                      bn_mode: str | None = None) -> Predictions:
    """Adapt to ``support`` with the algorithm's inner loop, then classify ``query``.

    θ_steps = ``algorithm.adaptation_path(meta_params, (xs, ys), loss, steps)[-1]`` with the
    cross-entropy loss of the support set (MAML: θ ← θ − α∇L; Meta-SGD: θ ← θ − α∘∇L with the
    learned α; Reptile: its inner rule on its meta-test minibatches), then softmax of the logits
    of θ_steps on the query images, with the support images as batch-norm context when
    non-transductive.

    Args:
        adaptable: from :func:`load_adaptable`.
        support: from :func:`read_support_folder`; must have ``adaptable.ways`` classes.
        query: from :func:`read_query`; ``[Q, C, H, W]``.
        steps: inner steps (default: the algorithm's ``eval_inner_steps``); 0 predicts with θ_0.
        bn_mode: ``"transductive"`` or ``"non_transductive"`` (default: the trained one).

    Returns:
        :class:`Predictions` with ``probabilities`` ``[Q, N]``.

    Raises:
        ValueError: wrong number of classes, negative ``steps`` or unknown ``bn_mode``.
    """
    check_ways(adaptable, support)
    steps = adaptable.algorithm.eval_inner_steps if steps is None else steps
    bn_mode = adaptable.bn_mode if bn_mode is None else bn_mode
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    predict = ClassificationPredictor(adaptable.learner, bn_mode)
    if bn_mode == "transductive" and query.images.shape[0] == 1:
        warnings.warn("transductive batch norm normalises the query set with its own statistics; with a "
                      "single query image prefer bn_mode='non_transductive'", stacklevel=2)
    order = interleave_by_class(support.labels)
    xs, ys = support.images[order], support.labels[order]
    loss = make_classification_loss(adaptable.learner, bn_mode)
    with torch.no_grad():  # torch.func.grad inside the inner loop still differentiates
        adapted = adaptable.algorithm.adaptation_path(adaptable.meta_params, (xs, ys), loss, steps)[-1]
        logits = _query_logits(predict, adapted, query.images, xs, bn_mode)
    return Predictions(files=query.files, class_names=support.class_names, probabilities=logits.softmax(dim=1),
                       steps=steps, bn_mode=bn_mode)


def format_predictions(predictions: Predictions) -> list[str]:
    """One tab-separated line per query: file, predicted class, its probability (4 decimals)."""
    return [f"{f}\t{name}\t{float(p[i]):.4f}" for f, name, i, p in
            zip(predictions.files, predictions.predicted, predictions.labels.tolist(), predictions.probabilities)]
