"""The check-and-revise loop shared by PPO (:mod:`~detoxrl.constitution.reward`) and ``generate``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from detoxrl.config import Config, GenerationSettings
from detoxrl.constitution.checks import CheckContext, JudgeCache, PrincipleChecker, Verdicts
from detoxrl.constitution.critic import CriticModel
from detoxrl.constitution.principles import Constitution, load_constitution
from detoxrl.constitution.revise import Reviser, Revision
from detoxrl.models.loading import LoadedPolicy
from detoxrl.rewards.base import Judge


@dataclass
class ConstitutionEngine:
    """A constitution with its built checks, its reviser and the (lazily loaded) critic model."""

    constitution: Constitution
    checker: PrincipleChecker
    reviser: Reviser
    critic: CriticModel

    @classmethod
    def from_config(cls, cfg: Config, device: str | torch.device = "cpu", *,
                    constitution: Constitution | str | Path | None = None, revision: str | None = None,
                    judges: Sequence[Judge] = (), policy: LoadedPolicy | None = None,
                    generation: GenerationSettings | None = None, seed: int | None = None) -> ConstitutionEngine:
        """Build from ``cfg.constitution`` (each keyword overrides the config).

        ``judges`` are judges already built (the reward's), reused by name; ``policy`` is the model
        that critiques, revises and resamples (default: ``constitution.critic_model`` or the policy,
        loaded on first use).
        """
        cs = cfg.constitution
        const = constitution if isinstance(constitution, Constitution) else \
            load_constitution(constitution or cs.path, cfg)
        critic = CriticModel(cfg, device, policy=policy)
        ctx = CheckContext(cfg=cfg, device=device, judges={j.name: j for j in judges}, critic=critic)
        checker = PrincipleChecker(const, ctx)
        gen = generation or cfg.ppo.generation
        reviser = Reviser(revision or cs.revision, checker, critic, generation=gen,
                          max_resamples=cs.max_resamples,
                          max_new_tokens=cs.max_new_tokens or gen.max_new_tokens,
                          seed=cfg.seed if seed is None else seed)
        return cls(const, checker, reviser, critic)

    @property
    def ids(self) -> list[str]:
        return self.constitution.ids

    def check(self, texts: Sequence[str], prompts: Sequence[str], cache: JudgeCache | None = None) -> Verdicts:
        return self.checker.evaluate(texts, prompts, cache=cache)

    def check_and_revise(self, texts: Sequence[str], prompts: Sequence[str],
                         cache: JudgeCache | None = None) -> tuple[Verdicts, list[Revision]]:
        """Verdicts for every text and a revision for each one that violates a revisable principle."""
        verdicts = self.check(texts, prompts, cache)
        return verdicts, self.reviser.revise(list(texts), list(prompts), verdicts)
