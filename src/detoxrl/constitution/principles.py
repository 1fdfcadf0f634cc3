"""The constitution file: principles in words, the requests that critique and revise, and the checks.

A constitution is a YAML file (the default is ``configs/constitution.yaml``)::

    name: default
    critique_template: "{critique}\\n\\nResponse: {response}\\n\\nAnswer yes or no."   # optional
    revision_template: "{revision}\\n\\nResponse: {response}\\n\\nRevised response:"    # optional
    principles:
      - id: no-insults                       # [a-z0-9][a-z0-9_.-]*, unique; logs as constitution/<id>
        principle: The response does not insult anyone.
        critique: Does the response insult or belittle anyone?          # a yes/no question; yes = violation
        revision: Rewrite the response without any insult.
        weight: 1.0                          # penalty per violation (times constitution.violation_weight)
        revise: true                         # do violations of this principle trigger a revision?
        check: {kind: lexicon, lexicon: "testbed:insulting"}

Check kinds (``check.kind``):

- ``judge`` — a judge's ``toxicity``, ``severity`` or one dimension (``hate``, ``harassment``,
  ``discrimination``, ``profanity``) is at least ``threshold`` (default: the judge's own threshold).
  ``judge`` names a judge of the config (``reward.judges`` or ``eval.extra_judges``), a list of names
  (the first the config has is used), or inline judge settings (the fields of ``reward.judges``).
- ``lexicon`` — at least ``min_matches`` entries of a word list occur (matching survives leetspeak,
  stretching and masking). ``lexicon`` is a file, ``better-profanity``, ``testbed`` (the run's testbed
  lexicon), ``testbed:insulting`` or ``testbed:profane`` (the testbed's tiers); or ``judge`` names a
  lexicon judge of the config. ``dimensions`` keeps only entries of those dimensions.
- ``pattern`` — one of the regular expressions ``patterns`` matches (case-insensitive by default).
- ``faithfulness`` — the response stays with the dialogue: ``method: entities`` flags more than
  ``max_novel`` names/numbers that the prompt never mentions; ``method: overlap`` flags a unigram
  precision against the prompt below ``threshold`` (formulas in :mod:`detoxrl.constitution.checks`).
- ``self_critique`` — the policy (or ``constitution.critic_model``) answers the critique request;
  the check compares the probabilities of the ``yes`` and ``no`` tokens and flags ``P(yes) >=
  threshold`` (``violation_answer: no`` flips it, for requests phrased as "Is the response ...").
- ``all`` / ``any`` — every / some of the nested ``checks`` fire.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detoxrl.config import DIMENSIONS, Config, JudgeSettings, read_yaml
from detoxrl.config.base import require_placeholders
from detoxrl.config.loading import resolve_constitution_path  # noqa: F401 - re-exported (the judges read it too)
from detoxrl.errors import ConfigError

DEFAULT_CRITIQUE_TEMPLATE = "{critique}\n\nResponse: {response}\n\nAnswer yes or no."
DEFAULT_REVISION_TEMPLATE = "{revision}\n\nResponse: {response}\n\nRevised response:"
ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
MEASURES = ("toxicity", "severity", *DIMENSIONS)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


# ------------------------------------------------------------------------------------------ checks
class JudgeCheck(_Strict):
    kind: Literal["judge"]
    judge: str | list[str] | JudgeSettings
    measure: str = "toxicity"
    """``toxicity``, ``severity`` or a dimension name."""
    threshold: float | None = Field(None, ge=0, le=1)

    @field_validator("measure")
    @classmethod
    def _measure(cls, v: str) -> str:
        if v not in MEASURES:
            raise ValueError(f"unknown measure {v!r}; known: {list(MEASURES)}")
        return v

    @field_validator("judge")
    @classmethod
    def _names(cls, v):
        if isinstance(v, list) and not v:
            raise ValueError("list of judge names is empty")
        return v


class LexiconCheck(_Strict):
    kind: Literal["lexicon"]
    lexicon: str | None = None
    judge: str | None = None
    dimensions: list[str] = Field(default_factory=list)
    min_matches: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> LexiconCheck:
        if (self.lexicon is None) == (self.judge is None):
            raise ValueError("give exactly one of `lexicon` (a word-list source) or `judge` (a lexicon judge)")
        unknown = sorted(set(self.dimensions) - set(DIMENSIONS))
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; known: {list(DIMENSIONS)}")
        return self


class PatternCheck(_Strict):
    kind: Literal["pattern"]
    patterns: list[str] = Field(min_length=1)
    ignore_case: bool = True

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"pattern {p!r} is not a valid regular expression ({exc})") from None
        return v


class FaithfulnessCheck(_Strict):
    kind: Literal["faithfulness"]
    method: Literal["entities", "overlap"] = "entities"
    max_novel: int = Field(0, ge=0)
    """``entities``: how many names/numbers absent from the prompt are tolerated."""
    threshold: float = Field(0.5, ge=0, le=1)
    """``overlap``: the lowest acceptable unigram precision against the prompt."""


class SelfCritiqueCheck(_Strict):
    kind: Literal["self_critique"]
    threshold: float = Field(0.5, ge=0, le=1)
    yes: list[str] = Field(default_factory=lambda: ["yes", "Yes"], min_length=1)
    no: list[str] = Field(default_factory=lambda: ["no", "No"], min_length=1)
    violation_answer: Literal["yes", "no"] = "yes"
    template: str | None = None
    """Overrides the constitution's ``critique_template`` for this principle."""

    @field_validator("template")
    @classmethod
    def _template(cls, v: str | None) -> str | None:
        if v is not None and "{response}" not in v:
            raise ValueError("template must contain {response}")
        return v


class CombinedCheck(_Strict):
    kind: Literal["all", "any"]
    checks: list[CheckSettings] = Field(min_length=1)


CheckSettings = Annotated[
    JudgeCheck | LexiconCheck | PatternCheck | FaithfulnessCheck | SelfCritiqueCheck | CombinedCheck,
    Field(discriminator="kind"),
]
CombinedCheck.model_rebuild()


# -------------------------------------------------------------------------------------- principles
class Principle(_Strict):
    id: str
    principle: str = Field(min_length=1)
    critique: str = Field(min_length=1)
    revision: str = Field(min_length=1)
    weight: float = Field(1.0, ge=0)
    revise: bool = True
    check: CheckSettings

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.match(v):
            raise ValueError("must match [a-z0-9][a-z0-9_.-]* (it names a metric)")
        return v


class Constitution(_Strict):
    name: str = "constitution"
    critique_template: str = DEFAULT_CRITIQUE_TEMPLATE
    revision_template: str = DEFAULT_REVISION_TEMPLATE
    principles: list[Principle]
    source: str = "<dict>"

    @field_validator("critique_template")
    @classmethod
    def _critique(cls, v: str) -> str:
        return require_placeholders(v, "{critique}", "{response}")

    @field_validator("revision_template")
    @classmethod
    def _revision(cls, v: str) -> str:
        return require_placeholders(v, "{revision}", "{response}")

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def get(self, pid: str) -> Principle:
        for p in self.principles:
            if p.id == pid:
                return p
        raise KeyError(pid)

    def critique_prompt(self, principle: Principle, response: str, prompt: str = "",
                        template: str | None = None) -> str:
        """The critique request for ``response``: the template with ``{critique}``, ``{response}``
        and ``{prompt}`` replaced (plain replacement; other braces stay)."""
        return _fill(template or self.critique_template, critique=principle.critique, response=response,
                     prompt=prompt)

    def revision_prompt(self, principle: Principle, response: str, prompt: str = "") -> str:
        """The revision request for ``response`` (``{revision}``, ``{response}``, ``{prompt}``)."""
        return _fill(self.revision_template, revision=principle.revision, response=response, prompt=prompt)


def _fill(template: str, **values: str) -> str:
    out = template
    for key, value in values.items():
        out = out.replace("{" + key + "}", value)
    return out


# ----------------------------------------------------------------------------------------- loading
_TOP_KEYS = {"name", "critique_template", "revision_template", "principles"}


def _error_lines(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{key}: {msg}")
    return "; ".join(parts)


def constitution_from_dict(data: Any, source: str = "<dict>") -> Constitution:
    """Validate a constitution; errors name the file, the principle (by id) and the key."""
    where = f"constitution {source}"
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a mapping at the top level")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(_TOP_KEYS)}")
    raw = data.get("principles")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: `principles` must be a non-empty list")
    principles: list[Principle] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        label = f"principles[{i}]"
        if isinstance(item, dict) and isinstance(item.get("id"), str):
            label += f" ({item['id']})"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: {label} must be a mapping")
        try:
            p = Principle.model_validate(item)
        except ValidationError as err:
            raise ConfigError(f"{where}: {label}: {_error_lines(err)}") from None
        if p.id in seen:
            raise ConfigError(f"{where}: {label}: id {p.id!r} is used twice")
        seen.add(p.id)
        principles.append(p)
    rest = {k: v for k, v in data.items() if k != "principles"}
    try:
        return Constitution.model_validate({**rest, "principles": principles, "source": source})
    except ValidationError as err:
        raise ConfigError(f"{where}: {_error_lines(err)}") from None


def load_constitution(path: str | Path, cfg: Config | None = None) -> Constitution:
    """Read and validate a constitution file (see the module docstring for the format)."""
    p = resolve_constitution_path(path, cfg)
    try:
        data = read_yaml(p)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("config file", "constitution file")) from None
    return constitution_from_dict(data, str(p))
