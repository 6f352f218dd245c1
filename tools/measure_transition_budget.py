"""Does rllab's transition-budget sampling change the 2D-navigation meta-test returns?

    python tools/measure_transition_budget.py models/rl/maml_nav2d_fixed/checkpoint.pt [--tasks 600]

MAML's code (cbfinn/maml_rl) evaluates a policy on a budget of transitions, not a number of
episodes: rllab's samplers roll out episodes until their lengths add up to ``B × H`` steps (VPG's
``batch_size``; the MAML sampler counts ``batch_size · max_path_length · meta_batch_size`` over all
tasks), so a task whose policy reaches the goal early contributes more, shorter episodes, and the
average return is over all of them. The platform samples exactly ``B`` episodes per task.

For the checkpoint's meta-test protocol (its new tasks and ``B``; episodes drawn from one stream,
not the meta-test's per-chunk streams), this adapts every task with one policy-gradient step on
``B`` episodes as the meta-test does, then samples many episodes
with the adapted policy and prints the post-update average return two ways: over the first ``B``
episodes (the platform's protocol), and over the episodes whose lengths first add up to
``B × H`` steps, in sampling order (rllab's), with how many episodes that took per task.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import metalearning  # noqa: F401  (OpenMP policy before torch)
from metalearning.model import load_model
from metalearning.rl.meta_rl import batched_inner_update, per_task, policy_batch
from metalearning.rl.policy import make_task_act


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--tasks", type=int, default=None, help="new tasks (default: the meta-test's)")
    parser.add_argument("--episodes", type=int, default=80, help="episodes sampled after the step (enough for the "
                        "budget unless most episodes end early)")
    args = parser.parse_args()
    import torch  # after metalearning (its OpenMP and numerics policy)

    model = load_model(args.checkpoint)
    family, algo, policy = model.family, model.algorithm, model.trainer.learner
    trajectories = family.evaluation.trajectories
    n = args.tasks or family.evaluation.num_tasks
    generator = torch.Generator().manual_seed(family.eval_seed)
    tasks = family.tasks.sample_tasks(n, generator)
    params = per_task(model.meta_params["theta"], n)
    support = family.tasks.rollout(make_task_act(policy, params, n), tasks, trajectories, generator)
    params = batched_inner_update(policy, algo, model.meta_params, params,
                                  policy_batch(support, gamma=family.gamma, gae_lambda=family.gae_lambda))
    query = family.tasks.rollout(make_task_act(policy, params, n), tasks, args.episodes, generator)
    returns, lengths = (query.rewards * query.mask).sum(-2), query.mask.sum(-2)  # [tasks, episodes]
    budget = trajectories * query.mask.shape[-2]
    ends = lengths.cumsum(-1)
    kept = (ends - lengths) < budget  # every episode up to the one whose end reaches the budget
    reached = ends[:, -1] >= budget
    print(f"{args.checkpoint}: {n} tasks, B = {trajectories} episodes, budget {budget} steps")
    print(f"  post-update return over the first {trajectories} episodes: {float(returns[:, :trajectories].mean()):.3f}")
    per_task_mean = (returns * kept).sum(-1) / kept.sum(-1)
    print(f"  post-update return over a {budget}-step budget: {float(per_task_mean.mean()):.3f} "
          f"({float(kept.sum(-1).float().mean()):.1f} episodes per task on average; "
          f"{int(reached.sum())}/{n} tasks reached the budget within {args.episodes} episodes)")


if __name__ == "__main__":
    main()
