"""Saving rankings so that nothing submitted is lost, and knowing where each labeller stopped.

Each submission is one ``write`` of a complete JSON line to ``rankings.jsonl`` opened for appending,
under a lock (a thread lock for the server's threads, and ``flock`` where the system has it, so that a
second server on the same file cannot interleave), then flushed and fsynced before the page is told
"saved". Rows already in the file are never rewritten. A line torn by a crash in the middle of a write
(the only way a partial line can appear) is moved to ``rankings.jsonl.torn`` when the file is next
opened, so every complete row is kept and the file stays valid JSON lines.

Which items a labeller has done is read from the file itself (at start, and again whenever it grew
other than by this store's own writes), so a reload, a closed tab or a restarted server resumes at the
first item of the batch that the labeller has not labelled. An item counts as done when a row has its
id and the same completions: a batch remade with other candidates for a prompt is labelled again.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from detoxrl.errors import DataError
from detoxrl.feedback.batch import BatchItem, completions_key
from detoxrl.feedback.rankings import SubmissionError
from detoxrl.utils import console

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the thread lock alone
    fcntl = None


def repair_torn_tail(path: Path) -> bool:
    """Move an incomplete last line (no newline, not JSON) to ``<name>.torn``; True if one was moved.

    A complete last row that only lacks its newline (a hand edit) gets the newline instead."""
    if not path.exists():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    cut = data.rfind(b"\n") + 1
    tail = data[cut:]
    try:
        json.loads(tail)
    except ValueError:
        with open(path.with_name(path.name + ".torn"), "ab") as fh:
            fh.write(tail + b"\n")
        os.truncate(path, cut)
        console.print(f"[yellow]warning:[/] {path}: an incomplete last line (a write cut short) was moved to "
                      f"{path.name}.torn; every complete row is kept", highlight=False)
        return True
    with open(path, "ab") as fh:
        fh.write(b"\n")
    return False


def _key(row: dict) -> tuple[str, str] | None:
    ident, comps = row.get("id"), row.get("completions")
    if isinstance(ident, str) and isinstance(comps, list):
        return ident, completions_key([str(c) for c in comps])
    return None


class RankingStore:
    """``rankings.jsonl``: append-only, one fsynced line per submission; who has done which item."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._done: dict[str, set[tuple[str, str]]] = {}
        self._size = -1
        with self._lock:
            repair_torn_tail(self.path)
            self._reload()

    def _reload(self) -> None:
        """Rebuild the index from the file (rows from other tools without labeller or id are kept, unused)."""
        done: dict[str, set[tuple[str, str]]] = {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{self.path} line {n}: not JSON ({exc.msg}); fix or remove that "
                                        "line") from None
                    key = _key(row) if isinstance(row, dict) else None
                    if key and isinstance(row.get("labeller"), str):
                        done.setdefault(row["labeller"], set()).add(key)
        self._done = done
        self._size = self.path.stat().st_size if self.path.exists() else 0

    def _refresh(self) -> None:
        size = self.path.stat().st_size if self.path.exists() else 0
        if size != self._size:  # written by someone else since (another server, an editor)
            self._reload()

    def is_done(self, labeller: str, item: BatchItem) -> bool:
        return (item.id, completions_key(item.completions)) in self._done.get(labeller, set())

    def done_ids(self, labeller: str, items: list[BatchItem]) -> list[str]:
        """The ids of ``items`` that ``labeller`` has labelled, in batch order."""
        with self._lock:
            self._refresh()
            return [it.id for it in items if self.is_done(labeller, it)]

    def append(self, row: dict) -> None:
        """Save one row (a :func:`~detoxrl.feedback.rankings.ranking_row`) durably; a second row for the
        same labeller and item is refused (409): the first one stands."""
        key = _key(row)
        if key is None or not isinstance(row.get("labeller"), str):
            raise ValueError("a ranking row needs id, completions and labeller")
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
        new_file = not self.path.exists()
        with self._lock, open(self.path, "ab") as fh:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            self._refresh()
            if key in self._done.get(row["labeller"], set()):
                raise SubmissionError(f"{row['labeller']} has already labelled this item; the first answer is kept",
                                      status=409)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            self._done.setdefault(row["labeller"], set()).add(key)
            self._size = fh.tell()
        if new_file:  # the file's name must survive a crash too
            _fsync_dir(self.path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - systems without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)
