"""MAML-/FOMAML-/Meta-SGD-TRPO: the meta-objective's derivatives, and short 2D-navigation runs."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from metalearning.core.algorithms import MAML, MetaSGD
from metalearning.metrics_io import CurveRecorder
from metalearning.rl.envs.navigation import BatchNavigation2D
from metalearning.rl.losses import PolicyBatch
from metalearning.rl.meta_rl import (
    AdaptationEval,
    MetaRL,
    RLTask,
    adapted_params,
    batched_inner_update,
    meta_objective,
    meta_objective_parts,
    per_task,
    recorded_query,
)
from metalearning.rl.policy import GaussianMLPPolicy
from metalearning.rl.task_families import LocomotionFamily, NavigationFamily
from metalearning.rl.trpo import (
    TRPO,
    SplitObjective,
    backtracking_line_search,
    composed_gradient_and_hvp,
    flatten,
    kl_hvp,
    unflatten,
)
from metalearning.training import MetaTrainer, init_state, meta_train

TASKS, T, B = 3, 4, 5


def _random_batch(gen: torch.Generator, with_padding: bool) -> PolicyBatch:
    def randn(*shape):
        return torch.randn(TASKS, *shape, generator=gen, dtype=torch.float64)

    mask = torch.ones(TASKS, T, B, dtype=torch.float64)
    if with_padding:
        mask[1, 2:, 0] = 0
    return PolicyBatch(randn(T, B, 2) * mask[..., None], randn(T, B, 2) * mask[..., None], randn(T, B) * mask, mask)


@pytest.fixture
def problem():
    """A 2-6-2 float64 policy, θ, and a synthetic meta-batch whose query records π_θ' (KL 0 at θ)."""
    gen = torch.Generator().manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(6,), generator=gen).double()
    theta = {k: p.detach() for k, p in policy.named_parameters()}
    support = (_random_batch(gen, with_padding=True),)
    return policy, theta, support, _random_batch(gen, with_padding=False)


def _meta_batch(policy, algo, meta_params, support, query_batch) -> RLTask:
    adapted = torch.func.vmap(partial(adapted_params, policy, algo, meta_params))(support)
    adapted = {k: v.detach() for k, v in adapted.items()}
    return RLTask(support, recorded_query(policy, adapted, query_batch))


def _objective(policy, algo, meta_params, tasks, vectorize=True):
    def objective(flat):
        return meta_objective(policy, algo, unflatten(flat, meta_params), tasks, vectorize=vectorize)

    return objective


def _maml(first_order=False, inner_lr=0.3):
    return MAML(inner_lr=inner_lr, inner_steps=1, eval_inner_steps=1, first_order=first_order)


def test_meta_objective_vmap_matches_the_per_task_loop(problem):
    policy, theta, support, query = problem
    algo = _maml()
    meta = {"theta": theta}
    tasks = _meta_batch(policy, algo, meta, support, query)
    flat = flatten(meta).requires_grad_()
    results = []
    for vectorize in (True, False):
        loss, kl = _objective(policy, algo, meta, tasks, vectorize)(flat)
        (grad,) = torch.autograd.grad(loss, flat)
        results.append((loss, kl, grad))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b)
    assert abs(float(results[0][1].detach())) < 1e-12  # KL(π_old ‖ π_θ') = 0 at the sampling parameters


def test_meta_gradient_matches_finite_differences_and_differs_from_first_order(problem):
    policy, theta, support, query = problem
    meta = {"theta": theta}
    tasks = _meta_batch(policy, _maml(), meta, support, query)
    flat0 = flatten(meta)
    direction = torch.randn(flat0.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grads = {}
    for first_order in (False, True):
        objective = _objective(policy, _maml(first_order), meta, tasks)
        flat = flat0.clone().requires_grad_()
        (grads[first_order],) = torch.autograd.grad(objective(flat)[0], flat)
    eps = 1e-6
    objective = _objective(policy, _maml(False), meta, tasks)
    numeric = (objective(flat0 + eps * direction)[0] - objective(flat0 - eps * direction)[0]) / (2 * eps)
    assert float(grads[False] @ direction) == pytest.approx(float(numeric), rel=1e-6, abs=1e-9)
    # First-order MAML drops the Hessian term, which is not small here.
    assert (grads[True] - grads[False]).norm() > 1e-2 * grads[False].norm()


def test_kl_hessian_vector_product_flows_through_the_inner_update(problem):
    """The exact HVP of the meta-KL equals finite differences of its gradient (third derivatives)."""
    policy, theta, support, query = problem
    meta = {"theta": theta}
    algo = _maml()
    tasks = _meta_batch(policy, algo, meta, support, query)
    objective = _objective(policy, algo, meta, tasks)
    flat0 = flatten(meta)
    v = torch.randn(flat0.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def kl_grad(at):
        x = at.clone().requires_grad_()
        return torch.autograd.grad(objective(x)[1], x)[0]

    flat = flat0.clone().requires_grad_()
    hv = kl_hvp(objective(flat)[1], flat, damping=0.0)(v)
    eps = 1e-5
    numeric = (kl_grad(flat0 + eps * v) - kl_grad(flat0 - eps * v)) / (2 * eps)
    torch.testing.assert_close(hv, numeric, rtol=1e-5, atol=1e-8)
    assert hv.norm() > 0


def _split(policy, algo, meta, tasks, vectorize=True):
    inner, outer = meta_objective_parts(policy, algo, tasks, vectorize=vectorize)
    return SplitObjective(lambda flat: inner(unflatten(flat, meta)), outer)


def _algorithms(theta):
    metasgd = MetaSGD(inner_lr_init=(0.05, 0.3), inner_steps=1, eval_inner_steps=1)
    pretrain = MAML(inner_lr=0.1, inner_steps=0, eval_inner_steps=1, first_order=False)
    return {
        "maml": (_maml(), {"theta": theta}),
        "fomaml": (_maml(first_order=True), {"theta": theta}),
        "metasgd": (metasgd, metasgd.init_meta_params(theta, torch.Generator().manual_seed(3))),
        "pretrain": (pretrain, {"theta": theta}),
    }


def _split_problem(problem, name):
    """(policy, algorithm, detached meta-parameters, meta-batch, split objective) of ``problem``
    under algorithm ``name`` of :func:`_algorithms`."""
    policy, theta, support, query = problem
    algo, meta = _algorithms(theta)[name]
    meta = {g: {k: p.detach() for k, p in group.items()} for g, group in meta.items()}
    tasks = _meta_batch(policy, algo, meta, support, query)
    return policy, algo, meta, tasks, _split(policy, algo, meta, tasks)


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "pretrain"])
def test_composed_hvp_equals_double_backprop_through_the_inner_update(problem, name):
    """TRPO's "composed" products Jᵀ(∇²kl)J v (no third derivatives) equal the direct double
    backpropagation through the whole meta-objective, and the loss gradients agree (float64)."""
    policy, algo, meta, tasks, split = _split_problem(problem, name)
    flat0 = flatten(meta)
    loss, kl, g, hvp = composed_gradient_and_hvp(split, flat0)

    flat = flat0.clone().requires_grad_()
    direct_loss, direct_kl = _objective(policy, algo, meta, tasks)(flat)
    (direct_g,) = torch.autograd.grad(direct_loss, flat, retain_graph=True)
    direct_hvp = kl_hvp(direct_kl, flat, damping=0.0)
    assert float(loss) == pytest.approx(float(direct_loss.detach()), rel=1e-12) and abs(float(kl)) < 1e-12
    torch.testing.assert_close(g, direct_g, rtol=1e-10, atol=1e-12)
    for seed in range(3):
        v = torch.randn(flat0.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        hv = hvp(v)
        torch.testing.assert_close(hv, direct_hvp(v), rtol=1e-9, atol=1e-12)
        assert hv.norm() > 0 and float(v @ hv) > 0  # the Fisher is positive (semi-)definite


@pytest.mark.parametrize("name", ["maml", "metasgd"])
def test_finite_difference_hvp_agrees_with_the_exact_one(problem, name):
    """rllab's symmetric finite differences of ∇kl (MAML's code) approximate the exact product,
    with the central difference's O(ε²) error: 10× smaller ε, ~100× smaller error (while εv
    crosses no ReLU kink: on this small policy that holds below ε ≈ 1e-3/‖θ‖)."""
    *_, meta, _, split = _split_problem(problem, name)
    flat0 = flatten(meta)
    _, _, _, exact = composed_gradient_and_hvp(split, flat0)
    v = torch.randn(flat0.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    v = v / v.norm()
    errors = {}
    for base_eps in (1e-3, 1e-4):
        trpo = TRPO(max_kl=0.01, cg_iters=10, cg_damping=0.0, ls_backtrack_ratio=0.8, ls_max_steps=15,
                    hvp="finite_difference", fd_base_eps=base_eps)
        _, _, fd = trpo.gradient_and_hvp(split, flat0)
        errors[base_eps] = float((fd(v) - exact(v)).norm() / exact(v).norm())
    assert errors[1e-4] < 1e-8
    assert 30 < errors[1e-3] / errors[1e-4] < 300  # second order: the approximation, not another exact path


@pytest.mark.parametrize("hvp", ["composed", "direct", "finite_difference"])
def test_trpo_step_is_the_same_with_every_hvp_method(problem, hvp):
    """The three ways of forming H·v give the same TRPO step (FD: to its approximation)."""
    policy, theta, support, query = problem
    algo, meta = _algorithms(theta)["maml"]
    tasks = _meta_batch(policy, algo, meta, support, query)
    split = _split(policy, algo, meta, tasks)
    steps = {}
    for method in ("direct", hvp):
        trpo = TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.8, ls_max_steps=15,
                    hvp=method, fd_base_eps=1e-5)
        steps[method], stats = trpo.step(split, flatten(meta))
        assert stats.step_fraction > 0
    # CG on a nearly singular Fisher (damping 1e-5) amplifies the FD products' 1e-11 relative error
    tolerance = 1e-9 if hvp != "finite_difference" else 1e-4
    torch.testing.assert_close(steps[hvp], steps["direct"], rtol=tolerance, atol=tolerance)


def _full_step(split, meta):
    trpo = TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.8, ls_max_steps=15)
    loss, g, hvp = trpo.gradient_and_hvp(split, flatten(meta))
    return float(loss), trpo.step_direction(g, hvp)


@pytest.mark.parametrize("name", ["maml", "metasgd"])
@pytest.mark.parametrize("scale", [1.0, 8.0, -1.0])  # accepted at once; after rejected trials; never
def test_a_batched_line_search_accepts_the_sequential_searchs_trial(problem, name, scale):
    """``TRPO.ls_batch``: trials evaluated k at a time (one vmap pass over the meta-objective, adaptation
    included) accept the trial the one-at-a-time search accepts, in ⌈(j + 1) / k⌉ passes."""
    *_, meta, _, split = _split_problem(problem, name)
    flat = flatten(meta)
    loss_before, full_step = _full_step(split, meta)
    results = {}
    for batch in (1, 2, 3, 15):
        passes = []

        def counted(x, passes=passes):
            passes.append(x)
            return split(x)

        new, stats = backtracking_line_search(counted, flat, scale * full_step, loss_before, max_kl=0.01,
                                              backtrack_ratio=0.8, max_steps=15, batch=batch)
        results[batch] = new, stats, len(passes)
    new, stats, sequential_passes = results[1]
    if scale == 1.0:
        assert stats.step_fraction == 1.0
    elif scale > 1:
        assert 0 < stats.step_fraction < 1 and stats.kl_after <= 0.01  # earlier trials left the trust region
    else:
        assert stats.step_fraction == 0.0 and torch.equal(new, flat)  # an ascent direction: all rejected
    for batch, (batched, batched_stats, passes) in results.items():
        assert torch.equal(batched, new) and batched_stats.step_fraction == stats.step_fraction, batch
        assert batched_stats.loss_after == pytest.approx(stats.loss_after, rel=1e-12, abs=1e-15)
        assert batched_stats.kl_after == pytest.approx(stats.kl_after, rel=1e-10, abs=1e-15)
        assert passes == -(-sequential_passes // batch)  # ⌈trials / batch⌉ (15 when none is accepted)


def test_trpo_rejects_a_line_search_batch_below_one():
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="TRPO.ls_batch must be a positive integer"):
            TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.8, ls_max_steps=15, ls_batch=bad)


def test_trpo_rejects_an_unknown_hvp_method():
    with pytest.raises(ValueError, match="TRPO.hvp"):
        TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.8, ls_max_steps=15, hvp="exact")


def test_meta_sgd_with_constant_alpha_is_maml(problem):
    policy, theta, support, query = problem
    a = 0.07
    maml, metasgd = _maml(inner_lr=a), MetaSGD(inner_lr_init=(a, a), inner_steps=1, eval_inner_steps=1)
    meta_sgd_params = metasgd.init_meta_params(theta, torch.Generator().manual_seed(0))
    assert all(torch.all(alpha == a) for alpha in meta_sgd_params["alpha"].values())
    one_task = PolicyBatch(*(x[0] for x in support[0]))
    torch.testing.assert_close(adapted_params(policy, metasgd, meta_sgd_params, (one_task,)),
                               adapted_params(policy, maml, {"theta": theta}, (one_task,)))
    tasks = _meta_batch(policy, maml, {"theta": theta}, support, query)
    grads = []
    for algo, meta in ((maml, {"theta": theta}), (metasgd, meta_sgd_params)):
        flat = flatten(meta).requires_grad_()
        loss, _ = _objective(policy, algo, meta, tasks)(flat)
        grads.append(unflatten(torch.autograd.grad(loss, flat)[0], meta))
    torch.testing.assert_close(grads[1]["theta"], grads[0]["theta"])
    assert flatten(grads[1]["alpha"]).norm() > 0  # α is meta-learned too (meta-sgd.md Alg. 2 line 11)


def test_trpo_on_the_meta_objective_respects_the_trust_region(problem):
    policy, theta, support, query = problem
    metasgd = MetaSGD(inner_lr_init=(0.05, 0.05), inner_steps=1, eval_inner_steps=1)
    meta = metasgd.init_meta_params(theta, torch.Generator().manual_seed(0))
    meta = {g: {k: p.detach() for k, p in group.items()} for g, group in meta.items()}
    objective = _objective(policy, metasgd, meta, _meta_batch(policy, metasgd, meta, support, query))
    trpo = TRPO(max_kl=0.01, cg_iters=10, cg_damping=1e-5, ls_backtrack_ratio=0.5, ls_max_steps=15)
    new, stats = trpo.step(objective, flatten(meta))
    loss, kl = objective(new)
    assert stats.step_fraction > 0 and float(kl) <= 0.01 and float(loss) < stats.loss_before


def test_inner_step_size_scale_scales_the_update(problem):
    """The halved α of later evaluation steps (maml.md A.2) halves a step's displacement."""
    policy, theta, support, _ = problem
    algo, params = _maml(), per_task(theta, TASKS)
    moves = [
        flatten(batched_inner_update(policy, algo, {"theta": theta}, params, support[0], lr_scale=s)) - flatten(params)
        for s in (1.0, 0.5)
    ]
    torch.testing.assert_close(moves[1], 0.5 * moves[0])
    assert moves[0].norm() > 0


# --- 2D navigation ----------------------------------------------------------------------------


def _navigation_run(algo, *, hidden, meta_batch_size, trajectories, cg_iters, seed, oracle=False) -> MetaTrainer:
    family = NavigationFamily(BatchNavigation2D(reward="squared"), oracle=oracle)
    policy = GaussianMLPPolicy(family.obs_dim, 2, hidden=hidden, generator=torch.Generator().manual_seed(seed))
    meta_rl = MetaRL(tasks=family, support_trajectories=trajectories, query_trajectories=trajectories, gamma=0.99,
                     gae_lambda=1.0)
    trpo = TRPO(max_kl=0.01, cg_iters=cg_iters, cg_damping=1e-5, ls_backtrack_ratio=0.5, ls_max_steps=15)
    return MetaTrainer(algorithm=algo, learner=policy, tasks=meta_rl, outer_rule=trpo, meta_batch_size=meta_batch_size,
                       meta_iterations=0, log_every=1)


def _train(trainer: MetaTrainer, iterations: int, seed: int):
    trainer.meta_iterations = iterations
    curve = CurveRecorder()
    result = meta_train(trainer, init_state(trainer, seed), sink=curve, val_tasks=None, progress=False)
    assert len(curve.rows) == iterations and all(r["trpo.kl"] <= trainer.outer_rule.max_kl for r in curve.rows.values())
    return result


def _one_step_gain(meta_rl, meta_params, num_tasks, algorithm=None):
    """Return after one adaptation step minus before, on new tasks: (returns [tasks, 2], mean, 95% CI)."""
    evaluation = AdaptationEval(num_tasks=num_tasks, trajectories=20, later_steps_lr_scale=0.5)
    returns = evaluation.returns(meta_rl, meta_params, torch.Generator().manual_seed(123), algorithm)
    gain = returns[:, 1] - returns[:, 0]
    return returns, float(gain.mean()), 1.96 * float(gain.std()) / math.sqrt(num_tasks)


def test_maml_trpo_on_navigation_learns_to_adapt_fast_variant():
    """10 meta-iterations of a small MAML-TRPO: from a policy that wanders off (return ≈ −150),
    to one that stays near the start and improves by a clear margin with one PG step."""
    algo = MAML(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False)
    meta_rl = _navigation_run(algo, hidden=(32, 32), meta_batch_size=10, trajectories=10, cg_iters=5, seed=1)
    result = _train(meta_rl, 10, seed=1)
    returns, gain, ci = _one_step_gain(meta_rl, result.meta_params, num_tasks=40)
    assert returns[:, 0].mean() > -50  # it learned the task family (untrained: about −150)
    assert gain > 3.0 and gain - ci > 0, (gain, ci)


@pytest.mark.slow
@pytest.mark.parametrize("algo", [
    MAML(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False),
    MetaSGD(inner_lr_init=(0.1, 0.1), inner_steps=1, eval_inner_steps=1),
], ids=["maml", "metasgd"])
def test_meta_trpo_on_navigation_beats_pretraining_paper_policy(algo):
    """The paper's 2-100-100-2 policy, meta-batch 20, K = 20: after 15 meta-iterations one PG step
    gains far more than it does for a policy pretrained by TRPO on all tasks for as long
    (maml.md Fig. 4's comparison)."""
    meta_rl = _navigation_run(algo, hidden=(100, 100), meta_batch_size=20, trajectories=20, cg_iters=10, seed=0)
    _, gain, ci = _one_step_gain(meta_rl, _train(meta_rl, 15, seed=0).meta_params, num_tasks=40)
    pretraining = MAML(inner_lr=0.1, inner_steps=0, eval_inner_steps=1, first_order=True)
    pretrained = _navigation_run(pretraining, hidden=(100, 100), meta_batch_size=20, trajectories=20,
                                 cg_iters=10, seed=0)
    fine_tune = MAML(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=True)
    trained = _train(pretrained, 15, seed=0).meta_params
    _, baseline_gain, baseline_ci = _one_step_gain(pretrained, trained, 40, fine_tune)
    assert gain > 5.0 and gain - ci > baseline_gain + baseline_ci, (gain, ci, baseline_gain, baseline_ci)


def test_oracle_sees_the_goal_and_evaluates_through_the_same_path():
    algo = MAML(inner_lr=0.1, inner_steps=0, eval_inner_steps=1, first_order=True)
    meta_rl = _navigation_run(algo, hidden=(8,), meta_batch_size=2, trajectories=3, cg_iters=2, seed=0, oracle=True)
    gen = torch.Generator().manual_seed(0)
    tasks = meta_rl.tasks.tasks.sample_tasks(2, gen)
    seen = []

    def act(observations, generator):
        seen.append(observations)
        return torch.zeros(observations.shape[0], 2)

    episodes = meta_rl.tasks.tasks.rollout(act, tasks, 3, gen)
    assert episodes.observations.shape == (2, 100, 3, 4)
    torch.testing.assert_close(episodes.observations[:, 0], seen[0].view(2, 3, 4))
    torch.testing.assert_close(episodes.observations[:, 5, :, 2:], tasks.goals[:, None].expand(2, 3, 2))
    meta = algo.init_meta_params(dict(meta_rl.learner.named_parameters()), gen)
    returns, _, _ = _one_step_gain(meta_rl, meta, num_tasks=3)
    assert returns.shape == (3, 2) and torch.isfinite(returns).all()


@pytest.mark.filterwarnings("ignore:MuJoCo:RuntimeWarning")  # gymnasium's cheetah XML uses a deprecated attribute
def test_one_meta_iteration_on_a_locomotion_task_with_a_short_horizon():
    pytest.importorskip("mujoco")
    family = LocomotionFamily("metalearning/HalfCheetahVel-v0", horizon=5)
    assert (family.obs_dim, family.act_dim) == (20, 6)
    assert LocomotionFamily("metalearning/HalfCheetahVel-v0", oracle=True).obs_dim == 21
    policy = GaussianMLPPolicy(20, 6, hidden=(8,), generator=torch.Generator().manual_seed(0))
    trainer = MetaTrainer(
        algorithm=MAML(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, first_order=False), learner=policy,
        tasks=MetaRL(tasks=family, support_trajectories=3, query_trajectories=3, gamma=0.99, gae_lambda=1.0),
        outer_rule=TRPO(max_kl=0.01, cg_iters=3, cg_damping=1e-5, ls_backtrack_ratio=0.5, ls_max_steps=15),
        meta_batch_size=2, meta_iterations=1,
    )
    state = init_state(trainer, 0)
    before = {k: p.detach().clone() for k, p in state.meta_params["theta"].items()}
    batch = trainer.tasks.meta_batch(trainer, state.meta_params, 2, state.generator)
    assert batch.tasks.query.observations.shape == (2, 5, 3, 20) and set(batch.scalars) == {
        "meta_train.pre_update_return", "meta_train.post_update_return"}
    scalars = state.outer.step(batch, 0)
    assert scalars["trpo.kl"] <= 0.01 and set(state.meta_params["theta"]) == set(before)
    assert any(not torch.equal(before[k], p) for k, p in state.meta_params["theta"].items()) == (
        scalars["trpo.step_fraction"] > 0)
