"""The labelling batch, ``labels/batch.jsonl``: what ``detoxrl candidates`` writes and the page shows.

One JSON object per line::

    {"id": "3f2a9c0d1e4b5a67",            # item_id(prompt): the same prompt always has the same id
     "prompt": "Summarize the following conversation. ...",
     "completions": ["...", "...", "...", "..."],   # distinct; fewer than labels.n_candidates if the
                                                     # policy gave fewer distinct ones (batch_info.json)
     "scores": {"judge-name": [0.93, 0.12, ...]},   # each judge's score, one per completion (higher:
                                                     # better for the reward, as `detoxrl score` prints)
     "toxicity": {"judge-name": [0.02, 0.71, ...]}} # each judge's toxicity in [0, 1] (as eval reports)

Readers use ``id``, ``prompt`` and ``completions``; ``scores`` and ``toxicity`` are for the people and
tools that compare the judges with the rankings (the page does not show them, so they bias no one).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from detoxrl.config import Config
from detoxrl.errors import DataError
from detoxrl.utils import write_jsonl

BATCH = "batch.jsonl"
BATCH_INFO = "batch_info.json"
INSTRUCTIONS = "instructions.md"
RANKINGS = "rankings.jsonl"
"""The files of ``labels.output_dir``."""


def labels_dir(cfg: Config) -> Path:
    """``labels.output_dir``, resolved: where the batch, the instructions and the rankings live."""
    return cfg.path(cfg.labels.output_dir)


def item_id(prompt: str) -> str:
    """A stable id for a prompt: the first 16 hex digits of the SHA-256 of its UTF-8 text."""
    return hashlib.sha256(prompt.encode("utf-8")).hexdigest()[:16]


def completions_key(completions: list[str]) -> str:
    """A short digest of a list of completions: an item is done for a labeller only if what they ranked
    is what the batch holds now (a batch remade with other candidates is to be labelled again)."""
    return hashlib.sha256(json.dumps(completions, ensure_ascii=False).encode("utf-8")).hexdigest()[:16]


@dataclass
class BatchItem:
    id: str
    prompt: str
    completions: list[str]
    scores: dict[str, list[float]] = field(default_factory=dict)
    toxicity: dict[str, list[float]] = field(default_factory=dict)

    def to_row(self) -> dict:
        row = {"id": self.id, "prompt": self.prompt, "completions": self.completions, "scores": self.scores}
        if self.toxicity:
            row["toxicity"] = self.toxicity
        return row


def write_batch(path: str | Path, items: list[BatchItem]) -> None:
    """Write the batch atomically (a reader sees the old file or the new one, never half of one)."""
    write_jsonl(path, (it.to_row() for it in items))


def _check_row(row, where: str) -> BatchItem:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with id, prompt and completions")
    prompt, comps = row.get("prompt"), row.get("completions")
    if not isinstance(prompt, str) or not prompt.strip():
        raise DataError(f"{where}: `prompt` must be a non-empty string")
    if not isinstance(comps, list) or not comps or not all(isinstance(c, str) for c in comps):
        raise DataError(f"{where}: `completions` must be a non-empty list of strings")
    ident = row.get("id", item_id(prompt))
    if not isinstance(ident, str) or not ident:
        raise DataError(f"{where}: `id` must be a non-empty string")
    scores = row.get("scores") or {}
    if not isinstance(scores, dict) or any(not isinstance(v, list) or len(v) != len(comps) for v in scores.values()):
        raise DataError(f"{where}: `scores` must give each judge a list with one number per completion")
    return BatchItem(ident, prompt, list(comps), dict(scores), dict(row.get("toxicity") or {}))


def read_batch(path: str | Path) -> list[BatchItem]:
    """The items of a batch file, checked: each row's prompt and completions, unique ids."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no labelling batch at {path}: run `detoxrl candidates` first (or give --batch FILE)")
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path} line {n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not JSON ({exc.msg})") from None
            item = _check_row(row, where)
            if item.id in seen:
                raise DataError(f"{where}: id {item.id!r} is already used on line {seen[item.id]}")
            seen[item.id] = n
            items.append(item)
    if not items:
        raise DataError(f"{path}: the batch is empty")
    return items
