"""The judges' view of the prompts' own texts, shared by the ``judge`` and ``tier`` difficulties.

:func:`prompt_scores` scores every text once with each judge of a reward function and combines them:
toxicity as the mean over judges weighted by ``|w_j|`` (``reward_fn.weights``, equal when absent),

.. math:: \\text{tox}_i = \\frac{\\sum_j |w_j|\\, \\text{tox}_{j,i}}{\\sum_j |w_j|},

and severity as the maximum over judges, :math:`\\text{sev}_i = \\max_j \\text{sev}_{j,i}`
(``JudgeResult.severity``; a judge without one counts with its toxicity).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from detoxrl.errors import DataError
from detoxrl.utils import progress


class _HasToxicity(Protocol):
    toxicity: Any


class ToxicityJudge(Protocol):
    """Anything with ``score(texts) -> result`` whose ``result.toxicity`` is a ``[B]`` tensor in [0, 1]
    (and optionally ``result.severity``, also ``[B]``)."""

    def score(self, texts: Sequence[str]) -> _HasToxicity: ...


def to_list(x: Any) -> list[float]:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().reshape(-1).tolist()
    return list(np.asarray(x, dtype=np.float64).reshape(-1))


def finite_array(values: Sequence[float], what: str) -> np.ndarray:
    """``values`` as a float array; a non-numeric or non-finite value is a :class:`DataError` naming its row."""
    try:
        arr = np.asarray([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        for i, v in enumerate(values):
            try:
                float(v)
            except (TypeError, ValueError):
                raise DataError(f"{what}: row {i} has the non-numeric value {v!r}") from None
        raise
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise DataError(f"{what}: row {int(bad[0])} has the non-finite value {arr[bad[0]]} "
                        f"({bad.size} such rows)")
    return arr


def judge_scores(texts: Sequence[str], judge: ToxicityJudge, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The judge's toxicity and severity of each text (two ``[N]`` arrays), scored in chunks under a progress bar."""
    tox: list[float] = []
    sev: list[float] = []
    name = getattr(judge, "name", type(judge).__name__)
    with progress() as bar:
        task = bar.add_task(f"difficulty ({name})", total=len(texts), info="")
        for i in range(0, len(texts), batch_size):
            res = judge.score(list(texts[i: i + batch_size]))
            t = to_list(res.toxicity)
            s = getattr(res, "severity", None)
            tox.extend(t)
            sev.extend(t if s is None else to_list(s))
            bar.update(task, completed=min(i + batch_size, len(texts)))
    return (finite_array(tox, f"toxicity of the prompts by judge {name}"),
            finite_array(sev, f"severity of the prompts by judge {name}"))


def judge_toxicity(texts: Sequence[str], judge: ToxicityJudge, batch_size: int = 256) -> np.ndarray:
    """The judge's toxicity of each text (``[N]``, raw scale)."""
    return judge_scores(texts, judge, batch_size)[0]


def judges_of(reward_fn: Any) -> list[Any]:
    """The judges of a reward function (its ``judges``, unwrapped from ``(judge, weight)`` pairs), or ``[]``."""
    judges = getattr(reward_fn, "judges", None)
    if judges is None:
        return []
    out = []
    for j in judges:
        j = getattr(j, "judge", j)  # (judge, weight) wrappers
        if isinstance(j, tuple):
            j = j[0]
        if hasattr(j, "score"):
            out.append(j)
    return out


def prompt_scores(texts: Sequence[str], reward_fn: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(toxicity, severity)`` of each text by the judges of ``reward_fn`` (module doc), or ``None``
    when it exposes no judges."""
    judges = judges_of(reward_fn)
    if not judges:
        return None
    w = [abs(float(x)) for x in getattr(reward_fn, "weights", None) or [1.0] * len(judges)]
    if len(w) != len(judges) or sum(w) == 0:
        w = [1.0] * len(judges)
    scores = [judge_scores(texts, j) for j in judges]
    tox = sum(wi * t for wi, (t, _) in zip(w, scores)) / sum(w)
    sev = np.max(np.stack([s for _, s in scores]), axis=0) if texts else np.zeros(0)
    return np.asarray(tox, dtype=np.float64), sev
