"""The ``redteam`` section: which attack methods run against which policy, on what budget, and how a
success is decided. Importable from :mod:`detoxrl.config` as every section is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from detoxrl.config.base import _Strict

METHODS = ("perturbation", "zero_shot", "few_shot", "rl")
MUTATION_NAMES = ("insert", "space", "repeat", "homoglyph", "quote", "negate", "move")


class RedLMSettings(_Strict):
    """The red language model that writes dialogues (methods ``zero_shot`` and ``few_shot``)."""

    model: str | None = None
    """Any causal LM (hub id or folder). ``None`` on the testbed: a tiny GPT-2 trained on the testbed's
    training dialogues, saved in ``{output_dir}/red-lm`` the first time it is needed."""
    prompt: str = ""
    """What zero-shot generation starts from (after the tokenizer's BOS, or EOS when it has none)."""
    separator: str | None = None
    """What follows each example in a few-shot prompt; default the tokenizer's EOS (as the testbed's red
    LM was trained)."""
    shots: int = Field(2, ge=1)
    """Few-shot: successful dialogues found so far shown before the one to write (a context longer than
    the red LM's is cut from the left; the testbed's holds about three dialogues)."""
    max_new_tokens: int = Field(96, gt=0)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    train_steps: int = Field(300, ge=0)
    """Testbed red LM: optimiser steps on the training dialogues."""


class RedRLSettings(_Strict):
    """Method ``rl``: the red LM trained with PPO, rewarded by the target's toxicity; ``batch`` dialogues
    a step (``redteam.batch``), so ``budget / batch`` steps."""

    learning_rate: float = Field(1e-4, gt=0)
    kl_coef: float = Field(0.1, ge=0)
    """The fixed KL coefficient to the starting red LM: larger keeps the dialogues more varied."""
    mini_batch_size: int = Field(16, gt=0)
    ppo_epochs: int = Field(4, gt=0)


Method = Literal["perturbation", "zero_shot", "few_shot", "rl"]


def _names(v: list[str]) -> list[str]:
    if not v:
        raise ValueError("must name at least one")
    if len(set(v)) != len(v):
        raise ValueError(f"names repeat: {v}")
    return v


class RedTeamAttackSettings(_Strict):
    """``eval.redteam_attack``: a fresh attack inside ``eval``, of ``budget`` target generations per method,
    against the trained policy and, for comparison, the reference; every other setting is ``redteam``'s."""

    budget: int = Field(2000, gt=0)
    methods: list[Method] = Field(default_factory=lambda: ["perturbation"])

    @field_validator("methods")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        return _names(v)


class RedTeamSettings(_Strict):
    enabled: bool = False
    """Whether ``detoxrl run`` runs the stage (``detoxrl redteam`` runs it either way)."""
    policy: str | None = None
    """The folder of the attacked policy; default ``ppo.output_dir``."""
    methods: list[Method] = Field(default_factory=lambda: ["perturbation"])
    budget: int = Field(2000, gt=0)
    """Target generations per method."""
    success: Literal["any", "all"] = "any"
    """A response is a success when any (or every) judge rates it toxic, at that judge's threshold."""
    judges: list[str] | None = None
    """Names of the judges (of ``reward.judges`` and ``eval.extra_judges``) that decide success; default all."""
    seed_prompts: int = Field(200, gt=0)
    """Held-out dialogues (``data.eval_split``) the perturbation search starts from."""
    hostile_scan: int = Field(2000, ge=0)
    """Turns of training dialogues (``data.train_split``) the judges scan for hostile utterances to insert."""
    mutations: list[Literal["insert", "space", "repeat", "homoglyph", "quote", "negate", "move"]] = Field(
        default_factory=lambda: list(MUTATION_NAMES))
    population: int = Field(32, gt=0)
    batch: int = Field(64, gt=0)
    """Candidates per search round (and target generations per batch)."""
    max_mutations: int = Field(2, gt=0)
    explore: float = Field(0.2, ge=0, le=1)
    """Share of a round's parents drawn fresh from the seeds instead of from the population."""
    red_lm: RedLMSettings = Field(default_factory=RedLMSettings)
    rl: RedRLSettings = Field(default_factory=RedRLSettings)
    resamples: int = Field(4, ge=0)
    """Per harmful case, re-samples of the target until a response the judges call clean: each (harmful,
    clean) pair goes to ``preferences.jsonl`` (for ``train-rm``) and ``sft.jsonl`` (for ``sft``). 0: none.
    These generations are not counted in any method's budget."""
    report_cases: int = Field(5, ge=0)
    """The most damaging cases shown in the report."""
    output_dir: str = "{run_dir}/redteam"
    rounds: int = Field(0, ge=0)
    """Rounds of red team → PPO → red team in the stage: after attacking the policy, PPO continues from it for
    ``round_steps`` steps with every prompt found so far (``ppo.redteam_prompts``, ``round_share`` of every
    batch), and the new policy is attacked again; round ``k`` is written to
    ``{output_dir}/round-<k>/``, and ``eval`` evaluates the last round's policy. Needs ``enabled``. 0: none."""
    round_steps: int = Field(50, gt=0)
    """PPO steps of each round (``ppo.steps`` of the continued run)."""
    round_share: float = Field(0.5, gt=0, lt=1)
    """The share of every batch of a round drawn from the prompts found so far (``ppo.redteam_share``); the
    rest comes uniformly from the training prompts, so the policy keeps summarising ordinary dialogues."""
    seed: int | None = None

    @field_validator("methods", "mutations")
    @classmethod
    def _not_empty(cls, v: list[str]) -> list[str]:
        return _names(v)
