"""The rankings format: people's (or a simulated labeller's) judgements of candidate responses, one JSON
object per line. ``train-rm`` reads it; the labelling page and ``detoxrl import-labels`` write it.
The full reference, with examples, is ``docs/rankings.md``.

::

    {"prompt": str, "completions": [str, ...], "ranks": [int, ...], "labeller": str, "time": str}
    {"prompt": str, "completions": [str, ...], "special": str,      "labeller": str, "time": str}

- Exactly one of ``ranks`` and ``special``.
- ``ranks[i]`` is ``completions[i]``'s rank, 1 = best; equal ranks are a tie. Ranks are *standard
  competition* ranks ("1224"): rank ``r`` shared by ``k`` tied completions is followed by rank ``r + k``,
  so every rank is ``1 + (the number of completions ranked better)``. ``[1, 2, 2, 4]`` and ``[1, 1, 3]``
  are ranks; ``[1, 3, 3]`` (should be ``[1, 2, 2]``), ``[1, 1, 2]`` (``[1, 1, 3]``) and ``[2, 2]``
  (``[1, 1]``) are refused, naming the form expected.
- ``special``: one of :data:`SPECIAL_LABELS` (``all_unusable``: no completion is fit to rank;
  ``prompt_unsafe``: the prompt itself should not be answered; ``skip``: the labeller passed), or one of
  the extra labels a config adds (``train_rm.special_labels``). Special rows make no pairs; ``train-rm``
  counts them.
- ``labeller``: who ranked (a non-empty string); ``time``: when, an ISO-8601 date-time
  (``2026-03-01T12:00:00Z``).
- Other keys are ignored.

A row with none of ``labeller``, ``time`` and ``special`` is a row of the earlier format, read as before:
``prompt`` may be missing (empty), and ranks may be any finite numbers (or numeric strings), lower is
better, equal is a tie. The testbed and the constitution stage write such rows.

Every problem raises :class:`~detoxrl.errors.DataError` naming the file and the row (its line in a
``.jsonl`` file).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from detoxrl.data.files import read_rows
from detoxrl.errors import DataError

SPECIAL_LABELS: dict[str, str] = {
    "all_unusable": "every candidate is unusable, so an order among them would teach nothing",
    "prompt_unsafe": "the prompt itself should not be used (unsafe, abusive, private data, not a dialogue)",
    "skip": "you cannot judge this item; someone else may",
}
"""The labels a row may carry instead of ranks, with what each means (the labelling page's instructions
say when to use which); a config may add more (``train_rm.special_labels``)."""

NEW_KEYS = ("labeller", "time", "special")
"""Keys that mark a row of the current format (a row with none of them is read as an earlier one)."""


@dataclass(frozen=True)
class Ranking:
    """One row of a rankings file, checked."""

    prompt: str
    completions: tuple[str, ...]
    ranks: tuple[float, ...] | None  # None: a special label
    special: str | None
    labeller: str | None  # None: a row of the earlier format
    time: str | None
    row: str  # "row 7": where it is, for messages

    @property
    def item(self) -> tuple[str, tuple[str, ...]]:
        """What was ranked: the prompt and its completions in any order (the same item for every labeller)."""
        return self.prompt, tuple(sorted(self.completions))


def special_labels(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The names of :data:`SPECIAL_LABELS` followed by the ``extra`` ones not already among them."""
    out = list(SPECIAL_LABELS)
    out += [s for s in extra if s not in out]
    return tuple(out)


def competition_ranks(values: Sequence[float]) -> list[int]:
    """Standard competition ranks of ``values``, lower = better: ``rank_i = 1 + #{j : v_j < v_i}``.

    ``[0.1, 0.5, 0.5, 0.9] → [1, 2, 2, 4]``; dense ranks ``[1, 1, 2] → [1, 1, 3]``.
    """
    return [1 + sum(1 for w in values if w < v) for v in values]


def now_iso() -> str:
    """The current UTC time as an ISO-8601 string, to the second (``2026-03-01T12:00:00Z``)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """``value`` as a datetime if it is an ISO-8601 date-time string (a trailing ``Z`` allowed), else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


# ------------------------------------------------------------------------------------------ checks
def _row_label(where: str) -> str:
    """``row 7`` out of ``ranks.jsonl row 7``."""
    return " ".join(where.split(" ")[-2:])


def _whole_rank(v, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
        raise DataError(f"{where}: rank {v!r} is not a whole number (ranks are 1 = best, 2, ...)")
    return int(v)


def check_ranks(ranks: Sequence, n: int, where: str) -> tuple[int, ...]:
    """Whole numbers in ``1..n``, in standard competition form; DataError naming ``where`` otherwise."""
    values = [_whole_rank(v, where) for v in ranks]
    for v in values:
        if not 1 <= v <= n:
            raise DataError(f"{where}: rank {v} is out of range: the ranks of {n} completions are 1..{n}")
    expected = competition_ranks(values)
    if values != expected:
        raise DataError(f"{where}: ranks {values} are not standard competition ranks; expected {expected} "
                        "(tied completions share a rank and the next rank skips the tied places: 1, 2, 2, 4)")
    return tuple(values)


def _legacy_rank(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise DataError(f"{where}: rank {v!r} is not a number")
    try:
        x = float(v)
    except ValueError:
        raise DataError(f"{where}: rank {v!r} is not a number") from None
    if not math.isfinite(x):
        raise DataError(f"{where}: rank {v!r} is not a finite number")
    return x


def _check_consistent(completions: Sequence[str], ranks: Sequence[float], where: str) -> None:
    """The same completion text twice in one row must have the same rank."""
    seen: dict[str, float] = {}
    for comp, value in zip(completions, ranks):
        if comp in seen and seen[comp] != value:
            raise DataError(f"{where}: the same completion is ranked both {seen[comp]:g} and {value:g} "
                            "(a contradictory ranking: it would be preferred to itself)")
        seen[comp] = value


def _legacy(row: dict, where: str) -> Ranking:
    comps, ranks = row.get("completions"), row.get("ranks")
    if not isinstance(comps, list) or not isinstance(ranks, list):
        raise DataError(f"{where}: `completions` and `ranks` must both be lists")
    if len(comps) != len(ranks):
        raise DataError(f"{where}: {len(comps)} completions but {len(ranks)} ranks")
    values = [_legacy_rank(r, where) for r in ranks]
    texts = [str(c) for c in comps]
    _check_consistent(texts, values, where)
    return Ranking(str(row.get("prompt") or ""), tuple(texts), tuple(values), None, None, None, _row_label(where))


def _current(row: dict, where: str, specials: Collection[str]) -> Ranking:
    prompt, comps = row.get("prompt"), row.get("completions")
    if not isinstance(prompt, str):
        raise DataError(f"{where}: `prompt` must be a string")
    if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
        raise DataError(f"{where}: `completions` must be a non-empty list of strings")
    ranks, special = row.get("ranks"), row.get("special")
    if ranks is not None and special is not None:
        raise DataError(f"{where}: has both `ranks` and `special`; give exactly one")
    if ranks is None and special is None:
        raise DataError(f"{where}: has neither `ranks` nor `special`; give exactly one")
    if special is not None and special not in specials:
        raise DataError(f"{where}: unknown special label {special!r} (known: {', '.join(specials)})")
    values = None
    if ranks is not None:
        if not isinstance(ranks, list):
            raise DataError(f"{where}: `ranks` must be a list of whole numbers")
        if len(ranks) != len(comps):
            raise DataError(f"{where}: {len(comps)} completions but {len(ranks)} ranks")
        values = check_ranks(ranks, len(comps), where)
        _check_consistent(comps, values, where)
    labeller, time = row.get("labeller"), row.get("time")
    if not isinstance(labeller, str) or not labeller.strip():
        raise DataError(f"{where}: `labeller` must be a non-empty string (who ranked)")
    if parse_time(time) is None:
        shown = "is missing" if time is None else f"{time!r} is not an ISO-8601 date-time"
        raise DataError(f"{where}: `time` {shown} (when it was ranked, e.g. 2026-03-01T12:00:00Z)")
    return Ranking(prompt, tuple(comps), values, special, labeller, time, _row_label(where))


def parse_ranking(row: dict, where: str, specials: Collection[str] = SPECIAL_LABELS) -> Ranking:
    """Check one row (``where``, e.g. ``ranks.jsonl row 7``, heads every message) and return it."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with prompt, completions and ranks")
    if any(k in row for k in NEW_KEYS):
        return _current(row, where, specials)
    return _legacy(row, where)


def parse_rankings(rows: Sequence[dict], source: str = "<rankings>",
                   specials: Collection[str] = SPECIAL_LABELS) -> list[Ranking]:
    """Every row checked; a row is named by its ``_row`` key (its line, from :func:`read_rows`) or position."""
    out = []
    for k, row in enumerate(rows, 1):
        number = row.get("_row", k) if isinstance(row, dict) else k
        out.append(parse_ranking(row, f"{source} row {number}", specials))
    return out


def read_rankings(path: str | Path, specials: Collection[str] = SPECIAL_LABELS) -> list[Ranking]:
    """Every row of a rankings file (``.jsonl``, or a ``.json`` list), checked."""
    return parse_rankings(read_rows(path), str(path), specials)


def ranking_row(prompt: str, completions: Sequence[str], labeller: str, *, ranks: Sequence[int] | None = None,
                special: str | None = None, time: str | None = None,
                specials: Collection[str] = SPECIAL_LABELS, where: str = "ranking") -> dict:
    """A row of the current format, checked as a reader would check it (for writers of rankings)."""
    row: dict = {"prompt": prompt, "completions": list(completions)}
    if ranks is not None:
        row["ranks"] = list(ranks)
    if special is not None:
        row["special"] = special
    row["labeller"] = labeller
    row["time"] = time or now_iso()
    parse_ranking(row, where, specials)
    return row
