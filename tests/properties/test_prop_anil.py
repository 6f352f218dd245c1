"""ANIL (Raghu et al. 2020): MAML whose inner loop adapts only the head.

The defining identity: ANIL is MAML with a per-parameter step size that is zero on the body
and α on the head (the body then stays at φ in every inner step, θ'_body = φ − 0·g), so their
meta-gradients — body and head — and query losses agree exactly, second order or first order.
Each problem is split into T tasks: support = minibatch τ, query = minibatch T + τ (as
``test_prop_meta_sgd``); the head is a random non-empty proper subset of the parameters.
"""


import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from props_budget import budget
from props_checks import assert_exact
from props_problems import problem_specs
from props_reference import flatten

from metalearning.core.algorithms import MAML
from metalearning.core.anil import ANIL, matching_names
from metalearning.core.task import Task
from metalearning.rl.policy import GaussianMLPPolicy, distribution
from tests import test_algorithms

task_specs = st.integers(1, 3).flatmap(lambda tasks: problem_specs(num_minibatches=2 * tasks))


def _tasks(problem):
    t = problem.num_minibatches // 2
    return Task(support=problem.select(torch.arange(t)), query=problem.select(torch.arange(t, 2 * t)))


class _TreeStepMAML(MAML):
    """MAML with a fixed step-size tree name → α (the reference ANIL is compared against)."""

    def __init__(self, alpha, **kwargs):
        super().__init__(inner_lr=0.0, **kwargs)  # unused: step_size gives the tree
        self.alpha = alpha

    def step_size(self, meta_params):
        return self.alpha


def _heads(data, problem):
    """A random non-empty proper subset of the parameter names: the head; the rest is the body."""
    names = sorted(problem.params)
    return data.draw(st.sets(st.sampled_from(names), min_size=1, max_size=len(names) - 1), label="head")


def _gradient_and_loss(algo, problem):
    meta = algo.init_meta_params(problem.params, torch.Generator())
    grads, loss = algo.meta_gradient(meta, _tasks(problem), problem.loss)
    return flatten(grads["theta"]), loss


def _anil_and_maml(problem, head, a, k, first_order, body_lr):
    """(ANIL adapting ``head`` with α = a, MAML with α = a on the head and ``body_lr`` on the body)."""
    common = dict(inner_steps=k, eval_inner_steps=k, first_order=first_order)
    anil = ANIL(inner_lr=a, inner_params=tuple(sorted(head)), **common)
    maml = _TreeStepMAML({n: a if n in head else body_lr for n in problem.params}, **common)
    return _gradient_and_loss(anil, problem), _gradient_and_loss(maml, problem)


@budget(12)
@given(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3), first_order=st.booleans(), data=st.data())
def test_anil_is_maml_with_zero_body_step_size(spec, a, k, first_order, data):
    """ANIL's meta-gradient (body and head) and query loss == MAML's with α_body = 0, α_head = a."""
    problem = spec.build()
    head = _heads(data, problem)
    (anil_grad, anil_loss), (maml_grad, maml_loss) = _anil_and_maml(problem, head, a, k, first_order, 0.0)
    assert_exact(anil_grad, maml_grad)
    assert_exact(anil_loss, maml_loss)


@budget(8)
@given(spec=task_specs, a=st.floats(0.05, 0.3), k=st.integers(1, 3), first_order=st.booleans(), data=st.data())
def test_identity_check_rejects_maml_with_adapted_body(spec, a, k, first_order, data):
    """The identity can fail: MAML adapting the body too (α_body = a, plain MAML) is not ANIL."""
    problem = spec.build()
    head = _heads(data, problem)
    (anil_grad, _), (maml_grad, _) = _anil_and_maml(problem, head, a, k, first_order, a)
    with pytest.raises(AssertionError):
        assert_exact(anil_grad, maml_grad)


@budget(8)
@given(spec=task_specs, a=st.floats(0.005, 0.3), k=st.integers(1, 3), data=st.data())
def test_meta_test_adapts_the_head_only(spec, a, k, data):
    """θ_0 … θ_k at meta-test: the body stays at φ, the head takes MAML's steps on the head alone."""
    problem = spec.build()
    head = _heads(data, problem)
    anil = ANIL(inner_lr=a, inner_steps=k, eval_inner_steps=k, first_order=False, inner_params=tuple(head))
    reference = _TreeStepMAML({n: a if n in head else 0.0 for n in problem.params}, inner_steps=k,
                              eval_inner_steps=k, first_order=False)
    support = problem.minibatch(0)
    meta = {"theta": problem.params}
    path = anil.adaptation_path(meta, support, problem.loss, k)
    for ours, theirs in zip(path, reference.adaptation_path(meta, support, problem.loss, k)):
        assert_exact(flatten(ours), flatten(theirs))
    for name in set(problem.params) - head:
        assert torch.equal(path[-1][name], problem.params[name])


def test_prefixes_select_module_paths_not_name_prefixes():
    names = ["4.weight", "4.bias", "40.weight", "head.2.weight", "log_std"]
    assert matching_names(names, ("4",), "ANIL.inner_params") == {"4.weight", "4.bias"}
    assert matching_names(names, ("head", "log_std"), "ANIL.inner_params") == {"head.2.weight", "log_std"}


def test_unknown_prefix_names_the_binding_and_the_parameters(small_model):
    anil = ANIL(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False, inner_params=("4", "head.2"))
    with pytest.raises(ValueError, match=r"ANIL\.inner_params: 'head\.2' matches no parameter.*0\.weight.*4\.bias"):
        anil.init_meta_params(dict(small_model.named_parameters()), torch.Generator())


def test_empty_inner_params_is_rejected():
    with pytest.raises(ValueError, match="ANIL.inner_params"):
        ANIL(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False, inner_params=())


def test_anil_adapts_only_the_policy_head_for_meta_rl():
    """Meta-RL adapts through ``MetaLearner.adapt`` with fresh episodes per step: only ``mean.4`` moves."""
    policy = GaussianMLPPolicy(2, 2, hidden=(8, 8), generator=torch.Generator().manual_seed(0)).double()
    anil = ANIL(inner_lr=0.1, inner_steps=2, eval_inner_steps=2, first_order=False, inner_params=("mean.4",))
    assert anil.unsupported("rl") is None and anil.label == "ANIL"
    meta = anil.init_meta_params(dict(policy.named_parameters()), torch.Generator())
    gen = torch.Generator().manual_seed(1)
    episodes = [(torch.randn(6, 2, generator=gen, dtype=torch.float64),
                 torch.randn(6, 2, generator=gen, dtype=torch.float64)) for _ in range(2)]

    def neg_log_likelihood(params, batch):
        observations, actions = batch
        return -distribution(policy, params, observations).log_prob(actions).mean()

    adapted = anil.adapt(meta, lambda step: episodes[step], neg_log_likelihood, 2, first_order=False)
    moved = {k for k in adapted if not torch.equal(adapted[k], meta["theta"][k])}
    assert moved == {"mean.4.weight", "mean.4.bias"}


CONTRACT = {
    "anil_head_k1": lambda: ANIL(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False,
                                 inner_params=("4",)),
    "anil_two_layers_k3": lambda: ANIL(inner_lr=0.1, inner_steps=3, eval_inner_steps=3, first_order=False,
                                       inner_params=("2", "4")),
    "anil_first_order_k2": lambda: ANIL(inner_lr=0.1, inner_steps=2, eval_inner_steps=2, first_order=True,
                                        inner_params=("4.weight", "4.bias")),
}


class TestANILContract(test_algorithms.TestContract):
    """The contract every algorithm inherits (tests/test_algorithms.py), for ANIL."""

    @pytest.fixture(params=sorted(CONTRACT))
    def algo(self, request):
        return CONTRACT[request.param]()
