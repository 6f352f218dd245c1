"""The policy-gradient pieces: REINFORCE is unbiased, returns/GAE/normalisation, the linear baseline."""

from __future__ import annotations

import math

import pytest
import torch

from metalearning.rl.baseline import baseline_features, fit_linear_baseline, linear_baseline_values
from metalearning.rl.losses import PolicyBatch, reinforce_loss
from metalearning.rl.policy import GaussianMLPPolicy, distribution, make_act, make_task_act
from metalearning.rl.returns import discounted_returns, gae, normalize_advantages


def _params(policy):
    return {k: p.detach().clone() for k, p in policy.named_parameters()}


def _bandit(policy, params, samples, target, generator):
    """A one-step bandit with reward −‖a − c‖² from a fixed state: episodes with T = 1."""
    obs = torch.full((1, samples, 2), 0.3, dtype=torch.float64)
    with torch.no_grad():
        dist = distribution(policy, params, obs)
        actions = dist.mean + dist.stddev * torch.randn(dist.mean.shape, generator=generator, dtype=torch.float64)
    rewards = -((actions - target) ** 2).sum(-1)
    return obs, actions, rewards


def test_reinforce_gradient_is_unbiased_on_a_gaussian_bandit():
    """E[−∇ reinforce_loss] = ∇J with J(θ) = −‖μ_θ(s) − c‖² − Σσ² (the bandit's expected reward)."""
    gen = torch.Generator().manual_seed(0)
    policy = GaussianMLPPolicy(2, 2, hidden=(4,), init_std=0.7, generator=gen).double()
    params, target = _params(policy), torch.tensor([0.5, -1.0], dtype=torch.float64)

    def expected_reward(p):
        loc, scale = distribution(policy, p, torch.full((2,), 0.3, dtype=torch.float64)).mean, p["log_std"].exp()
        return -((loc - target) ** 2).sum() - (scale**2).sum()

    analytic = torch.func.grad(expected_reward)(params)
    n = 20_000
    obs, actions, rewards = _bandit(policy, params, n, target, gen)
    loss = reinforce_loss(policy)

    def per_sample(p, o, a, r):  # the estimator on one one-step episode
        return torch.func.grad(loss)(p, PolicyBatch(o[:, None], a[:, None], r[:, None], torch.ones(1, 1)))

    grads = torch.func.vmap(per_sample, in_dims=(None, 1, 1, 1))(params, obs, actions, rewards)
    for name, g in grads.items():
        estimate, stderr = -g.mean(0), g.std(0) / math.sqrt(n)
        # Dead ReLU units have an exactly zero gradient and zero spread: compare those exactly.
        assert ((estimate - analytic[name]).abs() <= 4.5 * stderr + 1e-12).all(), name
    # The test has power: the standard errors are small next to the gradient itself.
    flat_err = torch.cat([(g.std(0) / math.sqrt(n)).flatten() for g in grads.values()])
    flat_grad = torch.cat([v.flatten() for v in analytic.values()])
    assert flat_err.norm() < 0.05 * flat_grad.norm()


def test_reinforce_loss_averages_over_the_steps_taken():
    policy = GaussianMLPPolicy(2, 2, hidden=(3,)).double()
    params = _params(policy)
    gen = torch.Generator().manual_seed(1)
    obs, actions = torch.randn(4, 3, 2, generator=gen, dtype=torch.float64), torch.randn(4, 3, 2, generator=gen,
                                                                                          dtype=torch.float64)
    adv = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(4, 3, dtype=torch.float64)
    mask[2:, 0] = 0
    value = reinforce_loss(policy)(params, PolicyBatch(obs, actions, adv, mask))
    logp = distribution(policy, params, obs).log_prob(actions)
    expected = -torch.stack([logp[t, b] * adv[t, b] for t in range(4) for b in range(3) if mask[t, b]]).mean()
    torch.testing.assert_close(value, expected)


def test_discounted_returns_match_the_backward_recursion():
    gen = torch.Generator().manual_seed(2)
    rewards = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64)
    mask = torch.ones(2, 7, 3, dtype=torch.float64)
    mask[0, 4:, 1] = 0
    rewards = rewards * mask
    returns = discounted_returns(rewards, mask, gamma=0.9)
    expected = torch.zeros_like(rewards)
    running = torch.zeros(2, 3, dtype=torch.float64)
    for t in reversed(range(7)):
        running = rewards[:, t] + 0.9 * running
        expected[:, t] = running * mask[:, t]
    torch.testing.assert_close(returns, expected)


def test_gae_with_lambda_one_is_returns_minus_baseline_and_lambda_zero_is_td_error():
    gen = torch.Generator().manual_seed(3)
    rewards, values = torch.randn(2, 6, 4, generator=gen), torch.randn(2, 6, 4, generator=gen)
    mask = torch.ones(2, 6, 4)
    mask[1, 3:, 2] = 0
    rewards = rewards * mask
    adv = gae(rewards, values, mask, gamma=0.95, gae_lambda=1.0)
    torch.testing.assert_close(adv, (discounted_returns(rewards, mask, gamma=0.95) - values) * mask)
    td = gae(rewards, values, mask, gamma=0.95, gae_lambda=0.0)
    assert td[1, 2, 2] == pytest.approx(float(rewards[1, 2, 2] - values[1, 2, 2]))  # last step: no bootstrap
    assert td[0, 1, 0] == pytest.approx(float(rewards[0, 1, 0] + 0.95 * values[0, 2, 0] - values[0, 1, 0]))


def test_advantages_are_normalised_per_task_over_the_steps_taken():
    gen = torch.Generator().manual_seed(4)
    adv = torch.randn(3, 5, 4, generator=gen) * torch.tensor([1.0, 10.0, 0.1]).view(3, 1, 1) + 7
    mask = torch.ones(3, 5, 4)
    mask[2, 2:, :2] = 0
    out = normalize_advantages(adv, mask)
    for i in range(3):
        valid = out[i][mask[i].bool()]
        assert valid.mean().abs() < 1e-5 and (valid.var(unbiased=False) - 1).abs() < 1e-4
    assert out[2][~mask[2].bool()].abs().max() == 0


def test_linear_baseline_recovers_a_linear_target_per_task_and_ignores_padding():
    gen = torch.Generator().manual_seed(5)
    obs = torch.rand(2, 100, 4, 2, generator=gen, dtype=torch.float64) * 2 - 1
    mask = torch.ones(2, 100, 4, dtype=torch.float64)
    mask[1, 60:, :3] = 0
    feats = baseline_features(obs, mask)
    assert feats.shape == (2, 100, 4, 8)
    true_w = torch.randn(2, 8, generator=gen, dtype=torch.float64)
    target = torch.einsum("ntbf,nf->ntb", feats, true_w)
    garbage = target + 100 * (1 - mask) * torch.randn(target.shape, generator=gen, dtype=torch.float64)
    # The ridge term (1e-5) biases the weights of the nearly collinear time features slightly.
    torch.testing.assert_close(fit_linear_baseline(feats, garbage * mask), true_w, atol=1e-3, rtol=0)
    values = linear_baseline_values(obs, mask, garbage)
    torch.testing.assert_close(values, target, atol=1e-3, rtol=0)
    assert values[1][~mask[1].bool()].abs().max() == 0


def test_linear_baseline_is_regularised_and_raises_on_non_finite_inputs():
    feats = torch.zeros(2, 3, 2, 4, dtype=torch.float64)
    feats[0] = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    targets = torch.ones(2, 3, 2, dtype=torch.float64)
    # Task 1 has all-zero features: ΦᵀΦ = 0 is only made definite by the ridge term.
    w = fit_linear_baseline(feats, targets)
    assert torch.isfinite(w).all() and w[1].abs().max() == 0
    feats[1, 0, 0, 0] = math.nan
    with pytest.raises(FloatingPointError, match="failed for 1 task"):
        fit_linear_baseline(feats, targets)


def test_policy_parameters_and_initial_std():
    policy = GaussianMLPPolicy(2, 2, generator=torch.Generator().manual_seed(0))
    shapes = {k: tuple(p.shape) for k, p in policy.named_parameters()}
    assert shapes == {"mean.0.weight": (100, 2), "mean.0.bias": (100,), "mean.2.weight": (100, 100),
                      "mean.2.bias": (100,), "mean.4.weight": (2, 100), "mean.4.bias": (2,), "log_std": (2,)}
    dist = distribution(policy, dict(policy.named_parameters()), torch.zeros(5, 2))
    torch.testing.assert_close(dist.stddev, torch.ones(5, 2))


def test_task_act_uses_each_tasks_parameters_in_task_major_order():
    policy = GaussianMLPPolicy(2, 2, hidden=(3,), init_std=1e-6)
    params = _params(policy)
    per_task = {k: torch.stack([p, p + 1.0]) for k, p in params.items()}
    obs = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    actions = make_task_act(policy, per_task, num_tasks=2)(obs, gen)
    shifted = {k: p + 1.0 for k, p in params.items()}
    expected = torch.cat([make_act(policy, params)(obs[:3], gen), make_act(policy, shifted)(obs[3:], gen)])
    torch.testing.assert_close(actions, expected, atol=1e-4, rtol=0)
