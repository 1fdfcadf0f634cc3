"""Difficulty of each prompt, normalised to [0, 1] by rank (0 = easiest, 1 = hardest).

Sources (``curriculum.difficulty``):

- ``judge``       — how toxic the prompt's own text is, by a judge (a hostile dialogue is a hard
  prompt: the policy is tempted to repeat what it reads);
- ``base_reward`` — the reward the base policy earns on the prompt, measured once before training
  (lower reward = harder);
- ``column``      — a numeric column of the dataset (``curriculum.difficulty_column``), higher = harder;
- ``tier``        — the prompt's tier and grade (:mod:`detoxrl.curriculum.tiers`) as its level: 0 clean,
  1 ambiguous, 2 harmful mild, 3 harmful severe (the levels themselves, not ranks).

Rank normalisation makes the sources comparable and the pacing independent of the raw scale: with
``n`` prompts the ``i``-th easiest gets ``i / (n - 1)``; tied values share their average rank.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detoxrl.curriculum.judging import ToxicityJudge, finite_array, judge_toxicity, prompt_scores, to_list
from detoxrl.curriculum.tiers import REDTEAM_MARK, prompt_tiers, tier_levels
from detoxrl.errors import ConfigError, DataError
from detoxrl.models.generation import generate_responses
from detoxrl.utils import progress, read_json, write_json


def rank_normalize(values: Sequence[float]) -> np.ndarray:
    r"""Map values to [0, 1] by rank: :math:`d_i = \operatorname{rank}(v_i) / (n - 1)`, ties averaged.

    A single value maps to 0. Raises :class:`DataError` for non-finite values.
    """
    v = finite_array(values, "difficulty")
    n = v.size
    if n <= 1:
        return np.zeros(n)
    order = np.argsort(v, kind="stable")
    ranks = np.empty(n)
    ranks[order] = np.arange(n, dtype=np.float64)
    _, inverse = np.unique(v, return_inverse=True)
    inverse = inverse.reshape(-1)
    avg = np.bincount(inverse, weights=ranks) / np.bincount(inverse)
    return avg[inverse] / (n - 1)


def from_judge(texts: Sequence[str], judge: ToxicityJudge, batch_size: int = 256) -> np.ndarray:
    """Difficulty = rank of the judge's toxicity of each text (more toxic = harder)."""
    return rank_normalize(judge_toxicity(texts, judge, batch_size))


def from_rewards(rewards: Sequence[float]) -> np.ndarray:
    """Difficulty = rank of the negated reward (a lower base-policy reward = harder)."""
    r = finite_array(rewards, "base-policy reward of the prompts")
    return rank_normalize(-r)


def from_column(values: Sequence[Any], name: str = "difficulty column") -> np.ndarray:
    """Difficulty = rank of a numeric column (higher = harder)."""
    return rank_normalize(finite_array(values, name))


# ------------------------------------------------------------------------------ for the PPO stage
def _fingerprint(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


def _prompt_field(p: Any, name: str) -> str:
    return p if isinstance(p, str) else str(getattr(p, name))


def _column_values(prompts: Sequence[Any], column: str | None) -> list[Any]:
    if not column:
        raise ConfigError("curriculum.difficulty is 'column' but curriculum.difficulty_column is not set")
    values = []
    for i, p in enumerate(prompts):
        meta = getattr(p, "meta", None) or {}
        if column in meta:
            values.append(meta[column])
        elif hasattr(p, column):
            values.append(getattr(p, column))
        else:
            pid = getattr(p, "id", i)
            raise DataError(f"curriculum.difficulty_column: prompt {pid} (row {i}) has no column {column!r}")
    return values


def _folder_stamp(name_or_path: str) -> Any:
    """A hub id as is; a local folder as the names, sizes and times of its files (changes on retraining)."""
    p = Path(name_or_path)
    if not p.is_dir():
        return name_or_path
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(p.iterdir()) if f.is_file()]


def _models_stamp(cfg: Any, source: str) -> Any:
    """What the cached difficulty depends on besides the prompts: the judges, and for
    ``base_reward`` also the policy and its generation settings."""
    if source == "column":
        return None
    judges = [{**j.model_dump(mode="json"), "model": _folder_stamp(cfg.resolve(j.model)) if j.model else None}
              for j in cfg.reward.judges]
    stamp: dict[str, Any] = {"judges": judges}
    if source == "base_reward":
        stamp["policy"] = _folder_stamp(cfg.resolve(cfg.policy.name_or_path))
        stamp["generation"] = cfg.ppo.generation.model_dump(mode="json")
        stamp["reward"] = cfg.reward.model_dump(mode="json")
    return json.loads(json.dumps(stamp))


def _base_rewards(cfg: Any, prompts: Sequence[Any], reward_fn: Any, lp: Any) -> list[float]:
    """Greedy responses of the (untrained) policy, scored once by the reward function."""
    gen = cfg.ppo.generation.model_copy(update={"do_sample": False})
    bs = cfg.eval.batch_size
    prompt_texts = [_prompt_field(p, "prompt") for p in prompts]
    out: list[float] = []
    was_training = lp.model.training
    lp.model.eval()
    try:
        with progress() as bar:
            task = bar.add_task("difficulty (base reward)", total=len(prompt_texts), info="")
            for i in range(0, len(prompt_texts), bs):
                batch = prompt_texts[i: i + bs]
                g = generate_responses(lp, batch, gen, max_prompt_tokens=cfg.data.max_prompt_tokens)
                out.extend(to_list(reward_fn(g.texts, batch).total))
                bar.update(task, completed=min(i + bs, len(prompt_texts)))
    finally:
        lp.model.train(was_training)
    return out


def difficulty_for(cfg: Any, prompts: Sequence[Any], reward_fn: Any, lp: Any) -> np.ndarray:
    """Difficulty of every training prompt for the source ``cfg.curriculum.difficulty``.

    ``prompts`` are the PPO stage's prompt objects (``.prompt``, ``.text``, ``.meta``) or plain
    strings. ``judge`` scores each prompt's text (the dialogue, not the template) with the judges of
    ``reward_fn`` (the mean of their toxicities, weighted by ``reward_fn.weights`` if present) when it
    exposes ``judges``, and otherwise with ``reward_fn`` itself (lower reward = harder).
    ``base_reward`` generates one greedy response per prompt with ``lp`` and scores it with
    ``reward_fn``. ``tier`` gives each prompt its tier level (:func:`curriculum_scores` also returns
    the tiers).

    The result is cached in ``{ppo.work_dir}/difficulty.json`` with a fingerprint of the prompts and of
    the models it depends on (local folders by file sizes and times), so a resumed run reuses exactly
    the same ordering without scoring again, and a retrained judge or policy is scored afresh.
    """
    return curriculum_scores(cfg, prompts, reward_fn, lp)[0]


def _tier_stamp(cfg: Any, prompts: Sequence[Any]) -> dict | None:
    """What the ``tier`` source depends on besides the texts and judges: its settings and columns."""
    c = cfg.curriculum
    if c.difficulty != "tier":
        return None
    cols = [[(getattr(p, "meta", None) or {}).get(k) for k in (c.tier_column, c.grade_column, REDTEAM_MARK)]
            for p in prompts]
    digest = hashlib.sha256(json.dumps(cols, default=str).encode()).hexdigest()[:32]
    return {"tier_column": c.tier_column, "grade_column": c.grade_column, "thresholds": list(c.tier_thresholds),
            "severe_at": c.severe_at, "columns": digest}


def curriculum_scores(cfg: Any, prompts: Sequence[Any], reward_fn: Any, lp: Any) -> tuple[np.ndarray, list[str] | None]:
    """``(difficulty, tiers)``: :func:`difficulty_for`'s scores and, for the ``tier`` source, each
    prompt's tier name (``None`` for the other sources); cached together in ``ppo/difficulty.json``."""
    c = cfg.curriculum
    source = c.difficulty
    key = {"source": source, "column": c.difficulty_column if source == "column" else None,
           "n": len(prompts), "fingerprint": _fingerprint([_prompt_field(p, "prompt") for p in prompts]),
           "models": _models_stamp(cfg, source), "tier": _tier_stamp(cfg, prompts)}
    cache = cfg.path(cfg.ppo.work_dir) / "difficulty.json"
    if cache.exists():
        try:
            saved = read_json(cache)
            if all(saved.get(k) == v for k, v in key.items()) and len(saved["difficulty"]) == len(prompts):
                tiers = saved.get("tiers") if source == "tier" else None
                if source != "tier" or (isinstance(tiers, list) and len(tiers) == len(prompts)):
                    return np.asarray(saved["difficulty"], dtype=np.float64), tiers
        except (ValueError, KeyError, TypeError, OSError):
            pass  # unreadable or stale: compute again

    diff, raw, extra = _compute(cfg, prompts, reward_fn, lp)
    write_json(cache, {**key, "difficulty": [float(x) for x in diff],
                       "raw": [float(x) if _is_number(x) else None for x in raw], **extra})
    return diff, extra.get("tiers")


def _compute(cfg: Any, prompts: Sequence[Any], reward_fn: Any, lp: Any) -> tuple[np.ndarray, list, dict]:
    """``(difficulty, raw scores, extra cache fields)`` for the source ``cfg.curriculum.difficulty``."""
    c = cfg.curriculum
    source = c.difficulty
    texts = [_prompt_field(p, "text") if not isinstance(p, str) else p for p in prompts]
    if source == "tier":
        tiers, grades, tier_source = prompt_tiers(cfg, prompts, reward_fn)
        diff = tier_levels(tiers, grades)
        return diff, diff.tolist(), {"tiers": tiers, "grades": grades, "tier_source": tier_source}
    if source == "column":
        raw = [float(v) if _is_number(v) else v for v in _column_values(prompts, c.difficulty_column)]
        return from_column(raw, f"curriculum.difficulty_column {c.difficulty_column!r}"), raw, {}
    if source == "judge":
        scores = prompt_scores(texts, reward_fn)
        if scores is not None:
            return rank_normalize(scores[0]), scores[0].tolist(), {}
        raw = to_list(reward_fn(texts, texts).total)
        return from_rewards(raw), raw, {}
    if source == "base_reward":
        raw = _base_rewards(cfg, prompts, reward_fn, lp)
        return from_rewards(raw), raw, {}
    raise ConfigError(f"curriculum.difficulty: unknown source {source!r}")  # pragma: no cover - validated


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


__all__ = ["rank_normalize", "judge_toxicity", "from_judge", "from_rewards", "from_column", "difficulty_for",
           "curriculum_scores", "ToxicityJudge"]
