"""Gaussian MLP policy evaluated functionally, so adaptation stays a pure function (STYLE P1).

The policy of maml.md §5.3 and meta-sgd.md §4.3: an MLP with two hidden layers of 100 ReLU
units maps the observation to the mean of a diagonal Gaussian over actions; the log standard
deviation is a learned, state-independent vector (meta-sgd.md §4.3: "two trainable
parameters" for 2D navigation).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Sequence

import gin
import torch
from torch import Tensor, nn
from torch.distributions import Independent, Normal

from metalearning.rl.rollouts import normal_noise

Params = Mapping[str, Tensor]
ActFn = Callable[[Tensor, torch.Generator], Tensor]


@gin.configurable
class GaussianMLPPolicy(nn.Module):
    """π_θ(a|s) = N(a; μ_θ(s), diag(σ²)) with μ_θ an MLP and log σ a free parameter vector.

    Parameter names: ``mean.{0,2,4}.{weight,bias}`` (Linear layers) and ``log_std``.
    Weights are Xavier-uniform and biases zero, as rllab's and pytorch-maml-rl's policies.

    Args:
        obs_dim: observation size (2 for 2D navigation; 4 for the oracle that also sees the goal).
        act_dim: action size.
        hidden: hidden layer widths (maml.md §5.3: two layers of 100).
        init_std: initial σ of every action dimension (rllab's default, 1.0).
        generator: RNG for the weight initialisation (``None``: torch's global RNG).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (100, 100),
                 init_std: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        sizes = (obs_dim, *hidden, act_dim)
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(fan_in, fan_out))
        self.mean = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))
        self._init_weights(generator)

    @torch.no_grad()
    def _init_weights(self, generator: torch.Generator | None) -> None:
        for layer in self.mean:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                nn.init.zeros_(layer.bias)

    def forward(self, observations: Tensor) -> tuple[Tensor, Tensor]:
        """(loc, scale), both ``[..., act_dim]``, for observations ``[..., obs_dim]``."""
        loc = self.mean(observations)
        return loc, self.log_std.exp().expand_as(loc)


def gaussian_params(policy: nn.Module, params: Params, observations: Tensor) -> tuple[Tensor, Tensor]:
    """(loc, scale) of π_params(·|observations), ``[..., act_dim]`` each, via ``functional_call``."""
    return torch.func.functional_call(policy, dict(params), (observations,))


def distribution(policy: nn.Module, params: Params, observations: Tensor) -> Independent:
    """π_params(·|s) as a distribution whose ``log_prob`` sums over the action dimension.

    Args:
        policy: a :class:`GaussianMLPPolicy` (its own parameters are not used).
        params: parameter name -> tensor, e.g. adapted parameters θ'.
        observations: ``[..., obs_dim]``.

    Returns:
        ``Independent(Normal(loc, scale), 1)`` with batch shape ``[...]``. Argument validation
        is off: it branches on tensor values, which ``vmap`` does not allow.
    """
    loc, scale = gaussian_params(policy, params, observations)
    return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)


def _sample(loc: Tensor, scale: Tensor, generator: torch.Generator) -> Tensor:
    # the noise comes from the sampler's generator on its own device (the CPU): the same seed
    # gives the same actions whichever device the policy is on, and in however many processes
    return loc + scale * normal_noise(generator, loc.shape, loc.dtype).to(loc.device)


def make_act(policy: nn.Module, params: Params) -> ActFn:
    """The sampler's ``act(observations [N, obs_dim], generator) -> actions [N, act_dim]`` for one θ.

    Every row is acted on by the same parameters (pre-update sampling, shared across tasks).
    """

    like = next(iter(params.values()))  # observations follow the policy's device and dtype

    @torch.no_grad()
    def act(observations: Tensor, generator: torch.Generator) -> Tensor:
        loc, scale = gaussian_params(policy, params, observations.to(like))
        return _sample(loc, scale, generator).to(observations.device)  # the envs step on the CPU

    return act


def make_task_act(policy: nn.Module, params: Params, num_tasks: int) -> ActFn:
    """``act`` for per-task parameters (every leaf ``[tasks, ...]``, e.g. adapted θ'_i).

    The sampler stacks the observations of all tasks task-major, ``N = tasks × B``: rows
    ``i·B … (i+1)·B − 1`` belong to task ``i`` and are acted on with ``params[·][i]``.
    """
    per_task = torch.func.vmap(lambda p, obs: gaussian_params(policy, p, obs))
    like = next(iter(params.values()))  # observations follow the policy's device and dtype

    @torch.no_grad()
    def act(observations: Tensor, generator: torch.Generator) -> Tensor:
        grouped = observations.reshape(num_tasks, -1, observations.shape[-1]).to(like)
        loc, scale = per_task(dict(params), grouped)
        return _sample(loc, scale, generator).reshape(observations.shape[0], -1).to(observations.device)

    return act
