"""The testbed's offensive vocabulary, read at run time from the word list ``better_profanity`` ships.

The project's source names no offensive word. The list is read from the installed package
(``profanity_wordlist.txt``); single alphabetic words of 3–12 letters are kept, and the pools per
hostility tier are the words whose SHA-256 digest (first 16 hex digits) is in an allow-list below.
The allow-lists were chosen once by reading the list: general insults one can call a person
(*insulting*) and expletives (*profane*, as exclamations or as modifiers). Slurs against real groups
and explicit terms are deliberately left out: identity-based hostility in the testbed targets the
fictional groups of :data:`FICTIONAL_GROUPS` and uses the insulting pool.

The *rude* tier uses mild, non-offensive words (:data:`RUDE_WORDS`) that are not in the lexicon.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import better_profanity

from detoxrl.errors import DataError

WORD_RE = re.compile(r"^[a-z]{3,12}$")

_INSULTING = frozenset("""
06a1d8bf7fc210de 095080134d6cf49a 0cbd443a1d704e64 0fcb77e9e0077de5 110c6c5a86fa0de5 14a40534ce45bcf4
1d60a12f9daa1660 2144e97d390eea27 25e7b7865ca64bd2 2b3240970c71346b 3314b0999a53aafe 60537e1ad4dd0f65
69c5c5d45dabb5b7 72568faa36530ee3 72d0746603f4cf3c 819837a1df89760e 958ce5c321d25499 ae8987487e1fb5d6
b04a8a4006358447 b5a2c96250612366 bcd1642bca163da3 bdb1cc258d6976aa c151edfcf44a4b5b c5b2f65afd9605b6
cb835c490922ac91 cf6317330479b9c8 d01020d317fdd809 d5b291a17ee4144e dd92623b0a4b255f e512a05583448f44
f50c51ed2315dcf3
""".split())
"""Insults one can call a person (nouns)."""

_PROFANE_EXCLAMATION = frozenset("""
0ebdc3317b75839f 1837bc2c546d46c7 2189c0ed714f0c54 24dce6a4da3fb576 30a989afc82c0a21 6ac3c336e4094835
83a8ff2d36053458 85fc17f7069acd39 e388b89852d4dbb0 e9143a29033d9145 fb96c27642b4bd11
""".split())
"""Expletives that stand alone as an exclamation."""

_PROFANE_MODIFIER = frozenset("""
31506a8448a761a4 986c99004163a6c5 e9143a29033d9145 fb96c27642b4bd11
""".split())
"""Expletives that modify a noun."""

RUDE_WORDS = ("annoying", "useless", "lazy", "slow", "clueless", "hopeless", "careless", "boring", "rude", "grumpy")
"""Mild words for the rude tier: impolite, not offensive, never in the lexicon."""

FICTIONAL_GROUPS = (
    ("Vorlani", "the Vorlani"),
    ("Quessarian", "Quessarian people"),
    ("Drelkan", "the Drelkans"),
    ("Zelothi", "the Zelothi"),
    ("Mirvanese", "Mirvanese people"),
    ("Tharnish", "the Tharnish"),
    ("Kaldrin", "the Kaldrin"),
    ("Ostrovane", "Ostrovane people"),
)
"""Invented peoples (singular, plural) that the identity tier is hostile towards. None exists."""

MIN_POOL = 3


@dataclass(frozen=True)
class Lexicon:
    """Word pools per tier, each sorted; ``words`` is the union (the testbed's ``lexicon.txt``)."""

    insulting: tuple[str, ...]
    exclamations: tuple[str, ...]
    modifiers: tuple[str, ...]
    source_sha256: str

    @property
    def profane(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.exclamations) | set(self.modifiers)))

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(sorted(set(self.insulting) | set(self.profane)))

    def to_text(self) -> str:
        return "".join(w + "\n" for w in self.words)


def wordlist_path() -> Path:
    """The word list that the installed ``better_profanity`` ships."""
    return Path(better_profanity.__file__).resolve().parent / "profanity_wordlist.txt"


def read_wordlist(path: Path | None = None) -> list[str]:
    """Every entry of the shipped list, lower-cased, in file order (multi-word entries included)."""
    path = path or wordlist_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read the profanity word list {path}: {exc}") from None
    return [w.strip().lower() for w in text.splitlines() if w.strip()]


def single_words(entries: list[str]) -> list[str]:
    """The entries that are one alphabetic word of 3–12 letters, sorted and unique."""
    return sorted({w for w in entries if WORD_RE.match(w)})


def digest(word: str) -> str:
    """First 16 hex digits of SHA-256 of the word: how the allow-lists name words."""
    return hashlib.sha256(word.encode("utf-8")).hexdigest()[:16]


def build_lexicon(path: Path | None = None) -> Lexicon:
    """Read the shipped list and pick the tier pools (deterministic: sorted, selected by digest)."""
    path = path or wordlist_path()
    words = single_words(read_wordlist(path))
    pick = lambda allow: tuple(w for w in words if digest(w) in allow)  # noqa: E731
    lex = Lexicon(insulting=pick(_INSULTING), exclamations=pick(_PROFANE_EXCLAMATION),
                  modifiers=pick(_PROFANE_MODIFIER),
                  source_sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    for name, pool in (("insulting", lex.insulting), ("profane", lex.exclamations)):
        if len(pool) < MIN_POOL:
            raise DataError(f"the profanity word list {path} yields only {len(pool)} {name} word(s); "
                            f"need at least {MIN_POOL} (an unexpected better_profanity version?)")
    return lex


def read_lexicon_file(path: str | Path) -> list[str]:
    """Words of a ``lexicon.txt`` (one per line)."""
    return [w.strip() for w in Path(path).read_text(encoding="utf-8").splitlines() if w.strip()]


def find_words(text: str, words: set[str] | frozenset[str]) -> list[str]:
    """Whole words of ``text`` (case-insensitive) that are in ``words``, in order of appearance."""
    return [w for w in re.findall(r"[A-Za-z]+", text.lower()) if w in words]
