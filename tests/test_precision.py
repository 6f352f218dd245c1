"""Mixed precision (issue 12 item 1): ``MetaTrainer.precision = 'bf16'`` autocasts the meta-gradient's
forward ops to bfloat16 (for CUDA; the same arithmetic runs on the CPU, so it is tested here).

The tolerance: on one meta-batch, bfloat16 moves the meta-gradient (relative L2 distance from
float32's) less than 0.6 times as far as drawing another meta-batch does: its error stays inside
the stochastic gradient's own noise. A fixed bound would not fit every learner: behind batch norm,
bfloat16's 8-bit mantissa in the convolutions is amplified by the centring (a channel's spread is
small beside its mean). Measured ratios (bf16 error / another batch's distance): these tiny cases
(4 filters, random images) ANIL 0.003, FOMAML 0.12, MAML 0.12, Reptile 0.15, Meta-SGD 0.32,
MAML++ 0.55; sine ≤ 0.001; Omniglot at the cpu setting (32 filters, meta-batch 16) MAML 0.38/1.38,
Meta-SGD 0.36/1.27. Parameters, gradients and the optimiser stay float32."""

from __future__ import annotations

import pytest
import torch

from metalearning.config import load_config
from metalearning.core.algorithms import meta_leaves
from metalearning.devices import autocast, check_precision
from metalearning.training import MetaTrainer, _step, init_state
from tests.test_families import ALGORITHMS, FAMILIES

NOISE_FRACTION = 0.6  # bf16's distance from fp32 < this × another meta-batch's


def _one_step_grads(configs, bindings, precision: str, batch_seed: int) -> tuple[list, list]:
    """The meta-gradient of one meta-iteration from the same initial weights, on the meta-batch
    that ``batch_seed`` draws, and the updated parameters."""
    load_config(configs, [*bindings, f"MetaTrainer.precision = {precision!r}"])
    torch.manual_seed(0)
    trainer = MetaTrainer()
    state = init_state(trainer, seed=0)
    state.generator.manual_seed(batch_seed)
    _step(trainer, state)
    leaves = meta_leaves(state.meta_params)
    return [p.grad.detach().clone() for p in leaves], [p.detach().clone() for p in leaves]


def _flat(grads: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads])


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("family", ["sine", "fewshot"])
@pytest.mark.parametrize("algo", ALGORITHMS)
def test_bf16_meta_gradient_is_within_the_meta_batch_noise_of_fp32(algo, family, tmp_path):
    configs, bindings, _ = FAMILIES[family](algo, tmp_path)
    fp32, _ = _one_step_grads(configs, bindings, "fp32", batch_seed=1)
    bf16, params = _one_step_grads(configs, bindings, "bf16", batch_seed=1)
    other, _ = _one_step_grads(configs, bindings, "fp32", batch_seed=2)
    assert all(g.dtype == torch.float32 for g in bf16) and all(p.dtype == torch.float32 for p in params)
    reference = _flat(fp32)
    precision_error = float((_flat(bf16) - reference).norm() / reference.norm())
    batch_noise = float((_flat(other) - reference).norm() / reference.norm())
    assert 0 < precision_error < NOISE_FRACTION * batch_noise, (precision_error, batch_noise)  # > 0: bf16 ran


def test_precision_settings_are_checked_in_one_line(tmp_path):
    assert check_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match=r"^MetaTrainer.precision: unknown precision 'fp16' \(choose fp32 or bf16\)"):
        check_precision("fp16", "MetaTrainer.precision")
    with autocast("fp32", torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    configs, bindings, _ = FAMILIES["rl"]("maml", tmp_path)
    load_config(configs, [*bindings, "MetaTrainer.precision = 'bf16'"])
    with pytest.raises(ValueError, match=r"^MetaTrainer.precision: 'bf16' applies to the gradient outer rule"):
        MetaTrainer()
