"""``detoxrl import-labels`` and ``detoxrl export-labels``: rankings from Label Studio and Argilla, and
batches to them.

- :func:`import_labels`: a Label Studio JSON export (:mod:`~detoxrl.feedback.label_studio`) or exported
  Argilla records (:mod:`~detoxrl.feedback.argilla`) → a rankings file (:mod:`detoxrl.data.rankings`),
  every row checked as ``train-rm`` will check it.
- :func:`export_labels`: a batch (``labels/batch.jsonl``, :mod:`~detoxrl.feedback.batch`) → tasks Label
  Studio imports, or records Argilla's ``dataset.records.log`` takes.

Errors name the file and the task, record or row.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from detoxrl.data.files import read_utf8
from detoxrl.data.rankings import SPECIAL_LABELS
from detoxrl.errors import DataError
from detoxrl.feedback.argilla import from_argilla, to_argilla
from detoxrl.feedback.batch import read_batch
from detoxrl.feedback.label_studio import from_label_studio, to_label_studio
from detoxrl.utils import write_json, write_jsonl

FORMATS = ("label-studio", "argilla")


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    return fmt


def read_export(path: str | Path) -> list:
    """An export file: one JSON document (a list), or JSON lines (one object per line)."""
    path = Path(path)
    text = read_utf8(path, "export file")
    try:
        data = json.loads(text)
        return data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        pass
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path} line {i}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not out:
        raise DataError(f"export file {path} is empty")
    return out


def import_labels(path: str | Path, fmt: str, output: str | Path | None = None,
                  specials: Collection[str] = SPECIAL_LABELS, question: str | None = None) -> tuple[Path, dict]:
    """Convert an export to a rankings file (default: beside it, ``<name>.rankings.jsonl``); return the
    path written and counts (rows, special labels, and what the tool's export held)."""
    path = Path(path)
    records = read_export(path)
    if check_format(fmt) == "label-studio":
        rows, counts = from_label_studio(records, str(path), specials)
    else:
        rows, counts = from_argilla(records, str(path), specials, question)
    if not rows:
        raise DataError(f"{path}: no labels to import ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    out = Path(output) if output is not None else path.with_name(f"{path.stem}.rankings.jsonl")
    write_jsonl(out, rows)
    special: dict[str, int] = {}
    for r in rows:
        if "special" in r:
            special[r["special"]] = special.get(r["special"], 0) + 1
    return out, {**counts, "rows": len(rows), "special": dict(sorted(special.items()))}


def export_labels(batch: str | Path, fmt: str, output: str | Path) -> tuple[Path, int]:
    """Write a batch as Label Studio tasks (a JSON list) or Argilla records (a JSON list); return the
    path and the number of items."""
    items = read_batch(batch)
    out = Path(output)
    tasks = to_label_studio(items) if check_format(fmt) == "label-studio" else to_argilla(items, str(batch))
    write_json(out, tasks)
    return out, len(items)
