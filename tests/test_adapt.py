"""The pure inner loop: adapt's steps, first-order cut, per-parameter step sizes, inner Adam."""

import pytest
import torch

from metalearning.core.adapt import Adam, adapt, adapt_with_state
from metalearning.core.batching import task_at


def _params(model):
    return {k: p.detach().clone().requires_grad_() for k, p in model.named_parameters()}


def test_k_steps_are_k_gradient_steps(small_model, small_loss, sine_batch):
    task = task_at(sine_batch, 0)
    params = _params(small_model)
    expected = {k: p.detach() for k, p in params.items()}
    for _ in range(3):
        grads = torch.func.grad(small_loss)(expected, task.support)
        expected = {k: p - 0.05 * grads[k] for k, p in expected.items()}
    got = adapt(params, task.support, loss=small_loss, inner_lr=0.05, inner_steps=3, first_order=False)
    for k in params:
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=1e-12)


def test_adapt_leaves_its_input_untouched(small_model, small_loss, sine_batch):
    params = _params(small_model)
    before = {k: p.detach().clone() for k, p in params.items()}
    adapt(params, task_at(sine_batch, 0).support, loss=small_loss, inner_lr=0.1, inner_steps=2, first_order=False)
    for k in params:
        assert torch.equal(params[k].detach(), before[k])


def test_first_order_has_identity_jacobian(small_model, small_loss, sine_batch):
    """With the inner gradients held constant, ∂θ'/∂θ = I: the vjp of v is v itself."""
    task = task_at(sine_batch, 0)
    params = _params(small_model)
    adapted = adapt(params, task.support, loss=small_loss, inner_lr=0.1, inner_steps=2, first_order=True)
    v = {k: torch.randn_like(p) for k, p in adapted.items()}
    vjp = torch.autograd.grad(list(adapted.values()), list(params.values()), grad_outputs=list(v.values()))
    for (k, vk), g in zip(v.items(), vjp):
        torch.testing.assert_close(g, vk, rtol=0, atol=0)


def test_second_order_jacobian_is_not_identity(small_model, small_loss, sine_batch):
    task = task_at(sine_batch, 0)
    params = _params(small_model)
    adapted = adapt(params, task.support, loss=small_loss, inner_lr=0.1, inner_steps=2, first_order=False)
    v = {k: torch.ones_like(p) for k, p in adapted.items()}
    vjp = torch.autograd.grad(list(adapted.values()), list(params.values()), grad_outputs=list(v.values()))
    assert any(not torch.allclose(g, v[k]) for k, g in zip(v, vjp))


def test_per_parameter_step_sizes_scale_each_entry(small_model, small_loss, sine_batch):
    task = task_at(sine_batch, 0)
    params = _params(small_model)
    alpha = {k: torch.rand_like(p) - 0.5 for k, p in params.items()}  # negative entries allowed
    grads = torch.func.grad(small_loss)(params, task.support)
    got = adapt(params, task.support, loss=small_loss, inner_lr=alpha, inner_steps=1, first_order=False)
    for k in params:
        torch.testing.assert_close(got[k], params[k] - alpha[k] * grads[k], rtol=0, atol=1e-14)


@pytest.mark.parametrize("beta2", [0.999, 0.9])
def test_inner_adam_matches_torch_adam_with_beta1_zero(small_model, small_loss, sine_batch, beta2):
    task = task_at(sine_batch, 0)
    params = _params(small_model)
    got = adapt(params, task.support, loss=small_loss, inner_lr=0.01, inner_steps=4, first_order=True,
                rule=Adam(beta1=0.0, beta2=beta2))
    leaves = [p.detach().clone().requires_grad_() for p in params.values()]
    opt = torch.optim.Adam(leaves, lr=0.01, betas=(0.0, beta2), eps=1e-8)
    for _ in range(4):
        opt.zero_grad()
        small_loss(dict(zip(params, leaves)), task.support).backward()
        opt.step()
    for k, leaf in zip(params, leaves):
        torch.testing.assert_close(got[k], leaf.detach(), rtol=1e-10, atol=1e-12)


def test_adam_state_starts_fresh_unless_passed(small_model, small_loss, sine_batch):
    """Moments carry across the steps of one inner loop; None starts from zero (no leakage)."""
    task = task_at(sine_batch, 0)
    params = {k: p.detach() for k, p in _params(small_model).items()}
    rule = Adam()
    two, _ = adapt_with_state(params, task.support, loss=small_loss, inner_lr=0.01, inner_steps=2,
                              first_order=True, rule=rule)
    one, state = adapt_with_state(params, task.support, loss=small_loss, inner_lr=0.01, inner_steps=1,
                                  first_order=True, rule=rule)
    carried, _ = adapt_with_state(one, task.support, loss=small_loss, inner_lr=0.01, inner_steps=1,
                                  first_order=True, rule=rule, state=state)
    fresh, _ = adapt_with_state(one, task.support, loss=small_loss, inner_lr=0.01, inner_steps=1,
                                first_order=True, rule=rule)
    for k in params:
        torch.testing.assert_close(carried[k], two[k], rtol=0, atol=1e-14)
    assert any(not torch.allclose(fresh[k], two[k]) for k in params)
