"""The linear feature baseline of Duan et al. (2016), refit for every task (maml.md §5.3).

"For both learning and meta-learning updates, we use the standard linear feature baseline
proposed by Duan et al. (2016a), which is fitted separately at each iteration for each sampled
task in the batch." The value estimate is linear in the features

    φ(s_t, t) = [s, s², t/100, (t/100)², (t/100)³, 1]      (s clipped to [−10, 10], as rllab)

and is fit by ridge regression to the discounted returns of the task's own episodes. All
functions broadcast over leading dimensions, so a whole meta-batch ``[tasks, T, B, ...]`` is fit
in one batched solve (every task still gets its own weights).
"""

from __future__ import annotations

import torch
from torch import Tensor


def baseline_features(observations: Tensor, mask: Tensor) -> Tensor:
    """φ(s_t, t) for every step, zero where the step was not taken.

    Args:
        observations: ``[..., T, B, obs_dim]``.
        mask: ``[..., T, B]``, 1 where step t of the episode was taken.

    Returns:
        ``[..., T, B, 2·obs_dim + 4]``.
    """
    obs = observations.clamp(-10.0, 10.0)
    horizon = observations.shape[-3]
    t = torch.arange(horizon, dtype=obs.dtype, device=obs.device) / 100.0
    t = t.view(horizon, 1, 1).expand(*obs.shape[:-1], 1)
    feats = torch.cat([obs, obs**2, t, t**2, t**3, torch.ones_like(t)], dim=-1)
    return feats * mask.unsqueeze(-1)


def fit_linear_baseline(features: Tensor, targets: Tensor, *, reg_coeff: float = 1e-5,
                        max_tries: int = 5) -> Tensor:
    """Ridge least squares ``w = (ΦᵀΦ + λI)⁻¹ Φᵀy`` per leading index, in float64.

    λ starts at ``reg_coeff`` and is multiplied by 10 for a task whose system is not positive
    definite or whose solution is not finite (rllab's rule), at most ``max_tries`` times.

    Args:
        features: ``[..., T, B, F]`` (zero rows for steps not taken).
        targets: ``[..., T, B]`` (zero where steps were not taken).

    Returns:
        ``[..., F]`` weights, in the dtype of ``features``.

    Raises:
        FloatingPointError: some task still fails after ``max_tries`` (non-finite inputs: a
            diverged policy).
    """
    phi = features.flatten(-3, -2).double()
    gram = phi.mT @ phi
    rhs = phi.mT @ targets.flatten(-2).double().unsqueeze(-1)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    reg = torch.full(gram.shape[:-2], reg_coeff, dtype=gram.dtype, device=gram.device)
    weights = torch.zeros(rhs.shape[:-1], dtype=gram.dtype, device=gram.device)
    done = torch.zeros(gram.shape[:-2], dtype=torch.bool, device=gram.device)
    for _ in range(max_tries):
        chol, info = torch.linalg.cholesky_ex(gram + reg[..., None, None] * eye)
        solution = torch.cholesky_solve(rhs, chol).squeeze(-1)
        ok = (info == 0) & solution.isfinite().all(-1) & ~done
        weights = torch.where(ok.unsqueeze(-1), solution, weights)
        done = done | ok
        if bool(done.all()):
            return weights.to(features.dtype)
        reg = torch.where(done, reg, reg * 10)
    raise FloatingPointError(f"linear baseline: ridge system failed for {int((~done).sum())} task(s) "
                             f"even with regularisation {float(reg.max()):g} (non-finite returns or observations)")


def linear_baseline_values(observations: Tensor, mask: Tensor, returns: Tensor, *,
                           reg_coeff: float = 1e-5) -> Tensor:
    """V(s_t) of a linear baseline fit to ``returns`` of the same episodes, zero off the mask.

    Args:
        observations: ``[..., T, B, obs_dim]``.
        mask: ``[..., T, B]``.
        returns: ``[..., T, B]`` discounted returns (the regression targets).

    Returns:
        ``[..., T, B]`` baseline values.
    """
    feats = baseline_features(observations, mask)
    weights = fit_linear_baseline(feats, returns * mask, reg_coeff=reg_coeff)
    return torch.einsum("...tbf,...f->...tb", feats, weights)
