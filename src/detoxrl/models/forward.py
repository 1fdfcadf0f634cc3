"""Scoring responses: the forward pass over (query, response) in both model shapes, and the value head.

:func:`forward_response` returns the logits that *predicted* each response token, so ``logits[:, t]``
scores ``response_ids[:, t]`` for encoder-decoders (teacher forcing from ``decoder_start_token_id``) and
for decoder-only models (the response continues the prompt; position ids skip the left padding).
:class:`PolicyWithValue` is the module PPO trains: the LM and a scalar value per token.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from detoxrl.errors import ModelError


def _causal_inputs(query_ids, query_mask, response_ids, response_mask):
    input_ids = torch.cat([query_ids, response_ids], dim=1)
    attn = torch.cat([query_mask, response_mask.to(query_mask.dtype)], dim=1)
    # Keep attention on every response slot (padding after EOS is never read by earlier tokens).
    attn[:, query_ids.shape[1]:] = 1
    position_ids = (attn.cumsum(1) - 1).clamp(min=0)
    return input_ids, attn, position_ids


def decoder_inputs(response_ids: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher forcing for an encoder-decoder: ``[start, y_0, ..., y_{T-2}]``."""
    start = torch.full_like(response_ids[:, :1], start_id)
    return torch.cat([start, response_ids[:, :-1]], dim=1)


def forward_response(model, is_seq2seq: bool, query_ids, query_mask, response_ids, response_mask,
                     *, encoder_hidden: torch.Tensor | None = None, output_hidden: bool = False):
    """Run the LM over (query, response) and return (logits [B,T,V], last hidden state [B,T,H] or None).

    ``logits[:, t]`` is the distribution that predicted ``response_ids[:, t]``.
    """
    if is_seq2seq:
        start_id = _base_config(model).decoder_start_token_id
        kwargs: dict[str, Any] = dict(attention_mask=query_mask,
                                      decoder_input_ids=decoder_inputs(response_ids, start_id),
                                      output_hidden_states=output_hidden, use_cache=False)
        if encoder_hidden is not None:
            kwargs["encoder_outputs"] = (encoder_hidden,)
        else:
            kwargs["input_ids"] = query_ids
        out = model(**kwargs)
        hidden = out.decoder_hidden_states[-1] if output_hidden else None
        return out.logits, hidden
    input_ids, attn, pos = _causal_inputs(query_ids, query_mask, response_ids, response_mask)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                output_hidden_states=output_hidden, use_cache=False)
    lq, t = query_ids.shape[1], response_ids.shape[1]
    logits = out.logits[:, lq - 1: lq - 1 + t]
    hidden = out.hidden_states[-1][:, lq - 1: lq - 1 + t] if output_hidden else None
    return logits, hidden


def response_logits(model, is_seq2seq: bool, query_ids, query_mask, response_ids, response_mask) -> torch.Tensor:
    """Logits ``[B, T, V]`` aligned with the response tokens (see :func:`forward_response`)."""
    return forward_response(model, is_seq2seq, query_ids, query_mask, response_ids, response_mask)[0]


def _base_config(model):
    cfg = getattr(model, "config", None)
    if cfg is None and hasattr(model, "get_base_model"):
        cfg = model.get_base_model().config
    return cfg


# -------------------------------------------------------------------------------------- value head
class ValueHead(nn.Module):
    """A scalar value per token from the decoder's last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.summary.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def hidden_size(model) -> int:
    cfg = _base_config(model)
    for key in ("d_model", "hidden_size", "n_embd", "dim"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ModelError("cannot tell the hidden size of the policy from its config")


class PolicyWithValue(nn.Module):
    """The trained module: the LM (possibly with LoRA adapters) and a value head, one optimiser."""

    def __init__(self, lm, is_seq2seq: bool):
        super().__init__()
        self.lm = lm
        self.is_seq2seq = is_seq2seq
        self.value_head = ValueHead(hidden_size(lm))

    def forward(self, query_ids, query_mask, response_ids, response_mask, *,
                encoder_hidden: torch.Tensor | None = None):
        logits, hidden = forward_response(self.lm, self.is_seq2seq, query_ids, query_mask,
                                          response_ids, response_mask,
                                          encoder_hidden=encoder_hidden, output_hidden=True)
        return logits, self.value_head(hidden)
