"""What every settings model shares: strictness, and the toxicity dimensions judges report."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

DIMENSIONS = ("hate", "harassment", "discrimination", "profanity")
"""The toxicity dimensions a judge can report. ``severity`` is reported beside them."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
