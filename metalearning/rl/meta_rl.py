"""MAML-TRPO, first-order MAML-TRPO and Meta-SGD-TRPO (maml.md Algorithm 3, §5.3, A.2;
meta-sgd.md Algorithm 2, §4.3), on the functional core.

The algorithm is a core :class:`~metalearning.core.algorithms.MetaLearner` (STYLE P2): it
provides the meta-parameters (``{"theta"}``, plus ``{"alpha"}`` for Meta-SGD), the inner step
size α (a float, or Meta-SGD's learned tree) and ``first_order``; one inner step is core
:func:`~metalearning.core.adapt.adapt` with the REINFORCE loss on the task's support episodes.
The outer rule is TRPO on the flattened meta-parameters, so with ``first_order=False`` both the
surrogate gradient and the KL Hessian-vector products flow through the inner update (exact
third derivatives by autograd), and Meta-SGD's α gets its TRPO step too (Algorithm 2 line 11).

One meta-iteration (Algorithm 3):

1. sample a meta-batch of tasks; for each inner step, sample ``support_trajectories`` episodes per
   task with the current per-task policy, refit the baseline, and take one PG step (no graph);
2. sample ``query_trajectories`` episodes per task with the adapted θ'_i, recording π_θ'_i;
3. TRPO step on the mean over tasks of the surrogate of the query episodes, as a function of the
   meta-parameters through the (re-run, differentiable) adaptation on the same support episodes.

The meta-batch is a tensor dimension: the environment steps all tasks at once, and the objective
maps over tasks with ``vmap`` (:func:`~metalearning.core.batching.over_tasks`).

With ``inner_steps = 0`` the same loop is plain TRPO on the pooled task distribution: the
"pretrained" baseline of maml.md §5.3 (and, on observations that include the goal, the oracle).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Mapping, NamedTuple, Protocol

import gin
import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from metalearning.core.adapt import Params, StepSize, adapt
from metalearning.core.algorithms import MetaLearner, MetaParams
from metalearning.core.batching import num_tasks, over_tasks
from metalearning.evaluation import mean_ci95
from metalearning.rl.losses import PolicyBatch, SurrogateBatch, reinforce_loss, surrogate_loss
from metalearning.rl.policy import ActFn, gaussian_params, make_task_act
from metalearning.rl.returns import EpisodesLike, estimate_advantages
from metalearning.rl.trpo import TRPO, TRPOStats, flatten, unflatten


class RLTasks(Protocol):
    """A distribution over MDPs whose episodes are sampled for a whole batch of tasks at once."""

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> Any:
        """Task descriptors (e.g. goals), every leaf ``[num_tasks, ...]``."""

    def rollout(self, act: ActFn, tasks: Any, trajectories: int, generator: torch.Generator) -> EpisodesLike:
        """``trajectories`` episodes per task; fields ``[num_tasks, T, B, ...]``; ``act`` sees the
        observations of all tasks stacked task-major (``make_task_act``)."""


class RLTask(NamedTuple):
    """One task's data for the meta-objective (a meta-batch adds a leading ``[tasks]`` dim)."""

    support: tuple[PolicyBatch, ...]  # the episodes of inner step 0, 1, …, each [T, B, ...]
    query: SurrogateBatch  # episodes of the adapted policy, with π_θ' recorded on them


def episode_returns(episodes: EpisodesLike) -> Tensor:
    """Undiscounted return Σ_t r_t of every episode averaged over the task's episodes, ``[tasks]``."""
    return (episodes.rewards * episodes.mask).sum(-2).mean(-1)


def policy_batch(episodes: Any, *, gamma: float, gae_lambda: float) -> PolicyBatch:
    """Episodes with their advantages (baseline refit, GAE, normalisation per task)."""
    adv = estimate_advantages(episodes, gamma=gamma, gae_lambda=gae_lambda)
    return PolicyBatch(episodes.observations, episodes.actions, adv, episodes.mask)


def scale_step_size(inner_lr: StepSize, scale: float) -> StepSize:
    """``scale · α`` for a float α or Meta-SGD's α tree."""
    if isinstance(inner_lr, Mapping):
        return {k: scale * a for k, a in inner_lr.items()}
    return scale * inner_lr


def inner_update(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, params: Params,
                 support: PolicyBatch, *, lr_scale: float = 1.0, first_order: bool | None = None) -> Params:
    """One vanilla-PG step θ' = θ − α∘∇L(θ; support) (maml.md Alg. 3 line 7; meta-sgd.md Alg. 2 line 7).

    Args:
        params: the task's current policy parameters (θ for the first step).
        support: that task's episodes sampled with ``params``, ``[T, B, ...]``.
        lr_scale: multiplies α (maml.md A.2 halves it after the first step at evaluation).
        first_order: override ``algo.first_order`` (evaluation needs no graph).
    """
    return adapt(
        params, support, loss=reinforce_loss(policy),
        inner_lr=scale_step_size(algo.step_size(meta_params), lr_scale), inner_steps=1,
        first_order=algo.first_order if first_order is None else first_order,
    )


def adapted_params(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams,
                   support: tuple[PolicyBatch, ...]) -> Params:
    """θ'_i after one inner step per support batch, differentiable in the meta-parameters."""
    params = meta_params["theta"]
    for batch in support:
        params = inner_update(policy, algo, meta_params, params, batch)
    return params


def task_objective(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams,
                   task: RLTask) -> tuple[Tensor, Tensor]:
    """(TRPO surrogate of the query episodes at θ'_i(meta_params), mean KL(π_old ‖ π_θ'_i)).

    The meta-objective term of maml.md Algorithm 3 line 10 / meta-sgd.md eq. 5 for one task, in
    TRPO's importance-sampled form.
    """
    params = adapted_params(policy, algo, meta_params, task.support)
    return surrogate_loss(policy)(params, task.query)


def meta_objective(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, tasks: RLTask, *,
                   vectorize: bool = True) -> tuple[Tensor, Tensor]:
    """Means over the meta-batch of :func:`task_objective`: (surrogate loss, KL), scalars."""
    losses, kls = over_tasks(partial(task_objective, policy, algo), meta_params, tasks, vectorize=vectorize)
    return losses.mean(), kls.mean()


def per_task(params: Params, n: int) -> Params:
    """The same parameters for each of ``n`` tasks, as leaves ``[n, ...]`` (views, no copy)."""
    return {k: p.detach().expand(n, *p.shape) for k, p in params.items()}


@torch.no_grad()
def batched_inner_update(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, params: Params,
                         support: PolicyBatch, lr_scale: float = 1.0) -> Params:
    """:func:`inner_update` for every task at once (``params``/``support`` leaves ``[tasks, ...]``)."""
    def step(p: Params, batch: PolicyBatch) -> Params:
        return inner_update(policy, algo, meta_params, p, batch, lr_scale=lr_scale, first_order=True)

    return torch.func.vmap(step)(params, support)


def recorded_query(policy: nn.Module, params: Params, batch: PolicyBatch) -> SurrogateBatch:
    """The query batch with π_θ'_i (the policy that sampled it) recorded as TRPO's π_old."""
    with torch.no_grad():
        loc, scale = torch.func.vmap(partial(gaussian_params, policy))(params, batch.observations)
    return SurrogateBatch(*batch, old_loc=loc, old_scale=scale)


class MetaStepStats(NamedTuple):
    """One meta-iteration: average returns before/after adaptation and TRPO's diagnostics."""

    pre_update_return: float  # episodes sampled with θ (inner step 0's support)
    post_update_return: float  # query episodes, sampled with θ'
    trpo: TRPOStats


@gin.configurable
class MetaRL:
    """Meta-RL training with TRPO as the outer rule (see the module docstring).

    Args:
        algorithm: core ``MAML`` (``first_order=False``: MAML-TRPO; ``True``: FOMAML-TRPO;
            ``inner_steps=0``: TRPO pretraining without adaptation) or ``MetaSGD``; its
            ``inner_lr`` is α (maml.md A.2: 0.1) and ``inner_steps`` the steps of meta-training (1).
        policy: the policy network (its own parameters are only the initialisation).
        tasks: the task distribution and its batched sampler (:class:`RLTasks`).
        trpo: the outer TRPO step (max_kl, cg_iters, cg_damping, line search).
        meta_batch_size: tasks per meta-iteration (maml.md A.2: 20 for 2D navigation, 40 locomotion).
        support_trajectories: K, episodes per task per inner step (maml.md §5.3: 20).
        query_trajectories: episodes per task with the adapted policy (20).
        gamma: discount γ (0.99).
        gae_lambda: GAE λ (1.0: Monte-Carlo returns minus the baseline).
        vectorize: ``vmap`` the objective over tasks; ``False`` runs the reference per-task loop.
    """

    def __init__(self, *, algorithm: MetaLearner, policy: nn.Module, tasks: RLTasks, trpo: TRPO,
                 meta_batch_size: int, support_trajectories: int, query_trajectories: int,
                 gamma: float, gae_lambda: float, vectorize: bool = True):
        self.algorithm, self.policy, self.tasks, self.trpo = algorithm, policy, tasks, trpo
        self.meta_batch_size = meta_batch_size
        self.support_trajectories, self.query_trajectories = support_trajectories, query_trajectories
        self.gamma, self.gae_lambda, self.vectorize = gamma, gae_lambda, vectorize

    def init_meta_params(self, generator: torch.Generator) -> MetaParams:
        """The policy's parameters as θ (and Meta-SGD's α, drawn with ``generator``), detached."""
        meta = self.algorithm.init_meta_params(dict(self.policy.named_parameters()), generator)
        return {g: {k: p.detach() for k, p in group.items()} for g, group in meta.items()}

    def _batch(self, episodes: Any) -> PolicyBatch:
        return policy_batch(episodes, gamma=self.gamma, gae_lambda=self.gae_lambda)

    def sample(self, meta_params: MetaParams, tasks: Any, generator: torch.Generator) -> tuple[RLTask, Tensor]:
        """Steps 1–2 of the meta-iteration: support episodes, adaptation, query episodes.

        Returns:
            (the meta-batch as an :class:`RLTask` with leaves ``[tasks, ...]``; the average return
            per task of every sampling round, ``[tasks, inner_steps + 1]``, last = post-update).
        """
        n = num_tasks(tasks)
        params, support, returns = per_task(meta_params["theta"], n), [], []
        for _ in range(self.algorithm.inner_steps):
            episodes = self.tasks.rollout(make_task_act(self.policy, params, n), tasks,
                                          self.support_trajectories, generator)
            support.append(self._batch(episodes))
            returns.append(episode_returns(episodes))
            params = batched_inner_update(self.policy, self.algorithm, meta_params, params, support[-1])
        episodes = self.tasks.rollout(make_task_act(self.policy, params, n), tasks,
                                      self.query_trajectories, generator)
        returns.append(episode_returns(episodes))
        query = recorded_query(self.policy, params, self._batch(episodes))
        return RLTask(tuple(support), query), torch.stack(returns, dim=1)

    def meta_step(self, meta_params: MetaParams, generator: torch.Generator) -> tuple[MetaParams, MetaStepStats]:
        """One meta-iteration; returns the TRPO-updated meta-parameters (new tensors)."""
        tasks = self.tasks.sample_tasks(self.meta_batch_size, generator)
        batch, returns = self.sample(meta_params, tasks, generator)

        def objective(flat: Tensor) -> tuple[Tensor, Tensor]:
            return meta_objective(self.policy, self.algorithm, unflatten(flat, meta_params), batch,
                                  vectorize=self.vectorize)

        new_flat, stats = self.trpo.step(objective, flatten(meta_params))
        means = returns.mean(0)
        return unflatten(new_flat, meta_params), MetaStepStats(float(means[0]), float(means[-1]), stats)

    def train(self, meta_params: MetaParams, meta_iterations: int, generator: torch.Generator,
              log: Callable[[int, MetaStepStats], None] | None = None) -> TrainResult:
        """``meta_iterations`` meta-steps, keeping the meta-parameters with the best post-update
        return seen during training (maml.md A.2: "the model with the best average return during
        training was used for evaluation"; that return is measured before the step that follows it).
        """
        best, best_iteration, best_return, history = meta_params, 0, -float("inf"), []
        for it in range(meta_iterations):
            new, stats = self.meta_step(meta_params, generator)
            if stats.post_update_return > best_return:
                best, best_iteration, best_return = meta_params, it, stats.post_update_return
            history.append(stats)
            if log is not None:
                log(it, stats)
            meta_params = new
        return TrainResult(meta_params, copy.deepcopy(best), best_iteration, history)


class TrainResult(NamedTuple):
    """Meta-parameters after training, the best ones by post-update return (and how many
    meta-steps they had taken), per-step stats."""

    final: MetaParams
    best: MetaParams
    best_iteration: int
    history: list[MetaStepStats]


# ---------------------------------------------------------------------------------------------
# Meta-test: return after 0, 1, …, n adaptation steps on new tasks (maml.md Fig. 4, meta-sgd.md Table 4)


def adaptation_returns(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, tasks: RLTasks,
                       task_batch: Any, *, steps: int, trajectories: int, gamma: float,
                       gae_lambda: float, later_steps_lr_scale: float, generator: torch.Generator) -> Tensor:
    """Average return per task with the policy after 0, 1, …, ``steps`` PG steps.

    Every step samples ``trajectories`` fresh episodes with the current policy, whose returns
    are recorded, then adapts on them; step j ≥ 1 uses ``later_steps_lr_scale · α``
    (maml.md A.2: 0.5).

    Returns:
        ``[tasks, steps + 1]``.
    """
    n = num_tasks(task_batch)
    params, returns = per_task(meta_params["theta"], n), []
    for step in range(steps + 1):
        episodes = tasks.rollout(make_task_act(policy, params, n), task_batch, trajectories, generator)
        returns.append(episode_returns(episodes))
        if step < steps:
            batch = policy_batch(episodes, gamma=gamma, gae_lambda=gae_lambda)
            scale = 1.0 if step == 0 else later_steps_lr_scale
            params = batched_inner_update(policy, algo, meta_params, params, batch, lr_scale=scale)
    return torch.stack(returns, dim=1)


@gin.configurable
@dataclass(frozen=True)
class AdaptationEval:
    """Meta-test protocol: new tasks, up to ``algorithm.eval_inner_steps`` PG steps, mean ± 95% CI.

    Args:
        num_tasks: new tasks sampled (meta-sgd.md §4.3: 600).
        trajectories: episodes per step (maml.md §5.3: 40 for the curve; meta-sgd.md: 20).
        later_steps_lr_scale: α multiplier after the first step (maml.md A.2: 0.5; 1.0 keeps α).
        chunk_size: tasks sampled and adapted at once (bounds memory; results do not depend on it
            except through the order random numbers are drawn).
    """

    num_tasks: int
    trajectories: int
    later_steps_lr_scale: float
    chunk_size: int = 100

    def returns(self, meta_rl: MetaRL, meta_params: MetaParams, generator: torch.Generator,
                algorithm: MetaLearner | None = None) -> Tensor:
        """``[num_tasks, eval_inner_steps + 1]`` average returns; ``algorithm`` overrides the
        trained one for fine-tuning baselines (e.g. a MAML with a hand-tuned ``inner_lr``).

        All ``num_tasks`` tasks are drawn from ``generator`` first, so every model evaluated
        with the same seed meets the same tasks; each chunk's episodes then come from its own
        generator seeded from ``generator``.
        """
        algo = meta_rl.algorithm if algorithm is None else algorithm
        all_tasks = meta_rl.tasks.sample_tasks(self.num_tasks, generator)
        episode_seed = int(torch.randint(2**62, (1,), generator=generator))
        chunks = []
        for index, start in enumerate(range(0, self.num_tasks, self.chunk_size)):
            task_batch = pytree.tree_map(lambda t: t[start : start + self.chunk_size], all_tasks)
            chunks.append(adaptation_returns(
                meta_rl.policy, algo, meta_params, meta_rl.tasks, task_batch, steps=algo.eval_inner_steps,
                trajectories=self.trajectories, gamma=meta_rl.gamma, gae_lambda=meta_rl.gae_lambda,
                later_steps_lr_scale=self.later_steps_lr_scale,
                generator=torch.Generator().manual_seed(episode_seed + index),
            ))
        return torch.cat(chunks)

    def summary(self, returns: Tensor) -> dict[str, list[float]]:
        """Mean and 95% CI half-width over tasks for every number of steps."""
        stats = [mean_ci95(returns[:, j]) for j in range(returns.shape[1])]
        return {"return_mean": [m for m, _ in stats], "return_ci95": [c for _, c in stats]}
