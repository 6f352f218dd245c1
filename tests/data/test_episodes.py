"""N-way K-shot episodes: shapes, labels, support/query disjointness, fixed meta-test sets."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from metalearning.data import episodes as ep
from metalearning.data.arrays import load_arrays
from metalearning.data.omniglot import with_rotations


def id_classes(num_classes: int, per_class: int, rgb: bool = False) -> torch.Tensor:
    """uint8 classes whose pixel (0, 0) is the class id and pixel (0, 1) the image id."""
    shape = (num_classes, per_class, 4, 5) + ((3,) if rgb else ())
    classes = torch.zeros(shape, dtype=torch.uint8)
    classes[:, :, 0, 0] = torch.arange(num_classes, dtype=torch.uint8).view(-1, 1, *(1,) * rgb)
    classes[:, :, 0, 1] = torch.arange(per_class, dtype=torch.uint8).view(1, -1, *(1,) * rgb)
    return classes


def decode(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class ids, image ids) of inputs ``[..., C, H, W]`` built by :func:`id_classes`."""
    pixels = (inputs[..., 0, 0, :2] * 255).round().long()
    return pixels[..., 0], pixels[..., 1]


def check_episodes(task, ways: int, shots: int, queries: int) -> None:
    """Every invariant an episode batch must satisfy (labels, counts, disjointness, consistency)."""
    (xs, ys), (xq, yq, context) = task.support, task.query
    assert context is xs  # the query batches carry their task's support inputs (non-transductive BN)
    for y, per_label in ((ys, shots), (yq, queries)):
        assert y.dtype == torch.int64
        counts = torch.stack([(y == label).sum(dim=1) for label in range(ways)], dim=1)
        assert (counts == per_label).all()
    cs, is_ = decode(xs)
    cq, iq = decode(xq)
    for t in range(ys.shape[0]):
        label_of = {}
        for c, y in zip(torch.cat([cs[t], cq[t]]).tolist(), torch.cat([ys[t], yq[t]]).tolist()):
            assert label_of.setdefault(c, y) == y  # one class per label, one label per class
        assert len(label_of) == ways
        support = set(zip(cs[t].tolist(), is_[t].tolist()))
        query = set(zip(cq[t].tolist(), iq[t].tolist()))
        assert len(support) == ways * shots and len(query) == ways * queries  # no repeats
        assert not support & query


def test_shapes_dtypes_and_range_grey():
    tasks = ep.FewShotTasks(classes=id_classes(12, 10), ways=5, shots=2, queries=3)
    task = tasks.sample(7, torch.Generator().manual_seed(0))
    assert task.support[0].shape == (7, 10, 1, 4, 5) and task.query[0].shape == (7, 15, 1, 4, 5)
    assert task.support[1].shape == (7, 10) and task.query[1].shape == (7, 15)
    assert task.support[0].dtype == torch.float32
    assert 0 <= task.support[0].min() and task.support[0].max() <= 1
    assert tasks.sample(1, torch.Generator(), torch.float64).query[0].dtype == torch.float64
    check_episodes(task, 5, 2, 3)


def test_shuffled_support_is_a_per_task_permutation_of_the_same_episode():
    classes = id_classes(12, 10)
    plain = ep.FewShotTasks(classes=classes, ways=5, shots=2, queries=3).sample(6, torch.Generator().manual_seed(3))
    mixed = ep.FewShotTasks(classes=classes, ways=5, shots=2, queries=3, shuffle_support=True).sample(
        6, torch.Generator().manual_seed(3))
    check_episodes(mixed, 5, 2, 3)
    assert torch.equal(plain.query[0], mixed.query[0])
    assert not torch.equal(plain.support[1], mixed.support[1])  # label-major order is gone
    for t in range(6):
        key = lambda x, y: sorted(zip(decode(x)[1].tolist(), y.tolist()))  # noqa: E731
        assert key(plain.support[0][t], plain.support[1][t]) == key(mixed.support[0][t], mixed.support[1][t])


def test_rgb_channels_come_first():
    classes = id_classes(6, 8, rgb=True)
    classes[..., 1:, :, :] = torch.tensor([10, 20, 30], dtype=torch.uint8)  # rows below 0: an RGB colour
    task = ep.FewShotTasks(classes=classes, ways=3, shots=1, queries=2).sample(4, torch.Generator())
    assert task.support[0].shape == (4, 3, 3, 4, 5)
    assert torch.allclose(task.query[0][0, 0, :, 2, 2] * 255, torch.tensor([10.0, 20.0, 30.0]))
    check_episodes(task, 3, 1, 2)


@settings(max_examples=25, deadline=None)
@given(num_classes=st.integers(2, 9), per_class=st.integers(2, 7), data=st.data())
def test_episode_invariants_hold_for_any_sizes(num_classes, per_class, data):
    ways = data.draw(st.integers(1, num_classes))
    shots = data.draw(st.integers(1, per_class - 1))
    queries = data.draw(st.integers(1, per_class - shots))
    seed = data.draw(st.integers(0, 2**31))
    classes = id_classes(num_classes, per_class)
    tasks = ep.FewShotTasks(classes=classes, ways=ways, shots=shots, queries=queries)
    check_episodes(tasks.sample(3, torch.Generator().manual_seed(seed)), ways, shots, queries)


def test_class_to_label_map_is_a_fresh_permutation_per_task():
    tasks = ep.FewShotTasks(classes=id_classes(5, 4), ways=5, shots=1, queries=1)
    classes_in_label_order, _ = decode(tasks.sample(200, torch.Generator().manual_seed(0)).support[0])
    permutations = {tuple(row) for row in classes_in_label_order.tolist()}
    assert all(sorted(p) == list(range(5)) for p in permutations)
    assert len(permutations) > 90  # 200 draws from 120 permutations
    counts = torch.bincount(classes_in_label_order[:, 0], minlength=5)
    assert counts.min() > 20  # label 0 is spread over all classes (expected 40 each)


def test_sampling_is_seeded():
    tasks = ep.FewShotTasks(classes=id_classes(12, 10), ways=5, shots=1, queries=2)
    a, b, c = (tasks.sample(4, torch.Generator().manual_seed(s)) for s in (1, 1, 2))
    assert torch.equal(a.query[0], b.query[0]) and not torch.equal(a.query[0], c.query[0])


def test_too_few_classes_or_images_fail_when_the_classes_are_first_used():
    with pytest.raises(ValueError, match="5 classes"):
        ep.FewShotTasks(classes=id_classes(4, 10), ways=5, shots=1, queries=1).sample(1, torch.Generator())
    with pytest.raises(ValueError, match="11 images"):
        ep.FewShotTasks(classes=id_classes(6, 10), ways=5, shots=1, queries=10).classes
    with pytest.raises(ValueError, match="uint8"):
        ep.FewShotTasks(classes=torch.zeros(6, 10, 4, 4), ways=5, shots=1, queries=1).classes


def test_classes_given_as_a_function_are_loaded_once_on_first_use():
    calls = []

    def load():
        calls.append(1)
        return id_classes(8, 6)

    tasks = ep.FewShotTasks(classes=load, ways=4, shots=2, queries=1)
    assert calls == []  # building the family (e.g. from a checkpoint for a meta-test) reads no data
    tasks.sample(2, torch.Generator())
    tasks.sample(2, torch.Generator())
    assert calls == [1] and torch.equal(tasks.classes, id_classes(8, 6))


def test_criterion_is_cross_entropy_on_logits_per_task():
    tasks = ep.FewShotTasks(classes=id_classes(8, 6), ways=4, shots=2, queries=1)
    (_, targets), _ = tasks.sample(1, torch.Generator())
    logits = torch.zeros(8, 4)
    assert math.isclose(tasks.criterion(logits, targets[0]).item(), math.log(4), rel_tol=1e-6)


def test_existing_maml_runs_unchanged_on_image_tasks():
    from metalearning.core.algorithms import MAML
    from metalearning.core.functional import make_loss

    torch.manual_seed(0)
    tasks = ep.FewShotTasks(classes=id_classes(10, 6), ways=3, shots=2, queries=2)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(20, 3))
    algorithm = MAML(inner_lr=0.1, inner_steps=2, eval_inner_steps=2, first_order=False)
    meta = algorithm.init_meta_params(dict(model.named_parameters()), torch.Generator())
    batch = tasks.sample(4, torch.Generator().manual_seed(0))
    loss = make_loss(model, tasks.criterion)
    grad_vmap, value_vmap = algorithm.meta_gradient(meta, batch, loss, vectorize=True)
    grad_loop, value_loop = algorithm.meta_gradient(meta, batch, loss, vectorize=False)
    assert torch.allclose(value_vmap, value_loop) and value_vmap > 0
    for k, g in grad_loop["theta"].items():
        assert torch.allclose(grad_vmap["theta"][k], g, atol=1e-6) and g.abs().sum() > 0


def test_fixed_episode_set_is_reproducible_and_materialises(tmp_path):
    tasks = ep.FewShotTasks(classes=id_classes(12, 10), ways=5, shots=1, queries=3)
    data = ep.build_episode_set(tasks, episodes=600, seed=7)
    assert data["class_ids"].shape == (600, 5) and data["image_ids"].shape == (600, 5, 4)
    again = ep.build_episode_set(tasks, episodes=600, seed=7)
    other = ep.build_episode_set(tasks, episodes=600, seed=8)
    assert torch.equal(data["image_ids"], again["image_ids"])
    assert torch.equal(data["class_ids"], again["class_ids"])
    assert not torch.equal(data["class_ids"], other["class_ids"])
    ep.save_episode_set(data, tmp_path / "sets" / "omniglot_5w1s.pt")
    loaded = ep.load_episode_set(tmp_path / "sets" / "omniglot_5w1s.pt")
    task = ep.episode_set_task(loaded, tasks.classes)
    check_episodes(task, 5, 1, 3)
    assert torch.equal(decode(task.support[0])[0], data["class_ids"])  # the stored classes, in label order
    assert torch.equal(decode(task.query[0])[1].view(600, 5, 3), data["image_ids"][:, :, 1:])


def test_fixed_episode_set_refuses_other_data_and_missing_files(tmp_path):
    tasks = ep.FewShotTasks(classes=id_classes(12, 10), ways=5, shots=1, queries=3)
    data = ep.build_episode_set(tasks, episodes=10, seed=0)
    changed = tasks.classes.clone()
    changed[3, 2, 1, 1] += 1
    with pytest.raises(ValueError, match="differs"):
        ep.episode_set_task(data, changed)
    with pytest.raises(FileNotFoundError, match="missing_set.pt"):
        ep.load_episode_set(tmp_path / "missing_set.pt")


def test_small_omniglot_meta_batch_shapes(omniglot_small):
    # Sampling speed is measured by `metalearning bench --config` (a benchmark), never asserted here.
    classes = with_rotations(torch.from_numpy(load_arrays(omniglot_small)["images"]))
    tasks = ep.FewShotTasks(classes=classes, ways=5, shots=1, queries=1)
    task = tasks.sample(32, torch.Generator().manual_seed(0))
    assert task.support[0].shape == (32, 5, 1, 28, 28) and task.query[0].shape == (32, 5, 1, 28, 28)


def test_gin_builds_omniglot_tasks(omniglot_small, tmp_path):
    import gin

    from metalearning.data.omniglot import write_split

    write_split(omniglot_small, tmp_path / "split.json", seed=0)
    gin.clear_config()
    try:
        gin.parse_config("\n".join([
            "FewShotTasks.classes = @omniglot_classes()", "FewShotTasks.ways = 5",
            "FewShotTasks.shots = 1", "FewShotTasks.queries = 1",
            f"omniglot_classes.data_file = '{omniglot_small}'",
            f"omniglot_classes.split_file = '{tmp_path / 'split.json'}'",
            "omniglot_classes.split = 'meta_test'", "omniglot_classes.rotations = True",
        ]))
        tasks = ep.FewShotTasks()
    finally:
        gin.clear_config()
    assert tasks.classes.shape == (4 * 63, 20, 28, 28)
    support_targets = tasks.sample(2, torch.Generator()).support[1]
    assert support_targets.sort(dim=1).values.tolist() == [[0, 1, 2, 3, 4]] * 2
