"""MAML++ (Antoniou et al. 2019, "How to train your MAML"): MAML with a multi-step loss, learned
per-layer per-step inner learning rates and derivative-order annealing, as an outer rule around
the one inner loop (STYLE P2).

Schedules follow the authors' code (github.com/AntreasAntoniou/HowToTrainYourMAMLPytorch,
``few_shot_learning_system.py``): an epoch is ``iterations_per_epoch`` meta-iterations, the epoch
of meta-iteration t is ``t // iterations_per_epoch`` (their ``int(current_iter /
total_iter_per_epoch)``).
"""

from __future__ import annotations

import gin
import torch
from torch import Tensor

from metalearning.core.adapt import LossFn, Params
from metalearning.core.algorithms import MAML, MetaParams


def multi_step_loss_weights(steps: int, epoch: int, multi_step_loss_epochs: int) -> list[float]:
    """w_1 … w_k, the weights of the query losses after inner steps 1 … k (MAML++'s MSL).

    The authors' ``get_per_step_loss_importance_vector``: uniform 1/k at epoch 0; each epoch every
    non-final weight drops by d = 1/(k·E) (E = ``multi_step_loss_epochs``) down to at least 0.03/k,
    and the final weight grows by (k − 1)·d up to at most 1 − (k − 1)·0.03/k, so the weights always
    sum to 1. From epoch E on only the final step's loss counts (their ``forward`` stops adding
    the other steps' losses), i.e. the weights are (0, …, 0, 1).
    """
    if epoch >= multi_step_loss_epochs:
        return [0.0] * (steps - 1) + [1.0]
    decay, floor = 1.0 / steps / multi_step_loss_epochs, 0.03 / steps
    non_final = max(1.0 / steps - epoch * decay, floor)
    final = min(1.0 / steps + epoch * (steps - 1) * decay, 1.0 - (steps - 1) * floor)
    return [non_final] * (steps - 1) + [final]


@gin.configurable
class MAMLPlusPlus(MAML):
    """MAML++: MAML (maml.md Algorithm 2) with three of the paper's changes.

    * Multi-step loss (MSL): the task's meta-objective term is
      ``Σ_{i=1..k} w_i(t) · L_query(θ_i)`` with θ_i the parameters after inner step i and the
      weights of :func:`multi_step_loss_weights` at the epoch of meta-iteration t; after
      ``multi_step_loss_epochs`` epochs it is MAML's ``L_query(θ_k)``.
    * Learned per-layer per-step learning rates (LSLR): meta-parameter group ``"alpha"`` holds,
      for every parameter tensor, a vector of k rates initialised to ``inner_lr`` and meta-learned
      with θ; inner step i is ``θ_i[n] = θ_{i−1}[n] − α[n][i−1] · ∇_n L_support(θ_{i−1})``.
    * Derivative-order annealing (DA): first-order meta-gradients (no graph through the inner
      gradients) for the first ``first_order_epochs`` epochs, second order after. The authors'
      code trains first order while ``epoch <= first_order_to_second_order_epoch``, so
      ``first_order_epochs`` is that value + 1; their released configs set it to −1 (here 0:
      second order from the start).

    At meta-test (and on the validation tasks) the inner loop is first order and only the final
    step counts, as in the authors' evaluation. Steps past k — the authors evaluate with as many
    steps as they train, but the meta-test here may run more (accuracy-vs-steps curves) — reuse
    the last step's learned rate α[n][k−1].

    Not implemented (out of scope): per-step batch-norm statistics and weights/biases (BNRS,
    BNWB), cosine annealing of the meta learning rate (CA), and the authors' exclusion of the
    batch-norm parameters from the inner loop (here every parameter is adapted, as in MAML).
    Meta-RL is refused (:meth:`unsupported`).

    Args:
        inner_lr: initial value of every learned rate (the authors' ``task_learning_rate``).
        inner_steps: k inner steps during meta-training (the paper: 5).
        eval_inner_steps: inner steps at meta-test time.
        iterations_per_epoch: meta-iterations per epoch, the unit of both schedules (the
            authors' ``total_iter_per_epoch``: 500).
        multi_step_loss_epochs: epochs during which the multi-step loss is used (their
            ``multi_step_loss_num_epochs``: 10); 0 disables it.
        first_order_epochs: epochs trained with first-order meta-gradients (0: none).
    """

    def __init__(self, *, inner_lr: float, inner_steps: int, eval_inner_steps: int, iterations_per_epoch: int,
                 multi_step_loss_epochs: int, first_order_epochs: int):
        super().__init__(inner_lr=inner_lr, inner_steps=inner_steps, eval_inner_steps=eval_inner_steps,
                         first_order=False)
        for name, value, low in (("inner_steps", inner_steps, 1), ("iterations_per_epoch", iterations_per_epoch, 1),
                                 ("multi_step_loss_epochs", multi_step_loss_epochs, 0),
                                 ("first_order_epochs", first_order_epochs, 0)):
            if value < low:
                raise ValueError(f"MAMLPlusPlus.{name} must be >= {low}, got {value}")
        self.iterations_per_epoch = iterations_per_epoch
        self.multi_step_loss_epochs, self.first_order_epochs = multi_step_loss_epochs, first_order_epochs

    def unsupported(self, family: str) -> str | None:
        if family == "rl":
            return ("MAML++'s multi-step loss needs query episodes sampled with the adapted policy after every "
                    "inner step, which the meta-RL family does not collect")
        return None

    def epoch(self, iteration: int) -> int:
        """The epoch of 0-based meta-iteration ``iteration``."""
        return iteration // self.iterations_per_epoch

    def step_weights(self, iteration: int) -> list[float]:
        """w_1 … w_k of the multi-step loss at meta-iteration ``iteration``."""
        return multi_step_loss_weights(self.inner_steps, self.epoch(iteration), self.multi_step_loss_epochs)

    def first_order_at(self, iteration: int) -> bool:
        """Whether the meta-gradient of meta-iteration ``iteration`` is first order (DA)."""
        return self.epoch(iteration) < self.first_order_epochs

    def init_meta_params(self, params, generator):
        meta = super().init_meta_params(params, generator)
        meta["alpha"] = {k: torch.full((self.inner_steps,), self.inner_lr, dtype=p.dtype, device=p.device)
                         .requires_grad_() for k, p in params.items()}
        return meta

    def step_size(self, meta_params: MetaParams) -> list[Params]:
        """One tree per learned step: name → the 0-dim rate α[name][i] of step i (broadcasts)."""
        alpha = meta_params["alpha"]
        steps = next(iter(alpha.values())).shape[0]
        return [{k: a[i] for k, a in alpha.items()} for i in range(steps)]

    def inner_path(self, meta_params, support, loss, steps, **kwargs):
        return super().inner_path(_rates_for(meta_params, steps), support, loss, steps, **kwargs)

    def query_loss(self, meta_params: MetaParams, task, loss: LossFn, iteration: int = 0) -> Tensor:
        """Σ_i w_i(t) · L_query(θ_i) for one task; steps of weight 0 are not scored."""
        path = self.inner_path(meta_params, task.support, loss, self.inner_steps,
                               first_order=self.first_order_at(iteration))
        total = None
        for weight, adapted in zip(self.step_weights(iteration), path):
            if weight:
                term = weight * loss(adapted, task.query)
                total = term if total is None else total + term
        return total


def _rates_for(meta_params: MetaParams, steps: int) -> MetaParams:
    """``meta_params`` with every α vector extended to ``steps`` entries by repeating its last rate
    (a meta-test longer than training), still differentiable in α."""
    alpha = meta_params["alpha"]
    learned = next(iter(alpha.values())).shape[0]
    if steps <= learned:
        return meta_params
    extended = {k: torch.cat([a, a[-1:].expand(steps - learned)]) for k, a in alpha.items()}
    return {**meta_params, "alpha": extended}
