"""The side-by-side table ``eval_table.csv``: one row per (prompt, sample), before and after.

Columns, in order (``<judge>`` stands for every configured judge's name):

``id, sample, dialogue, reference_summary, response_before, response_after, reward_before,
reward_after, reward_diff, toxic_before, toxic_after, length_before, length_after``, then
``toxicity_before[<judge>], toxicity_after[<judge>]`` for each judge.

``reward_*`` is the primary judge's score (higher = better) and ``reward_diff = reward_after −
reward_before``, exactly the seed recipe's comparison table. ``toxic_*`` is 1 when any judge flags the
response. Several references are joined with a blank line. Lengths count response tokens.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detoxrl.utils import atomic_write_text

BASE_COLUMNS = (
    "id", "sample", "dialogue", "reference_summary", "response_before", "response_after",
    "reward_before", "reward_after", "reward_diff", "toxic_before", "toxic_after",
    "length_before", "length_after",
)
REFERENCE_SEPARATOR = "\n\n"


def judge_columns(judge: str) -> tuple[str, str]:
    """The before/after toxicity columns of one judge."""
    return f"toxicity_before[{judge}]", f"toxicity_after[{judge}]"


def table_columns(judges: Sequence[str]) -> list[str]:
    cols = list(BASE_COLUMNS)
    for j in judges:
        cols.extend(judge_columns(j))
    return cols


def build_table_rows(prompts: list, judges: Sequence[str], primary: str,
                     texts_before: list[list[str]], texts_after: list[list[str]],
                     lengths_before: np.ndarray, lengths_after: np.ndarray,
                     judged_before: dict, judged_after: dict, thresholds: dict[str, float]) -> list[dict]:
    """One row per (prompt, sample) for ``eval_table.csv`` (the columns in the module docstring)."""
    rows = []
    for j in range(len(texts_before)):
        for i, p in enumerate(prompts):
            rb = float(judged_before[primary]["score"][j, i])
            ra = float(judged_after[primary]["score"][j, i])
            row = {
                "id": p.id, "sample": j, "dialogue": p.text,
                "reference_summary": REFERENCE_SEPARATOR.join(p.references),
                "response_before": texts_before[j][i], "response_after": texts_after[j][i],
                "reward_before": rb, "reward_after": ra, "reward_diff": ra - rb,
                "toxic_before": any(judged_before[n]["toxicity"][j, i] >= thresholds[n] for n in judges),
                "toxic_after": any(judged_after[n]["toxicity"][j, i] >= thresholds[n] for n in judges),
                "length_before": int(lengths_before[j, i]), "length_after": int(lengths_after[j, i]),
            }
            for n in judges:
                cb, ca = judge_columns(n)
                row[cb] = float(judged_before[n]["toxicity"][j, i])
                row[ca] = float(judged_after[n]["toxicity"][j, i])
            rows.append(row)
    return rows


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)


def table_csv(rows: Sequence[dict], judges: Sequence[str]) -> str:
    """The CSV text for ``rows`` (dicts keyed by :func:`table_columns`)."""
    cols = table_columns(judges)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in cols])
    return buf.getvalue()


def write_eval_table(path: str | Path, rows: Sequence[dict], judges: Sequence[str]) -> Path:
    """Write the table atomically (UTF-8, RFC 4180 quoting; texts may span lines)."""
    path = Path(path)
    atomic_write_text(path, table_csv(rows, judges))
    return path


def read_eval_table(path: str | Path) -> list[dict[str, str]]:
    """Rows of a written table as dicts of strings (numbers are not converted)."""
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def table_judges(header: Sequence[str]) -> list[str]:
    """Judge names found in a table header (from its ``toxicity_before[<judge>]`` columns)."""
    out = []
    for c in header:
        if c.startswith("toxicity_before[") and c.endswith("]"):
            out.append(c[len("toxicity_before["):-1])
    return out


def to_float(s: str | None) -> float:
    """A table cell as a float (``nan`` when empty or not a number)."""
    try:
        return float(s) if s not in (None, "") else math.nan
    except ValueError:
        return math.nan
