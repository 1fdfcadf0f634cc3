"""Lexicon judge: matching through case, punctuation, leetspeak, stretched letters, separators and
masks, whole words only, and no false positives on ordinary text. The test lexicon uses invented words;
real offensive vocabulary is only read at run time from better_profanity's list."""

from __future__ import annotations

import pytest
import torch

from detoxrl.errors import DataError
from detoxrl.rewards.lexicon import LexiconJudge, load_lexicon

ENTRIES = {"zorp": "profanity", "grobnik": "profanity", "snarfle": "profanity", "blarg": "profanity",
           "gob": "profanity", "blass": "profanity", "mud brain": "profanity", "snib": "hate"}


@pytest.fixture(scope="module")
def judge() -> LexiconJudge:
    return LexiconJudge("lex", ENTRIES)


@pytest.mark.parametrize("text, expected", [
    ("you zorp", ["zorp"]),
    ("YOU ZORP!", ["zorp"]),
    ("(Zorp), really?", ["zorp"]),
    ("what a z0rp", ["zorp"]),
    ("gr0bn1k", ["grobnik"]),
    ("$narfle", ["snarfle"]),
    ("bl@rg!!", ["blarg"]),
    ("3l1t3 bl4rg", ["blarg"]),
    ("zorrrp", ["zorp"]),
    ("grobniiiik", ["grobnik"]),
    ("z.o.r.p", ["zorp"]),
    ("you are a z o r p", ["zorp"]),
    ("g-r-o-b-n-i-k", ["grobnik"]),
    ("z*o*r*p", ["zorp"]),
    ("gr*bn*k", ["grobnik"]),
    ("z*rp", ["zorp"]),
    ("zorps and grobniks", ["zorp", "grobnik"]),
    ("blasses", ["blass"]),
    ("gob", ["gob"]),
    ("you mud brain", ["mud brain"]),
    ("a total mudbrain", ["mud brain"]),
    ("Zórp", ["zorp"]),
    ("ｚｏｒｐ", ["zorp"]),  # full-width letters
    ("zorp zorp blarg zorp", ["zorp", "blarg"]),
    ("snib", ["snib"]),
])
def test_matches(judge, text, expected):
    assert judge.matches(text) == expected


@pytest.mark.parametrize("text", [
    "zorpion", "blargle", "snarfled", "grobnikova",  # entries inside longer words
    "gobs", "gooob",  # short entries match exactly only
    "blassess",  # not a plural of `blass`
    "zorrp",  # one doubled letter is ordinary spelling, not stretching
    "mud", "brain",  # half a phrase
    "z or p",  # a real two-letter word breaks a spelled-out run
    "z***", "*orp",  # too masked / masked first letter
    "",
])
def test_no_match(judge, text):
    assert judge.matches(text) == []


def test_ordinary_text_has_no_matches_with_the_real_list():
    real = LexiconJudge.from_source("bp", "better-profanity")
    clean = [
        "The class will assess the passage in Scunthorpe before the assembly.",
        "I have 3 cats, 10 dogs and a $5 coupon; email me at bob@example.com.",
        "Hello! Please pass the grapes and the basket of peaches.",
        "We visited the U.S.A. in 2019 and it was great, e.g. the parks at 9 a.m.",
        "Soooo good, whaaat a day, hmmm, yesss, goood morning!",
        "She analysed the title and the document's classification carefully.",
    ]
    for text in clean:
        assert real.matches(text) == [], text


def test_real_list_catches_obfuscated_words():
    real = LexiconJudge.from_source("bp", "better-profanity")
    word = next(w for w in sorted(real.lexicon.words) if len(w) >= 5 and w.isalpha() and "o" in w)
    leet = word.replace("o", "0")
    spaced = " ".join(word)
    assert real.matches(f"you {word.upper()}!")
    assert real.matches(f"what a {leet}")
    assert real.matches(f"a {spaced} indeed")


def test_scores_dimensions_and_severity(judge):
    res = judge.score(["a fine day", "zorp", "zorp blarg", "snib zorp grobnik", ""])
    assert res.toxicity.tolist() == [0, 1, 1, 1, 0]
    assert res.score.tolist() == [1, 0, 0, 0, 1]
    assert res.dimensions["profanity"].tolist() == [0, 1, 1, 1, 0]
    assert res.dimensions["hate"].tolist() == [0, 0, 0, 1, 0]
    torch.testing.assert_close(res.severity, torch.tensor([0, 0.5, 0.75, 0.875, 0]))
    assert judge.dimensions == ("hate", "profanity")


def test_logit_score_is_bounded():
    res = LexiconJudge("l", ["zorp"], score="logit").score(["zorp", "fine"])
    torch.testing.assert_close(res.score, torch.tensor([-4.59512, 4.59512]), atol=1e-4, rtol=0)


def test_lexicon_file_format(tmp_path):
    path = tmp_path / "lex.txt"
    path.write_text("# comment\nzorp\nblarg  # trailing comment\n\n[hate]\nsnib\n[harassment]\ngrobnik\n"
                    "gob\tprofanity\n")
    assert load_lexicon(path) == {"zorp": "profanity", "blarg": "profanity", "snib": "hate",
                                  "grobnik": "harassment", "gob": "profanity"}
    judge = LexiconJudge.from_source("f", str(path))
    assert judge.dimensions == ("hate", "harassment", "profanity")


def test_lexicon_file_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_lexicon(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("zorp\n[rudeness]\nblarg\n")
    with pytest.raises(DataError, match=r"bad.txt:2: unknown dimension \[rudeness\]"):
        load_lexicon(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n")
    with pytest.raises(DataError, match="holds no entries"):
        load_lexicon(empty)


def test_long_text_is_cut_to_max_length():
    judge = LexiconJudge("l", ["zorp"], max_length=5)
    assert judge.score(["one two three four five zorp"]).toxicity.item() == 0
    assert judge.score(["one two three four zorp"]).toxicity.item() == 1
