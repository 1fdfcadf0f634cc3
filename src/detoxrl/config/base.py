"""What every settings model shares: strictness, and the toxicity dimensions judges report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

DIMENSIONS = ("hate", "harassment", "discrimination", "profanity")
"""The toxicity dimensions a judge can report. ``severity`` is reported beside them."""


def require_placeholders(template: str, *keys: str) -> str:
    """``template`` unchanged, or ``ValueError("must contain {key}")`` for the first ``key`` it lacks (a
    pydantic validator's check of a request or template's placeholders)."""
    for key in keys:
        if key not in template:
            raise ValueError(f"must contain {key}")
    return template


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

CRITIQUE_REQUEST = ("Does this summary break the principle '{principle}'? Answer yes or no, then why.\n\n"
                    "Summary: {response}\n\nDialogue:\n{dialogue}")
"""The self-critique request (``constitution.critique_request``); the dialogue comes last, so that a
truncated request loses the end of the dialogue, never the question or the summary."""
REVISION_REQUEST = ("Rewrite the summary so that it follows '{principle}'.\n\nSummary: {response}\n\n"
                    "Dialogue:\n{dialogue}")
"""The self-revision request (``constitution.revision_request``)."""
