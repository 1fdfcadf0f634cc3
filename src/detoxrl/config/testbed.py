"""The ``testbed`` section: the embedded default's synthetic corpus and tiny models
(:mod:`detoxrl.testbed`). Importable from :mod:`detoxrl.config` as every section is."""

from __future__ import annotations

from pydantic import Field, model_validator

from detoxrl.config.base import _Strict


# --------------------------------------------------------------------------------------------------
# the embedded testbed
# --------------------------------------------------------------------------------------------------
class SeverityMix(_Strict):
    """Relative frequency of each hostility tier among hostile dialogues."""

    rude: float = Field(0.1, ge=0)
    insulting: float = Field(0.35, ge=0)
    profane: float = Field(0.3, ge=0)
    identity: float = Field(0.25, ge=0)

    @model_validator(mode="after")
    def _positive(self) -> SeverityMix:
        if self.rude + self.insulting + self.profane + self.identity <= 0:
            raise ValueError("at least one severity weight must be positive")
        return self


class TinyT5Settings(_Strict):
    d_model: int = Field(128, gt=0)
    d_ff: int = Field(256, gt=0)
    num_layers: int = Field(2, gt=0)
    num_decoder_layers: int = Field(2, gt=0)
    num_heads: int = Field(4, gt=0)
    d_kv: int = Field(32, gt=0)


class TinyJudgeSettings(_Strict):
    hidden_size: int = Field(64, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(128, gt=0)
    max_position_embeddings: int = Field(130, gt=2)


class TestbedSettings(_Strict):
    seed: int = 0
    n_train: int = Field(10_000, gt=0)
    n_test: int = Field(1_000, gt=0)
    n_topics: int = Field(24, ge=2)
    hostile_share: float = Field(0.3, ge=0, le=1)
    parrot_share: float = Field(1.0, ge=0, le=1)
    """Share of hostile dialogues whose SFT summary repeats the insult (the toxicity to unlearn)."""
    severity: SeverityMix = Field(default_factory=SeverityMix)
    severe_share: float = Field(0.0, ge=0, le=1)
    """Share of the insulting and identity dialogues whose hostile sentence also threatens (grade
    ``severe``: toxic-bert's ``threat`` and ``severe_toxic``); the others are grade ``mild``."""
    ambiguous_share: float = Field(0.0, ge=0, le=1)
    """Share of the dialogues (taken from the non-hostile ones) with a sentence that looks hostile and is
    not: a negated insult, counter-speech, reported hostility, or a neutral mention of an invented people
    that the gold summary keeps (``detoxrl.testbed.corpus``). Prompt tier ``ambiguous``."""
    vocab_size: int = Field(3000, ge=100)
    policy: TinyT5Settings = Field(default_factory=TinyT5Settings)
    judge: TinyJudgeSettings = Field(default_factory=TinyJudgeSettings)

    @model_validator(mode="after")
    def _room_for_ambiguous(self) -> TestbedSettings:
        if self.hostile_share + self.ambiguous_share > 1:
            raise ValueError(f"testbed.hostile_share + testbed.ambiguous_share must be at most 1, got "
                             f"{self.hostile_share} + {self.ambiguous_share}")
        return self
