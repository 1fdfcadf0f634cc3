"""Reading data files: the rows of a table (jsonl, json, csv, tsv, parquet) and the texts of a .txt file.

This is the one reader of tabular files; the example loaders (:mod:`detoxrl.data.loaders`), the judge
and reward-model files (:mod:`detoxrl.rewards`) and the prompts of ``detoxrl generate`` all use it.

Each row comes as a :class:`Row`: its 1-based number, where it is in the file (``line 3``,
``row 2 (line 3)``) and its data, or, when it cannot be read (undecodable bytes, invalid JSON, not an
object), a :class:`BadRow` that says why. Callers either stop at the first bad row
(:func:`read_rows`) or skip and count bad rows (the loaders' ``skip_bad_rows``). A problem with the
file as a whole (missing, empty, unreadable header) raises :class:`DataError` at once.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from detoxrl.errors import DataError

FORMATS = ("jsonl", "csv", "parquet")
"""The formats ``data.format`` may name."""
EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet",
              ".pq": "parquet"}


class BadRow(Exception):
    """A row-level problem; ``reason`` is the short key counted in skip mode, ``detail`` the message."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Row:
    number: int  # 1-based: the line of a jsonl file, the data row of a csv file, the item of an array
    where: str  # "line 3" / "row 2 (line 3)" / "row 3"
    data: dict | None
    error: BadRow | None = None
    line: int | None = None  # the line it starts on, in a text file

    @property
    def position(self) -> int:
        """The number a message names it by: its line in a text file, else its 1-based row."""
        return self.line if self.line is not None else self.number


# --------------------------------------------------------------------------------------- formats
def detect_format(path: Path, fmt: str = "auto") -> str:
    """The table format of ``path``: ``fmt`` itself, or the one its extension names."""
    if fmt not in ("auto", "dialogsum", "hub"):
        if fmt not in FORMATS:
            raise DataError(f"{path}: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        return fmt
    ext = path.suffix.lower()
    if ext not in EXTENSIONS:
        raise DataError(f"{path}: unknown format (extension {ext or 'none'!r}; use .jsonl, .csv or .parquet)")
    return EXTENSIONS[ext]


def read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"{path} is a folder, not a data file")
    data = path.read_bytes()
    if not data.strip():
        raise DataError(f"data file {path} is empty")
    return data


def has_surrogates(s: str) -> bool:
    """True if ``s`` holds bytes that were not UTF-8 (decoded with ``surrogateescape``)."""
    return any("\udc80" <= ch <= "\udcff" for ch in s)


# ------------------------------------------------------------------------------------ row readers
def _jsonl_rows(path: Path) -> Iterator[Row]:
    for i, raw in enumerate(read_bytes(path).split(b"\n"), start=1):
        if not raw.strip():
            continue
        where = f"line {i}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Row(i, where, None, BadRow("undecodable bytes", f"undecodable bytes at byte {exc.start} (not UTF-8)"), i)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield Row(i, where, None, BadRow("invalid JSON", f"invalid JSON ({exc.msg} at column {exc.colno})"), i)
            continue
        if not isinstance(obj, dict):
            yield Row(i, where, None, BadRow("not an object", f"expected a JSON object, got {type(obj).__name__}"), i)
            continue
        yield Row(i, where, obj, line=i)


def _json_rows(path: Path) -> Iterator[Row]:
    """A ``.json`` file: a JSON array of objects, or else JSON lines."""
    data = read_bytes(path)
    if not data.lstrip().startswith(b"["):
        yield from _jsonl_rows(path)
        return
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise DataError(f"{path} must hold a list of objects")
    for i, row in enumerate(obj, start=1):
        yield Row(i, f"row {i}", row)


def _csv_text(path: Path) -> str:
    text = read_bytes(path).decode("utf-8", errors="surrogateescape")
    return text[1:] if text.startswith("\ufeff") else text


def _csv_rows(path: Path, delimiter: str = ",") -> Iterator[Row]:
    reader = csv.reader(io.StringIO(_csv_text(path), newline=""), delimiter=delimiter)
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the csv header ({exc})") from None
    if any(has_surrogates(h) for h in header):
        raise DataError(f"{path}: line 1 (header): undecodable bytes (not UTF-8)")
    row_no = 0
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row_no += 1
            raise DataError(f"{path}: row {row_no} (line {line}): malformed csv ({exc})") from None
        if not values or all(not v.strip() for v in values):
            continue
        row_no += 1
        where = f"row {row_no} (line {line})"
        bad = [h for h, v in zip(header, values) if has_surrogates(v)]
        if bad:
            yield Row(row_no, where, None, BadRow("undecodable bytes", f"column '{bad[0]}': undecodable bytes (not UTF-8)"), line)
            continue
        # a short row lacks its last columns; an over-long row's extra cells are ignored
        yield Row(row_no, where, dict(zip(header, values)), line=line)
    if row_no == 0:
        raise DataError(f"data file {path} has a header but no rows")


def _tsv_rows(path: Path) -> Iterator[Row]:
    return _csv_rows(path, delimiter="\t")


def _parquet_module(path: Path):
    try:
        import pyarrow.parquet as pq  # lazy: pyarrow is optional (it comes with datasets)
    except ImportError:  # pragma: no cover - pyarrow comes with datasets
        raise DataError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    return pq


def _parquet_rows(path: Path) -> Iterator[Row]:
    read_bytes(path)
    pq = _parquet_module(path)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds
        raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    if table.num_rows == 0:
        raise DataError(f"data file {path} has no rows")
    for i, row in enumerate(table.to_pylist(), start=1):
        yield Row(i, f"row {i}", row)


_READERS = {"jsonl": _jsonl_rows, "json": _json_rows, "csv": _csv_rows, "tsv": _tsv_rows, "parquet": _parquet_rows}


def file_rows(path: Path, fmt: str = "auto") -> Iterator[Row]:
    """Rows of a table file, with their 1-based position; ``fmt`` as in :func:`detect_format`."""
    return _READERS[detect_format(path, fmt)](path)


def columns_of(path: Path, fmt: str) -> list[str] | None:
    """Column names a csv/tsv/parquet file declares (None for JSON, whose rows each have their own)."""
    if fmt in ("csv", "tsv"):
        text = read_bytes(path).decode("utf-8", errors="replace").lstrip("\ufeff")
        try:
            return next(csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ","))
        except StopIteration:
            return []
    if fmt == "parquet":
        pq = _parquet_module(path)
        try:
            return list(pq.read_schema(path).names)
        except Exception as exc:  # noqa: BLE001
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    return None


# ---------------------------------------------------------------------------------- plain rows
def read_rows(path: str | Path) -> list[dict]:
    """Every row of a table file as a dict with its ``_row`` (:attr:`Row.position`).

    The format comes from the extension (``.jsonl``, ``.json``, ``.csv``, ``.tsv``, ``.parquet``; any
    other is read as JSON lines). The first row that cannot be read raises :class:`DataError` naming
    the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    rows = []
    for row in _READERS[EXTENSIONS.get(path.suffix.lower(), "jsonl")](path):
        if row.error is not None:
            raise DataError(f"{path} row {row.position}: {row.error.detail}")
        rows.append({**row.data, "_row": row.position})
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


def read_utf8(path: str | Path, what: str) -> str:
    """A text file's content, with one clear error when it is missing or not UTF-8 (naming ``what`` it is)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{what} {path} is not UTF-8 text ({exc.reason})") from None


def read_texts(path: str | Path, what: str = "texts file") -> list[str]:
    """The texts of a ``.txt`` file: one per line, or, when the file has blank lines, one per block of
    lines between blank lines (so a text may span several lines)."""
    lines = read_utf8(path, what).strip("\n").splitlines()
    if any(not ln.strip() for ln in lines):
        return [b.strip("\n") for b in re.split(r"\n[ \t]*\n", "\n".join(lines)) if b.strip()]
    return [ln for ln in lines if ln.strip()]
