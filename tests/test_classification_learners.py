"""Conv4 / MLPClassifier with stateless batch norm, and the transductive vs non-transductive losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from metalearning.core.adapt import adapt
from metalearning.core.algorithms import MAML, Reptile, meta_leaves, set_meta_grads
from metalearning.core.batching import over_tasks
from metalearning.core.task import Task
from metalearning.learners.classification import (
    BN_MODES,
    accuracy,
    make_classification_loss,
    predict_logits,
    with_context,
)
from metalearning.learners.conv import BatchNormNoStats, Conv4, MLPClassifier, conv4_spatial_size


def _tiny_conv(dtype=torch.float64, seed=0, filters=4):
    torch.manual_seed(seed)
    return Conv4(in_channels=1, filters=filters, ways=2, image_size=8, pooling="stride").to(dtype)


def _random_tasks(n, *, shots=2, queries=2, ways=2, size=8, dtype=torch.float64, seed=1) -> Task:
    g = torch.Generator().manual_seed(seed)

    def part(k):
        x = torch.rand(n, ways * k, 1, size, size, generator=g, dtype=dtype)
        return x, torch.arange(ways).repeat_interleave(k).expand(n, -1).clone()

    return Task(support=part(shots), query=part(queries))


def _halves_tasks(n, g, *, shots=1, queries=5) -> Task:
    """2-way tasks on 8×8 images: bright left half vs bright right half; labels flipped per task."""
    flip = torch.randint(0, 2, (n, 1), generator=g)

    def part(k):
        labels = torch.arange(2).repeat_interleave(k).expand(n, -1).clone()
        left = ((labels ^ flip) == 0).float().view(n, -1, 1, 1, 1)
        x = 0.5 * torch.rand(n, 2 * k, 1, 8, 8, generator=g)
        x[..., :4] += 0.5 * left
        x[..., 4:] += 0.5 * (1 - left)
        return x, labels

    return Task(support=part(shots), query=part(queries))


def _params(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


class TestShapes:
    @pytest.mark.parametrize("kwargs, fan_in", [
        (dict(in_channels=1, filters=64, ways=5, image_size=28), 64),                     # MAML Omniglot/max
        (dict(in_channels=1, filters=64, ways=5, image_size=28, pooling="stride"), 256),  # MAML Omniglot
        (dict(in_channels=1, filters=64, ways=5, image_size=28, hidden_fc=32), 32),       # Meta-SGD Omniglot
        (dict(in_channels=3, filters=32, ways=5, image_size=84), 800),                    # MiniImagenet
    ])
    def test_conv4_logits_and_head_width(self, kwargs, fan_in):
        model = Conv4(**kwargs)
        size = kwargs["image_size"]
        out = model(torch.rand(3, kwargs["in_channels"], size, size))
        assert out.shape == (3, 5)
        assert model.head[-1].in_features == fan_in
        assert len([m for m in model.modules() if isinstance(m, BatchNormNoStats)]) == 4

    def test_spatial_size(self):
        assert [conv4_spatial_size(28, "max"), conv4_spatial_size(28, "stride"),
                conv4_spatial_size(84, "max"), conv4_spatial_size(8, "stride")] == [1, 2, 5, 1]

    def test_mlp_classifier(self):
        model = MLPClassifier(in_features=784, ways=5)
        assert model(torch.rand(4, 1, 28, 28)).shape == (4, 5)
        widths = [m.out_features for m in model if isinstance(m, torch.nn.Linear)]
        assert widths == [256, 128, 64, 64, 5]
        assert len([m for m in model if isinstance(m, BatchNormNoStats)]) == 4

    def test_bad_arguments_raise(self):
        with pytest.raises(ValueError, match="pooling"):
            Conv4(in_channels=1, filters=4, ways=2, image_size=28, pooling="avg")
        with pytest.raises(ValueError, match="image_size"):
            Conv4(in_channels=1, filters=4, ways=2, image_size=8, pooling="max")
        with pytest.raises(ValueError, match="bn_mode"):
            make_classification_loss(_tiny_conv(), "inductive")


class TestStatelessBatchNorm:
    def test_matches_training_mode_batch_norm(self):
        torch.manual_seed(0)
        bn = BatchNormNoStats(3).double()
        with torch.no_grad():
            bn.weight.uniform_(0.5, 2)
            bn.bias.normal_()
        for x in (torch.randn(5, 3, 4, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)):
            ref = F.batch_norm(x, None, None, bn.weight, bn.bias, training=True, eps=1e-5)
            torch.testing.assert_close(bn(x), ref)

    @pytest.mark.parametrize("make", [_tiny_conv, lambda: MLPClassifier(in_features=64, ways=2, hidden=(8, 8))])
    def test_no_buffers_and_mode_independent(self, make):
        model = make().double()
        assert list(model.buffers()) == []
        x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
        model.train()
        out_train = model(x)
        model.eval()
        torch.testing.assert_close(model(x), out_train, rtol=0, atol=0)

    @pytest.mark.parametrize("bn_mode", BN_MODES)
    def test_parameters_untouched_by_vmapped_functional_grad(self, bn_mode):
        model = _tiny_conv()
        before = _params(model)
        loss = make_classification_loss(model, bn_mode)
        tasks = with_context(_random_tasks(3))
        grads = over_tasks(lambda p, t: torch.func.grad(loss)(p, t.query), _params(model), tasks)
        assert all(g.abs().sum() > 0 for g in grads.values())
        for k, p in model.named_parameters():
            torch.testing.assert_close(p.detach(), before[k], rtol=0, atol=0)
        assert list(model.buffers()) == []


class TestBatchNormModes:
    def _one_task(self):
        task = _random_tasks(1, shots=2, queries=3, seed=5)
        xs, ys = task.support[0][0], task.support[1][0]
        xq, yq = task.query[0][0] + 0.7, task.query[1][0]  # a shifted query set: its statistics differ
        return xs, ys, xq, yq

    def test_modes_give_different_query_predictions(self):
        model, (xs, _, xq, yq) = _tiny_conv(), self._one_task()
        params = _params(model)
        trans = predict_logits(model, params, (xq, yq, xs), "transductive")
        non = predict_logits(model, params, (xq, yq, xs), "non_transductive")
        assert trans.shape == non.shape == (6, 2)
        assert (trans - non).abs().max() > 1e-3

    def test_transductive_ignores_context(self):
        model, (xs, _, xq, yq) = _tiny_conv(), self._one_task()
        params = _params(model)
        torch.testing.assert_close(predict_logits(model, params, (xq, yq, xs), "transductive"),
                                   model(xq), rtol=0, atol=0)

    def test_non_transductive_example_independent_of_other_queries(self):
        model, (xs, _, xq, yq) = _tiny_conv(), self._one_task()
        params = _params(model)
        perturbed = xq.clone()
        perturbed[3] += torch.rand_like(perturbed[3])
        keep = [0, 1, 2, 4, 5]
        for mode, independent in (("non_transductive", True), ("transductive", False)):
            a = predict_logits(model, params, (xq, yq, xs), mode)[keep]
            b = predict_logits(model, params, (perturbed, yq, xs), mode)[keep]
            if independent:
                torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
            else:
                assert (a - b).abs().max() > 1e-6

    def test_non_transductive_vmap_equals_per_example_loop(self):
        model, (xs, _, xq, yq) = _tiny_conv(), self._one_task()
        params = _params(model)
        loop = torch.stack([model(torch.cat([xs, xq[i:i + 1]]))[-1] for i in range(len(xq))])
        torch.testing.assert_close(predict_logits(model, params, (xq, yq, xs), "non_transductive"), loop)
        expected_loss = F.cross_entropy(loop, yq)
        loss = make_classification_loss(model, "non_transductive")
        torch.testing.assert_close(loss(params, (xq, yq, xs)), expected_loss)

    def test_support_batch_uses_own_statistics_in_both_modes(self):
        model, (xs, ys, _, _) = _tiny_conv(), self._one_task()
        params = _params(model)
        ref = F.cross_entropy(model(xs), ys)
        for mode in BN_MODES:
            torch.testing.assert_close(make_classification_loss(model, mode)(params, (xs, ys)), ref)

    def test_with_context_layout(self):
        tasks = _random_tasks(3)
        ctx = with_context(tasks)
        assert ctx.support is tasks.support
        assert ctx.query[0] is tasks.query[0] and ctx.query[1] is tasks.query[1]
        assert ctx.query[2] is tasks.support[0]

    def test_accuracy(self):
        logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
        assert accuracy(logits, torch.tensor([0, 1, 1, 1])).item() == pytest.approx(0.75)


def _meta_loss(algo, meta, tasks, loss):
    return algo.meta_gradient(meta, tasks, loss)[1]


@pytest.mark.parametrize("bn_mode", BN_MODES)
class TestMetaGradientThroughConv4:
    def _setup(self, bn_mode):
        model = _tiny_conv()
        loss = make_classification_loss(model, bn_mode)
        algo = MAML(inner_lr=0.3, inner_steps=2, eval_inner_steps=2, first_order=False)
        meta = algo.init_meta_params(dict(model.named_parameters()), torch.Generator().manual_seed(0))
        return algo, meta, loss, with_context(_random_tasks(2))

    def test_vmap_equals_per_task_loop(self, bn_mode):
        algo, meta, loss, tasks = self._setup(bn_mode)
        g_vmap, l_vmap = algo.meta_gradient(meta, tasks, loss, vectorize=True)
        g_loop, l_loop = algo.meta_gradient(meta, tasks, loss, vectorize=False)
        torch.testing.assert_close(l_vmap, l_loop, rtol=1e-12, atol=1e-12)
        for k in g_vmap["theta"]:
            torch.testing.assert_close(g_vmap["theta"][k], g_loop["theta"][k], rtol=1e-9, atol=1e-12)

    def test_matches_central_finite_differences(self, bn_mode):
        algo, meta, loss, tasks = self._setup(bn_mode)
        grads, _ = algo.meta_gradient(meta, tasks, loss)
        eps = 1e-6
        entries = [("features.0.0.weight", (1, 0, 1, 2)), ("features.2.1.weight", (3,)),
                   ("head.1.weight", (1, 2))]
        for name, idx in entries:
            def shifted(delta):
                theta = {k: p.detach().clone() for k, p in meta["theta"].items()}
                theta[name][idx] += delta
                return _meta_loss(algo, {"theta": {k: p.requires_grad_() for k, p in theta.items()}},
                                  tasks, loss)
            fd = (shifted(eps) - shifted(-eps)) / (2 * eps)
            assert grads["theta"][name][idx].abs() > 1e-6, name  # a non-trivial entry
            torch.testing.assert_close(grads["theta"][name][idx], fd, rtol=1e-5, atol=1e-8)

    def test_first_order_differs_from_second_order(self, bn_mode):
        algo, meta, loss, tasks = self._setup(bn_mode)
        fo = MAML(inner_lr=0.3, inner_steps=2, eval_inner_steps=2, first_order=True)
        g2, _ = algo.meta_gradient(meta, tasks, loss)
        g1, _ = fo.meta_gradient(meta, tasks, loss)
        assert max((g2["theta"][k] - g1["theta"][k]).abs().max() for k in g2["theta"]) > 1e-6


@pytest.mark.parametrize("bn_mode", BN_MODES)
def test_reptile_adam_on_image_tasks(bn_mode):
    model = _tiny_conv()
    loss = make_classification_loss(model, bn_mode)
    algo = Reptile(inner_lr=0.01, inner_steps=3, eval_inner_steps=3, inner_optimizer="adam")
    meta = algo.init_meta_params(dict(model.named_parameters()), torch.Generator().manual_seed(0))
    tasks = with_context(_random_tasks(3))
    pseudo, query_loss = algo.meta_gradient(meta, tasks, loss)
    assert set(pseudo) == {"theta"} and list(pseudo["theta"]) == list(meta["theta"])
    for k, p in meta["theta"].items():
        assert pseudo["theta"][k].shape == p.shape
        assert torch.isfinite(pseudo["theta"][k]).all()
    assert torch.isfinite(query_loss)
    assert max(g.abs().max() for g in pseudo["theta"].values()) > 1e-4
    loop, _ = algo.meta_gradient(meta, tasks, loss, vectorize=False)
    for k in pseudo["theta"]:
        # atol: a conv bias feeding batch norm has a zero gradient up to round-off, which Adam's
        # g / (sqrt(v) + eps) turns into steps of ~inner_lr * 1e-17 / 1e-8 that differ by path.
        torch.testing.assert_close(pseudo["theta"][k], loop["theta"][k], rtol=1e-9, atol=1e-9)


def _post_adaptation_accuracy(model, theta, tasks, loss, bn_mode, inner_lr):
    def one(theta, task):
        adapted = adapt(theta, task.support, loss=loss, inner_lr=inner_lr, inner_steps=1, first_order=True)
        return accuracy(predict_logits(model, adapted, task.query, bn_mode), task.query[1])

    return over_tasks(one, {k: p.detach() for k, p in theta.items()}, tasks).mean().item()


@pytest.mark.parametrize("bn_mode", BN_MODES)
def test_maml_learns_toy_image_tasks(bn_mode):
    """Labels are flipped per task, so only adaptation can beat chance (0.5) on the query set."""
    torch.manual_seed(0)
    model = Conv4(in_channels=1, filters=8, ways=2, image_size=8, pooling="stride")
    loss = make_classification_loss(model, bn_mode)
    algo = MAML(inner_lr=0.5, inner_steps=1, eval_inner_steps=1, first_order=False)
    meta = algo.init_meta_params(dict(model.named_parameters()), torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(meta_leaves(meta), lr=0.01)
    test_tasks = with_context(_halves_tasks(100, torch.Generator().manual_seed(99)))
    before = _post_adaptation_accuracy(model, meta["theta"], test_tasks, loss, bn_mode, 0.5)
    g = torch.Generator().manual_seed(1)
    for _ in range(30):
        grads, _ = algo.meta_gradient(meta, with_context(_halves_tasks(8, g)), loss)
        set_meta_grads(meta, grads)
        optimizer.step()
    after = _post_adaptation_accuracy(model, meta["theta"], test_tasks, loss, bn_mode, 0.5)
    assert before < 0.8
    assert after > 0.9


def test_spatial_mean_head_has_filters_fan_in_and_averages():
    """MAML's Omniglot code averages the last feature map: fan-in = filters, not filters·side²."""
    torch.manual_seed(0)
    model = Conv4(in_channels=1, filters=8, ways=5, image_size=28, pooling="stride", reduce="mean")
    assert model.head[-1].in_features == 8
    x = torch.rand(3, 1, 28, 28)
    features = model.features(x)
    assert features.shape[-1] == 2
    torch.testing.assert_close(model(x), model.head[-1](features.mean(dim=(2, 3))))
