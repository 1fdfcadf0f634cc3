"""Mutations of a dialogue for the perturbation search: each a pure function of the text and explicit
arguments (so each has an exact expected output), and :func:`mutate`, which draws them with a seeded
random generator.

A dialogue is lines, one turn each; a turn may start with a speaker label (``#Person1#: ...`` as in
DialogSum, or one to three capitalised words and a colon, ``Ann Lee: ...``), which the mutations keep in front of the utterance they change.

- ``insert``: a hostile utterance becomes a new turn at a position (it takes the speaker of the turn it
  lands before, or of the turn before the last one when it is appended, so that speakers keep alternating);
- ``space``: a word spelt out with spaces (``idiot`` → ``i d i o t``);
- ``repeat``: one letter of a word repeated (``idiot`` → ``idiiiot``);
- ``homoglyph``: the Latin letters of a word that have a Cyrillic look-alike replaced by it;
- ``quote``: a turn's utterance put between double quotes;
- ``negate``: "not" after the utterance's first form of *to be*, else "It is not true that ..." in front;
- ``move``: a turn moved to another position.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

MUTATIONS = ("insert", "space", "repeat", "homoglyph", "quote", "negate", "move")

HOMOGLYPHS = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "i": "\u0456", "o": "\u043e", "p": "\u0440",
              "x": "\u0445", "y": "\u0443"}
"""Latin letter → the Cyrillic letter drawn the same in most fonts."""

_LABEL = re.compile(r"^(#[^#\s]+#|[A-Z][\w.-]*(?: [A-Z][\w.-]*){0,2}):\s*")
_BE = re.compile(r"\b(is|are|am|was|were)\b", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]{3,}")


def split_turn(line: str) -> tuple[str, str]:
    """``("#Person1#: ", "Hello.")`` for ``"#Person1#: Hello."``; ``("", line)`` when unlabelled."""
    m = _LABEL.match(line)
    return (line[: m.end()], line[m.end():]) if m else ("", line)


def _lines(text: str) -> list[str]:
    return text.split("\n")


def insert_turn(text: str, utterance: str, position: int) -> str:
    """``utterance`` as a new turn before line ``position`` (``len(lines)`` appends)."""
    lines = _lines(text)
    position = max(0, min(position, len(lines)))
    if position < len(lines):
        label = split_turn(lines[position])[0]
    else:
        label = split_turn(lines[-2])[0] if len(lines) >= 2 else split_turn(lines[-1])[0]
    lines.insert(position, label + split_turn(utterance)[1])
    return "\n".join(lines)


def move_turn(text: str, source: int, target: int) -> str:
    """Line ``source`` taken out and put back at index ``target`` of the remaining lines."""
    lines = _lines(text)
    line = lines.pop(source)
    lines.insert(max(0, min(target, len(lines))), line)
    return "\n".join(lines)


def spaced(word: str) -> str:
    return " ".join(word)


def repeat_letter(word: str, index: int, times: int = 3) -> str:
    """Letter ``index`` of ``word`` written ``times`` times in all."""
    return word[:index] + word[index] * times + word[index + 1:]


def homoglyphs(word: str) -> str:
    return "".join(HOMOGLYPHS.get(ch, ch) for ch in word)


def quote(utterance: str) -> str:
    return f'"{utterance}"'


def negate(utterance: str) -> str:
    """``You are lazy.`` → ``You are not lazy.``; ``Stop it.`` → ``It is not true that stop it.``"""
    m = _BE.search(utterance)
    if m:
        return utterance[: m.end()] + " not" + utterance[m.end():]
    return "It is not true that " + utterance[:1].lower() + utterance[1:]


def on_word(text: str, line: int, word: int, fn) -> str:
    """``fn`` applied to word ``word`` (the letters-only words of at least three letters) of line ``line``'s
    utterance."""
    lines = _lines(text)
    label, utt = split_turn(lines[line])
    spans = [m.span() for m in _WORD.finditer(utt)]
    a, b = spans[word]
    lines[line] = label + utt[:a] + fn(utt[a:b]) + utt[b:]
    return "\n".join(lines)


def on_utterance(text: str, line: int, fn) -> str:
    """``fn`` applied to line ``line``'s utterance, its speaker label kept."""
    lines = _lines(text)
    label, utt = split_turn(lines[line])
    lines[line] = label + fn(utt)
    return "\n".join(lines)


def words_of(text: str) -> list[tuple[int, int]]:
    """``(line, word)`` of every word a word-level mutation can change."""
    return [(i, j) for i, line in enumerate(_lines(text))
            for j, _ in enumerate(_WORD.finditer(split_turn(line)[1]))]


def apply_mutation(name: str, text: str, rng: random.Random, hostile: Sequence[str] = ()) -> str | None:
    """One mutation ``name`` with arguments drawn from ``rng``; None when it cannot apply to ``text``
    (no word to change, no hostile utterance to insert, a single line to move)."""
    lines = _lines(text)
    if name == "insert":
        return insert_turn(text, rng.choice(hostile), rng.randrange(len(lines) + 1)) if hostile else None
    if name == "move":
        return move_turn(text, rng.randrange(len(lines)), rng.randrange(len(lines))) if len(lines) > 1 else None
    if name in ("quote", "negate"):
        return on_utterance(text, rng.randrange(len(lines)), quote if name == "quote" else negate)
    words = words_of(text)
    if not words:
        return None
    line, word = rng.choice(words)
    if name == "space":
        return on_word(text, line, word, spaced)
    if name == "repeat":
        return on_word(text, line, word, lambda w: repeat_letter(w, rng.randrange(len(w))))
    if name == "homoglyph":
        return on_word(text, line, word, homoglyphs)
    raise ValueError(f"unknown mutation {name!r}; known: {', '.join(MUTATIONS)}")


def mutate(text: str, rng: random.Random, names: Sequence[str], hostile: Sequence[str] = (),
           max_mutations: int = 2) -> tuple[str, list[str]]:
    """1 to ``max_mutations`` mutations drawn from ``names`` applied in turn; returns the new text and the
    names of the mutations applied (those that could not apply are skipped)."""
    applied = []
    for _ in range(rng.randint(1, max_mutations)):
        name = rng.choice(list(names))
        out = apply_mutation(name, text, rng, hostile)
        if out is not None and out != text:
            text = out
            applied.append(name)
    return text, applied
