"""A model's yes/no answer to a critique request: the request text and P("yes").

Lives below :mod:`detoxrl.constitution` so that both the constitution (self-critique checks, SL-CAI,
``critique-eval``) and the ``self_critique`` reward judge (:mod:`detoxrl.rewards.self_critique`) use one
implementation; :mod:`detoxrl.constitution.prompts` and :mod:`detoxrl.constitution.critic` re-export it.

**Request.** ``{principle}`` (the principle in words), ``{response}`` and ``{dialogue}`` are replaced in
the template (default :data:`~detoxrl.config.CRITIQUE_REQUEST`); without a dialogue, the part from the
blank line before the line that holds ``{dialogue}`` on is left out.

**P("yes").** ``Y`` and ``N`` are the first tokens of the answer words (each word's first token without
special tokens, unknown tokens dropped, each token once), and ``ℓ`` the logits of the first answer token
(an encoder-decoder: the decoder's first position, fed the decoder start token; a decoder-only model:
the position after the request's last token; prompts are left-padded). With ``p = softmax(ℓ)``::

    P(yes) = Σ_{y∈Y} p_y / (Σ_{y∈Y} p_y + Σ_{n∈N} p_n) = σ(LSE_{y∈Y} ℓ_y − LSE_{n∈N} ℓ_n)

The model runs in eval mode (dropout off) under ``torch.no_grad``, so the answer is deterministic.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch

from detoxrl.config import CRITIQUE_REQUEST
from detoxrl.errors import ModelError
from detoxrl.models.generation import tokenize_prompts
from detoxrl.models.loading import LoadedPolicy

YES_WORDS = ("yes", "Yes")
NO_WORDS = ("no", "No")


def fill_request(template: str, principle, response: str, dialogue: str = "") -> str:
    """``template`` with ``{principle}``, ``{response}`` and ``{dialogue}`` replaced (plain replacement;
    other braces stay). ``principle``: its words, or an object with a ``principle`` attribute. An empty
    ``dialogue`` drops the template's dialogue part (module docstring)."""
    text = principle if isinstance(principle, str) else str(principle.principle)
    if not dialogue.strip() and "{dialogue}" in template:
        head, _, _ = template.partition("{dialogue}")
        cut = head.rfind("\n\n")
        template = head[:cut] if cut >= 0 else head.rstrip()
    out = template.replace("{principle}", text).replace("{response}", response.strip())
    return out.replace("{dialogue}", dialogue)


def critique_request(principle, response: str, dialogue: str = "", template: str = CRITIQUE_REQUEST) -> str:
    """The self-critique request for ``response`` (module docstring)."""
    return fill_request(template, principle, response, dialogue)


def answer_token_ids(tokenizer, words: Sequence[str]) -> list[int]:
    """The first token of each word (without special tokens), unknown tokens left out, each once.

    A word that takes several tokens is left out when another word of the list is a single token: its
    first token is only a prefix (``▁Y`` of ``Yes`` also begins ``Yesterday``), and the model that
    answers writes the whole-word token. When no word is a single token, the first tokens are used."""
    unk = getattr(tokenizer, "unk_token_id", None)
    encoded = [tokenizer.encode(w, add_special_tokens=False) for w in words]
    encoded = [ids for ids in encoded if ids and ids[0] != unk]
    if any(len(ids) == 1 for ids in encoded):
        encoded = [ids for ids in encoded if len(ids) == 1]
    out: list[int] = []
    for ids in encoded:
        if int(ids[0]) not in out:
            out.append(int(ids[0]))
    return out


def answer_ids(tokenizer, yes_words: Sequence[str] = YES_WORDS,
               no_words: Sequence[str] = NO_WORDS, what: str = "self-critique") -> tuple[list[int], list[int]]:
    """``(Y, N)``: the first tokens of the yes and no words; a clear error when a side has none, or when
    the two sides share a token (P(yes) would not tell them apart)."""
    name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
    yes, no = answer_token_ids(tokenizer, yes_words), answer_token_ids(tokenizer, no_words)
    for words, ids in ((yes_words, yes), (no_words, no)):
        if not ids:
            raise ModelError(f"{what}: none of the answer words {list(words)} is a token of {name}")
    if set(yes) & set(no):
        raise ModelError(f"{what}: the answer words {list(yes_words)} and {list(no_words)} start with the "
                         f"same token in {name}")
    return yes, no


@contextlib.contextmanager
def eval_mode(model):
    """Put ``model`` in eval mode for the block, then restore its training flag."""
    was = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was)


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


def p_yes(lp: LoadedPolicy, requests: Sequence[str], *, max_prompt_tokens: int, batch_size: int = 32,
          yes_words: Sequence[str] = YES_WORDS, no_words: Sequence[str] = NO_WORDS) -> torch.Tensor:
    """P("yes") ``[B]`` (float32, on the CPU) of ``lp``'s answer to each request (module docstring)."""
    yes, no = answer_ids(lp.tokenizer, yes_words, no_words)
    return batched_p_yes(lp, requests, yes, no, max_prompt_tokens, batch_size)
