"""TRPO: conjugate gradient against an explicit KL Hessian, the trust region after the line search."""

from __future__ import annotations

import pytest
import torch

from metalearning.rl.losses import SurrogateBatch, surrogate_loss
from metalearning.rl.policy import GaussianMLPPolicy, gaussian_params
from metalearning.rl.trpo import TRPO, conjugate_gradient, flatten, kl_hvp, unflatten


@pytest.fixture
def small_problem():
    """A 2-5-2 float64 policy, a batch of its own actions with random advantages, and its
    surrogate objective ``flat -> (loss, KL(π_old ‖ π_flat))`` with π_old at the start."""
    gen = torch.Generator().manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(5,), generator=gen).double()
    params = {k: p.detach() for k, p in policy.named_parameters()}
    obs = torch.randn(6, 8, 2, generator=gen, dtype=torch.float64)
    loc, scale = gaussian_params(policy, params, obs)
    actions = loc + scale * torch.randn(loc.shape, generator=gen, dtype=torch.float64)
    batch = SurrogateBatch(obs, actions, torch.randn(6, 8, generator=gen, dtype=torch.float64),
                           torch.ones(6, 8, dtype=torch.float64), loc, scale)
    surrogate = surrogate_loss(policy)

    def objective(flat):
        return surrogate(unflatten(flat, params), batch)

    return objective, flatten(params)


def test_conjugate_gradient_solves_against_the_explicit_kl_hessian(small_problem):
    objective, flat0 = small_problem
    damping = 1e-3
    hessian = torch.autograd.functional.hessian(lambda f: objective(f)[1], flat0)
    hessian = hessian + damping * torch.eye(flat0.numel(), dtype=torch.float64)
    flat = flat0.clone().requires_grad_()
    loss, kl = objective(flat)
    (g,) = torch.autograd.grad(loss, flat, retain_graph=True)
    hvp = kl_hvp(kl, flat, damping)
    v = torch.randn(flat0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(hvp(v), hessian @ v)  # exact HVP
    x, _ = conjugate_gradient(hvp, g, iters=4 * flat0.numel(), residual_tol=1e-24)
    torch.testing.assert_close(x, torch.linalg.solve(hessian, g), rtol=1e-6, atol=1e-8)
    # A few iterations already reduce the residual (TRPO uses 10), and CG's recursion tracks it.
    x10, residual = conjugate_gradient(hvp, g, iters=10)
    assert (hessian @ x10 - g).norm() < 0.5 * g.norm()
    torch.testing.assert_close(residual, g - hessian @ x10, rtol=1e-8, atol=1e-10)


def test_conjugate_gradient_is_exact_on_a_quadratic_in_n_steps():
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(6, 6, generator=gen, dtype=torch.float64)
    h, g = a @ a.T + 0.1 * torch.eye(6, dtype=torch.float64), torch.randn(6, generator=gen, dtype=torch.float64)
    x, residual = conjugate_gradient(lambda v: h @ v, g, iters=6, residual_tol=0.0)
    torch.testing.assert_close(x, torch.linalg.solve(h, g))
    assert residual.norm() < 1e-10 * g.norm()


@pytest.mark.parametrize("cg_iters", [3, 10])
def test_step_direction_fills_the_trust_region_of_the_kl_quadratic_model(small_problem, cg_iters):
    """The full step s satisfies ½ sᵀ(H + λI)s = δ with H the explicit KL Hessian, although sᵀHs
    is taken from CG's residual rather than from another product."""
    objective, flat0 = small_problem
    trpo = TRPO(max_kl=0.01, cg_iters=cg_iters, cg_damping=1e-3, ls_backtrack_ratio=0.5, ls_max_steps=15)
    hessian = torch.autograd.functional.hessian(lambda f: objective(f)[1], flat0)
    damped = hessian + trpo.cg_damping * torch.eye(flat0.numel(), dtype=torch.float64)
    flat = flat0.clone().requires_grad_()
    (g,) = torch.autograd.grad(objective(flat)[0], flat)
    products = []

    def hvp(v):
        products.append(v)
        return hessian @ v

    step = trpo.step_direction(g, hvp)
    assert len(products) == cg_iters  # one product per CG iteration, none for sᵀHs
    assert 0.5 * float(step @ damped @ step) == pytest.approx(trpo.max_kl, rel=1e-9)
    assert float(step @ g) < 0  # a descent direction of the surrogate


@pytest.mark.parametrize("max_kl", [0.01, 0.001])
def test_trpo_step_improves_the_surrogate_within_the_trust_region(small_problem, max_kl):
    objective, flat0 = small_problem
    trpo = TRPO(max_kl=max_kl, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.5, ls_max_steps=15)
    new, stats = trpo.step(objective, flat0)
    loss0, kl0 = objective(flat0)
    loss1, kl1 = objective(new)
    assert kl0 == 0 and stats.step_fraction > 0
    assert float(kl1) <= max_kl and float(loss1) < float(loss0)
    assert stats.loss_before == pytest.approx(float(loss0)) and stats.loss_after == pytest.approx(float(loss1))
    # The step is scaled to the trust region: the accepted KL is a sizeable part of max_kl.
    assert float(kl1) > 0.1 * max_kl * stats.step_fraction**2


def test_trpo_keeps_the_parameters_when_no_step_improves():
    def objective(flat):  # minimum at the start: every step makes the loss worse
        return (flat**2).sum(), 0.5 * (flat**2).sum()

    trpo = TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.5, ls_max_steps=15)
    start = torch.zeros(3, dtype=torch.float64)
    new, stats = trpo.step(objective, start)
    assert torch.equal(new, start) and stats.step_fraction == 0.0
