"""Running statistics of scalar scores, shared by the PPO trainer and the composite reward.

Neither :mod:`detoxrl.rl` nor :mod:`detoxrl.rewards` owns these: both standardise judge scores with
running means and standard deviations (``ppo.score_norm``, ``reward.normalize``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


class RunningMoments:
    r"""Running mean and standard deviation of scalar scores, merged batch by batch.

    Parallel (Chan et al.) form of Welford's update, for a batch of :math:`n_b` values with mean
    :math:`\mu_b` and population variance :math:`\sigma_b^2`:

    .. math::
        \delta &= \mu_b - \mu,\quad N' = N + n_b \\
        \mu' &= \mu + \delta\, n_b / N' \\
        M_2' &= M_2 + n_b \sigma_b^2 + \delta^2 N n_b / N' \\
        \sigma' &= \sqrt{M_2' / (N' - 1)}

    ``std`` is the unbiased (ddof=1) standard deviation of every value seen so far. Everything is
    kept in Python floats (float64), so the state is JSON-serialisable.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.m2 = 0.0
        self.count = 0

    @property
    def var(self) -> float:
        """Unbiased variance of all values seen (0 before two values)."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.var)

    def update(self, x: torch.Tensor | Sequence[float]) -> tuple[float, float]:
        """Merge a batch; return its own ``(mean, unbiased std)`` (std 0 for a single value).

        Non-finite values are left out: one NaN score must not poison every later normalisation."""
        xs = torch.as_tensor(x).detach().reshape(-1).to(device="cpu", dtype=torch.float64)
        xs = xs[torch.isfinite(xs)]
        n = int(xs.numel())
        if n == 0:
            return float("nan"), float("nan")
        b_mean = float(xs.mean())
        b_m2 = float(((xs - b_mean) ** 2).sum())
        tot = self.count + n
        delta = b_mean - self.mean
        self.mean += delta * n / tot
        self.m2 += b_m2 + delta**2 * self.count * n / tot
        self.count = tot
        b_std = math.sqrt(b_m2 / (n - 1)) if n > 1 else 0.0
        return b_mean, b_std

    def state_dict(self) -> dict:
        return {"mean": self.mean, "m2": self.m2, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.mean = float(state["mean"])
        self.m2 = float(state["m2"])
        self.count = int(state["count"])


def normalize_scores(scores: torch.Tensor, moments: RunningMoments, clip: float | None = None) -> torch.Tensor:
    r"""Standardise scores with running statistics, then optionally clip.

    .. math:: \tilde s = \operatorname{clip}\bigl((s - \mu) / \sigma,\ -c,\ c\bigr)

    While the statistics have no spread yet (fewer than two values seen, or all equal) only the mean
    is removed (σ is taken as 1).
    """
    sigma = moments.std
    if not sigma > 0:
        sigma = 1.0
    out = (scores - moments.mean) / sigma
    if clip is not None:
        out = out.clamp(-clip, clip)
    return out


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    r"""The Wilson score interval of a binomial proportion :math:`\hat p = k / n` (95% for the default ``z``).

    .. math::
        \frac{\hat p + \frac{z^2}{2n} \pm z \sqrt{\frac{\hat p (1 - \hat p)}{n} + \frac{z^2}{4n^2}}}
             {1 + \frac{z^2}{n}}

    Unlike the normal approximation it stays inside [0, 1] and is not empty at ``k = 0`` or ``k = n``.
    ``(nan, nan)`` when ``n = 0``.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denom = 1 + z2 / n
    return max(0.0, (centre - half) / denom), min(1.0, (centre + half) / denom)
