"""Critique and revision examples for multi-task SFT, from summaries labelled per principle.

The labels file (``sft.tasks.labels_file``; the testbed writes ``data/summary_labels_{train,test}.jsonl``,
see :mod:`detoxrl.testbed.summary_labels`) is JSON lines::

    {"summary": "...", "gold": "<the clean summary>", "labels": {"insult": true, ...},
     "answers": {"insult": "yes because ...", ...},                        # optional
     "dialogue": "..."  or  "fname": "<id of a row of the testbed split named by `split`>"}

``sft.tasks.principles`` maps principle ids of the constitution to labels (``no-insults: insult``).
With ``n`` examples to make, each one draws a principle uniformly, then

- a **critique** example draws the answer (yes or no, one half each), then a summary with that label (or
  without it): the prompt is the critique request (:func:`~detoxrl.constitution.prompts.critique_request`),
  the target the row's answer for that label (default ``yes`` / ``no``);
- a **revision** example draws a summary that breaks the principle: the prompt is the revision request,
  the target the clean ``gold`` summary.

The draws are seeded; the same file, mapping and seed give the same examples.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from detoxrl.config import Config
from detoxrl.constitution.principles import Constitution, Principle, load_constitution
from detoxrl.constitution.prompts import critique_request, revision_request
from detoxrl.data.files import read_rows
from detoxrl.data.loaders import testbed_split_path
from detoxrl.errors import ConfigError, DataError


@dataclass
class Labelled:
    """One labelled summary of a dialogue."""

    summary: str
    gold: str
    dialogue: str
    labels: dict[str, bool]
    answers: dict[str, str] = field(default_factory=dict)
    variant: str = ""

    def answer(self, label: str) -> str:
        return self.answers.get(label) or ("yes" if self.labels[label] else "no")


@dataclass
class TaskPair:
    """A (prompt, target) pair of a task: ``critique`` or ``revision`` of ``principle``."""

    prompt: str
    target: str
    task: str
    principle: str
    label: bool | None = None  # critique: the true answer (True = yes)


def principle_labels(cfg: Config, constitution: Constitution | None = None) -> list[tuple[Principle, str]]:
    """``(principle, label)`` for each entry of ``sft.tasks.principles``, in constitution order."""
    const = constitution or load_constitution(cfg.constitution.path, cfg)
    mapping = cfg.sft.tasks.principles
    unknown = sorted(set(mapping) - set(const.ids))
    if unknown:
        raise ConfigError(f"sft.tasks.principles: {unknown} are not principles of {const.source} "
                          f"(it has {const.ids})")
    return [(p, mapping[p.id]) for p in const.principles if p.id in mapping]


def _dialogues(cfg: Config | None, splits: set[str], path: Path) -> dict[str, str]:
    if cfg is None:
        raise DataError(f"{path}: rows name a `fname` but no `dialogue`, and no run says where dialogues are")
    out: dict[str, str] = {}
    for split in sorted(splits):
        split_file = testbed_split_path(cfg, split)
        out.update({str(r["fname"]): r["dialogue"] for r in read_rows(split_file) if "fname" in r})
    return out


def read_labelled(path: str | Path, labels: Sequence[str], cfg: Config | None = None) -> list[Labelled]:
    """The rows of a labels file (module docstring); each must give every label of ``labels``."""
    path = Path(path)
    rows = read_rows(path)
    need = {str(r.get("split", "train")) for r in rows if not isinstance(r.get("dialogue"), str)}
    dialogues = _dialogues(cfg, need, path) if need else {}
    out = []
    for r in rows:
        where = f"{path} row {r['_row']}"
        for key in ("summary", "gold"):
            if not isinstance(r.get(key), str):
                raise DataError(f"{where}: `{key}` must be a string")
        lab = r.get("labels")
        if not isinstance(lab, dict) or any(not isinstance(lab.get(k), bool) for k in labels):
            raise DataError(f"{where}: `labels` must give true or false for each of {list(labels)}")
        dialogue = r.get("dialogue")
        if not isinstance(dialogue, str):
            dialogue = dialogues.get(str(r.get("fname")))
            if dialogue is None:
                raise DataError(f"{where}: no `dialogue`, and fname {r.get('fname')!r} is not in the "
                                f"{r.get('split', 'train')} split")
        answers = r.get("answers") if isinstance(r.get("answers"), dict) else {}
        out.append(Labelled(r["summary"], r["gold"], dialogue, {k: lab[k] for k in labels},
                            {k: str(v) for k, v in answers.items() if k in labels}, str(r.get("variant", ""))))
    return out


def _pools(rows: Sequence[Labelled], label: str) -> tuple[list[Labelled], list[Labelled]]:
    return [r for r in rows if r.labels[label]], [r for r in rows if not r.labels[label]]


def critique_pairs(rows: Sequence[Labelled], principles: Sequence[tuple[Principle, str]], n: int,
                   template: str, rng: random.Random) -> list[TaskPair]:
    """``n`` critique examples (module docstring)."""
    pools = {label: _pools(rows, label) for _, label in principles}
    out = []
    for _ in range(n):
        p, label = principles[rng.randrange(len(principles))]
        pos, neg = pools[label]
        yes = rng.random() < 0.5 if pos and neg else bool(pos)
        r = rng.choice(pos if yes else neg)
        out.append(TaskPair(critique_request(p, r.summary, r.dialogue, template), r.answer(label), "critique",
                            p.id, yes))
    return out


def revision_pairs(rows: Sequence[Labelled], principles: Sequence[tuple[Principle, str]], n: int,
                   template: str, rng: random.Random) -> list[TaskPair]:
    """``n`` revision examples: a summary that breaks the principle → its clean ``gold`` summary."""
    usable = [(p, label, _pools(rows, label)[0]) for p, label in principles]
    usable = [u for u in usable if u[2]]
    out = []
    for _ in range(n if usable else 0):
        p, _, pos = usable[rng.randrange(len(usable))]
        r = rng.choice(pos)
        out.append(TaskPair(revision_request(p, r.summary, r.dialogue, template), r.gold, "revision", p.id))
    return out


def task_pairs(cfg: Config, n_pairs: int, seed: int) -> list[TaskPair]:
    """The critique and revision examples of ``sft.tasks`` for an SFT set of ``n_pairs`` pairs."""
    t = cfg.sft.tasks
    principles = principle_labels(cfg)
    if not principles:
        return []
    rows = read_labelled(cfg.path(t.labels_file), [label for _, label in principles], cfg)
    if not rows:
        raise DataError(f"{cfg.path(t.labels_file)}: no labelled summaries")
    rng = random.Random(f"{seed}:sft-tasks")
    cs = cfg.constitution
    out = critique_pairs(rows, principles, round(t.critique_share * n_pairs), cs.critique_request, rng)
    return out + revision_pairs(rows, principles, round(t.revision_share * n_pairs), cs.revision_request, rng)


def counts(pairs: Sequence[TaskPair]) -> Mapping[str, int]:
    out: dict[str, int] = {}
    for p in pairs:
        key = f"{p.task}/{p.principle}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))
