"""The judges of an evaluation: the reward judges the policy was trained against, then the
``eval.extra_judges`` it never saw, each scoring every response in chunks."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from detoxrl.config import Config, JudgeSettings
from detoxrl.errors import ConfigError
from detoxrl.evaluation.breakdown import dimension_key
from detoxrl.rewards import build as reward_build
from detoxrl.rewards.presets import apply_preset

_JUDGE_CHUNK = 256


@dataclass
class EvalJudge:
    """A built judge with the settings it came from."""

    judge: Any  # detoxrl.rewards.base.Judge or anything with .name, .threshold, .score(texts)
    settings: JudgeSettings
    trained_against: bool

    @property
    def name(self) -> str:
        return str(self.judge.name)

    @property
    def threshold(self) -> float:
        return float(getattr(self.judge, "threshold", self.settings.threshold))


def build_judge(settings: JudgeSettings, cfg: Config, device: str | torch.device = "cpu"):
    """Build one judge (indirection so that tests can substitute judges)."""
    return reward_build.build_judge(settings, cfg, device=device)


def _judge_settings(cfg: Config) -> list[tuple[JudgeSettings, bool]]:
    """``(settings, trained_against)`` of the reward judges then the extra judges; names must be unique."""
    settings = [(s, True) for s in cfg.reward.judges] + [(s, False) for s in cfg.eval.extra_judges]
    names = [s.name for s, _ in settings]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"judge names must be unique across reward.judges and eval.extra_judges; "
                          f"repeated: {dupes}")
    return settings


def build_eval_judges(cfg: Config, device: str | torch.device = "cpu") -> list[EvalJudge]:
    """The reward judges (``trained_against=True``) then the extra judges; names must be unique."""
    return [EvalJudge(build_judge(s, cfg, device), s, trained) for s, trained in _judge_settings(cfg)]


def build_held_out_judges(cfg: Config, device: str | torch.device = "cpu") -> list[EvalJudge]:
    """Only the judges the policy is not trained against (``eval.extra_judges``), as :func:`build_eval_judges`
    builds them."""
    return [EvalJudge(build_judge(s, cfg, device), s, False) for s, trained in _judge_settings(cfg) if not trained]


def judge_info(ej: EvalJudge, cfg: Config) -> dict:
    """``{"name", "type", "model", "threshold", "trained_against", "graded"}`` for ``eval.json`` (``graded``:
    the judge has severity labels of its own, :func:`detoxrl.rewards.composite.response_severity`)."""
    s = ej.settings
    try:
        s = apply_preset(s)
    except Exception:  # noqa: BLE001 - presets are informative here only
        pass
    if s.type in ("hf", "reward_model", "self_critique"):
        model = cfg.resolve(s.model) if s.model else None
    elif s.type == "lexicon":
        model = f"lexicon:{cfg.resolve(s.lexicon)}" if s.lexicon else "lexicon"
    else:
        model = "alt-profanity-check"
    return {"name": ej.name, "type": s.type, "model": model, "threshold": ej.threshold,
            "trained_against": ej.trained_against, "graded": bool(s.severity_labels)}


def _accepts_prompts(judge) -> bool:
    try:
        return "prompts" in inspect.signature(judge.score).parameters
    except (TypeError, ValueError):
        return False


def _np(x) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).float().cpu(), dtype=np.float64).reshape(-1)


def score_texts(ej: EvalJudge, texts: list[str], prompts: list[str], on_chunk=None) -> dict[str, np.ndarray]:
    """Run one judge over ``texts`` in chunks; returns float arrays ``toxicity``, ``score``, ``severity``
    (the toxicity when the judge grades none) and ``tox_<d>`` for each dimension ``d`` the judge reports
    (:func:`detoxrl.evaluation.breakdown.dimension_key`)."""
    parts: dict[str, list[np.ndarray]] = {"toxicity": [], "score": [], "severity": []}
    with_prompts = _accepts_prompts(ej.judge)
    chunks = 0
    for i in range(0, len(texts), _JUDGE_CHUNK):
        t, p = texts[i : i + _JUDGE_CHUNK], prompts[i : i + _JUDGE_CHUNK]
        res = ej.judge.score(t, p) if with_prompts else ej.judge.score(t)
        severity = getattr(res, "severity", None)
        parts["toxicity"].append(_np(res.toxicity))
        parts["score"].append(_np(res.score))
        parts["severity"].append(_np(res.toxicity if severity is None else severity))
        for d, v in (getattr(res, "dimensions", None) or {}).items():
            parts.setdefault(dimension_key(d), []).append(_np(v))
        chunks += 1
        if on_chunk:
            on_chunk(len(t))
    # a dimension counts only when every chunk reported it
    return {key: np.concatenate(v) if v else np.zeros(0) for key, v in parts.items()
            if key in ("toxicity", "score", "severity") or len(v) == chunks}
