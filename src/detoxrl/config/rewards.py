"""Judge, reward and reward-model settings: the ``reward`` section (its judges, dimension weights and
severity tiers) and the ``train_rm`` section. Importable from :mod:`detoxrl.config` as every section is.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from detoxrl.config.base import DIMENSIONS, _Strict


class JudgeSettings(_Strict):
    """One judge. ``type`` picks the implementation; ``preset`` fills in a known model.

    - ``hf``: any ``AutoModelForSequenceClassification``; ``label`` is chosen by name.
    - ``lexicon``: word lists (``lexicon`` names a file, or ``testbed`` for the testbed's list).
    - ``profanity``: the offline ``alt-profanity-check`` model.
    - ``reward_model``: a reward model that ``train-rm`` trained on rankings (``path``: its folder); it
      scores (prompt, response) with the normalisation and calibration learnt on its training pairs
      (``detoxrl.rewards.reward_model``). It has no labels or dimensions; ``name`` defaults to
      ``reward-model``.
    - ``self_critique``: a frozen copy of a policy (``model``: a folder, usually the SFT model; never the
      policy being trained) answers the constitution's critique request for each response and each of
      ``principles`` (ids of the constitution file ``constitution``, default ``constitution.path``);
      its P("yes") is P(violates) (``detoxrl.rewards.self_critique``). ``dimensions`` maps principle
      ids to dimensions.
    """

    name: str
    type: Literal["hf", "lexicon", "profanity", "reward_model", "self_critique"] = "hf"
    preset: Literal["meta-hate", "toxic-bert", "profanity"] | None = None
    model: str | None = None
    path: str | None = None
    """``type: reward_model``: the folder ``train-rm`` wrote (``model`` may name it instead)."""
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
    principles: list[str] = Field(default_factory=list)
    """``type: self_critique``: the principle ids the model critiques each response against."""
    constitution: str | None = None
    """``type: self_critique``: the constitution file the principles' words come from (default:
    ``constitution.path``)."""
    yes_words: list[str] = Field(default_factory=lambda: ["yes", "Yes"], min_length=1)
    """``type: self_critique``: the answer words whose first tokens mean "violates"."""
    no_words: list[str] = Field(default_factory=lambda: ["no", "No"], min_length=1)
    """``type: self_critique``: the answer words whose first tokens mean "follows the principle"."""

    @field_validator("dimensions")
    @classmethod
    def _known_dimensions(cls, v: dict[str, str]) -> dict[str, str]:
        for label, dim in v.items():
            if dim not in DIMENSIONS:
                raise ValueError(f"label {label!r}: unknown dimension {dim!r}; known: {list(DIMENSIONS)}")
        return v

    @model_validator(mode="after")
    def _self_critique(self) -> JudgeSettings:
        """``type: self_critique`` needs ``model`` and ``principles``; its dimensions map principles."""
        if self.type != "self_critique":
            if self.principles:
                raise ValueError(f"judge {self.name}: `principles` is for type self_critique only")
            return self
        if not self.model or not self.principles:
            raise ValueError(f"judge {self.name}: type self_critique needs `model` (the frozen SFT model's "
                             "folder) and `principles` (principle ids of the constitution)")
        if self.preset or self.label or self.severity_labels:
            raise ValueError(f"judge {self.name}: type self_critique takes no preset, label or severity_labels")
        unknown = sorted(set(self.dimensions) - set(self.principles))
        if unknown:
            raise ValueError(f"judge {self.name}: dimensions name {unknown}, which are not in `principles` "
                             f"{self.principles}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _reward_model_defaults(cls, data):
        """``type: reward_model``: ``name`` defaults to ``reward-model``; ``path`` and ``model`` name the
        same folder (either may be given); labels, dimensions and presets do not apply."""
        if not isinstance(data, dict) or data.get("type") != "reward_model":
            return data
        data = dict(data)
        data.setdefault("name", "reward-model")
        path, model = data.get("path"), data.get("model")
        if path and model and path != model:
            raise ValueError(f"type reward_model: `path` {path!r} and `model` {model!r} differ; give one")
        if not (path or model):
            raise ValueError("type reward_model needs `path`: the folder train-rm wrote (e.g. {run_dir}/judge)")
        data["path"] = data["model"] = path or model
        bad = [k for k in ("label", "dimensions", "severity_labels", "preset") if data.get(k)]
        if bad:
            raise ValueError(f"type reward_model has one output and no labels: remove {', '.join(bad)}")
        return data


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
    mode: Literal["labels", "multilabel", "rankings"] = "labels"
    """``labels``: one label per row (column ``label``), softmax; ``multilabel``: a 0/1 column per label of
    ``labels`` (toxic-bert's layout), a sigmoid per label; ``rankings``: a reward model from rankings."""
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
    """Without ``eval_file``: the share held out (labels: of the rows; rankings: of the items, so that
    every labeller's rankings of an item fall on the same side)."""
    special_labels: list[str] = Field(default_factory=list)
    """Rankings mode: special labels a rankings file may carry besides ``all_unusable``, ``prompt_unsafe``
    and ``skip`` (``detoxrl.data.rankings``); such rows make no pairs and are counted."""
    seed: int | None = None
    extra: list[RewardModelSettings] = Field(default_factory=list)
    """More models the ``train-rm`` stage trains, each with its own settings and ``output_dir`` (the
    embedded default's second judge, with toxic-bert's labels). They are trained first, this one last."""

    @model_validator(mode="after")
    def _flat_extra(self) -> RewardModelSettings:
        outs = [self.output_dir] + [e.output_dir for e in self.extra]
        if any(e.extra for e in self.extra):
            raise ValueError("train_rm.extra: an extra model cannot have extras of its own")
        if len(set(outs)) != len(outs):
            raise ValueError(f"train_rm.extra: every model needs its own output_dir, got {outs}")
        return self

    @field_validator("special_labels")
    @classmethod
    def _named_labels(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if not isinstance(s, str) or not s.strip()]
        if bad:
            raise ValueError(f"special labels must be non-empty names, got {bad}")
        return v
