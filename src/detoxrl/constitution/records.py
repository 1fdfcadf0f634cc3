"""Accepted revisions as training data: preference pairs and supervised (prompt, target) pairs.

- ``preferences.jsonl``: ``{"prompt", "completions": [revised, original], "ranks": [1, 2], "chosen",
  "rejected", "principles", "fixed", "mode", "batch"}`` — the rankings format of ``train-rm``
  (``train_rm.mode: rankings``, ``train_rm.train_file: {run_dir}/constitution/preferences.jsonl``).
- ``sft_pairs.jsonl``: ``{"prompt", "target", <data.text_column>, <sft.target_column>, "principles"}``
  — the supervised phase of Constitutional AI; ``sft.train_file`` can point at it directly (the text
  column holds the dialogue recovered from ``data.prompt_template``).

Rows are appended, one write per batch, so a resumed run keeps what was written before.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from detoxrl.constitution.revise import Revision
from detoxrl.data.prompts import text_from_prompt

PREFERENCES = "preferences.jsonl"
SFT_PAIRS = "sft_pairs.jsonl"


def preference_row(r: Revision, batch: int | None = None) -> dict:
    """A rankings row: the revision ranked first (chosen), the original second (rejected)."""
    row = {"prompt": r.prompt, "completions": [r.revised, r.original], "ranks": [1, 2],
           "chosen": r.revised, "rejected": r.original, "principles": list(r.violated),
           "fixed": r.fixed, "mode": r.mode}
    if batch is not None:
        row["batch"] = batch
    return row


def sft_row(r: Revision, template: str | None = None, text_column: str = "dialogue",
            target_column: str = "summary") -> dict:
    """A supervised pair: the prompt and its revised response as the target."""
    text = text_from_prompt(r.prompt, template) if template else None
    row = {"prompt": r.prompt, "target": r.revised}
    row[text_column] = text if text is not None else r.prompt
    row[target_column] = r.revised
    row["principles"] = list(r.violated)
    return row


def _append(path: Path, rows: Sequence[dict]) -> None:
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class RevisionRecorder:
    """Appends accepted revisions to ``preferences.jsonl`` and ``sft_pairs.jsonl`` in ``out_dir``.

    Under several processes each rank other than 0 writes its own ``*.rank<k>.jsonl`` files.
    """

    def __init__(self, out_dir: str | Path, *, template: str | None = None, text_column: str = "dialogue",
                 target_column: str = "summary", rank: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.template, self.text_column, self.target_column = template, text_column, target_column
        rank = int(os.environ.get("RANK", "0")) if rank is None else rank
        suffix = "" if rank == 0 else f".rank{rank}"
        self.preferences = self.out_dir / PREFERENCES.replace(".jsonl", f"{suffix}.jsonl")
        self.sft_pairs = self.out_dir / SFT_PAIRS.replace(".jsonl", f"{suffix}.jsonl")
        self.n_written = 0

    def write(self, revisions: Sequence[Revision], batch: int | None = None) -> int:
        """Append the accepted revisions; returns how many were written."""
        ok = [r for r in revisions if r.accepted]
        _append(self.preferences, [preference_row(r, batch) for r in ok])
        _append(self.sft_pairs, [sft_row(r, self.template, self.text_column, self.target_column) for r in ok])
        self.n_written += len(ok)
        return len(ok)
