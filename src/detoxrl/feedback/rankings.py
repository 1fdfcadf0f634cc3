"""The rankings the labelling page writes, ``labels/rankings.jsonl``, and the checks on a submission.

One JSON object per line, one line per submission::

    {"prompt": "...", "completions": ["a", "b", "c", "d"], "ranks": [1, 2, 2, 4],
     "labeller": "ana", "time": "2026-05-01T09:30:12+00:00", "id": "3f2a9c0d1e4b5a67"}
    {"prompt": "...", "completions": [...], "special": "prompt_unsafe", "labeller": ..., "time": ..., "id": ...}

``ranks`` has one rank per completion, 1 = best, in standard competition form: tied completions share
a rank and the ranks after a tie skip (``1, 2, 2, 4``). A ``special`` label replaces the ranks
(:data:`~detoxrl.data.rankings.SPECIAL_LABELS`). ``time`` is the server's clock in UTC (ISO 8601), ``id``
the batch item's. The format, and what ``train-rm`` does with it: :mod:`detoxrl.data.rankings` and
``docs/rankings.md``.

Saving them, so that nothing submitted is lost: :mod:`detoxrl.feedback.store`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from detoxrl.data.rankings import SPECIAL_LABELS, competition_ranks
from detoxrl.errors import DetoxError
from detoxrl.feedback.batch import BatchItem

__all__ = ["SPECIAL_LABELS", "Submission", "SubmissionError", "check_labeller", "check_ranks", "check_special",
           "check_submission", "competition_ranks", "ranking_row", "utc_now"]

MAX_LABELLER = 80


class SubmissionError(DetoxError):
    """A submission the server refuses; ``status`` is the HTTP status the page receives with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _whole(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check_ranks(ranks, n: int) -> list[int]:
    """``ranks`` as ints if they rank ``n`` candidates in competition form, else :class:`SubmissionError`."""
    if not isinstance(ranks, list):
        raise SubmissionError(f"ranks must be a list of {n} ranks, one per candidate")
    if len(ranks) != n:
        raise SubmissionError(f"expected {n} ranks, one per candidate, got {len(ranks)}")
    out = []
    for i, r in enumerate(ranks, 1):
        if r is None or r == "":
            raise SubmissionError(f"candidate {i} has no rank: give every candidate a rank from 1 (best) to {n}, "
                                  "or choose a special label")
        value = _whole(r)
        if value is None:
            raise SubmissionError(f"candidate {i}: rank {r!r} is not a whole number")
        if not 1 <= value <= n:
            raise SubmissionError(f"candidate {i}: rank {value} is out of range: ranks go from 1 (best) to {n}")
        out.append(value)
    want = competition_ranks(out)
    if out != want:
        shown = ", ".join(map(str, want))
        raise SubmissionError(f"ranks {', '.join(map(str, out))} are not in competition form (tied candidates "
                              f"share a rank and the ranks after a tie skip, as in 1, 2, 2, 4): did you mean {shown}?")
    return out


def check_special(special) -> str:
    if special not in SPECIAL_LABELS:
        raise SubmissionError(f"{special!r} is not a special label; use one of {', '.join(SPECIAL_LABELS)}")
    return special


def check_labeller(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise SubmissionError("enter your name first: it tells your rankings from other people's")
    name = " ".join(name.split())
    if len(name) > MAX_LABELLER or not name.isprintable():
        raise SubmissionError(f"a labeller's name is at most {MAX_LABELLER} printable characters")
    return name


@dataclass
class Submission:
    labeller: str
    item: BatchItem
    ranks: list[int] | None = None
    special: str | None = None


def check_submission(payload, items: dict[str, BatchItem]) -> Submission:
    """A submission from the page, ``{"labeller", "id", "ranks"}`` or ``{"labeller", "id", "special"}``,
    checked against the batch; :class:`SubmissionError` with the message the page shows otherwise."""
    if not isinstance(payload, dict):
        raise SubmissionError("a submission is a JSON object with labeller, id and ranks or special")
    labeller = check_labeller(payload.get("labeller"))
    item = items.get(payload.get("id")) if isinstance(payload.get("id"), str) else None
    if item is None:
        raise SubmissionError(f"no item {payload.get('id')!r} in this batch (was the batch remade? reload the page)")
    has_ranks, has_special = payload.get("ranks") is not None, payload.get("special") is not None
    if has_ranks == has_special:
        raise SubmissionError("rank the candidates or choose a special label (one of the two)")
    if has_special:
        return Submission(labeller, item, special=check_special(payload["special"]))
    return Submission(labeller, item, ranks=check_ranks(payload["ranks"], len(item.completions)))


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def ranking_row(sub: Submission, time: str | None = None) -> dict:
    """The line written for a submission, in the documented key order."""
    row: dict = {"prompt": sub.item.prompt, "completions": list(sub.item.completions)}
    if sub.ranks is not None:
        row["ranks"] = list(sub.ranks)
    else:
        row["special"] = sub.special
    row.update(labeller=sub.labeller, time=time or utc_now(), id=sub.item.id)
    return row
