"""Meta-SGD (meta-sgd.md eq. 3): θ' = θ − α∘∇L_train(θ), differentiable in θ and α.

Property 7 of issue 3. Each problem is split into T tasks: support = minibatch τ,
query = minibatch T + τ.
"""

import torch
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_problems import problem_specs
from props_reference import flatten, gradient, hvp

from metalearning.core.algorithms import MAML, MetaSGD
from metalearning.core.task import Task

task_specs = st.integers(1, 3).flatmap(lambda tasks: problem_specs(num_minibatches=2 * tasks))


def _tasks(problem):
    t = problem.num_minibatches // 2
    return Task(support=problem.select(torch.arange(t)), query=problem.select(torch.arange(t, 2 * t)))


def _signed_step_sizes(problem, seed):
    """A per-entry α with entries of both signs, |α| ≲ 0.3 (meta-sgd.md §3.1: α sets the direction too)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: 0.15 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for k, p in problem.params.items()}


def _leaf(params):
    return {k: p.clone().requires_grad_() for k, p in params.items()}


def _meta_sgd_and_maml(problem, a, k):
    """[(Meta-SGD with α = a·1, its meta-params), (MAML with inner_lr = a, its meta-params)]."""
    meta_sgd = MetaSGD(inner_lr_init=(a, a), inner_steps=k, eval_inner_steps=k)
    maml = MAML(inner_lr=a, inner_steps=k, eval_inner_steps=k, first_order=False)
    gen = torch.Generator()
    return [(algo, algo.init_meta_params(problem.params, gen)) for algo in (meta_sgd, maml)]


constant_step_cases = dict(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3))


@budget(12)
@given(**constant_step_cases)
def test_constant_step_size_meta_sgd_adapts_like_maml(spec, a, k):
    """α = a·1: θ_0 … θ_k of Meta-SGD are MAML's with inner_lr = a."""
    problem = spec.build()
    paths = [algo.adaptation_path(meta, problem.minibatch(0), problem.loss, k)
             for algo, meta in _meta_sgd_and_maml(problem, a, k)]
    for ours, theirs in zip(*paths):
        assert_exact(flatten(ours), flatten(theirs))


@budget(12)
@given(**constant_step_cases)
def test_constant_step_size_meta_sgd_has_maml_meta_gradient(spec, a, k):
    """α = a·1: Meta-SGD's θ-meta-gradient and query loss are MAML's with inner_lr = a."""
    problem = spec.build()
    tasks = _tasks(problem)
    (sgd_grads, sgd_loss), (maml_grads, maml_loss) = [
        algo.meta_gradient(meta, tasks, problem.loss) for algo, meta in _meta_sgd_and_maml(problem, a, k)
    ]
    assert_exact(flatten(sgd_grads["theta"]), flatten(maml_grads["theta"]))
    assert_exact(sgd_loss, maml_loss)


def _one_step_reference(problem, alpha, tau):
    """(∂/∂α, ∂/∂θ) of L_test(θ − α∘∇L_train(θ)) for task τ, by the chain rule of eq. 3."""
    x, a, t = flatten(problem.params), flatten(alpha), problem.num_minibatches // 2
    g_train = gradient(problem, tau, x)
    g_test = gradient(problem, t + tau, x - a * g_train)
    return -g_train * g_test, g_test - hvp(problem, tau, x, a * g_test)


@budget(15)
@given(spec=task_specs, alpha_seed=st.integers(0, 2**31 - 1))
def test_one_step_meta_gradient_is_chain_rule_of_eq_3(spec, alpha_seed):
    """∂/∂α = −∇L_train(θ)∘∇L_test(θ'), ∂/∂θ = (I − ∇²L_train(θ)·diag α)∇L_test(θ'), task-mean."""
    problem = spec.build()
    alpha = _signed_step_sizes(problem, alpha_seed)
    meta = {"theta": _leaf(problem.params), "alpha": _leaf(alpha)}
    meta_sgd = MetaSGD(inner_lr_init=(0.0, 0.0), inner_steps=1, eval_inner_steps=1)
    grads, _ = meta_sgd.meta_gradient(meta, _tasks(problem), problem.loss)
    per_task = [_one_step_reference(problem, alpha, tau) for tau in range(problem.num_minibatches // 2)]
    assert_exact(flatten(grads["alpha"]), torch.stack([d_alpha for d_alpha, _ in per_task]).mean(0))
    assert_exact(flatten(grads["theta"]), torch.stack([d_theta for _, d_theta in per_task]).mean(0))


@budget(12)
@given(spec=task_specs, alpha_seed=st.integers(0, 2**31 - 1))
def test_negative_step_sizes_flip_the_step(spec, alpha_seed):
    """θ' = θ − α∘∇L(θ) entry by entry whatever α's signs, so negating α negates the step."""
    problem = spec.build()
    alpha = _signed_step_sizes(problem, alpha_seed)
    meta_sgd = MetaSGD(inner_lr_init=(0.0, 0.0), inner_steps=1, eval_inner_steps=1)
    x, support = flatten(problem.params), problem.minibatch(0)

    def step(a):
        meta = {"theta": problem.params, "alpha": a}
        return flatten(meta_sgd.adaptation_path(meta, support, problem.loss, 1)[-1]) - x

    assert_exact(step(alpha), -flatten(alpha) * gradient(problem, 0, x))
    assert_exact(step({k: -a for k, a in alpha.items()}), -step(alpha))
