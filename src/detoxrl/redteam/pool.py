"""The hostile utterances the ``insert`` mutation draws from: turns of training dialogues that the
configured judges rate toxic.

The attacker reads no word list: it takes the first ``limit`` distinct utterances (speaker labels
removed) of the training dialogues, lets every judge score them, and keeps those that the success rule
calls toxic. No target generation is spent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from detoxrl.redteam.cases import fitness_of
from detoxrl.redteam.mutations import split_turn
from detoxrl.redteam.target import judge_all


def distinct_utterances(dialogues: Iterable[str], limit: int) -> list[str]:
    """The first ``limit`` distinct non-empty utterances of the dialogues' turns, in order."""
    seen: dict[str, None] = {}
    for text in dialogues:
        for line in text.split("\n"):
            utt = split_turn(line.strip())[1].strip()
            if utt and utt not in seen:
                seen[utt] = None
                if len(seen) >= limit:
                    return list(seen)
    return list(seen)


def hostile_utterances(dialogues: Iterable[str], judges: Sequence, thresholds: dict[str, float], rule: str,
                       limit: int) -> list[str]:
    """The utterances (of the first ``limit`` distinct ones) that the judges rate toxic by ``rule``."""
    utts = distinct_utterances(dialogues, limit)
    if not utts:
        return []
    scores = judge_all(judges, utts, utts)
    return [u for u, s in zip(utts, scores) if fitness_of(s, thresholds, rule) >= 0]
