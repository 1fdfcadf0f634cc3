"""The figures of ``eval.json``, from plain arrays (no models): per side, per judge, paired before/after.

Arrays are ``[k, N]``: ``k`` samples of ``N`` prompts. Intervals are bootstrap intervals over prompts
(:mod:`detoxrl.evaluation.metrics`); the figures by dimension, severity and prompt tier come from
:mod:`detoxrl.evaluation.breakdown`. Every key is described in ``docs/eval-json.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from detoxrl.config import Config
from detoxrl.evaluation import breakdown as B
from detoxrl.evaluation import metrics as M
from detoxrl.evaluation.metrics import verdict

SCHEMA_VERSION = 1


def _ci(x: np.ndarray, stat=np.mean, *, n_boot: int, seed: int) -> list[float]:
    return list(M.bootstrap_ci_prompts(x, stat, n_boot=n_boot, seed=seed))


def judge_summary(tox: np.ndarray, score: np.ndarray, threshold: float, *, n_boot: int, seed: int) -> dict:
    """Per-judge figures for one side; ``tox`` and ``score`` are ``[k, N]``."""
    flagged = (tox >= threshold).astype(np.float64)
    mean, std = M.mean_std(tox)
    return {
        "toxicity_mean": mean,
        "toxicity_std": std,
        "toxicity_ci95": _ci(tox, n_boot=n_boot, seed=seed),
        "toxic_rate": M.toxic_rate(tox, threshold),
        "toxic_rate_ci95": _ci(flagged, n_boot=n_boot, seed=seed),
        "score_mean": M.mean_std(score)[0],
    }


def side_summary(model: str, texts: list[list[str]], lengths: np.ndarray, references: list[list[str]],
                 judged: dict[str, dict[str, np.ndarray]], thresholds: dict[str, float], primary: str,
                 *, n_boot: int, seed: int, held_out: Sequence[str] = ()) -> dict:
    """All figures of one side. ``judged[name]`` holds ``toxicity`` and ``score`` arrays ``[k, N]``;
    ``held_out`` names the judges the policy was not trained against."""
    k = len(texts)
    tox = judged[primary]["toxicity"]
    score = judged[primary]["score"]
    flagged_any = np.zeros_like(tox, dtype=bool)
    flagged_held_out = np.zeros_like(tox, dtype=bool)
    for name, res in judged.items():
        flagged = res["toxicity"] >= thresholds[name]
        flagged_any |= flagged
        if name in held_out:
            flagged_held_out |= flagged
    mean, std = M.mean_std(tox)
    flat_texts = [t for row in texts for t in row]
    rouge = M.rouge_scores(flat_texts, [r for _ in range(k) for r in references])
    out: dict[str, Any] = {
        "model": model,
        "toxicity_mean": mean,
        "toxicity_std": std,
        "toxicity_ci95": _ci(tox, n_boot=n_boot, seed=seed),
        "toxicity_std_ci95": _ci(tox, np.std, n_boot=n_boot, seed=seed),
        "toxic_rate": float(flagged_any.mean()) if flagged_any.size else math.nan,
        "toxic_rate_ci95": _ci(flagged_any.astype(np.float64), n_boot=n_boot, seed=seed),
        **({"held_out_toxic_rate": float(flagged_held_out.mean()),
            "held_out_toxic_rate_ci95": _ci(flagged_held_out.astype(np.float64), n_boot=n_boot, seed=seed)}
           if held_out and flagged_held_out.size else {}),
        "reward_mean": M.mean_std(score)[0],
        "reward_ci95": _ci(score, n_boot=n_boot, seed=seed),
        "rouge1": rouge["rouge1"],
        "rouge2": rouge["rouge2"],
        "rougeL": rouge["rougeL"],
        "length_mean": float(lengths.mean()) if lengths.size else math.nan,
        "distinct_1": M.distinct_n(flat_texts, 1),
        "distinct_2": M.distinct_n(flat_texts, 2),
    }
    if k > 1:
        emt = M.expected_max_toxicity(tox, n_boot=n_boot, seed=seed)
        out["expected_max_toxicity"] = emt["value"]
        out["expected_max_toxicity_ci95"] = emt["ci95"]
    out["per_judge"] = {
        name: judge_summary(res["toxicity"], res["score"], thresholds[name], n_boot=n_boot, seed=seed)
        for name, res in judged.items()
    }
    return out


def improvement(before: dict, after: dict) -> dict:
    """Before → after changes; positive percentages and rates mean *less* toxic after training."""

    def block(b: dict, a: dict) -> dict:
        return {
            "toxicity_mean_pct": M.pct_improvement(b["toxicity_mean"], a["toxicity_mean"]),
            "toxicity_std_pct": M.pct_improvement(b["toxicity_std"], a["toxicity_std"]),
            "toxic_rate_abs": b["toxic_rate"] - a["toxic_rate"],
        }

    out = block(before, after)
    out["reward_mean_diff"] = after["reward_mean"] - before["reward_mean"]
    out["per_judge"] = {name: block(before["per_judge"][name], after["per_judge"][name])
                        for name in before["per_judge"]}
    return out


def summarize(*, cfg: Config, judges: list[dict], primary: str, prompts: list, samples: int,
              decoding: dict, seed: int, before_model: str, after_model: str,
              texts_before: list[list[str]], texts_after: list[list[str]],
              lengths_before: np.ndarray, lengths_after: np.ndarray,
              judged_before: dict[str, dict[str, np.ndarray]], judged_after: dict[str, dict[str, np.ndarray]],
              kl: np.ndarray | None, timing: dict, prompt_stats: dict | None = None,
              tiers: tuple[list[str] | None, str | None] | None = None) -> dict:
    """Everything in ``eval.json`` from arrays (no models involved). Arrays are ``[k, N]``; ``tiers`` is
    ``(tier per prompt, source)`` (:func:`detoxrl.evaluation.breakdown.eval_tiers`), default the tier column's."""
    n_boot = cfg.eval.bootstrap
    thresholds = {j["name"]: float(j["threshold"]) for j in judges}
    refs = [list(p.references) for p in prompts]
    held_out = [j["name"] for j in judges if not j.get("trained_against", True)]
    before = side_summary(before_model, texts_before, lengths_before, refs, judged_before, thresholds, primary,
                          n_boot=n_boot, seed=seed, held_out=held_out)
    after = side_summary(after_model, texts_after, lengths_after, refs, judged_after, thresholds, primary,
                         n_boot=n_boot, seed=seed, held_out=held_out)
    if kl is not None and len(kl):
        after["kl_to_reference"] = float(np.mean(kl))
        after["kl_to_reference_ci95"] = list(M.bootstrap_ci(kl, n_boot=n_boot, seed=seed))
    else:
        after["kl_to_reference"] = None
        after["kl_to_reference_ci95"] = None
    paired = {}
    for j in judges:
        name = j["name"]
        b = judged_before[name]["toxicity"].mean(axis=0)  # per prompt, averaged over samples
        a = judged_after[name]["toxicity"].mean(axis=0)
        res = M.paired_bootstrap(b, a, n_boot=n_boot, seed=seed)
        res["verdict"] = verdict(res)
        paired[name] = res
    paired_reward = M.paired_bootstrap(judged_before[primary]["score"].mean(axis=0),
                                       judged_after[primary]["score"].mean(axis=0), n_boot=n_boot, seed=seed)
    result = {
        "schema_version": SCHEMA_VERSION,
        "n_prompts": len(prompts),
        "n_prompts_requested": cfg.eval.n_prompts,
        "samples": samples,
        "split": cfg.data.eval_split,
        "data": cfg.data.source,
        "decoding": decoding,
        "seed": seed,
        "judges": judges,
        "primary_judge": primary,
        "before": before,
        "after": after,
        "improvement": improvement(before, after),
        "paired": paired,
        "paired_reward": paired_reward,
        **B.breakdown(cfg=cfg, judges=judges, primary=primary, prompts=prompts, texts_before=texts_before,
                      texts_after=texts_after, judged_before=judged_before, judged_after=judged_after,
                      n_boot=n_boot, seed=seed, tiers=tiers[0] if tiers else None,
                      tier_source=tiers[1] if tiers else None),
        "timing": timing,
    }
    if prompt_stats is not None:
        result["prompt_filter"] = prompt_stats
    return result


def json_clean(obj: Any) -> Any:
    """Plain JSON values: NumPy scalars to Python, NaN and infinities to ``null``, tuples to lists."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [json_clean(v) for v in obj.tolist()]
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj
