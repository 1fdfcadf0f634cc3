"""Pacing functions: the share of prompts (easiest first) a curriculum makes available at step ``t``.

Each returns the *competence* ``c(t)`` in ``[c0, 1]``; ``T`` is the step at which every prompt is
available (``curriculum.full_at × total_steps``) and ``c0`` the starting share.
Reference: Platanios et al. 2019, "Competence-based Curriculum Learning for Neural Machine Translation".
"""

from __future__ import annotations

import math
from collections.abc import Callable

PacingFn = Callable[[float, float, float], float]


def _check(c0: float) -> None:
    if not 0 < c0 <= 1:
        raise ValueError(f"start competence must be in (0, 1], got {c0}")


def linear(t: float, T: float, c0: float) -> float:
    r"""Linear pacing: :math:`c(t) = \min\bigl(1,\ c_0 + (1 - c_0)\, t / T\bigr)`."""
    _check(c0)
    if T <= 0:
        return 1.0
    return min(1.0, c0 + (1.0 - c0) * max(t, 0.0) / T)


def sqrt_competence(t: float, T: float, c0: float) -> float:
    r"""Square-root pacing (Platanios et al. 2019): :math:`c(t) = \min\bigl(1,\ \sqrt{t (1 - c_0^2) / T + c_0^2}\bigr)`.

    New prompts arrive fast at first and slower later: the model spends more steps on each
    newly added slice of hard prompts, as they get fewer per step.
    """
    _check(c0)
    if T <= 0:
        return 1.0
    return min(1.0, math.sqrt(max(t, 0.0) * (1.0 - c0 * c0) / T + c0 * c0))


def stage_competence(stage: int, n_stages: int, c0: float) -> float:
    r"""Competence of stage ``k`` of ``n``: equal steps from :math:`c_0` (stage 0) to 1 (stage n-1).

    .. math:: c_k = c_0 + (1 - c_0)\, k / (n - 1)

    With one stage everything is available at once.
    """
    _check(c0)
    if n_stages <= 1:
        return 1.0
    k = min(max(int(stage), 0), n_stages - 1)
    return c0 + (1.0 - c0) * k / (n_stages - 1)


def stage_at(t: float, T: float, n_stages: int) -> int:
    r"""The stage reached at step ``t`` when ``n`` stages are spread evenly up to ``T``.

    .. math:: k(t) = \min\bigl(n - 1,\ \lfloor (n - 1)\, t / T \rfloor\bigr)

    so the last stage (everything) starts exactly at ``T``.
    """
    if n_stages <= 1 or T <= 0:
        return max(n_stages - 1, 0)
    return min(n_stages - 1, int(math.floor((n_stages - 1) * max(t, 0.0) / T + 1e-12)))


def step_stages(t: float, T: float, c0: float, n_stages: int) -> float:
    r"""Staircase pacing: :math:`c(t) = c_{k(t)}` with :func:`stage_at` and :func:`stage_competence`.

    For ``n = 3``, ``c0 = 0.2``: 0.2 before ``T/2``, 0.6 from ``T/2``, 1.0 from ``T``.
    """
    return stage_competence(stage_at(t, T, n_stages), n_stages, c0)


PACINGS: dict[str, PacingFn] = {"linear": linear, "sqrt": sqrt_competence}
"""Continuous pacings by their config name (``step`` and ``self_paced`` are staged)."""
