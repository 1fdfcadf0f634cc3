"""The typed batch of one PPO step (experience making fills a :class:`Rollout`, learning reads it) and
the :class:`Reward` protocol that scores its responses.

Shapes: ``B`` rows (prompts), ``Tq`` prompt tokens, ``T`` response tokens (for an encoder-decoder the
decoder sequence; for a decoder-only model the tokens after the prompt), ``H`` the model's hidden size.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Protocol

import torch

from detoxrl.utils import round_up

ROW, TOKEN = "row", "token"  # how select() indexes a field: rows only, or rows and the first T columns


def _row(default=None):
    return field(default=default, metadata={"axis": ROW})


def _token(default=None):
    return field(default=default, metadata={"axis": TOKEN})


@dataclass
class Rollout:
    """Everything one PPO step knows about its batch. Fields set later in the step start as ``None``."""

    prompts: list[str] = _row()  # B prompt strings
    texts: list[str] = _row()  # B decoded responses
    query_ids: torch.Tensor = _row()  # [B, Tq] prompt token ids (left- or right-padded as the model wants)
    query_mask: torch.Tensor = _row()  # [B, Tq] 1 on prompt tokens
    response_ids: torch.Tensor = _token()  # [B, T] sampled response tokens, padded after EOS
    response_mask: torch.Tensor = _token()  # [B, T] 1 on response tokens up to and including EOS
    logprobs: torch.Tensor | None = _token()  # [B, T] log π_old(y_t | x, y_<t)
    ref_logprobs: torch.Tensor | None = _token()  # [B, T] log π_ref(y_t | x, y_<t)
    values: torch.Tensor | None = _token()  # [B, T] V_old(x, y_<t), float32
    scores: torch.Tensor | None = _row()  # [B] judge scores after eos penalty, normalisation, clipping
    raw_scores: torch.Tensor | None = _row()  # [B] the reward's totals as returned
    token_scores: torch.Tensor | None = _token()  # [B, T] scores spread over tokens (ppo.dense_scores)
    dense_rows: int = 0  # rows whose prefixes were scored (ppo.dense_scores)
    rewards: torch.Tensor | None = _token()  # [B, T] −β·KL per token, plus the score on the last token
    kl: torch.Tensor | None = _token()  # [B, T] per-token KL estimate to the reference
    advantages: torch.Tensor | None = _token()  # [B, T] GAE advantages (whitened when configured)
    returns: torch.Tensor | None = _token()  # [B, T] advantages + values
    encoder_hidden: torch.Tensor | None = _row()  # [B, Tq, H] encoder output (encoder-decoders)
    has_eos: torch.Tensor | None = _row()  # [B] bool: the response ended (before any padding)
    components: dict[str, torch.Tensor] = field(default_factory=dict)  # named [B] reward terms
    entropy: float = float("nan")  # mean policy entropy over response tokens, from the rollout pass
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase of experience making
    length_multiple: int = 1  # response widths are kept at multiples of this (see ppo.length_multiple)

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, idx: torch.Tensor) -> Rollout:
        """A minibatch: rows ``idx`` of every per-row and per-token field, the per-token ones trimmed to
        the longest response among those rows (rounded up to a multiple of ``length_multiple``)."""
        t = int(self.response_mask[idx].sum(1).max().item()) or 1
        t = min(round_up(t, self.length_multiple), self.response_mask.shape[1])
        rows = idx.tolist()
        picked = {}
        for f in fields(self):
            value, axis = getattr(self, f.name), f.metadata.get("axis")
            if value is None or axis is None:
                continue
            if isinstance(value, list):
                picked[f.name] = [value[i] for i in rows]
            else:
                picked[f.name] = value[idx, :t] if axis == TOKEN else value[idx]
        return Rollout(**picked, length_multiple=self.length_multiple)


class RewardOutput(Protocol):
    """What a reward returns for a batch of B responses."""

    total: torch.Tensor  # [B] float: the scalar reward of each response (higher is better)
    components: dict[str, torch.Tensor]  # named [B] terms, logged per step as reward/<name>


class Reward(Protocol):
    """``reward(responses, prompts)``: any callable with this signature rewards PPO (a composite of
    judges, a reward model, or a plain function of the text)."""

    def __call__(self, responses: list[str], prompts: list[str]) -> RewardOutput: ...
