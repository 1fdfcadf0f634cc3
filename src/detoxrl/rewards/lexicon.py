"""A judge from word lists, with matching that survives simple obfuscation.

Text and lexicon entries are normalised the same way: Unicode NFKD with accents dropped, lower case,
then, inside tokens that contain a letter, leetspeak is undone (``0→o 1→i 3→e 4→a 5→s 7→t @→a $→s
!→i |→i``). A token is a run of letters, digits and those symbols; every other character separates
tokens, so an entry matches whole tokens only (``hell`` never matches inside ``hello``).

A token matches an entry when, after normalisation, it is

1. the entry itself;
2. the entry plus a plural ``s`` (entries of 4+ letters), or ``es`` after s, x, z, ch, sh (so
   ``assess`` is not a plural of ``asses``);
3. the entry with letters repeated (``idiooot`` for ``idiot``): every run of a letter in the token is
   at least as long as the matching run in the entry, and some letter is repeated three times or
   more (entries of 4+ letters; so ``assess`` is not a stretched ``asses``, nor ``goood`` ``god``);
4. the entry masked with ``*`` (``b*rk`` for ``bark``): same length (4+), at least two letters, and at
   most half the characters masked.

Letters written apart (``i.d.i.o.t``, ``i d i o t``, ``i-d-i-o-t``) are joined when three or more
single-letter tokens follow each other with at most three separator characters between them; the
joined run matches if it equals an entry, or contains an entry of 4+ letters. Multi-word entries
match consecutive tokens, and also the words written together as one token.

Lexicon files hold one entry per line; ``#`` starts a comment; a line ``[hate]`` (any dimension of
:data:`detoxrl.config.DIMENSIONS`) puts the following entries in that dimension (default
``profanity``); ``entry<TAB>dimension`` sets it for one line.

Scores: ``toxicity`` is 1 when anything matches, else 0; ``dimensions[d]`` is 1 when an entry of
dimension ``d`` matches; ``severity = 1 − 0.5^n`` for ``n`` distinct matched entries (0.5, 0.75,
0.875, …); ``score`` is the clean-probability ``1 − toxicity`` (or its log/logit with ε = 0.01).
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping
from itertools import groupby
from pathlib import Path
from typing import Literal

import better_profanity
import torch

from detoxrl.config import DIMENSIONS
from detoxrl.errors import ConfigError, DataError
from detoxrl.rewards.base import Judge, JudgeResult, prob_score, truncate_words

LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t",
                      "@": "a", "$": "s", "!": "i", "|": "i"})
_TOKEN = re.compile(r"[a-z0-9@$!|*]+")
_SEPARATORS = set(" \t\n.-_,/\\~'\"`:;+=·•")
_MIN_FUZZY = 4
_ES_STEMS = ("s", "x", "z", "ch", "sh")
_TRIPLE = re.compile(r"([a-z])\1\1")
"""Plural, stretched and masked matches only for entries at least this long (fewer false positives)."""


def fold(text: str) -> str:
    """NFKD, drop combining marks (accents), lower case."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()


def deleet(token: str) -> str:
    """Undo leetspeak in a token that contains at least one letter; other tokens are unchanged."""
    return token.translate(LEET) if any("a" <= ch <= "z" for ch in token) else token


def runs(word: str) -> list[tuple[str, int]]:
    """Run-length encoding: ``runs("fool") == [("f", 1), ("o", 2), ("l", 1)]``."""
    return [(ch, len(list(g))) for ch, g in groupby(word)]


def normalise_entry(entry: str) -> tuple[str, ...]:
    """An entry's tokens, normalised exactly like text tokens."""
    return tuple(deleet(t.strip("!|*")) for t in _TOKEN.findall(fold(entry)) if t.strip("!|*"))


def load_lexicon(path: str | Path) -> dict[str, str]:
    """Read a lexicon file into ``{entry: dimension}`` (format in the module docstring)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"lexicon file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"lexicon file {path} is not UTF-8 text ({exc.reason})") from None
    out: dict[str, str] = {}
    section = "profanity"
    for n, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip().lower()
            if section not in DIMENSIONS:
                raise DataError(f"{path}:{n}: unknown dimension [{section}]; known: {list(DIMENSIONS)}")
            continue
        entry, dim = (line.split("\t", 1) + [section])[:2] if "\t" in line else (line, section)
        dim = dim.strip().lower()
        if dim not in DIMENSIONS:
            raise DataError(f"{path}:{n}: unknown dimension {dim!r}; known: {list(DIMENSIONS)}")
        out[entry.strip()] = dim
    if not out:
        raise DataError(f"lexicon file {path} holds no entries")
    return out


def better_profanity_words() -> list[str]:
    """The word list that the ``better_profanity`` package ships (read at run time)."""
    path = Path(better_profanity.__file__).parent / "profanity_wordlist.txt"
    return [w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip()]


class Lexicon:
    """Compiled entries with the matching rules of the module docstring."""

    def __init__(self, entries: Mapping[str, str]):
        self.dimension_of: dict[str, str] = {}
        self.words: dict[str, str] = {}  # normalised single token -> original entry
        self.phrases: dict[str, list[tuple[tuple[str, ...], str]]] = defaultdict(list)
        for entry, dim in entries.items():
            toks = normalise_entry(entry)
            if not toks:
                continue
            self.dimension_of[entry] = dim
            if len(toks) == 1:
                self.words.setdefault(toks[0], entry)
            else:
                self.phrases[toks[0]].append((toks, entry))
                joined = "".join(toks)
                if len(joined) >= _MIN_FUZZY:
                    self.words.setdefault(joined, entry)
        self.by_shape: dict[str, list[str]] = defaultdict(list)
        self.by_len: dict[int, list[str]] = defaultdict(list)
        for w in self.words:
            if len(w) >= _MIN_FUZZY:
                self.by_shape["".join(ch for ch, _ in runs(w))].append(w)
                self.by_len[len(w)].append(w)

    # ------------------------------------------------------------------------------ one token
    def match_token(self, tok: str) -> str | None:
        """The entry a normalised token matches, or None."""
        words = self.words
        if tok in words:
            return words[tok]
        stem = tok[:-1]
        if tok.endswith("s") and len(stem) >= _MIN_FUZZY and not stem.endswith(_ES_STEMS) and stem in words:
            return words[stem]
        stem = tok[:-2]
        if tok.endswith("es") and len(stem) >= _MIN_FUZZY and stem.endswith(_ES_STEMS) and stem in words:
            return words[stem]
        if "*" in tok:
            return self._match_masked(tok)
        if not _TRIPLE.search(tok):  # stretching must be unmistakable: `assess` is not `asses`
            return None
        tr = runs(tok)
        for w in self.by_shape.get("".join(ch for ch, _ in tr), ()):
            if all(n_tok >= n_w for (_, n_tok), (_, n_w) in zip(tr, runs(w))):
                return words[w]
        return None

    def _match_masked(self, tok: str) -> str | None:
        stars = tok.count("*")
        letters = len(tok) - stars
        if len(tok) < _MIN_FUZZY or letters < 2 or stars > len(tok) // 2 or tok[0] == "*":
            return None
        for w in self.by_len.get(len(tok), ()):
            if all(a == "*" or a == b for a, b in zip(tok, w)):
                return self.words[w]
        return None

    def _candidates(self, raw: str) -> list[str]:
        """Readings of one raw token: as written, without edge punctuation, without ``*`` separators."""
        out = [deleet(raw.strip("!|*")), deleet(raw)]
        if raw.strip("@$!|*"):
            out.append(deleet(raw.strip("@$!|*")))
        if re.fullmatch(r"(?:[^*]\*)+[^*]", raw):  # i*d*i*o*t
            out.append(deleet(raw.replace("*", "")))
        return list(dict.fromkeys(c for c in out if c))

    # ------------------------------------------------------------------------------- a text
    def matches(self, text: str) -> list[str]:
        """Entries found in ``text``, each once, in order of first appearance."""
        if not text:
            return []
        folded = fold(text)
        spans = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(folded)]
        primary = [deleet(raw.strip("!|*")) for _, _, raw in spans]
        found: list[str] = []
        for i, (_, _, raw) in enumerate(spans):
            for cand in self._candidates(raw):
                hit = self.match_token(cand)
                if hit:
                    found.append(hit)
                    break
            for toks, entry in self.phrases.get(primary[i], ()):
                if tuple(primary[i : i + len(toks)]) == toks:
                    found.append(entry)
        found += self._spelled_out(folded, spans, primary)
        return list(dict.fromkeys(found))

    def _spelled_out(self, folded: str, spans: list, primary: list[str]) -> list[str]:
        """Entries written one letter at a time with separators (``i.d.i.o.t``)."""
        out: list[str] = []
        run: list[int] = []

        def flush() -> None:
            if len(run) >= 3:
                joined = "".join(primary[k] for k in run)
                if joined in self.words:
                    out.append(self.words[joined])
                else:
                    for a in range(len(joined)):
                        for b in range(len(joined), a + _MIN_FUZZY - 1, -1):
                            if joined[a:b] in self.words:
                                out.append(self.words[joined[a:b]])
            run.clear()

        for k, (start, _, _) in enumerate(spans):
            single = len(primary[k]) == 1 and primary[k].isalpha()
            if single and run:
                gap = folded[spans[run[-1]][1] : start]
                if not (0 < len(gap) <= 3 and all(ch in _SEPARATORS for ch in gap)):
                    flush()
            if single:
                run.append(k)
            else:
                flush()
        flush()
        return out


class LexiconJudge(Judge):
    """A judge that flags texts containing lexicon entries (scores in the module docstring)."""

    def __init__(self, name: str, entries: Mapping[str, str] | Iterable[str], *,
                 identity_words: Iterable[str] = (), threshold: float = 0.5,
                 score: Literal["logit", "prob", "logprob"] = "prob", batch_size: int = 256,
                 max_length: int = 512) -> None:
        if not isinstance(entries, Mapping):
            entries = {w: "profanity" for w in entries}
        entries = dict(entries)
        for w in identity_words:
            entries[w] = "hate"
        if not entries:
            raise ConfigError(f"judge {name}: the lexicon is empty")
        self.name = name
        self.lexicon = Lexicon(entries)
        self.dimensions = tuple(d for d in DIMENSIONS if d in set(self.lexicon.dimension_of.values()))
        self.threshold = threshold
        self.score_kind = score
        self.batch_size = batch_size
        self.max_length = max_length
        """Words read per text."""

    @classmethod
    def from_source(cls, name: str, source: str, **kwargs) -> LexiconJudge:
        """``source`` is a lexicon file, or ``better-profanity`` for that package's list."""
        if source.replace("_", "-") == "better-profanity":
            return cls(name, better_profanity_words(), **kwargs)
        return cls(name, load_lexicon(source), **kwargs)

    def matches(self, text: str) -> list[str]:
        """Lexicon entries found in ``text`` (original spelling, each once)."""
        return self.lexicon.matches(truncate_words(text, self.max_length))

    def _score_batch(self, texts: list[str], prompts: list[str] | None) -> JudgeResult:
        found = [self.matches(t) for t in texts]
        tox = torch.tensor([1.0 if f else 0.0 for f in found])
        dims = {d: torch.tensor([1.0 if any(self.lexicon.dimension_of[e] == d for e in f) else 0.0
                                 for f in found]) for d in self.dimensions}
        severity = torch.tensor([1.0 - 0.5 ** len(f) for f in found])
        score = prob_score(1 - tox, self.score_kind, eps=0.01)
        return JudgeResult(self.name, score, tox, dims, severity, self.threshold)
