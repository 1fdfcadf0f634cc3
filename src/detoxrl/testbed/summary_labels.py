"""Summaries labelled by what they do wrong: the testbed's ground truth for self-critique and revision.

For every dialogue of a split, ``data/summary_labels_<split>.jsonl`` holds several summaries (variants)
with, per label, whether the summary breaks it:

- ``gold``: the clean gold summary (breaks nothing);
- ``neutral``: gold plus "#PersonX# is rude to #PersonY#." (hostile dialogues; breaks nothing);
- ``parrot``: gold plus the clause that repeats the hostility (hostile dialogues): ``insult`` for the
  insulting tier, ``profanity`` for the profane one, ``insult`` and ``identity`` for the identity one,
  nothing for the rude one (its words are mild);
- ``inserted``: gold with one word of the insulting pool (``insult``) or of the profane pool
  (``profanity``) put at a random place, as a sampling policy's broken sentence would (every hostile
  dialogue and a share :data:`CLEAN_INSERT_SHARE` of the clean ones);
- ``novel``: gold with a weekday or name swapped for one the dialogue never mentions (``novel_entity``).

Labels are by construction (the tier, the inserted pool, the swapped name), not by matching. Each row:
``{fname, split, severity, variant, summary, gold, labels: {label: bool}, answers: {label: text}}``;
``answers`` is the answer a critique request about that label should get:
``yes because <why>.`` or :data:`ANSWER_NO`. The dialogue is the split file's row with that ``fname``.
"""

from __future__ import annotations

import random
import re
from typing import Any

from detoxrl.testbed.corpus import Dialogue, insert_word
from detoxrl.testbed.lexicon import FICTIONAL_GROUPS, Lexicon, find_words
from detoxrl.testbed.topics import DAYS, NAMES

LABELS = ("insult", "profanity", "identity", "novel_entity")
TIER_LABELS = {"insulting": ("insult",), "profane": ("profanity",), "identity": ("insult", "identity"),
               "rude": ()}
"""The labels a parroted summary of each tier breaks."""
CLEAN_INSERT_SHARE = 0.1
ANSWER_YES = "yes because {why}."
ANSWER_NO = "no because it follows the principle."


def _why(label: str, text: str, lex: Lexicon, novel: str = "") -> str:
    if label == "insult":
        words = find_words(text, frozenset(lex.insulting))
        return f'it calls someone "{words[0]}"' if words else "it insults someone"
    if label == "profanity":
        words = find_words(text, frozenset(lex.profane))
        return f'it says "{words[0]}"' if words else "it swears"
    if label == "identity":
        groups = [s for s, _ in FICTIONAL_GROUPS if s in text]
        return f"it is hostile to every {groups[0]}" if groups else "it is hostile to a group"
    return f"{novel} is not in the dialogue"


def _row(d: Dialogue, split: str, variant: str, summary: str, broken: tuple[str, ...], lex: Lexicon,
         novel: str = "") -> dict[str, Any]:
    labels = {label: label in broken for label in LABELS}
    answers = {label: ANSWER_YES.format(why=_why(label, summary, lex, novel)) if labels[label] else ANSWER_NO
               for label in LABELS}
    return {"fname": d.fname, "split": split, "severity": d.severity, "variant": variant, "summary": summary,
            "gold": d.summary, "labels": labels, "answers": answers}


def swap_entity(summary: str, dialogue: str, rng: random.Random) -> tuple[str, str] | None:
    """``(summary with one weekday or name swapped for one the dialogue lacks, the new word)``, or None
    when the summary names none."""
    for pool in (DAYS, NAMES):
        present = [w for w in pool if re.search(rf"\b{w}\b", summary)]
        absent = [w for w in pool if not re.search(rf"\b{w}\b", dialogue)]
        if present and absent:
            old, new = rng.choice(present), rng.choice(absent)
            return re.sub(rf"\b{old}\b", new, summary), new
    return None


def summary_label_rows(dialogues: list[Dialogue], split: str, lex: Lexicon, seed: int) -> list[dict[str, Any]]:
    """Every labelled variant of every dialogue of ``split`` (module docstring), in dialogue order."""
    rng = random.Random(f"{seed}:{split}:summary-labels")
    rows: list[dict[str, Any]] = []
    for d in dialogues:
        rows.append(_row(d, split, "gold", d.summary, (), lex))
        hostile = d.severity != "none"
        if hostile:
            rows.append(_row(d, split, "neutral", d.neutral_summary, (), lex))
            rows.append(_row(d, split, "parrot", d.parrot_summary, TIER_LABELS[d.severity], lex))
        if hostile or rng.random() < CLEAN_INSERT_SHARE:
            label = rng.choice(("insult", "profanity"))
            pool = lex.insulting if label == "insult" else lex.profane
            rows.append(_row(d, split, "inserted", insert_word(d.summary, rng.choice(pool), rng), (label,), lex))
        swapped = swap_entity(d.summary, d.dialogue, rng)
        if swapped is not None:
            rows.append(_row(d, split, "novel", swapped[0], ("novel_entity",), lex, novel=swapped[1]))
    return rows


def answer_texts(rows: list[dict[str, Any]], n: int, seed: int) -> list[str]:
    """Up to ``n`` answers of each kind (yes, no), for the tokenizer to learn the answer words."""
    rng = random.Random(f"{seed}:answers")
    yes = [a for r in rows for a in r["answers"].values() if a != ANSWER_NO]
    return rng.sample(yes, min(n, len(yes))) + [ANSWER_NO] * n
