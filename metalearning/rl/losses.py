"""Policy-gradient losses as ``loss(params, batch)`` functions of the parameters.

:func:`reinforce_loss` is the inner-loop loss: handed to core :func:`~metalearning.core.adapt.adapt`
as its ``loss``, one inner step is vanilla policy gradient (maml.md eq. 4 and Algorithm 3 line 7;
meta-sgd.md Algorithm 2 line 7), with the task's support episodes as the batch.
:func:`surrogate_loss` is TRPO's importance-sampled surrogate and mean KL, the outer objective on
the query episodes.

Averages are over all steps taken in the batch (rllab's VPG: the mean of ``log π · A`` over the
valid time steps of all episodes), so the inner step size α = 0.1 has the scale it had in the
paper's code.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal, kl_divergence

from metalearning.core.adapt import LossFn, Params
from metalearning.rl.policy import distribution, gaussian_params


class PolicyBatch(NamedTuple):
    """Episodes of one task ready for a policy-gradient step (the inner loop's ``support``).

    Shapes are for one task; a meta-batch adds a leading ``[tasks]`` dimension.
    """

    observations: Tensor  # [T, B, obs_dim]
    actions: Tensor  # [T, B, act_dim]
    advantages: Tensor  # [T, B], constants
    mask: Tensor  # [T, B], 1 where the step was taken


class SurrogateBatch(NamedTuple):
    """Query episodes for TRPO: a :class:`PolicyBatch` plus the sampling policy π_old on them."""

    observations: Tensor  # [T, B, obs_dim]
    actions: Tensor  # [T, B, act_dim]
    advantages: Tensor  # [T, B]
    mask: Tensor  # [T, B]
    old_loc: Tensor  # [T, B, act_dim], mean of π_old(·|s_t)
    old_scale: Tensor  # [T, B, act_dim], std of π_old(·|s_t)


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the entries where ``mask`` is 1 (all given dims), a scalar."""
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


def reinforce_loss(policy: nn.Module) -> LossFn:
    """``loss(params, batch: PolicyBatch) = −mean_{t,i} log π_params(a_t|s_t) · A_t``.

    Its gradient is the REINFORCE estimate (Williams, 1992) of ∇L_T of maml.md eq. 4, with the
    baseline already subtracted in ``A``; ``−`` because L is the negative return.
    """

    def loss(params: Params, batch: PolicyBatch) -> Tensor:
        log_probs = distribution(policy, params, batch.observations).log_prob(batch.actions)
        return -masked_mean(log_probs * batch.advantages, batch.mask)

    return loss


def old_distribution(batch: SurrogateBatch) -> Independent:
    """π_old on the query steps, as recorded in ``batch``."""
    return Independent(Normal(batch.old_loc, batch.old_scale, validate_args=False), 1, validate_args=False)


def surrogate_loss(policy: nn.Module) -> Callable[[Params, SurrogateBatch], tuple[Tensor, Tensor]]:
    """TRPO's objective and constraint (Schulman et al., 2015, eq. 14) for one task.

    ``loss = −mean_t [π_params(a_t|s_t) / π_old(a_t|s_t)] · A_t`` and
    ``kl = mean_t KL(π_old(·|s_t) ‖ π_params(·|s_t))`` over the steps taken. At
    ``params = old`` the loss gradient equals the REINFORCE gradient and the KL is 0.
    """

    def loss_and_kl(params: Params, batch: SurrogateBatch) -> tuple[Tensor, Tensor]:
        return surrogate_of(gaussian_params(policy, params, batch.observations), batch)

    return loss_and_kl


def surrogate_of(policy_outputs: tuple[Tensor, Tensor], batch: SurrogateBatch) -> tuple[Tensor, Tensor]:
    """:func:`surrogate_loss` as a function of the new policy's (loc, scale) on the batch's
    observations, ``[T, B, act_dim]`` each: the policy network's part of it factored out."""
    loc, scale = policy_outputs
    new = Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)
    old = old_distribution(batch)
    ratio = torch.exp(new.log_prob(batch.actions) - old.log_prob(batch.actions))
    loss = -masked_mean(ratio * batch.advantages, batch.mask)
    return loss, masked_mean(kl_divergence(old, new), batch.mask)
