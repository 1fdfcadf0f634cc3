"""Load (dialogue, reference summaries) examples from DialogSum, the testbed, or any table.

Every loader checks each row. A bad row (a missing column, an empty or non-text field, undecodable
bytes, a line that is not valid JSON) raises :class:`DataError` naming the file, the 1-based row or
line and the column. With ``skip_bad_rows=True`` such rows are skipped instead, counted by reason in
:attr:`LoadResult.skip_reasons`, and reported in one warning line.

Supported sources:

- DialogSum in its own formats (``dialogsum.{train,dev,test}.jsonl``, or the hub's csv files): the
  train/dev schema ``fname, dialogue, summary, topic`` and the test schema ``fname, dialogue,
  summary1..3, topic1..3`` (every summary becomes a reference); or the hub id ``knkarthick/dialogsum``
  (columns ``id, dialogue, summary, topic``).
- Any jsonl / csv / parquet file with a column mapping (:func:`load_table`).
- The embedded testbed written by ``prepare`` (:func:`load_examples` with ``data.source: testbed``).

Files are read row by row by :mod:`detoxrl.data.files`; this module checks the rows and turns them
into :class:`Example` objects.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detoxrl.config import Config
from detoxrl.data.files import (
    EXTENSIONS,
    FORMATS,
    BadRow,
    Row,
    columns_of,
    detect_format,
    file_rows,
    has_surrogates,
    read_bytes,
)
from detoxrl.errors import DataError

log = logging.getLogger(__name__)

SPLIT_ALIASES = {
    "train": ("train",),
    "validation": ("validation", "dev", "val"),
    "dev": ("dev", "validation", "val"),
    "val": ("val", "validation", "dev"),
    "test": ("test",),
}
"""DialogSum calls its validation split ``dev``; the hub calls it ``validation``."""
_HUB_SPLIT = {"dev": "validation", "val": "validation"}
_SUMMARY_N = re.compile(r"^summary(\d+)$")


@dataclass
class Example:
    """One dialogue (or any text to respond to) with its reference summaries."""

    id: str
    text: str
    references: list[str]
    meta: dict = field(default_factory=dict)


@dataclass
class LoadResult:
    """The examples read from ``source`` and the bad rows that were skipped (by reason)."""

    examples: list[Example]
    skipped: int = 0
    skip_reasons: Counter = field(default_factory=Counter)
    source: str = ""


# ------------------------------------------------------------------------------------------ hub rows
def _hub_rows(dataset_id: str, split: str) -> Iterator[Row]:
    """Rows of a Hugging Face hub dataset split (``dev`` is asked for as ``validation``)."""
    try:
        from datasets import load_dataset  # lazy: datasets takes a second or two to import; only hub ids need it

        ds = load_dataset(dataset_id, split=_HUB_SPLIT.get(split, split))
    except Exception as exc:  # noqa: BLE001 - offline, unknown id, unknown split, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot load hub dataset {dataset_id} split {split!r}: {first}") from None
    if len(ds) == 0:
        raise DataError(f"hub dataset {dataset_id} split {split!r} has no rows")
    for i, row in enumerate(ds, start=1):
        yield Row(i, f"row {i}", dict(row))


# ------------------------------------------------------------------------------------ row checking
def _text_field(row: dict, column: str) -> str:
    """The value of a text column, or :class:`BadRow` if it is missing, not text, or empty."""
    if column not in row or row[column] is None:
        raise BadRow(f"missing column '{column}'", f"column '{column}' is missing")
    value = row[column]
    if not isinstance(value, str):
        raise BadRow(f"non-text '{column}'", f"column '{column}' is not text (got {type(value).__name__})")
    if has_surrogates(value):
        raise BadRow("undecodable bytes", f"column '{column}': undecodable bytes (not UTF-8)")
    if not value.strip():
        raise BadRow(f"empty '{column}'", f"column '{column}' is empty")
    return value


def _id_field(row: dict, column: str | None, default: str) -> str:
    if column is None:
        return default
    if column not in row or row[column] is None:
        raise BadRow(f"missing column '{column}'", f"column '{column}' is missing")
    value = row[column]
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise BadRow(f"non-text '{column}'", f"column '{column}' is not text or an integer")
    if isinstance(value, str) and not value.strip():
        raise BadRow(f"empty '{column}'", f"column '{column}' is empty")
    return str(value)


def table_example(row: dict, number: int, prefix: str, text_column: str, reference_columns: list[str],
                  id_column: str | None) -> Example:
    """An :class:`Example` from a row under a column mapping; other columns go to ``meta``."""
    text = _text_field(row, text_column)
    refs = [_text_field(row, c) for c in reference_columns]
    ex_id = _id_field(row, id_column, f"{prefix}-{number}")
    used = {text_column, *reference_columns, *([id_column] if id_column else [])}
    meta = {k: v for k, v in row.items() if k not in used}
    return Example(ex_id, text, refs, meta)


def dialogsum_example(row: dict, number: int, prefix: str) -> Example:
    """An :class:`Example` from a DialogSum row (train/dev schema, test schema, or the hub's).

    ``summary`` gives one reference; ``summary1``, ``summary2``, ... (test split) give several.
    The id is ``fname`` (own files) or ``id`` (hub). Other keys (``topic``, ...) go to ``meta``.
    """
    text = _text_field(row, "dialogue")
    if "summary" in row:
        ref_cols = ["summary"]
    else:
        numbered = sorted((int(m.group(1)), k) for k in row if (m := _SUMMARY_N.match(k)))
        if not numbered:
            raise BadRow("missing column 'summary'", "column 'summary' is missing")
        ref_cols = [k for _, k in numbered]
    refs = [_text_field(row, c) for c in ref_cols]
    id_col = "fname" if "fname" in row else ("id" if "id" in row else None)
    ex_id = _id_field(row, id_col, f"{prefix}-{number}")
    used = {"dialogue", *ref_cols, *([id_col] if id_col else [])}
    meta = {k: v for k, v in row.items() if k not in used}
    return Example(ex_id, text, refs, meta)


def _collect(rows: Iterable[Row], make, source: str, skip_bad_rows: bool, max_rows: int | None) -> LoadResult:
    """Turn rows into examples, raising on (or counting) bad rows; stop after ``max_rows`` examples."""
    result = LoadResult(examples=[], source=source)
    for row in rows:
        if max_rows is not None and len(result.examples) >= max_rows:
            break
        try:
            if row.error is not None:
                raise row.error
            result.examples.append(make(row.data, row.number))
        except BadRow as bad:
            if not skip_bad_rows:
                raise DataError(f"{source}: {row.where}: {bad.detail}") from None
            result.skipped += 1
            result.skip_reasons[bad.reason] += 1
    if result.skipped:
        reasons = ", ".join(f"{r}: {n}" for r, n in result.skip_reasons.most_common())
        log.warning("skipped %d bad row(s) in %s (%s)", result.skipped, source, reasons)
    if not result.examples and result.skipped:
        raise DataError(f"{source}: every row is bad ({result.skipped} skipped)")
    return result


def _check_columns(path: Path, fmt: str, needed: list[str]) -> None:
    """A csv/parquet file whose header lacks a needed column is bad as a whole (not row by row)."""
    cols = columns_of(path, fmt)
    if cols is None:
        return
    missing = [c for c in needed if c not in cols]
    if missing:
        raise DataError(f"{path}: row 1 (header): column '{missing[0]}' is missing (columns: {', '.join(cols)})")


# ------------------------------------------------------------------------------------- public API
def load_table(path: str | Path, fmt: str, text_column: str, reference_columns: list[str],
               id_column: str | None = None, skip_bad_rows: bool = False,
               max_rows: int | None = None) -> LoadResult:
    """Read a jsonl / csv / parquet file under a column mapping.

    ``fmt`` is ``auto`` (by extension), ``jsonl``, ``csv`` or ``parquet``. ``text_column`` is the text
    to respond to, ``reference_columns`` its references (all required), ``id_column`` an optional id
    (default ``<file stem>-<row>``). Columns outside the mapping go to ``Example.meta``.
    """
    path = Path(path)
    fmt = detect_format(path, fmt)
    read_bytes(path)
    needed = [text_column, *reference_columns, *([id_column] if id_column else [])]
    _check_columns(path, fmt, needed)
    make = lambda row, n: table_example(row, n, path.stem, text_column, list(reference_columns), id_column)  # noqa: E731
    return _collect(file_rows(path, fmt), make, str(path), skip_bad_rows, max_rows)


def find_split_file(folder: Path, split: str) -> Path:
    """The file of ``split`` in a DialogSum-style folder.

    Looks for ``*.{split}.jsonl``, ``{split}.jsonl``, ``*.{split}.csv``, ``{split}.csv`` (and parquet),
    trying each alias of the split name (``validation`` / ``dev``) in turn.
    """
    aliases = SPLIT_ALIASES.get(split, (split,))
    tried = []
    for name in aliases:
        for ext in ("jsonl", "csv", "parquet"):
            for pattern in (f"*.{name}.{ext}", f"{name}.{ext}"):
                tried.append(pattern)
                found = sorted(p for p in folder.glob(pattern) if p.is_file())
                if len(found) > 1:
                    raise DataError(f"{folder}: split {split!r} is ambiguous: {', '.join(p.name for p in found)}")
                if found:
                    return found[0]
    raise DataError(f"{folder}: no file for split {split!r} (looked for {', '.join(tried)})")


def looks_like_hub_id(source: str) -> bool:
    """``owner/name`` that is not a local path: a Hugging Face hub dataset id."""
    if Path(source).exists() or source.startswith((".", "/", "~")) or Path(source).suffix.lower() in EXTENSIONS:
        return False
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?", source))


def _local_file(source: str | Path, split: str) -> Path:
    """The local file for ``split``: ``source`` itself, its ``{split}`` filled in, or found in a folder."""
    raw = str(source)
    path = Path(raw.replace("{split}", split))
    if path.is_dir():
        return find_split_file(path, split)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    return path


def load_dialogsum(source: str | Path, split: str, *, skip_bad_rows: bool = False,
                   max_rows: int | None = None) -> LoadResult:
    """DialogSum's ``split`` from a hub id, a folder of its files, or one file.

    Split names: ``train``, ``validation`` (alias ``dev``), ``test``.
    """
    if isinstance(source, str) and looks_like_hub_id(source):
        label = f"{source}[{split}]"
        make = lambda row, n: dialogsum_example(row, n, f"{source}-{split}")  # noqa: E731
        return _collect(_hub_rows(source, split), make, label, skip_bad_rows, max_rows)
    path = _local_file(source, split)
    fmt = detect_format(path)
    cols = columns_of(path, fmt)
    if cols is not None:
        if "dialogue" not in cols:
            raise DataError(f"{path}: row 1 (header): column 'dialogue' is missing (columns: {', '.join(cols)})")
        if "summary" not in cols and not any(_SUMMARY_N.match(c) for c in cols):
            raise DataError(f"{path}: row 1 (header): column 'summary' is missing (columns: {', '.join(cols)})")
    make = lambda row, n: dialogsum_example(row, n, path.stem)  # noqa: E731
    return _collect(file_rows(path, fmt), make, str(path), skip_bad_rows, max_rows)


def dialogsum_texts(folder: str | Path) -> list[str]:
    """Every dialogue and reference summary in a folder of DialogSum's files (each of its train, dev and
    test splits that is there): the corpus the full-size stand-ins' tokenizers are trained on."""
    path = Path(folder)
    if not path.is_dir():
        raise DataError(f"DialogSum folder {path} does not exist (give its dialogsum.*.jsonl files' folder)")
    texts: list[str] = []
    for split in ("train", "dev", "test"):
        try:
            found = find_split_file(path, split)
        except DataError as exc:
            if "ambiguous" in str(exc):
                raise
            continue
        for ex in load_dialogsum(found, split).examples:
            texts += [ex.text, *ex.references]
    if not texts:
        raise DataError(f"{path}: no DialogSum split file (dialogsum.train/dev/test.jsonl, .csv or .parquet)")
    return texts


def _uses_dialogsum_columns(cfg: Config) -> bool:
    d = cfg.data
    return d.format == "dialogsum" or (
        d.format in ("auto", "hub") and d.text_column == "dialogue" and d.reference_columns == ["summary"]
        and d.id_column is None
    )


def testbed_split_path(cfg: Config, split: str) -> Path:
    """Where ``prepare`` writes the testbed's ``split`` (``train``, ``test``, ``sft_train``, ...)."""
    return cfg.path(f"{{run_dir}}/testbed/data/{split}.jsonl")


def load_examples(cfg: Config, split: str) -> LoadResult:
    """The examples of ``split`` for a run, from wherever ``cfg.data`` says.

    - ``testbed``: ``{run_dir}/testbed/data/{split}.jsonl`` in DialogSum's schema; extra keys
      (``severity``, ``offensive_words``, ...) go to ``meta``.
    - a hub id: DialogSum's columns (default mapping) or the configured column mapping.
    - a local file or folder (``{split}`` in the path is filled in): by extension / ``data.format``.

    ``data.max_train_rows`` / ``data.max_eval_rows`` cap the train / eval split.
    """
    d = cfg.data
    max_rows = d.max_train_rows if split == d.train_split else d.max_eval_rows if split == d.eval_split else None
    if d.source == "testbed":
        path = testbed_split_path(cfg, split)
        if not path.exists():
            raise DataError(f"testbed split {split!r} not found at {path}: run `detoxrl prepare` first")
        make = lambda row, n: dialogsum_example(row, n, f"testbed-{split}")  # noqa: E731
        return _collect(file_rows(path, "jsonl"), make, str(path), d.skip_bad_rows, max_rows)
    source = cfg.resolve(d.source)
    hub = d.format == "hub" or (d.format in ("auto", "dialogsum") and looks_like_hub_id(source))
    if _uses_dialogsum_columns(cfg):
        if hub:
            make = lambda row, n: dialogsum_example(row, n, f"{source}-{split}")  # noqa: E731
            return _collect(_hub_rows(source, split), make, f"{source}[{split}]", d.skip_bad_rows, max_rows)
        return load_dialogsum(_local_file(source, split), split, skip_bad_rows=d.skip_bad_rows, max_rows=max_rows)
    if hub:
        make = lambda row, n: table_example(row, n, f"{source}-{split}", d.text_column,  # noqa: E731
                                            list(d.reference_columns), d.id_column)
        return _collect(_hub_rows(source, split), make, f"{source}[{split}]", d.skip_bad_rows, max_rows)
    fmt = d.format if d.format in FORMATS else "auto"
    return load_table(_local_file(source, split), fmt, d.text_column, list(d.reference_columns), d.id_column,
                      skip_bad_rows=d.skip_bad_rows, max_rows=max_rows)


def examples_to_rows(examples: list[Example]) -> list[dict[str, Any]]:
    """Plain dicts (``id, text, references, meta``) for writing examples back to jsonl."""
    return [{"id": e.id, "text": e.text, "references": list(e.references), "meta": dict(e.meta)} for e in examples]
