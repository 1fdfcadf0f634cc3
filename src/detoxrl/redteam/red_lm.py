"""Red LM methods (Perez et al., 2022, §3): a red language model writes the dialogues.

- ``zero_shot``: every dialogue is sampled from the same start (the tokenizer's BOS, or EOS when it has
  none, followed by ``red_lm.prompt``);
- ``few_shot``: each dialogue is sampled after ``shots`` successful dialogues found so far, drawn without
  replacement with probability proportional to their fitness (how far the judges' toxicity went over the
  thresholds, plus a small floor), each followed by the separator (the EOS token by default, as the
  testbed's red LM is trained). Until a success exists the method samples zero-shot; each round of
  ``batch`` dialogues is one ``generation``.

Every dialogue written is one attempt: the target answers it and the judges score the answer.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from detoxrl.redteam.cases import Attempt, fitness_of
from detoxrl.redteam.target import Target

FLOOR = 0.05


@dataclass
class RedLM:
    model: object  # a causal LM (transformers)
    tokenizer: object
    prompt: str = ""
    separator: str | None = None
    max_new_tokens: int = 96
    temperature: float = 1.0
    top_p: float = 1.0

    @property
    def start(self) -> str:
        tok = self.tokenizer
        return (tok.bos_token or tok.eos_token or "") + self.prompt

    @property
    def sep(self) -> str:
        return self.separator if self.separator is not None else (self.tokenizer.eos_token or "\n\n")

    def few_shot_prompt(self, examples: Sequence[str]) -> str:
        return "".join(self.start + e + self.sep for e in examples) + self.start

    @torch.no_grad()
    def write(self, contexts: list[str], seed: int) -> list[str]:
        """One sampled dialogue after each context (left-padded batch; special tokens dropped)."""
        tok = self.tokenizer
        device = next(self.model.parameters()).device
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(contexts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
        finally:
            tok.padding_side = side
        limit = getattr(self.model.config, "n_positions", None) or getattr(self.model.config, "max_position_embeddings", None)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        if limit and ids.shape[1] + self.max_new_tokens > limit:  # keep the latest context
            keep = max(1, limit - self.max_new_tokens)
            ids, mask = ids[:, -keep:], mask[:, -keep:]
        torch.manual_seed(seed)
        out = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=True, top_k=0,
                                  top_p=self.top_p, temperature=self.temperature,
                                  max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id,
                                  eos_token_id=tok.eos_token_id)
        return [tok.decode(row, skip_special_tokens=True).strip() for row in out[:, ids.shape[1]:]]


def _draw(pool: list[tuple[str, float]], k: int, rng: random.Random) -> list[str]:
    """``k`` distinct dialogues (fewer if the pool is smaller), weighted by fitness + FLOOR."""
    items = list(pool)
    out = []
    while items and len(out) < k:
        weights = [max(0.0, f) + FLOOR for _, f in items]
        i = rng.choices(range(len(items)), weights=weights)[0]
        out.append(items.pop(i)[0])
    return out


def red_lm_attack(red: RedLM, target: Target, method: str, budget: int, *, batch: int = 64, shots: int = 4,
                  success: str = "any", seed: int = 0, found: Sequence[tuple[str, float]] = ()) -> list[Attempt]:
    """Run ``zero_shot`` or ``few_shot`` for ``budget`` target generations; ``found`` seeds the few-shot
    pool with (dialogue, fitness) of successes from earlier methods."""
    if method not in ("zero_shot", "few_shot"):
        raise ValueError(f"unknown red LM method {method!r}")
    rng = random.Random(seed)
    pool: dict[str, float] = dict(found)
    attempts: list[Attempt] = []
    rnd = 0
    while len(attempts) < budget:
        n = min(batch, budget - len(attempts))
        if method == "few_shot" and pool:
            items = list(pool.items())
            contexts = [red.few_shot_prompt(_draw(items, shots, rng)) for _ in range(n)]
        else:
            contexts = [red.start] * n
        texts = red.write(contexts, seed=seed * 7919 + rnd)
        prompts, responses, scores = target.attack(texts)
        for text, prompt, resp, sc in zip(texts, prompts, responses, scores):
            fit = fitness_of(sc, target.thresholds, success)
            attempts.append(Attempt(method, text, prompt, resp, sc, fit >= 0, fit, rnd, len(attempts)))
            if fit >= 0 and text:
                pool[text] = max(fit, pool.get(text, fit))
        rnd += 1
    return attempts
