"""Discounted returns and advantages of sampled episodes, per task.

Choices (those of rllab's MAML code and of pytorch-maml-rl):

* γ = 0.99 for 2D navigation (cbfinn/maml_rl's ``maml_trpo_point``; the MAML paper does not
  state it); γ is a required argument everywhere.
* Advantages are GAE(γ, λ) (Schulman et al., 2016) on the linear feature baseline; with
  λ = 1 (what MAML-RL uses) this is exactly ``returns − baseline``, the Monte-Carlo advantage.
* The episode is treated as terminal at the horizon: no value is bootstrapped after the last
  step taken.
* Advantages are normalised per task, over the steps taken in that task's episodes (mean 0,
  population std 1), as rllab's ``center_adv`` and pytorch-maml-rl's ``weighted_normalize``.

Every function takes time on dimension −2 and episodes on −1 (``[..., T, B]``) and broadcasts
over leading dimensions, so a meta-batch ``[tasks, T, B]`` is processed at once.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from metalearning.rl.baseline import linear_baseline_values


class EpisodesLike(Protocol):
    """The fields of ``metalearning.rl.rollouts.Episodes`` used here."""

    observations: Tensor  # [..., T, B, obs_dim]
    rewards: Tensor  # [..., T, B]
    mask: Tensor  # [..., T, B]


def discount_matrix(horizon: int, factor: float, like: Tensor) -> Tensor:
    """``M[t, k] = factor^(k − t)`` for ``k ≥ t`` and 0 otherwise, ``[T, T]``, so ``M @ x`` is the
    discounted sum of ``x`` from every step onwards."""
    steps = torch.arange(horizon, dtype=like.dtype, device=like.device)
    lag = steps.view(1, -1) - steps.view(-1, 1)
    return torch.where(lag >= 0, factor ** lag.clamp_min(0), torch.zeros((), dtype=like.dtype))


def discounted_returns(rewards: Tensor, mask: Tensor, *, gamma: float) -> Tensor:
    """``R_t = Σ_{k ≥ t} γ^(k−t) r_k`` within each episode, zero where the step was not taken.

    Args:
        rewards: ``[..., T, B]``.
        mask: ``[..., T, B]``.
        gamma: discount factor γ.

    Returns:
        ``[..., T, B]``.
    """
    disc = discount_matrix(rewards.shape[-2], gamma, rewards)
    return torch.einsum("tk,...kb->...tb", disc, rewards * mask) * mask


def gae(rewards: Tensor, values: Tensor, mask: Tensor, *, gamma: float, gae_lambda: float) -> Tensor:
    """Generalised advantage estimates ``A_t = Σ_{k ≥ t} (γλ)^(k−t) δ_k``,
    ``δ_t = r_t + γ V(s_{t+1}) − V(s_t)`` with ``V = 0`` after the last step taken.

    Args:
        rewards, values, mask: ``[..., T, B]``.
        gamma: discount factor γ.
        gae_lambda: λ; 1 gives ``discounted_returns − values``.

    Returns:
        ``[..., T, B]``, zero where the step was not taken.
    """
    values = values * mask
    next_values = torch.cat([values[..., 1:, :], torch.zeros_like(values[..., :1, :])], dim=-2)
    deltas = (rewards + gamma * next_values - values) * mask
    disc = discount_matrix(rewards.shape[-2], gamma * gae_lambda, rewards)
    return torch.einsum("tk,...kb->...tb", disc, deltas) * mask


def normalize_advantages(advantages: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """``(A − mean) / (std + eps)`` over the steps taken, separately for every leading index.

    Args:
        advantages, mask: ``[..., T, B]``.

    Returns:
        ``[..., T, B]``, zero where the step was not taken.
    """
    count = mask.sum(dim=(-2, -1), keepdim=True)
    mean = (advantages * mask).sum(dim=(-2, -1), keepdim=True) / count
    var = (((advantages - mean) * mask) ** 2).sum(dim=(-2, -1), keepdim=True) / count
    return (advantages - mean) / (var.sqrt() + eps) * mask


def estimate_advantages(episodes: EpisodesLike, *, gamma: float, gae_lambda: float,
                        normalize: bool = True) -> Tensor:
    """Advantages of every step: linear baseline refit on these episodes, GAE, normalisation.

    Args:
        episodes: one task's (``[T, B, ...]``) or a meta-batch's (``[tasks, T, B, ...]``)
            episodes; each leading index gets its own baseline fit and normalisation.
        gamma: discount factor γ.
        gae_lambda: GAE λ (MAML-RL: 1.0).
        normalize: normalise per task (as the reference implementations do).

    Returns:
        ``[..., T, B]`` advantages (no graph: they are constants of the losses).
    """
    with torch.no_grad():
        returns = discounted_returns(episodes.rewards, episodes.mask, gamma=gamma)
        values = linear_baseline_values(episodes.observations, episodes.mask, returns)
        adv = gae(episodes.rewards, values, episodes.mask, gamma=gamma, gae_lambda=gae_lambda)
        return normalize_advantages(adv, episodes.mask) if normalize else adv
