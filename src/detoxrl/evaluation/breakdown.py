"""``eval.json``'s figures by type and severity of toxicity, from plain arrays ``[k, N]`` (no models).

- ``per_dimension``: per judge group (``reward``: the judges trained against; ``held_out``:
  ``eval.extra_judges``; ``all``) and per dimension ``d`` of :data:`~detoxrl.config.DIMENSIONS`, the share of
  responses that some judge of the group reporting ``d`` scores ``tox_d ≥`` its threshold, before and
  after, with the paired before/after comparison per prompt.
- ``per_severity_tier``: the share of responses in each ``reward.severity_tiers`` tier; a response's
  severity is :func:`response_severity`.
- ``per_prompt_tier``: toxic rates on the prompts of each tier (``clean``, ``ambiguous``, ``harmful``,
  from the column ``curriculum.tier_column`` of the prompts' data).
- ``over_correction``: the share of the reference summary's content words a response keeps
  (:func:`detoxrl.evaluation.metrics.kept_share`) on the ambiguous and clean prompts.

Intervals are percentile-bootstrap intervals over prompts, as for the per-judge rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import SimpleNamespace

import numpy as np
import torch

from detoxrl.config import DIMENSIONS, Config, SeverityTier
from detoxrl.curriculum.tiers import parse_tier
from detoxrl.curriculum.tiers import prompt_tiers as curriculum_tiers
from detoxrl.errors import DataError
from detoxrl.evaluation import metrics as M
from detoxrl.rewards.composite import severity_tier

PROMPT_TIERS = ("clean", "ambiguous", "harmful")
OVER_CORRECTION_TIERS = ("ambiguous", "clean")
"""The prompt tiers on which over-correction is measured (nothing toxic to remove, content to keep)."""

Judged = dict[str, dict[str, np.ndarray]]


def dimension_key(dim: str) -> str:
    """The key of a judge's toxicity in dimension ``dim`` among its judged arrays: ``tox_<dim>``."""
    return f"tox_{dim}"


def _rate(flags: np.ndarray, *, n_boot: int, seed: int, name: str = "toxic_rate") -> dict:
    f = np.asarray(flags, dtype=np.float64)
    return {name: float(f.mean()) if f.size else math.nan,
            f"{name}_ci95": list(M.bootstrap_ci_prompts(f, n_boot=n_boot, seed=seed))}


def judge_groups(judges: Sequence[dict]) -> dict[str, list[str]]:
    """``reward`` (trained against) and ``held_out`` judge names, each only when there is one, and ``all``."""
    reward = [j["name"] for j in judges if j.get("trained_against", True)]
    held_out = [j["name"] for j in judges if not j.get("trained_against", True)]
    groups = {"reward": reward, "held_out": held_out, "all": [j["name"] for j in judges]}
    return {g: names for g, names in groups.items() if names}


# ------------------------------------------------------------------------------------ dimensions
def dimension_flags(judged: Judged, thresholds: dict[str, float], names: Sequence[str], dim: str
                    ) -> np.ndarray | None:
    """Boolean ``[k, N]``: some judge of ``names`` that reports ``dim`` has ``tox_dim ≥`` its threshold;
    ``None`` when none of them reports ``dim``."""
    key = dimension_key(dim)
    cols = [judged[n][key] >= thresholds[n] for n in names if key in judged[n]]
    return np.logical_or.reduce(cols) if cols else None


def per_dimension(judges: Sequence[dict], judged_before: Judged, judged_after: Judged,
                  thresholds: dict[str, float], *, n_boot: int, seed: int) -> dict:
    """``{group: {dim: {"judges", "before", "after", "paired"} | {"absent": true}}}``."""
    out: dict[str, dict] = {}
    for group, names in judge_groups(judges).items():
        block: dict[str, dict] = {}
        for d in DIMENSIONS:
            fb = dimension_flags(judged_before, thresholds, names, d)
            fa = dimension_flags(judged_after, thresholds, names, d)
            if fb is None or fa is None:
                block[d] = {"absent": True}
                continue
            paired = M.paired_bootstrap(fb.mean(axis=0), fa.mean(axis=0), n_boot=n_boot, seed=seed)
            paired["verdict"] = M.verdict(paired)
            block[d] = {"judges": [n for n in names if dimension_key(d) in judged_before[n]],
                        "before": _rate(fb, n_boot=n_boot, seed=seed), "after": _rate(fa, n_boot=n_boot, seed=seed),
                        "paired": paired}
        out[group] = block
    return out


# -------------------------------------------------------------------------------------- severity
def severity_judges(judges: Sequence[dict]) -> list[str]:
    """The judges whose severity grades a response, as the composite reward takes them
    (:func:`detoxrl.rewards.composite.response_severity`): the reward judges that grade severity
    (``graded``) when any does, else every reward judge."""
    reward = [j for j in judges if j.get("trained_against", True)]
    return [j["name"] for j in ([j for j in reward if j.get("graded")] or reward)]


def response_severity(judged: Judged, judges: Sequence[dict]) -> np.ndarray | None:
    """Severity ``[k, N]`` of each response: the max over :func:`severity_judges` of their ``severity``
    (their toxicity when no severity was kept); ``None`` without such a judge."""
    names = severity_judges(judges)
    if not names:
        return None
    return np.stack([judged[n].get("severity", judged[n]["toxicity"]) for n in names]).max(axis=0)


def tier_of(severity: np.ndarray, tiers: Sequence[SeverityTier]) -> np.ndarray:
    """The tier name (``None``: below every tier) of each value, by :func:`detoxrl.rewards.composite.severity_tier`."""
    sev = np.asarray(severity, dtype=np.float64)
    names, _ = severity_tier(torch.as_tensor(sev.reshape(-1)), tiers)
    return np.array(names, dtype=object).reshape(sev.shape)


def tier_shares(names: np.ndarray, tiers: Sequence[str], *, n_boot: int, seed: int) -> dict:
    """``{tier: {"share", "share_ci95"}}`` and ``None`` (below every tier) of the ``[k, N]`` tier names."""
    return {t: _rate(names == t, n_boot=n_boot, seed=seed, name="share")
            for t in [*dict.fromkeys(tiers), None]}


def per_severity_tier(tiers: Sequence[SeverityTier], judges: Sequence[dict], judged_before: Judged,
                      judged_after: Judged, *, n_boot: int, seed: int) -> dict:
    """Shares of the responses in each tier before and after, or a ``note`` saying why there are none."""
    if not tiers:
        return {"note": "no tiers: reward.severity_tiers is empty"}
    sb, sa = response_severity(judged_before, judges), response_severity(judged_after, judges)
    if sb is None or sa is None:
        return {"note": "no reward judge grades severity"}
    ordered = sorted(tiers, key=lambda t: t.min_severity)
    names = [t.name for t in ordered]
    before = tier_shares(tier_of(sb, ordered), names, n_boot=n_boot, seed=seed)
    after = tier_shares(tier_of(sa, ordered), names, n_boot=n_boot, seed=seed)
    return {"judges": severity_judges(judges),
            "tiers": [{"name": t.name, "min_severity": t.min_severity, "penalty": t.penalty} for t in ordered],
            "before": {t: v for t, v in before.items() if t is not None},
            "after": {t: v for t, v in after.items() if t is not None},
            "below_tiers": {"before": before[None], "after": after[None]}}


# ---------------------------------------------------------------------------------- prompt tiers
def prompt_tiers(prompts: Sequence, column: str) -> list[str] | None:
    """Each prompt's tier from ``meta[column]`` (:func:`detoxrl.curriculum.tiers.parse_tier`); ``None``
    when no prompt has one. Raises :class:`~detoxrl.errors.DataError` naming the prompt when only some
    have one or a value is not a tier."""
    values = [(getattr(p, "meta", None) or {}).get(column) for p in prompts]
    given = [v is not None and not (isinstance(v, str) and not v.strip()) for v in values]
    if not any(given):
        return None
    where = [f"prompt {getattr(p, 'id', i)!r} (row {i})" for i, p in enumerate(prompts)]
    if not all(given):
        raise DataError(f"curriculum.tier_column {column!r}: {where[given.index(False)]} has no tier, but "
                        f"{sum(given)} of {len(prompts)} prompts do; give it to every prompt or to none")
    return [parse_tier(v, w, column) for v, w in zip(values, where)]


def eval_tiers(cfg: Config, prompts: Sequence, reward_judges: Sequence) -> tuple[list[str] | None, str | None]:
    """``(tiers, source)`` of the evaluation's prompts as the curriculum tiers them
    (:func:`detoxrl.curriculum.tiers.prompt_tiers`): the tier column when the data has one (``column``),
    else the reward judges' toxicity of each prompt's text and ``curriculum.tier_thresholds``
    (``thresholds``); ``(None, None)`` without either."""
    tiers = prompt_tiers(prompts, cfg.curriculum.tier_column)
    if tiers is not None:
        return tiers, "column"
    if not reward_judges:
        return None, None
    tiers, _, source = curriculum_tiers(cfg, prompts, SimpleNamespace(judges=list(reward_judges)))
    return tiers, source


def per_prompt_tier(tiers: list[str] | None, column: str, judges: Sequence[dict], primary: str,
                    judged_before: Judged, judged_after: Judged, thresholds: dict[str, float],
                    *, n_boot: int, seed: int) -> dict:
    """Per prompt tier: ``n_prompts`` and, per side, the primary judge's toxic rate and (with held-out
    judges) the rate of responses any held-out judge flags."""
    if tiers is None:
        return {"column": column, "note": f"prompts have no tier column ({column!r}, curriculum.tier_column) "
                                          "and no reward judge scored them"}
    held_out = judge_groups(judges).get("held_out", [])
    arr = np.array(tiers)
    out: dict[str, dict] = {}
    for t in PROMPT_TIERS:
        cols = arr == t
        entry: dict = {"n_prompts": int(cols.sum())}
        if cols.any():
            for side, judged in (("before", judged_before), ("after", judged_after)):
                s = _rate(judged[primary]["toxicity"][:, cols] >= thresholds[primary], n_boot=n_boot, seed=seed,
                          name="primary_toxic_rate")
                if held_out:
                    flags = np.logical_or.reduce([judged[n]["toxicity"][:, cols] >= thresholds[n] for n in held_out])
                    s.update(_rate(flags, n_boot=n_boot, seed=seed, name="held_out_toxic_rate"))
                entry[side] = s
        out[t] = entry
    return {"column": column, "tiers": out}


# ------------------------------------------------------------------------------- over-correction
def _kept(texts: list[list[str]], refs: list[str]) -> np.ndarray:
    """``[N]``: per prompt, :func:`~detoxrl.evaluation.metrics.kept_share` averaged over its samples."""
    per = np.array([[M.kept_share(r, row[i]) for i, r in enumerate(refs)] for row in texts], dtype=np.float64)
    return per.mean(axis=0) if per.size else np.zeros(len(refs))


def _kept_block(b: np.ndarray, a: np.ndarray, mask: np.ndarray, *, n_boot: int, seed: int) -> dict:
    if not mask.any():
        return {"n_prompts": 0, "before": None, "after": None, "paired": None}
    return {"n_prompts": int(mask.sum()), "before": float(b[mask].mean()), "after": float(a[mask].mean()),
            "paired": M.paired_bootstrap(b[mask], a[mask], n_boot=n_boot, seed=seed)}


def over_correction(prompts: Sequence, tiers: list[str] | None, texts_before: list[list[str]],
                    texts_after: list[list[str]], *, n_boot: int, seed: int) -> dict:
    """Content words of the first reference kept, before and after, on the ambiguous and clean prompts (all
    prompts without tiers); prompts whose reference has no content word are skipped (``n_skipped``)."""
    refs = [(list(p.references) or [""])[0] or "" for p in prompts]
    b, a = _kept(texts_before, refs), _kept(texts_after, refs)
    has_words = np.isfinite(b) & np.isfinite(a)
    arr = np.array(tiers if tiers is not None else ["all"] * len(prompts))
    chosen = np.isin(arr, OVER_CORRECTION_TIERS) if tiers is not None else np.ones(len(prompts), dtype=bool)
    out = {"prompts": "ambiguous and clean" if tiers is not None else "all (no tier column)",
           "n_skipped": int((chosen & ~has_words).sum()),
           "overall": _kept_block(b, a, chosen & has_words, n_boot=n_boot, seed=seed)}
    if tiers is not None:
        out["per_tier"] = {t: _kept_block(b, a, (arr == t) & has_words, n_boot=n_boot, seed=seed)
                           for t in OVER_CORRECTION_TIERS}
    return out


def breakdown(*, cfg: Config, judges: Sequence[dict], primary: str, prompts: Sequence,
              texts_before: list[list[str]], texts_after: list[list[str]], judged_before: Judged,
              judged_after: Judged, n_boot: int, seed: int, tiers: list[str] | None = None,
              tier_source: str | None = None) -> dict:
    """The four blocks of ``eval.json`` this module makes; ``tiers`` (from :func:`eval_tiers`) default to
    the tier column's."""
    thresholds = {j["name"]: float(j["threshold"]) for j in judges}
    column = cfg.curriculum.tier_column
    if tiers is None:
        tiers, tier_source = prompt_tiers(prompts, column), "column"
    block = per_prompt_tier(tiers, column, judges, primary, judged_before, judged_after, thresholds,
                            n_boot=n_boot, seed=seed)
    if tiers is not None:
        block["source"] = tier_source
    return {
        "per_dimension": per_dimension(judges, judged_before, judged_after, thresholds, n_boot=n_boot, seed=seed),
        "per_severity_tier": per_severity_tier(cfg.reward.severity_tiers, judges, judged_before, judged_after,
                                               n_boot=n_boot, seed=seed),
        "per_prompt_tier": block,
        "over_correction": over_correction(prompts, tiers, texts_before, texts_after, n_boot=n_boot, seed=seed),
    }
