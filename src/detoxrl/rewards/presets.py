"""Known judges by name. A preset fills in defaults; the user's explicit settings override them.

- ``meta-hate``: Meta AI's ``facebook/roberta-hate-speech-dynabench-r4-target`` (labels ``nothate``,
  ``hate``), scored exactly as in the seed recipe: the ``nothate`` logit (softmax model), dimension hate.
- ``toxic-bert``: ``unitary/toxic-bert`` (six sigmoid labels ``toxic, severe_toxic, obscene, threat,
  insult, identity_hate``); score ``−logit(toxic)``; harassment = max(insult, threat), discrimination =
  identity_hate, profanity = obscene, severity = mean(severe_toxic, toxic).
- ``profanity``: the offline ``alt-profanity-check`` package (dimension profanity).

Word-based judges (``lexicon``, ``profanity``) default to ``score: prob`` (the clean probability).
"""

from __future__ import annotations

from typing import Any

from detoxrl.config import JudgeSettings
from detoxrl.errors import ConfigError

META_HATE = "facebook/roberta-hate-speech-dynabench-r4-target"
TOXIC_BERT = "unitary/toxic-bert"

PRESETS: dict[str, dict[str, Any]] = {
    "meta-hate": {
        "type": "hf",
        "model": META_HATE,
        "label": "nothate",
        "label_is_good": True,
        "score": "logit",
        "activation": "softmax",
        "dimensions": {"hate": "hate"},
    },
    "toxic-bert": {
        "type": "hf",
        "model": TOXIC_BERT,
        "label": "toxic",
        "label_is_good": False,
        "score": "logit",
        "activation": "sigmoid",
        "dimensions": {"insult": "harassment", "threat": "harassment",
                       "identity_hate": "discrimination", "obscene": "profanity"},
        "severity_labels": ["severe_toxic", "toxic"],
    },
    "profanity": {"type": "profanity", "score": "prob"},
}

TYPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "lexicon": {"score": "prob"},
    "profanity": {"score": "prob"},
}


def apply_preset(settings: JudgeSettings) -> JudgeSettings:
    """Settings with the preset's (then the type's) defaults under the explicitly set fields."""
    explicit = settings.model_dump(include=settings.model_fields_set)
    merged = dict(PRESETS[settings.preset]) if settings.preset else {}
    merged.update(explicit)
    for key, value in TYPE_DEFAULTS.get(merged.get("type", "hf"), {}).items():
        merged.setdefault(key, value)
    try:
        return JudgeSettings.model_validate(merged)
    except ValueError as exc:  # pragma: no cover - presets are valid settings
        raise ConfigError(f"judge {settings.name}: preset {settings.preset}: {exc}") from None
