"""Three tiers of prompts, clean → ambiguous → harmful, and the severity grade inside the harmful tier.

A prompt's tier comes from the data when **every** prompt has the column ``curriculum.tier_column``
(``clean`` / ``ambiguous`` / ``harmful``, or ``0`` / ``1`` / ``2``); otherwise from the judges'
toxicity of the prompt's own text (:func:`detoxrl.curriculum.judging.prompt_scores`, the same score as
the ``judge`` difficulty) and ``curriculum.tier_thresholds = [a, b]``:

.. math:: \\text{tier}_i = \\text{clean if } \\text{tox}_i < a,\\ \\text{ambiguous if } \\text{tox}_i < b,\\ \\text{else harmful}.

A harmful prompt's grade (``mild`` / ``severe``) comes from ``curriculum.grade_column`` when every
harmful prompt has it (other tiers need not; their grade is ``none``), otherwise it is ``severe`` when
the judges' severity of its text (max over judges) is at least ``curriculum.severe_at``, else ``mild``.
Without judges a harmful prompt stays ungraded (``none``).

The curriculum level (:func:`tier_levels`) is 0 clean, 1 ambiguous, 2 harmful mild (or ungraded),
3 harmful severe. The red team's found prompts (``meta[REDTEAM_MARK]``) are harmful whatever the data
says and are graded by their judge severity; they need no column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from detoxrl.curriculum.judging import prompt_scores
from detoxrl.errors import ConfigError, DataError

TIERS = ("clean", "ambiguous", "harmful")
GRADES = ("none", "mild", "severe")
REDTEAM_MARK = "redteam"
"""``meta`` key (true) of a prompt the red team found: the curriculum puts it in the harmful tier."""


def _where(prompts: Sequence[Any], i: int) -> str:
    return f"prompt {getattr(prompts[i], 'id', i)} (row {i})"


def _value(p: Any, column: str) -> tuple[bool, Any]:
    meta = getattr(p, "meta", None) or {}
    if column in meta:
        return True, meta[column]
    return False, None


def parse_tier(value: Any, where: str, column: str = "tier") -> str:
    """``clean`` / ``ambiguous`` / ``harmful`` (any case) or ``0`` / ``1`` / ``2`` as the tier name."""
    if isinstance(value, str) and value.strip().lower() in TIERS:
        return value.strip().lower()
    if isinstance(value, str) and value.strip() in ("0", "1", "2"):
        return TIERS[int(value.strip())]
    if not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and value in (0, 1, 2):
        return TIERS[int(value)]
    raise DataError(f"curriculum.tier_column {column!r}: {where} has the value {value!r}; "
                    f"a tier is one of {', '.join(TIERS)} (or 0, 1, 2)")


def parse_grade(value: Any, where: str, column: str = "grade") -> str:
    """``mild`` / ``severe`` / ``none`` (any case; a null or empty value is ``none``)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "none"
    if isinstance(value, str) and value.strip().lower() in GRADES:
        return value.strip().lower()
    raise DataError(f"curriculum.grade_column {column!r}: {where} has the value {value!r}; "
                    f"a grade is one of {', '.join(GRADES)}")


def tiers_from_toxicity(toxicity: Sequence[float], thresholds: Sequence[float]) -> list[str]:
    """Clean below ``thresholds[0]``, ambiguous below ``thresholds[1]``, harmful from there on."""
    a, b = float(thresholds[0]), float(thresholds[1])
    return [TIERS[0] if t < a else TIERS[1] if t < b else TIERS[2] for t in np.asarray(toxicity, dtype=np.float64)]


def tier_levels(tiers: Sequence[str], grades: Sequence[str]) -> np.ndarray:
    """Curriculum level per prompt: 0 clean, 1 ambiguous, 2 harmful mild or ungraded, 3 harmful severe."""
    if len(tiers) != len(grades):
        raise ValueError(f"{len(tiers)} tiers for {len(grades)} grades")
    return np.asarray([TIERS.index(t) + (t == "harmful" and g == "severe") for t, g in zip(tiers, grades)],
                      dtype=np.float64)


def _column(prompts: Sequence[Any], column: str, rows: Sequence[int], what: str) -> list[Any] | None:
    """The column's value on each of ``rows``; ``None`` if none of them has it; a :class:`DataError`
    naming the first row without it if only some have it."""
    found = [_value(prompts[i], column) for i in rows]
    if not any(has for has, _ in found):
        return None
    missing = [i for i, (has, _) in zip(rows, found) if not has]
    if missing:
        raise DataError(f"curriculum.{what} {column!r}: {_where(prompts, missing[0])} has no such column, but "
                        f"{len(rows) - len(missing)} of {len(rows)} prompts do ({len(missing)} without it); "
                        "give it to every prompt or to none")
    return [v for _, v in found]


def _text(p: Any) -> str:
    return p if isinstance(p, str) else str(p.text)


def prompt_tiers(cfg: Any, prompts: Sequence[Any], reward_fn: Any) -> tuple[list[str], list[str], str]:
    """``(tiers, grades, source)`` of every prompt; ``source`` is ``column`` or ``thresholds`` (module doc)."""
    c = cfg.curriculum
    redteam = {i for i, p in enumerate(prompts) if (getattr(p, "meta", None) or {}).get(REDTEAM_MARK)}
    data_rows = [i for i in range(len(prompts)) if i not in redteam]
    column = _column(prompts, c.tier_column, data_rows, "tier_column")
    scores = None
    tiers = [TIERS[2]] * len(prompts)
    if column is not None:
        source = "column"
        for i, v in zip(data_rows, column):
            tiers[i] = parse_tier(v, _where(prompts, i), c.tier_column)
    else:
        source = "thresholds"
        scores = prompt_scores([_text(p) for p in prompts], reward_fn)
        if scores is None:
            raise ConfigError(f"curriculum.difficulty 'tier': the prompts have no column {c.tier_column!r} "
                              "(curriculum.tier_column) and the reward has no judges to score them by toxicity")
        for i, t in zip(data_rows, tiers_from_toxicity(scores[0][data_rows], c.tier_thresholds)):
            tiers[i] = t
    return tiers, _grades(cfg, prompts, reward_fn, tiers, redteam, scores), source


def _grades(cfg: Any, prompts: Sequence[Any], reward_fn: Any, tiers: list[str], redteam: set[int],
            scores: tuple[np.ndarray, np.ndarray] | None) -> list[str]:
    """Grade of each harmful prompt (column, else judge severity; ``none`` for the other tiers)."""
    c = cfg.curriculum
    grades = ["none"] * len(prompts)
    harmful = [i for i, t in enumerate(tiers) if t == TIERS[2] and i not in redteam]
    column = _column(prompts, c.grade_column, harmful, "grade_column")
    if column is not None:
        for i, v in zip(harmful, column):
            grades[i] = parse_grade(v, _where(prompts, i), c.grade_column)
        harmful = []
    todo = harmful + sorted(redteam)
    if not todo:
        return grades
    if scores is not None:  # the thresholds scored every prompt already
        sev = scores[1][todo]
    else:
        fresh = prompt_scores([_text(prompts[i]) for i in todo], reward_fn)
        if fresh is None:
            return grades  # no judges: harmful prompts stay ungraded (level 2)
        sev = fresh[1]
    for i, s in zip(todo, sev):
        grades[i] = "severe" if s >= c.severe_at else "mild"
    return grades


__all__ = ["TIERS", "GRADES", "REDTEAM_MARK", "parse_tier", "parse_grade", "tiers_from_toxicity", "tier_levels",
           "prompt_tiers"]
