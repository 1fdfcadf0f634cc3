"""Read labelled or ranked rows from jsonl, json or csv files, and texts from .txt files, with errors
that name file and row."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from detoxrl.errors import DataError


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a ``.jsonl``/``.json``/``.csv``/``.tsv`` file as dicts (each keeps its 1-based ``_row``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})") from None
    rows: list[dict] = []
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(text.splitlines(), delimiter="\t" if suffix == ".tsv" else ",")
        for n, row in enumerate(reader, 2):
            rows.append({**row, "_row": n})
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise DataError(f"{path} must hold a list of objects")
        rows = [{**r, "_row": n} for n, r in enumerate(data, 1)]
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} row {n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path} row {n}: expected a JSON object")
            rows.append({**row, "_row": n})
    if not rows:
        raise DataError(f"{path} holds no rows")
    return rows


def column(rows: list[dict], name: str, path: str | Path) -> list:
    """Values of column ``name``; DataError naming the first row that lacks it."""
    out = []
    for r in rows:
        if name not in r or r[name] is None:
            cols = sorted(k for k in r if k != "_row")
            raise DataError(f"{path} row {r['_row']}: no column {name!r} (columns: {cols})")
        out.append(r[name])
    return out


def read_texts(path: str | Path, what: str = "texts file") -> list[str]:
    """The texts of a ``.txt`` file: one per line, or, when the file has blank lines, one per block of
    lines between blank lines (so a text may span several lines)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text ({exc.reason})") from None
    lines = text.strip("\n").splitlines()
    if any(not ln.strip() for ln in lines):
        return [b.strip("\n") for b in re.split(r"\n[ \t]*\n", "\n".join(lines)) if b.strip()]
    return [ln for ln in lines if ln.strip()]
