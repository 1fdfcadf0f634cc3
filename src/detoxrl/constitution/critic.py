"""The policy as its own critic and reviser: yes/no answers to critique requests, revisions, resamples.

For an instruction-following policy (FLAN-T5) a critique request is a yes/no question. The answer is
read from the first-token distribution: with ``Y`` the token ids of the ``yes`` words and ``N`` those
of the ``no`` words, and ``ℓ`` the logits that predict the first answer token::

    P(yes) = exp(LSE_{y∈Y} ℓ_y) / (exp(LSE_{y∈Y} ℓ_y) + exp(LSE_{n∈N} ℓ_n)) = σ(LSE_Y ℓ − LSE_N ℓ)

For an encoder-decoder the first answer token is predicted from the decoder start token; for a
decoder-only model from the last prompt token (prompts are left-padded). The model runs in eval mode
under ``torch.no_grad``, so the answer is deterministic. The maths is in
:mod:`detoxrl.rewards.critique` (shared with the ``self_critique`` reward judge).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from detoxrl.config import Config, GenerationSettings
from detoxrl.errors import ModelError
from detoxrl.models.generation import generate_responses
from detoxrl.models.loading import LoadedPolicy, load_policy_model
from detoxrl.rewards.critique import (  # noqa: F401 - re-exported: the answer's maths lives below rewards/
    answer_token_ids,
    batched_p_yes,
    eval_mode,
    first_token_logits,
    yes_probability,
)


@contextlib.contextmanager
def seeded(seed: int | None):
    """Run the block with torch's RNG seeded to ``seed`` and restore the outer RNG afterwards, so that
    critique and resampling never shift the training run's random stream."""
    if seed is None:
        yield
        return
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


class CriticModel:
    """The model that critiques and revises: a loaded policy, or one loaded on first use.

    In PPO it defaults to the policy the run starts from (``constitution.critic_model`` or
    ``policy.name_or_path``); :meth:`attach` swaps in the live policy.
    """

    def __init__(self, cfg: Config | None = None, device: str | torch.device = "cpu", *,
                 policy: LoadedPolicy | None = None, name_or_path: str | None = None,
                 max_prompt_tokens: int | None = None, batch_size: int = 16) -> None:
        self.cfg = cfg
        self.device = device
        self._lp = policy
        self.name_or_path = name_or_path
        self.max_prompt_tokens = max_prompt_tokens or (cfg.data.max_prompt_tokens if cfg is not None else 512)
        self.batch_size = batch_size

    def attach(self, policy: LoadedPolicy) -> None:
        self._lp = policy

    @property
    def loaded(self) -> bool:
        return self._lp is not None

    @property
    def lp(self) -> LoadedPolicy:
        if self._lp is None:
            if self.cfg is None and self.name_or_path is None:
                raise ModelError("the constitution needs a model to critique or revise, and none was given")
            if self.name_or_path is not None:
                name = self.cfg.resolve(self.name_or_path) if self.cfg is not None else self.name_or_path
                settings = (self.cfg.policy.model_copy(update={"name_or_path": name})
                            if self.cfg is not None else name)
            else:
                crit = self.cfg.constitution.critic_model or self.cfg.policy.name_or_path
                settings = self.cfg.policy.model_copy(update={"name_or_path": self.cfg.resolve(crit)})
            self._lp = load_policy_model(settings, device=self.device)
            self._lp.model.eval().requires_grad_(False)
        return self._lp

    def answer_ids(self, words: Sequence[str], what: str) -> list[int]:
        ids = answer_token_ids(self.lp.tokenizer, words)
        if not ids:
            raise ModelError(f"{what}: none of the answer words {list(words)} is a token of the "
                             f"tokenizer of {self.lp.name_or_path}")
        return ids

    def p_yes(self, prompts: list[str], yes_ids: Sequence[int], no_ids: Sequence[int]) -> torch.Tensor:
        """``P(yes)`` for each prompt, in batches (module docstring)."""
        return batched_p_yes(self.lp, prompts, yes_ids, no_ids, self.max_prompt_tokens, self.batch_size)

    def generate(self, prompts: list[str], gen: GenerationSettings, *, seed: int | None = None,
                 max_new_tokens: int | None = None) -> list[str]:
        """One response per prompt (in eval mode; a seed fixes sampling without touching the outer RNG)."""
        texts: list[str] = []
        with eval_mode(self.lp.model), seeded(seed):
            for i in range(0, len(prompts), self.batch_size):
                g = generate_responses(self.lp, prompts[i: i + self.batch_size], gen,
                                       max_prompt_tokens=self.max_prompt_tokens,
                                       max_new_tokens=max_new_tokens)
                texts.extend(g.texts)
        return texts
