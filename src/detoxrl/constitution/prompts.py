"""The policy critiquing and revising its own summaries: the requests, and P("yes") of a critique.

Requests (``constitution.critique_request`` / ``revision_request``; defaults in
:data:`~detoxrl.config.CRITIQUE_REQUEST` and :data:`~detoxrl.config.REVISION_REQUEST`)::

    Does this summary break the principle '<principle>'? Answer yes or no, then why.

    Summary: <response>

    Dialogue:
    <dialogue>

The placeholders are ``{principle}`` (the principle in words, ``Principle.principle``), ``{response}``
and ``{dialogue}``; without a dialogue, the part from the blank line before the line that holds
``{dialogue}`` on is left out. The dialogue comes last so that a request cut at the prompt length loses
the end of the dialogue, not the question. The revision request is filled the same way.

**P("yes").** ``Y`` and ``N`` are the first tokens of the answer words (default ``yes, Yes`` and
``no, No``; each word's first token without special tokens, unknown tokens dropped, each token once,
words of one token preferred to the first piece of longer ones;
:func:`~detoxrl.rewards.critique.answer_token_ids`), and ``ℓ`` are the logits of the first answer
token (an encoder-decoder: the decoder's first position, fed the decoder start token; a decoder-only
model: the position after the request's last token). With ``p = softmax(ℓ)`` over the whole vocabulary::

    P(yes) = Σ_{y∈Y} p_y / (Σ_{y∈Y} p_y + Σ_{n∈N} p_n) = σ(LSE_{y∈Y} ℓ_y − LSE_{n∈N} ℓ_n)

— the probability of answering with a variant of yes, given that the answer starts with a variant of yes
or no; with one token on each side, the softmax over the two first-token logits. It is deterministic:
the model runs in eval mode (dropout off) without gradients. The request filling and P("yes") live in
:mod:`detoxrl.rewards.critique`, shared with the ``self_critique`` reward judge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detoxrl.config import REVISION_REQUEST, ConstitutionSettings
from detoxrl.constitution.principles import Principle
from detoxrl.models.loading import LoadedPolicy
from detoxrl.rewards.critique import (  # noqa: F401 - re-exported; shared with the self_critique judge
    NO_WORDS,
    YES_WORDS,
    answer_ids,
    critique_request,
    fill_request,
    p_yes,
)

REQUEST_EXTRA_TOKENS = 64
"""Requests may be this many tokens longer than ``data.max_prompt_tokens`` (the question and summary)."""


def revision_request(principle: Principle | str, response: str, dialogue: str = "",
                     template: str = REVISION_REQUEST) -> str:
    """The self-revision request for ``response`` (module docstring)."""
    return fill_request(template, principle, response, dialogue)


class SelfCritic:
    """A model's self-critique of responses against principles: P("yes") per principle.

    ``settings`` gives the request templates (``constitution``'s); ``threshold`` makes the verdict.
    """

    def __init__(self, lp: LoadedPolicy, principles: Sequence[Principle], settings: ConstitutionSettings,
                 *, max_prompt_tokens: int, batch_size: int = 32, threshold: float = 0.5,
                 yes_words: Sequence[str] = YES_WORDS, no_words: Sequence[str] = NO_WORDS) -> None:
        self.lp, self.principles = lp, list(principles)
        self.words = {"yes_words": tuple(yes_words), "no_words": tuple(no_words)}
        self.settings = settings
        self.max_prompt_tokens, self.batch_size, self.threshold = max_prompt_tokens, batch_size, threshold

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def p_yes(self, responses: Sequence[str], dialogues: Sequence[str],
              only: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """``{principle id: P(yes) [B]}`` for every principle (or the ids in ``only``)."""
        if len(responses) != len(dialogues):
            raise ValueError(f"{len(responses)} responses but {len(dialogues)} dialogues")
        out = {}
        for p in self.principles:
            if only is not None and p.id not in only:
                continue
            reqs = [critique_request(p, r, d, self.settings.critique_request) for r, d in zip(responses, dialogues)]
            out[p.id] = p_yes(self.lp, reqs, max_prompt_tokens=self.max_prompt_tokens, batch_size=self.batch_size,
                              **self.words)
        return out

    def violations(self, responses: Sequence[str], dialogues: Sequence[str],
                   only: Sequence[str] | None = None) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``(P(yes), violated)`` per principle: violated where P(yes) >= ``threshold``."""
        probs = self.p_yes(responses, dialogues, only)
        return probs, {pid: v >= self.threshold for pid, v in probs.items()}
