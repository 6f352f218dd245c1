"""MAML-TRPO, first-order MAML-TRPO and Meta-SGD-TRPO (maml.md Algorithm 3, §5.3, A.2;
meta-sgd.md Algorithm 2, §4.3), on the functional core.

:class:`MetaRL` is a task family of the one trainer (:mod:`metalearning.training`). The
algorithm is a core :class:`~metalearning.core.algorithms.MetaLearner` (STYLE P2): it provides
the meta-parameters (``{"theta"}``, plus ``{"alpha"}`` for Meta-SGD), and its own inner loop
(:meth:`~metalearning.core.algorithms.MetaLearner.adapt`: step size, adapted parameters) takes
each inner step with the REINFORCE loss on the task's support episodes. The outer rule
(``MetaTrainer.outer_rule``) is TRPO on the flattened meta-parameters, so with ``first_order=False`` both the
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

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, NamedTuple, Protocol

import gin
import torch
from torch import Tensor, nn

from metalearning import distributed
from metalearning.core.adapt import LossFn, Params
from metalearning.core.algorithms import MetaLearner, MetaParams
from metalearning.core.batching import num_tasks, over_tasks
from metalearning.core.family import MetaBatch
from metalearning.core.shards import shard_bounds, task_slice
from metalearning.devices import to_like
from metalearning.evaluation import mean_ci95
from metalearning.rl.losses import PolicyBatch, SurrogateBatch, reinforce_loss, surrogate_of
from metalearning.rl.policy import ActFn, gaussian_params, make_task_act
from metalearning.rl.returns import EpisodesLike, estimate_advantages
from metalearning.rl.rollouts import ShardedGenerator, TaskShard


class RLTasks(Protocol):
    """A distribution over MDPs whose episodes are sampled for a whole batch of tasks at once."""

    def sample_tasks(self, num_tasks: int, generator: torch.Generator) -> Any:
        """Task descriptors (e.g. goals), every leaf ``[num_tasks, ...]``."""

    def rollout(self, act: ActFn, tasks: Any, trajectories: int, generator: torch.Generator) -> EpisodesLike:
        """``trajectories`` episodes per task; fields ``[num_tasks, T, B, ...]``; ``act`` sees the
        observations of all tasks stacked task-major (``make_task_act``)."""


def process_share(tasks: Any, generator: torch.Generator) -> tuple[Any, torch.Generator | ShardedGenerator]:
    """The tasks of a batch this process rolls out, and the generator to roll them out with.

    One process: all of them, with ``generator``. Under torchrun: its contiguous share
    (:func:`~metalearning.core.shards.shard_bounds`) with a :class:`ShardedGenerator`, which draws
    the noise one process would draw for the whole batch and keeps this share's rows, so the
    processes together sample one process's episodes (the policy's matrix products on fewer rows
    may round differently in float32: at the papers' sizes the meta-tests' numbers are the same
    bits in 1 and 2 processes on the 2-core machine, at toy sizes they differ by ~1e-7).

    Raises:
        ValueError: fewer tasks than processes (a process would have none to roll out).
    """
    processes = distributed.world()
    if processes.size == 1:
        return tasks, generator
    n = num_tasks(tasks)
    if n < processes.size:
        raise ValueError(f"{n} tasks cannot be split over {processes.size} processes (each needs at least one): "
                         "sample more tasks at once or run fewer processes")
    shard = TaskShard(*shard_bounds(n, processes.rank, processes.size), n)
    return task_slice(tasks, shard.start, shard.stop), ShardedGenerator(generator, shard)


def gathered(local: Tensor, generator: torch.Generator | ShardedGenerator) -> Tensor:
    """Per-task rows of this process's share (``local``, from :func:`process_share`'s generator)
    as the whole batch's rows, on every process: each process fills its rows, zeros elsewhere,
    and a sum over the processes adds only exact zeros, so the rows keep their bits."""
    if not isinstance(generator, ShardedGenerator):
        return local
    start, stop, total = generator.shard
    whole = local.new_zeros((total, *local.shape[1:]))
    whole[start:stop] = local
    return distributed.reduced_sum(whole)


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


def inner_update(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, params: Params,
                 support: PolicyBatch, *, lr_scale: float = 1.0, first_order: bool | None = None) -> Params:
    """One vanilla-PG step θ' = θ − α∘∇L(θ; support) (maml.md Alg. 3 line 7; meta-sgd.md Alg. 2 line 7),
    by the algorithm's own inner loop (its step size, the parameters it adapts).

    Args:
        params: the task's current policy parameters (θ for the first step).
        support: that task's episodes sampled with ``params``, ``[T, B, ...]``.
        lr_scale: multiplies α (maml.md A.2 halves it after the first step at evaluation).
        first_order: override ``algo.first_order`` (evaluation needs no graph).
    """
    return algo.adapt(meta_params, support, reinforce_loss(policy), 1, start=params, lr_scale=lr_scale,
                      first_order=algo.first_order if first_order is None else first_order)


def adapted_params(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams,
                   support: tuple[PolicyBatch, ...]) -> Params:
    """θ'_i after one inner step per support batch, differentiable in the meta-parameters."""
    return algo.adapt(meta_params, support.__getitem__, reinforce_loss(policy), len(support),
                      first_order=algo.first_order)


def meta_objective_parts(policy: nn.Module, algo: MetaLearner, tasks: RLTask, *, vectorize: bool = True
                         ) -> tuple[Callable[[MetaParams], Any], Callable[[Any], tuple[Tensor, Tensor]]]:
    """:func:`meta_objective` as ``outer(inner(meta_params))`` (TRPO's
    :class:`~metalearning.rl.trpo.SplitObjective`).

    ``inner``: meta-parameters → the adapted policies' (loc, scale) on their tasks' query
    observations, ``[tasks, T, B, act_dim]`` each (adaptation θ ↦ θ'_i, then the policy network);
    ``outer``: those → means over the meta-batch of (surrogate loss, KL), elementwise work only,
    so the KL's Hessian in them is cheap. The KL's gradient there is 0 at the sampling policy.
    """
    def task_outputs(meta_params: MetaParams, task: RLTask) -> tuple[Tensor, Tensor]:
        params = adapted_params(policy, algo, meta_params, task.support)
        return gaussian_params(policy, params, task.query.observations)

    def inner(meta_params: MetaParams) -> tuple[Tensor, Tensor]:
        return over_tasks(task_outputs, meta_params, tasks, vectorize=vectorize)

    def outer(outputs: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        losses, kls = over_tasks(lambda _, pair: surrogate_of(*pair), None, (outputs, tasks.query),
                                 vectorize=vectorize)
        return losses.mean(), kls.mean()

    return inner, outer


def meta_objective(policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, tasks: RLTask, *,
                   vectorize: bool = True) -> tuple[Tensor, Tensor]:
    """Means over the meta-batch of each task's (TRPO surrogate of its query episodes at
    θ'_i(meta_params), mean KL(π_old ‖ π_θ'_i)), scalars: the meta-objective of maml.md Algorithm 3
    line 10 / meta-sgd.md eq. 5 in TRPO's importance-sampled form."""
    inner, outer = meta_objective_parts(policy, algo, tasks, vectorize=vectorize)
    return outer(inner(meta_params))


def policy_like(meta_params: MetaParams) -> Tensor:
    """A tensor with the policy's device and dtype (episodes are sampled on the CPU, in float32)."""
    return next(iter(meta_params["theta"].values()))


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


@gin.configurable
class MetaRL:
    """The meta-RL task family (see the module docstring): MDPs, their sampling protocol and the
    meta-test; the one trainer runs it with the policy as ``MetaTrainer.learner`` and TRPO as
    ``MetaTrainer.outer_rule``.

    Args:
        tasks: the task distribution and its batched sampler (:class:`RLTasks`).
        support_trajectories: K, episodes per task per inner step (maml.md §5.3: 20).
        query_trajectories: episodes per task with the adapted policy (20).
        gamma: discount γ (0.99).
        gae_lambda: GAE λ (1.0: Monte-Carlo returns minus the baseline).
        evaluation: the meta-test protocol (new tasks, PG steps, trajectories per step).
        eval_seed: seeds the meta-test generator (new tasks, episodes), disjoint from training's.
        plotted_tasks: navigation tasks whose pre-/post-update paths the meta-test records.
        vectorize: ``vmap`` the objective over tasks; ``False`` runs the reference per-task loop.
    """

    kind = "rl"
    selects_best = True  # maml.md A.2: "the model with the best average return during training"
    parallel_meta_test = True  # AdaptationEval.returns: each process takes a share of every chunk of new tasks
    score_name = "post_update_return"

    def __init__(self, *, tasks: RLTasks, support_trajectories: int, query_trajectories: int, gamma: float,
                 gae_lambda: float, evaluation: AdaptationEval | None = None, eval_seed: int = 0,
                 plotted_tasks: int = 3, vectorize: bool = True):
        self.tasks, self.evaluation, self.eval_seed, self.plotted_tasks = tasks, evaluation, eval_seed, plotted_tasks
        self.support_trajectories, self.query_trajectories = support_trajectories, query_trajectories
        self.gamma, self.gae_lambda, self.vectorize = gamma, gae_lambda, vectorize

    def loss(self, learner: nn.Module, predict: Any) -> LossFn:
        """The inner loop's REINFORCE loss of the policy."""
        return reinforce_loss(learner)

    def _batch(self, episodes: Any, like: Tensor) -> PolicyBatch:
        """The policy-gradient batch of episodes sampled on the CPU, moved to the policy's device and
        dtype first (``like``: one of its parameters), so the baseline is fit there too."""
        return policy_batch(to_like(episodes, like), gamma=self.gamma, gae_lambda=self.gae_lambda)

    def sample(self, policy: nn.Module, algo: MetaLearner, meta_params: MetaParams, tasks: Any,
               generator: torch.Generator) -> tuple[RLTask, Tensor]:
        """Steps 1–2 of the meta-iteration: support episodes, adaptation, query episodes.

        Returns:
            (the meta-batch as an :class:`RLTask` with leaves ``[tasks, ...]``; the average return
            per task of every sampling round, ``[tasks, inner_steps + 1]``, last = post-update).
        """
        n, like = num_tasks(tasks), policy_like(meta_params)
        params, support, returns = per_task(meta_params["theta"], n), [], []
        for _ in range(algo.inner_steps):
            episodes = self.tasks.rollout(make_task_act(policy, params, n), tasks, self.support_trajectories, generator)
            support.append(self._batch(episodes, like))
            returns.append(episode_returns(episodes))
            params = batched_inner_update(policy, algo, meta_params, params, support[-1])
        episodes = self.tasks.rollout(make_task_act(policy, params, n), tasks, self.query_trajectories, generator)
        returns.append(episode_returns(episodes))
        query = recorded_query(policy, params, self._batch(episodes, like))
        return RLTask(tuple(support), query), torch.stack(returns, dim=1)

    def meta_batch(self, trainer: Any, meta_params: MetaParams, n: int, generator: torch.Generator) -> MetaBatch:
        """``n`` new tasks rolled out before and after adaptation; the post-update return is the score."""
        tasks, generator = process_share(self.tasks.sample_tasks(n, generator), generator)
        batch, returns = self.sample(trainer.learner, trainer.algorithm, meta_params, tasks, generator)
        means = returns.mean(0) if distributed.world().size == 1 else distributed.reduced_sum(returns.sum(0)) / n
        pre, post = float(means[0]), float(means[-1])
        return MetaBatch(batch, {"meta_train.pre_update_return": pre, "meta_train.post_update_return": post}, post)

    def objective(self, trainer: Any, meta_params: MetaParams, tasks: RLTask) -> tuple[Tensor, Tensor]:
        """TRPO's objective: (mean surrogate loss, mean KL) over the meta-batch at ``meta_params``."""
        return meta_objective(trainer.learner, trainer.algorithm, meta_params, tasks, vectorize=self.vectorize)

    def objective_parts(self, trainer: Any, tasks: RLTask):
        """:meth:`objective` as (adaptation, objective of the adapted policies): :func:`meta_objective_parts`."""
        return meta_objective_parts(trainer.learner, trainer.algorithm, tasks, vectorize=self.vectorize)

    def validation_tasks(self, n: int, generator: torch.Generator) -> None:
        return None  # model selection uses the training returns (maml.md A.2)

    def validation(self, trainer: Any, meta_params: MetaParams, tasks: Any) -> dict[str, float]:
        return {}

    def meta_test(self, model: Any, test_set: Any) -> Any:
        from metalearning.rl.meta_test import meta_test

        return meta_test(model, test_set)

    def describe(self, model: Any) -> dict[str, Any]:
        from metalearning.rl.meta_test import describe

        return describe(model)


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
            batch = policy_batch(to_like(episodes, policy_like(meta_params)), gamma=gamma, gae_lambda=gae_lambda)
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
            except through the order random numbers are drawn). Under torchrun the processes
            split every chunk, so a chunk needs at least one task per process.
        paper: the paper whose protocol this is (``"maml"``: maml.md Fig. 4 / Table 4-5;
            ``"metasgd"``: meta-sgd.md Table 4), recorded with the results: the report compares
            each result with that paper's numbers.
    """

    num_tasks: int
    trajectories: int
    later_steps_lr_scale: float
    chunk_size: int = 100
    paper: str = ""

    def returns(self, trainer: Any, meta_params: MetaParams, generator: torch.Generator,
                algorithm: MetaLearner | None = None) -> Tensor:
        """``[num_tasks, eval_inner_steps + 1]`` average returns; ``algorithm`` overrides the
        trained one for fine-tuning baselines (e.g. a MAML with a hand-tuned ``inner_lr``).

        All ``num_tasks`` tasks are drawn from ``generator`` first, so every model evaluated
        with the same seed meets the same tasks; each chunk's episodes then come from its own
        generator seeded from ``generator``. Under torchrun every process rolls out and adapts
        its share of each chunk's tasks (:func:`process_share`) and all get every task's returns.
        """
        meta_rl = trainer.tasks
        algo = trainer.algorithm if algorithm is None else algorithm
        all_tasks = meta_rl.tasks.sample_tasks(self.num_tasks, generator)
        episode_seed = int(torch.randint(2**62, (1,), generator=generator))
        chunks = []
        for index, start in enumerate(range(0, self.num_tasks, self.chunk_size)):
            task_batch, chunk_generator = process_share(task_slice(all_tasks, start, start + self.chunk_size),
                                                        torch.Generator().manual_seed(episode_seed + index))
            chunks.append(gathered(adaptation_returns(
                trainer.learner, algo, meta_params, meta_rl.tasks, task_batch, steps=algo.eval_inner_steps,
                trajectories=self.trajectories, gamma=meta_rl.gamma, gae_lambda=meta_rl.gae_lambda,
                later_steps_lr_scale=self.later_steps_lr_scale, generator=chunk_generator,
            ), chunk_generator))
        return torch.cat(chunks)

    def summary(self, returns: Tensor) -> dict[str, list[float]]:
        """Mean and 95% CI half-width over tasks for every number of steps."""
        stats = [mean_ci95(returns[:, j]) for j in range(returns.shape[1])]
        return {"return_mean": [m for m, _ in stats], "return_ci95": [c for _, c in stats]}
