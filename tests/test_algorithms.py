"""Outer rules: a contract every algorithm inherits, plus each paper's defining identity."""

import pytest
import torch

from metalearning.core.adapt import adapt
from metalearning.core.algorithms import MAML, MetaSGD, Reptile, meta_leaves, set_meta_grads
from metalearning.core.batching import over_tasks, task_at

ALGORITHMS = {
    "maml_k1": lambda: MAML(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False),
    "maml_k3": lambda: MAML(inner_lr=0.1, inner_steps=3, eval_inner_steps=3, first_order=False),
    "fomaml_k3": lambda: MAML(inner_lr=0.1, inner_steps=3, eval_inner_steps=3, first_order=True),
    "metasgd_k1": lambda: MetaSGD(inner_lr_init=(0.005, 0.1), inner_steps=1, eval_inner_steps=1),
    "metasgd_k2": lambda: MetaSGD(inner_lr_init=(0.005, 0.1), inner_steps=2, eval_inner_steps=2),
    "reptile_sgd": lambda: Reptile(inner_lr=0.05, inner_steps=4, eval_inner_steps=4, inner_optimizer="sgd"),
    "reptile_adam": lambda: Reptile(inner_lr=0.01, inner_steps=4, eval_inner_steps=4, inner_optimizer="adam"),
}


def _meta(algo, model):
    return algo.init_meta_params(dict(model.named_parameters()), torch.Generator().manual_seed(3))


@pytest.fixture(params=sorted(ALGORITHMS))
def algo(request):
    return ALGORITHMS[request.param]()


class TestContract:
    """What every algorithm must satisfy (STYLE P7: an inherited contract)."""

    def test_vmap_equals_per_task_loop(self, algo, small_model, small_loss, sine_batch):
        meta = _meta(algo, small_model)
        g_vmap, l_vmap = algo.meta_gradient(meta, sine_batch, small_loss, vectorize=True)
        g_loop, l_loop = algo.meta_gradient(meta, sine_batch, small_loss, vectorize=False)
        torch.testing.assert_close(l_vmap, l_loop, rtol=1e-12, atol=1e-12)
        for group in g_vmap:
            for k in g_vmap[group]:
                torch.testing.assert_close(g_vmap[group][k], g_loop[group][k], rtol=1e-10, atol=1e-12)

    def test_gradient_has_meta_param_structure(self, algo, small_model, small_loss, sine_batch):
        meta = _meta(algo, small_model)
        grads, loss = algo.meta_gradient(meta, sine_batch, small_loss)
        assert loss.dim() == 0 and torch.isfinite(loss)
        for group, params in meta.items():
            assert set(grads[group]) == set(params)
            for k, p in params.items():
                assert grads[group][k].shape == p.shape and torch.isfinite(grads[group][k]).all()

    def test_batch_gradient_is_mean_of_task_gradients(self, algo, small_model, small_loss, sine_batch):
        meta = _meta(algo, small_model)
        batch, _ = algo.meta_gradient(meta, sine_batch, small_loss)
        singles = [algo.meta_gradient(meta, _one(sine_batch, i), small_loss)[0] for i in range(3)]
        for group in batch:
            for k in batch[group]:
                mean = torch.stack([s[group][k] for s in singles]).mean(0)
                torch.testing.assert_close(batch[group][k], mean, rtol=1e-10, atol=1e-12)

    def test_adaptation_path_lowers_support_loss(self, algo, small_model, small_loss, sine_batch):
        meta = _meta(algo, small_model)
        task = task_at(sine_batch, 0)
        with torch.no_grad():
            path = algo.adaptation_path(meta, task.support, small_loss, 3)
        assert len(path) == 4
        assert small_loss(path[-1], task.support) < small_loss(path[0], task.support)

    def test_meta_training_step_lowers_meta_loss(self, algo, small_model, small_loss, sine_batch):
        meta = _meta(algo, small_model)
        _, before = algo.meta_gradient(meta, sine_batch, small_loss)
        opt = torch.optim.SGD(meta_leaves(meta), lr=0.02)
        for _ in range(5):
            grads, _ = algo.meta_gradient(meta, sine_batch, small_loss)
            set_meta_grads(meta, grads)
            opt.step()
        _, after = algo.meta_gradient(meta, sine_batch, small_loss)
        assert after < before


def _one(tasks, i):
    """Task ``i`` as a meta-batch of one."""
    return type(tasks)(*[tuple(t[i:i + 1] for t in part) for part in tasks])


def _meta_objective(algo, meta, tasks, loss):
    return over_tasks(lambda m, t: algo.query_loss(m, t, loss), meta, tasks).mean()


@pytest.mark.parametrize("steps", [1, 3])
def test_maml_gradient_matches_finite_differences(small_model, small_loss, sine_batch, steps):
    algo = MAML(inner_lr=0.1, inner_steps=steps, eval_inner_steps=steps, first_order=False)
    meta = _meta(algo, small_model)
    grads, _ = algo.meta_gradient(meta, sine_batch, small_loss)
    eps = 1e-6  # central differences in float64: truncation O(eps²), rounding O(1e-16/eps)
    for k in ("0.weight", "2.bias", "4.weight"):
        p = meta["theta"][k]
        for idx in [(0,) * p.dim(), tuple(s - 1 for s in p.shape)]:
            with torch.no_grad():
                p[idx] += eps
                up = _meta_objective(algo, meta, sine_batch, small_loss)
                p[idx] -= 2 * eps
                down = _meta_objective(algo, meta, sine_batch, small_loss)
                p[idx] += eps
            fd = (up - down) / (2 * eps)
            assert abs(grads["theta"][k][idx].item() - fd.item()) < 1e-7 * max(1.0, abs(fd.item()))


def test_fomaml_gradient_is_query_gradient_at_adapted_params(small_model, small_loss, sine_batch):
    """First-order MAML: g = ∇L_query(θ'), averaged over tasks (reptile.md eq. 14)."""
    algo = MAML(inner_lr=0.1, inner_steps=2, eval_inner_steps=2, first_order=True)
    meta = _meta(algo, small_model)
    grads, _ = algo.meta_gradient(meta, sine_batch, small_loss)
    expected = {k: torch.zeros_like(p) for k, p in meta["theta"].items()}
    for i in range(3):
        task = task_at(sine_batch, i)
        theta = {k: p.detach() for k, p in meta["theta"].items()}
        adapted = adapt(theta, task.support, loss=small_loss, inner_lr=0.1, inner_steps=2, first_order=True)
        g = torch.func.grad(small_loss)(adapted, task.query)
        expected = {k: expected[k] + g[k] / 3 for k in expected}
    for k in expected:
        torch.testing.assert_close(grads["theta"][k], expected[k], rtol=1e-10, atol=1e-13)


def test_reptile_outer_sgd_step_is_equation_5(small_model, small_loss, sine_batch):
    """φ ← φ + ε·mean(φ̃ − φ) when the pseudo-gradient feeds SGD with lr ε."""
    algo = Reptile(inner_lr=0.05, inner_steps=3, eval_inner_steps=3, inner_optimizer="sgd")
    meta = _meta(algo, small_model)
    phi = {k: p.detach().clone() for k, p in meta["theta"].items()}
    tilde = [adapt(phi, task_at(sine_batch, i).support, loss=small_loss, inner_lr=0.05, inner_steps=3,
                   first_order=True) for i in range(3)]
    grads, _ = algo.meta_gradient(meta, sine_batch, small_loss)
    opt = torch.optim.SGD(meta_leaves(meta), lr=0.3)
    for k, p in meta["theta"].items():
        p.grad = grads["theta"][k]
    opt.step()
    for k, p in meta["theta"].items():
        expected = phi[k] + 0.3 * torch.stack([t[k] - phi[k] for t in tilde]).mean(0)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-14)


def test_metasgd_alpha_starts_at_one_value_in_range(small_model):
    algo = MetaSGD(inner_lr_init=(0.005, 0.1), inner_steps=1, eval_inner_steps=1)
    values = set()
    for seed in range(5):
        meta = algo.init_meta_params(dict(small_model.named_parameters()), torch.Generator().manual_seed(seed))
        entries = torch.cat([a.flatten() for a in meta["alpha"].values()])
        assert torch.all(entries == entries[0]) and 0.005 <= entries[0].item() <= 0.1
        assert all(a.shape == meta["theta"][k].shape for k, a in meta["alpha"].items())
        values.add(entries[0].item())
    assert len(values) == 5  # drawn from the seed, not a constant


def test_metasgd_learns_alpha(small_model, small_loss, sine_batch):
    algo = MetaSGD(inner_lr_init=(0.005, 0.1), inner_steps=1, eval_inner_steps=1)
    meta = _meta(algo, small_model)
    grads, _ = algo.meta_gradient(meta, sine_batch, small_loss)
    assert any(g.abs().max() > 0 for g in grads["alpha"].values())


def test_unknown_reptile_inner_optimizer_is_rejected():
    with pytest.raises(ValueError, match="inner_optimizer"):
        Reptile(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, inner_optimizer="rmsprop")
