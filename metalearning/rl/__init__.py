"""Meta-reinforcement learning: environments (``envs``) and batched rollouts (``rollouts``),
policies, policy-gradient losses, TRPO and MAML/Meta-SGD-TRPO (maml.md §3.2, §5.3; meta-sgd.md §4.3)."""
