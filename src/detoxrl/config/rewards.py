"""Judge, reward and reward-model settings: the ``reward`` section (its judges, dimension weights and
severity tiers) and the ``train_rm`` section. Importable from :mod:`detoxrl.config` as every section is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from detoxrl.config.base import DIMENSIONS, _Strict


class JudgeSettings(_Strict):
    """One judge. ``type`` picks the implementation; ``preset`` fills in a known model.

    - ``hf``: any ``AutoModelForSequenceClassification``; ``label`` is chosen by name.
    - ``lexicon``: word lists (``lexicon`` names a file, or ``testbed`` for the testbed's list).
    - ``profanity``: the offline ``alt-profanity-check`` model.
    """

    name: str
    type: Literal["hf", "lexicon", "profanity"] = "hf"
    preset: Literal["meta-hate", "toxic-bert", "profanity"] | None = None
    model: str | None = None
    label: str | None = None
    """Label whose score is the reward (``nothate`` for Meta's model: higher is better)."""
    label_is_good: bool = True
    """True if a higher score of ``label`` means less toxic (``nothate``), False for ``hate``."""
    score: Literal["logit", "prob", "logprob"] = "logit"
    activation: Literal["softmax", "sigmoid"] = "softmax"
    dimensions: dict[str, str] = Field(default_factory=dict)
    """Map from model label to toxicity dimension (``insult: harassment``); every dimension is one of
    :data:`DIMENSIONS`. Judges take this validated map as it is."""
    severity_labels: list[str] = Field(default_factory=list)
    lexicon: str | None = None
    threshold: float = Field(0.5, ge=0, le=1)
    """Probability above which a text counts as toxic for this judge."""
    max_length: int = Field(512, gt=0)
    batch_size: int = Field(64, gt=0)
    weight: float = 1.0
    trust_remote_code: bool = False

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, v: dict[str, str]) -> dict[str, str]:
        for label, dim in v.items():
            if dim not in DIMENSIONS:
                raise ValueError(f"label {label!r}: unknown dimension {dim!r}; known: {list(DIMENSIONS)}")
        return v


class SeverityTier(_Strict):
    name: str
    min_severity: float = Field(ge=0, le=1)
    penalty: float = Field(ge=0)


class RewardSettings(_Strict):
    """The composite reward (documented in ``detoxrl.rewards.composite``)."""

    judges: list[JudgeSettings] = Field(default_factory=list)
    dimension_weights: dict[str, float] = Field(
        default_factory=lambda: {d: 1.0 for d in DIMENSIONS}
    )
    severity_tiers: list[SeverityTier] = Field(default_factory=list)
    normalize: bool = False
    """Standardise each judge's score with running statistics before combining."""

    @field_validator("dimension_weights")
    @classmethod
    def _known_dimensions(cls, v: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(v) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; known: {list(DIMENSIONS)}")
        return v


class RewardModelSettings(_Strict):
    enabled: bool = True
    mode: Literal["labels", "rankings"] = "labels"
    train_file: str | None = None
    """jsonl/csv of (text, label) or of rankings; on the testbed the file ``prepare`` writes."""
    eval_file: str | None = None
    base_model: str | None = None
    """Model to start from; on the testbed the untrained tiny RoBERTa that ``prepare`` builds."""
    labels: list[str] = Field(default_factory=lambda: ["nothate", "hate"])
    output_dir: str = "{run_dir}/judge"
    epochs: float = Field(2.0, gt=0)
    batch_size: int = Field(64, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    max_length: int = Field(128, gt=0)
    heldout_share: float = Field(0.1, gt=0, lt=1)
    seed: int | None = None
