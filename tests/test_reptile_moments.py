"""Reptile's persistent inner-Adam moments (reptile.md §6: "During training, we never reset or
interpolated Adam's rolling moment data"): checked against a hand-written sequential Adam, and
meta-test adaptation never sees meta-training's moments."""

from __future__ import annotations

import pytest
import torch

from metalearning.config import load_config
from metalearning.core.algorithms import Reptile
from metalearning.core.batching import task_at

from .conftest import REPO

LR, STEPS, BETA2, EPS = 0.01, 3, 0.999, 1e-8


def _reptile(persistent: bool = True) -> Reptile:
    return Reptile(inner_lr=LR, inner_steps=STEPS, eval_inner_steps=STEPS, inner_optimizer="adam",
                   persistent_moments=persistent)


def _theta(model):
    return {"theta": {k: p.detach().clone().requires_grad_() for k, p in model.named_parameters()}}


def _reference_pseudo_gradients(theta, batches, loss):
    """The paper's code: one Adam (β1 = 0) whose v and t run on through every task of every
    meta-batch, the tasks one after another, each adapted from θ; pseudo-gradient θ − mean θ̃."""
    v = {k: torch.zeros_like(p) for k, p in theta.items()}
    t, out = 0, []
    for tasks in batches:
        ends = []
        for i in range(3):
            task = task_at(tasks, i)
            fast = dict(theta)
            for _ in range(STEPS):
                grads = torch.func.grad(loss)(fast, task.support)
                t += 1
                v = {k: BETA2 * v[k] + (1 - BETA2) * g * g for k, g in grads.items()}
                fast = {k: p - LR * grads[k] / ((v[k] / (1 - BETA2 ** t)).sqrt() + EPS) for k, p in fast.items()}
            ends.append(fast)
        out.append({k: theta[k] - torch.stack([e[k] for e in ends]).mean(0) for k in theta})
    return out


def test_moments_run_on_through_tasks_and_meta_iterations_as_the_papers_code(small_model, small_loss, sine_batch):
    meta, algo = _theta(small_model), _reptile()
    second = type(sine_batch)(*[tuple(x.flip(0) for x in part) for part in sine_batch])  # another meta-batch
    want = _reference_pseudo_gradients({k: p.detach() for k, p in meta["theta"].items()}, [sine_batch, second],
                                       small_loss)
    for batch, expected in zip([sine_batch, second], want):
        grads, _ = algo.meta_gradient(meta, batch, small_loss)
        for k in expected:
            torch.testing.assert_close(grads["theta"][k], expected[k], rtol=1e-12, atol=1e-14)
    assert algo.state_dict()["adam_moments"]["t"] == 2 * 3 * STEPS


def test_persistent_moments_change_the_update_and_fresh_ones_do_not_carry_over(small_model, small_loss, sine_batch):
    meta = _theta(small_model)
    fresh, persistent = _reptile(persistent=False), _reptile()
    g_fresh = [fresh.meta_gradient(meta, sine_batch, small_loss)[0] for _ in range(2)]
    g_persistent = [persistent.meta_gradient(meta, sine_batch, small_loss)[0] for _ in range(2)]
    for k in g_fresh[0]["theta"]:
        assert torch.equal(g_fresh[0]["theta"][k], g_fresh[1]["theta"][k])  # no state: the same batch, the same step
    assert not torch.allclose(g_persistent[0]["theta"]["0.weight"], g_persistent[1]["theta"]["0.weight"])
    assert fresh.state_dict() == {}


def test_meta_test_never_sees_meta_training_moments(small_model, small_loss, sine_batch):
    meta, trained = _theta(small_model), _reptile()
    for _ in range(3):
        trained.meta_gradient(meta, sine_batch, small_loss)
    before = trained.state_dict()
    support = task_at(sine_batch, 0).support
    got = trained.adaptation_path(meta, support, small_loss, STEPS)
    want = _reptile().adaptation_path(meta, support, small_loss, STEPS)  # a Reptile that never trained
    for a, b in zip(got, want):
        for k in a:
            assert torch.equal(a[k], b[k])
    after = trained.state_dict()  # and adapting at meta-test leaves training's moments as they were
    assert after["adam_moments"]["t"] == before["adam_moments"]["t"]
    assert all(torch.equal(after["adam_moments"]["v"][k], v) for k, v in before["adam_moments"]["v"].items())


def test_state_round_trips_so_a_resumed_run_continues_identically(small_model, small_loss, sine_batch):
    meta, algo = _theta(small_model), _reptile()
    algo.meta_gradient(meta, sine_batch, small_loss)
    restored = _reptile()
    restored.load_state_dict(algo.state_dict())
    g1, _ = algo.meta_gradient(meta, sine_batch, small_loss)
    g2, _ = restored.meta_gradient(meta, sine_batch, small_loss)
    assert all(torch.equal(g1["theta"][k], g2["theta"][k]) for k in g1["theta"])
    restored.load_state_dict({})  # a fresh run
    assert restored.state_dict() == {}


def test_persistent_moments_need_adam():
    with pytest.raises(ValueError, match="persistent_moments needs inner_optimizer = 'adam'"):
        Reptile(inner_lr=0.1, inner_steps=1, eval_inner_steps=1, inner_optimizer="sgd", persistent_moments=True)


def test_a_carried_state_refuses_to_split_the_meta_batch_across_processes(monkeypatch):
    from metalearning import distributed
    from metalearning.training import MetaTrainer

    load_config([REPO / "configs" / "experiments" / "reptile_sine.gin"],
                ["inner_optimizer = 'adam'", "Reptile.persistent_moments = True",
                 "MetaTrainer.meta_batch_size = 4"])
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=2))
    with pytest.raises(ValueError, match="cannot be split across 2 processes"):
        MetaTrainer()


def test_the_paper_setting_reptile_files_carry_the_moments():
    import gin

    for name in ("reptile_omniglot_5w1s", "reptile_omniglot_20w1s", "reptile_miniimagenet_5w1s"):
        load_config([REPO / "configs" / "experiments" / f"{name}.gin"], [])
        assert gin.query_parameter("Reptile.persistent_moments") is True, name
        assert gin.query_parameter("FewShotTasks.validation_shots") == 1, name  # validated as meta-tested
    gin.clear_config()
