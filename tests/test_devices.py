"""Devices (issue 12 item 1): the device setting, and a device-leak test that needs no GPU.

Every algorithm × supervised family runs one meta-iteration and one meta-test episode with the
learner's parameters and the tasks on the ``meta`` device, inside :class:`OneDevice`: an op that
meets a tensor the engine created on the CPU (an index, a generator's draw, a constant) raises,
as it would on a GPU, so a device leak fails here without one.
"""

from __future__ import annotations

import pytest
import torch

from metalearning.config import load_config
from metalearning.core.algorithms import meta_leaves
from metalearning.core.shards import task_slice
from metalearning.devices import DeviceLeakError, OneDevice, resolve, to_device
from metalearning.evaluation import adapted_scores, metric_scores
from metalearning.training import MetaTrainer, _step, init_state
from tests.test_families import ALGORITHMS, FAMILIES

META = "MetaTrainer.device = 'meta'"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("family", ["sine", "fewshot"])
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_one_meta_iteration_and_meta_test_episode_stay_on_the_device(algo, family, tmp_path):
    configs, bindings, _ = FAMILIES[family](algo, tmp_path)
    load_config(configs, [*bindings, META])
    trainer = MetaTrainer()
    state = init_state(trainer, seed=0)
    assert all(p.is_meta for p in meta_leaves(state.meta_params))
    with OneDevice():
        _step(trainer, state)  # sample on the CPU, move, meta-gradient, optimiser step: all on the device
    assert state.iteration == 1 and all(p.is_meta for p in meta_leaves(state.meta_params))
    assert all(s.is_meta for group in state.outer.optimizer.state.values() for s in group.values()
               if isinstance(s, torch.Tensor) and s.dim() > 0)
    episode = task_slice(trainer.tasks.validation_tasks(1, torch.Generator().manual_seed(0)), 0, 1)  # CPU data
    scores = metric_scores(trainer.predict, trainer.tasks.metrics)
    with OneDevice():
        result = adapted_scores(trainer.algorithm, state.meta_params, episode, trainer.loss,
                                trainer.algorithm.eval_inner_steps, scores)
    assert all(v.is_meta and v.shape == (1, trainer.algorithm.eval_inner_steps + 1) for v in result.values())


def test_one_device_catches_a_cpu_tensor_meeting_a_device_tensor():
    """Negative control: leaks the meta device alone lets through are caught; scalars are not leaks."""
    device_tensor = torch.ones(3, device="meta")
    device_tensor.index_select(0, torch.arange(2))  # the meta device accepts a CPU index…
    with OneDevice():
        with pytest.raises(DeviceLeakError, match="index_select.*cpu, meta"):  # …the check does not
            device_tensor.index_select(0, torch.arange(2))
        with pytest.raises(DeviceLeakError):
            device_tensor[torch.tensor([0, 1])]
        device_tensor * torch.tensor(2.0)  # a 0-dim CPU tensor is a scalar on every device


def test_device_settings_resolve_or_fail_in_one_line():
    assert resolve("cpu") == torch.device("cpu")
    assert resolve("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"^MetaTrainer.device: unknown device 'gpu' \(choose cpu, cuda"):
        resolve("gpu", "MetaTrainer.device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no usable CUDA device"):
            resolve("cuda:1", "--device")


def test_tasks_follow_the_device_and_keep_their_structure():
    tasks = {"support": (torch.zeros(2, 3), torch.zeros(2, dtype=torch.long)), "n": 2}
    moved = to_device(tasks, torch.device("meta"))
    assert moved["support"][0].is_meta and moved["support"][1].dtype == torch.long and moved["n"] == 2


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("algo", [a for a in ALGORITHMS if a not in ("reptile", "mamlpp")])  # RL refuses those
def test_meta_rl_objective_hvp_and_adaptation_stay_on_the_device(algo, tmp_path):
    """Meta-RL samples its episodes on the CPU (the environments are CPU code) and hands them to
    the device once; from there TRPO's surrogate, its gradient, a KL Hessian-vector product through
    the inner update, and the meta-test's adaptation step run on the device. (The line search and
    CG need values, which the meta device lacks; the GPU check runs those.)"""
    from metalearning.rl.meta_rl import batched_inner_update, per_task
    from metalearning.rl.trpo import flatten, kl_hvp, unflatten

    configs, bindings, _ = FAMILIES["rl"](algo, tmp_path)
    load_config(configs, bindings)
    trainer = MetaTrainer()
    state = init_state(trainer, seed=0)
    batch = trainer.tasks.meta_batch(trainer, state.meta_params, trainer.meta_batch_size, state.generator)
    device = torch.device("meta")
    trainer.learner.to(device)
    meta_params = {g: {k: p.detach().to(device).requires_grad_() for k, p in group.items()}
                   for g, group in state.meta_params.items()}
    tasks = to_device(batch.tasks, device)
    with OneDevice():
        flat = flatten(meta_params).requires_grad_()
        loss, kl = trainer.tasks.objective(trainer, unflatten(flat, meta_params), tasks)
        (g,) = torch.autograd.grad(loss, flat, retain_graph=True)
        hv = kl_hvp(kl, flat, 1e-5)(g)
        support = task_slice(tasks.support[0], 0, 1)
        adapted = batched_inner_update(trainer.learner, trainer.algorithm, meta_params,
                                       per_task(meta_params["theta"], 1), support)
    assert g.is_meta and hv.is_meta and hv.shape == flat.shape
    assert all(p.is_meta and p.shape[0] == 1 for p in adapted.values())
