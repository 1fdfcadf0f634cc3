"""Generating the evaluation's responses: ``k`` samples per prompt from each model, batched by prompt
length with a seed per (sample, batch), and the KL of the policy to the reference along its samples."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from detoxrl.config import GenerationSettings
from detoxrl.evaluation import metrics as M
from detoxrl.models.forward import response_logits
from detoxrl.models.generation import generate_responses
from detoxrl.utils import chunks


def eval_generation(gen: GenerationSettings, samples: int) -> GenerationSettings:
    """The decoding settings: the configured ones; with ``samples > 1`` sampling is switched on."""
    if samples > 1 and not gen.do_sample:
        return gen.model_copy(update={"do_sample": True})
    return gen


def kl_generation(gen: GenerationSettings) -> GenerationSettings:
    """Plain sampling (temperature 1, no top-k/top-p) with the evaluation's length limits."""
    return GenerationSettings(max_new_tokens=gen.max_new_tokens, min_new_tokens=gen.min_new_tokens,
                              do_sample=True, temperature=1.0, top_k=0, top_p=1.0)


def batch_seed(seed: int, sample: int, batch: int) -> int:
    """A distinct, reproducible seed for each (sample, batch)."""
    return (seed * 1_000_003 + sample * 10_007 + batch) % (2**31 - 1)


def _length_order(prompts: Sequence[str]) -> list[int]:
    """Indices longest prompt first (less padding per batch; memory errors show up at once)."""
    return sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))


@dataclass
class Generated:
    texts: list[list[str]]  # [k][N]
    lengths: np.ndarray  # [k, N] response tokens
    seconds: float = 0.0
    kl: np.ndarray | None = None  # [N], KL to the reference along the first sample (``kl_ref`` given)
    kl_seconds: float = 0.0


def is_plain_sampling(gen: GenerationSettings) -> bool:
    """True when ``gen`` samples from the model's own distribution (what the KL estimate needs)."""
    return gen.do_sample and gen.temperature == 1.0 and gen.top_k == 0 and gen.top_p == 1.0


@torch.no_grad()
def _batch_kl(policy, ref_model, g) -> list[float]:
    r"""Per row of a generated batch, :math:`\sum_t \mathrm{KL}(\pi(\cdot|x,y_{<t}) \| \pi_{ref}(\cdot|x,y_{<t}))`."""
    vocab = int(getattr(policy.model.config, "vocab_size", 32_000) or 32_000)
    # rows per forward pass so that two [rows, T, V] float32 logit tensors stay near 100 MB each
    rows = max(1, int(25_000_000 // max(1, g.response_ids.shape[1] * vocab)))
    kls = []
    for s in range(0, g.response_ids.shape[0], rows):
        sl = slice(s, s + rows)
        args = (g.query_ids[sl], g.query_mask[sl], g.response_ids[sl], g.response_mask[sl])
        lg = response_logits(policy.model, policy.is_seq2seq, *args)
        ref = response_logits(ref_model, policy.is_seq2seq, *args)
        kls.append(M.sequence_kl(lg, ref, g.response_mask[sl]).cpu())
    return torch.cat(kls).tolist()


def generate_all(lp, prompts: list[str], gen: GenerationSettings, *, samples: int, batch_size: int,
                 max_prompt_tokens: int, seed: int, on_batch=None, kl_ref=None) -> Generated:
    """``samples`` responses per prompt, batched by prompt length, returned in prompt order.

    With ``kl_ref`` (a reference model; ``gen`` must be plain sampling) the KL of ``lp`` to it is computed
    along the first sample of each prompt, so the evaluation needs no second generation for the KL."""
    if kl_ref is not None and not is_plain_sampling(gen):
        raise ValueError("the KL estimate needs plain sampling (temperature 1, top_k 0, top_p 1)")
    t0 = time.perf_counter()
    order = _length_order(prompts)
    n = len(prompts)
    texts = [[""] * n for _ in range(samples)]
    lengths = np.zeros((samples, n))
    kl = np.zeros(n) if kl_ref is not None else None
    kl_seconds = 0.0
    for j in range(samples):
        for b, idx in enumerate(chunks(order, batch_size)):
            g = generate_responses(lp, [prompts[i] for i in idx], gen, max_prompt_tokens=max_prompt_tokens,
                                   seed=batch_seed(seed, j, b))
            lens = g.response_mask.sum(1).tolist()
            for pos, i in enumerate(idx):
                texts[j][i] = g.texts[pos]
                lengths[j, i] = lens[pos]
            if kl is not None and j == 0:
                t_kl = time.perf_counter()
                for pos, v in zip(idx, _batch_kl(lp, kl_ref, g)):
                    kl[pos] = v
                kl_seconds += time.perf_counter() - t_kl
            if on_batch:
                on_batch(len(idx))
    return Generated(texts, lengths, time.perf_counter() - t0 - kl_seconds, kl, kl_seconds)


@torch.no_grad()
def sampled_kl(policy, ref_model, prompts: list[str], gen: GenerationSettings, *, batch_size: int,
               max_prompt_tokens: int, seed: int, on_batch=None) -> np.ndarray:
    r"""Per prompt, :math:`\sum_t \mathrm{KL}(\pi(\cdot|x,y_{<t}) \| \pi_{ref}(\cdot|x,y_{<t}))` along one
    response sampled from the policy (plain sampling, seeded). Returns ``[N]`` in prompt order."""
    g = generate_all(policy, prompts, kl_generation(gen), samples=1, batch_size=batch_size,
                     max_prompt_tokens=max_prompt_tokens, seed=batch_seed(seed, 7919, 0), on_batch=on_batch,
                     kl_ref=ref_model)
    return g.kl
