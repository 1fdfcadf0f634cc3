"""The policy as its own critic and reviser: yes/no answers to critique requests, revisions, resamples.

For an instruction-following policy (FLAN-T5) a critique request is a yes/no question. The answer is
read from the first-token distribution: with ``Y`` the token ids of the ``yes`` words and ``N`` those
of the ``no`` words, and ``ℓ`` the logits that predict the first answer token::

    P(yes) = exp(LSE_{y∈Y} ℓ_y) / (exp(LSE_{y∈Y} ℓ_y) + exp(LSE_{n∈N} ℓ_n)) = σ(LSE_Y ℓ − LSE_N ℓ)

For an encoder-decoder the first answer token is predicted from the decoder start token; for a
decoder-only model from the last prompt token (prompts are left-padded). The model runs in eval mode
under ``torch.no_grad``, so the answer is deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from detoxrl.config import Config, GenerationSettings
from detoxrl.errors import ModelError
from detoxrl.models.generation import generate_responses, tokenize_prompts
from detoxrl.models.loading import LoadedPolicy, load_policy_model


def answer_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The first token of each word (without special tokens), unknown tokens left out, each once."""
    unk = getattr(tokenizer, "unk_token_id", None)
    out: list[int] = []
    for w in words:
        ids = tokenizer.encode(w, add_special_tokens=False)
        if ids and ids[0] != unk and ids[0] not in out:
            out.append(int(ids[0]))
    return out


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode for the block, then restore its training flag."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


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


@torch.no_grad()
def first_token_logits(lp: LoadedPolicy, prompts: list[str], max_prompt_tokens: int) -> torch.Tensor:
    """Logits ``[B, V]`` of the first token the model would write after each prompt."""
    model = lp.model
    device = next(model.parameters()).device
    q, qm = tokenize_prompts(lp.tokenizer, prompts, max_prompt_tokens, device)
    with eval_mode(model):
        if lp.is_seq2seq:
            cfg = getattr(model, "config", None) or model.get_base_model().config
            start = torch.full((q.shape[0], 1), int(cfg.decoder_start_token_id), dtype=q.dtype, device=device)
            out = model(input_ids=q, attention_mask=qm, decoder_input_ids=start, use_cache=False)
            return out.logits[:, 0].float()
        pos = (qm.cumsum(1) - 1).clamp(min=0)
        out = model(input_ids=q, attention_mask=qm, position_ids=pos, use_cache=False)
        if lp.tokenizer.padding_side == "left":
            return out.logits[:, -1].float()
        last = qm.sum(1) - 1
        return out.logits[torch.arange(q.shape[0], device=device), last].float()


def yes_probability(logits: torch.Tensor, yes_ids: Sequence[int], no_ids: Sequence[int]) -> torch.Tensor:
    """``σ(LSE_{yes} ℓ − LSE_{no} ℓ)`` per row of ``logits`` ``[B, V]`` (module docstring)."""
    lse_yes = torch.logsumexp(logits[:, list(yes_ids)], dim=-1)
    lse_no = torch.logsumexp(logits[:, list(no_ids)], dim=-1)
    return torch.sigmoid(lse_yes - lse_no)


def batched_p_yes(lp: LoadedPolicy, prompts: Sequence[str], yes_ids: Sequence[int], no_ids: Sequence[int],
                  max_prompt_tokens: int, batch_size: int) -> torch.Tensor:
    """``P(yes)`` ``[B]`` (float32, on the CPU) for each prompt, ``batch_size`` prompts per forward pass."""
    out = [yes_probability(first_token_logits(lp, list(prompts[i: i + batch_size]), max_prompt_tokens),
                           yes_ids, no_ids).cpu()
           for i in range(0, len(prompts), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


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
