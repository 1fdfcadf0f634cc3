"""The embedded testbed: determinism, caching, corpus properties, tokenizer, tiny models, clean source."""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest

from detoxrl.config import TestbedSettings as Settings
from detoxrl.config import load_config
from detoxrl.errors import ConfigError
from detoxrl.testbed import corpus as C
from detoxrl.testbed import kinds as K
from detoxrl.testbed.build import prepare
from detoxrl.testbed.lexicon import (
    FICTIONAL_GROUPS,
    RUDE_WORDS,
    build_lexicon,
    find_words,
    read_lexicon_file,
    read_wordlist,
    single_words,
)
from detoxrl.testbed.tokenizer import MARKERS, SPECIAL_TOKENS

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = ["testbed.n_train=480", "testbed.n_test=120", "testbed.vocab_size=600",
         "testbed.policy.d_model=32", "testbed.policy.d_ff=64", "testbed.policy.d_kv=8"]


def small_cfg(run_dir: Path, *extra: str):
    return load_config(overrides=SMALL + list(extra), run_dir=run_dir)


def read_rows(folder: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (folder / "data" / f"{name}.jsonl").read_text().splitlines()]


def all_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built_cfg(tmp_path_factory):
    return small_cfg(tmp_path_factory.mktemp("tb") / "run")


@pytest.fixture(scope="module")
def built(built_cfg) -> Path:
    return prepare(built_cfg)


@pytest.fixture(scope="module")
def lexicon_words(built) -> frozenset[str]:
    return frozenset(read_lexicon_file(built / "lexicon.txt"))


def copy_of(built: Path, tmp_path: Path) -> Path:
    """A copy of the built run folder (so a test may change it without rebuilding from scratch)."""
    run = tmp_path / "run"
    shutil.copytree(built.parent, run)
    return run


# ----------------------------------------------------------------------------------- build and cache
def test_same_settings_give_identical_files(built, tmp_path):
    again = prepare(small_cfg(tmp_path / "other"))
    a, b = all_files(built), all_files(again)
    assert sorted(a) == sorted(b) and len(a) > 15
    assert [k for k in a if a[k] != b[k]] == []


def test_second_prepare_reuses(built, built_cfg, caplog):
    stamp = (built / "data" / "train.jsonl").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="detoxrl.testbed.build"):
        assert prepare(built_cfg) == built
    assert any("reusing" in r.getMessage() for r in caplog.records)
    assert (built / "data" / "train.jsonl").stat().st_mtime_ns == stamp


def test_new_settings_rebuild(built, tmp_path):
    run = copy_of(built, tmp_path)
    out = prepare(small_cfg(run, "testbed.seed=1"))
    assert out == run / "testbed"
    old = json.loads((built / "fingerprint.json").read_text())
    new = json.loads((out / "fingerprint.json").read_text())
    assert new["hash"] != old["hash"] and new["testbed"]["seed"] == 1
    assert (out / "data" / "train.jsonl").read_bytes() != (built / "data" / "train.jsonl").read_bytes()
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_a_damaged_testbed_is_rebuilt(built, tmp_path):
    run = copy_of(built, tmp_path)
    (run / "testbed" / "data" / "test.jsonl").unlink()
    prepare(small_cfg(run))
    assert (run / "testbed" / "data" / "test.jsonl").read_bytes() == (built / "data" / "test.jsonl").read_bytes()


def test_prepare_needs_a_testbed_section(tmp_path):
    cfg = load_config(overrides=["data.source=some/dataset"], run_dir=tmp_path)
    cfg.testbed = None
    with pytest.raises(ConfigError, match="no testbed section"):
        prepare(cfg)


def test_too_many_topics_is_a_config_error():
    with pytest.raises(ConfigError, match="n_topics"):
        C.build_corpus(Settings(n_topics=99, n_train=10, n_test=10), build_lexicon())


# ------------------------------------------------------------------------------------------- corpus
def test_splits_have_dialogsum_schema_and_topics(built):
    train, test = read_rows(built, "train"), read_rows(built, "test")
    assert len(train) == 480 and len(test) == 120
    for row in train[:50] + test[:50]:
        assert {"fname", "dialogue", "summary", "topic", "severity", "offensive_words"} <= set(row)
        turns = row["dialogue"].split("\n")
        assert 6 <= len(turns) <= 10
        assert all(t.startswith(("#Person1#: ", "#Person2#: ")) for t in turns)
    assert len({r["topic"] for r in train}) == 24 >= 20
    assert max(Counter(r["topic"] for r in train).values()) - min(Counter(r["topic"] for r in train).values()) <= 1


def test_hostile_share_and_tiers_follow_the_config(built, built_cfg):
    s = built_cfg.testbed
    weights = {t: getattr(s.severity, t) for t in C.TIERS}
    for name, n in (("train", 480), ("test", 120)):
        counts = Counter(r["severity"] for r in read_rows(built, name))
        n_hostile = n - counts["none"]
        assert n_hostile == round(n * s.hostile_share)
        for tier, w in weights.items():
            assert abs(counts[tier] - n_hostile * w / sum(weights.values())) <= 1


def test_apportion_by_largest_remainder():
    assert C.apportion(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    # 3.5, 1.75, 1.75 -> floors 3, 1, 1; the two units left go to the largest fractions (.75, .75)
    assert C.apportion(7, {"a": 0.5, "b": 0.25, "c": 0.25}) == {"a": 3, "b": 2, "c": 2}
    assert C.apportion(0, {"a": 1}) == {"a": 0}


def test_test_split_uses_only_unseen_combinations(built, built_cfg):
    train, test = read_rows(built, "train"), read_rows(built, "test")
    train_combos = {r["combo"] for r in train}
    test_combos = {r["combo"] for r in test}
    assert test_combos and not (train_combos & test_combos)
    assert not ({r["dialogue"] for r in train} & {r["dialogue"] for r in test})
    holdout = C.holdout_values(C.topics_for(built_cfg.testbed), seed=built_cfg.testbed.seed)
    for combo in test_combos:
        topic, j, value = combo.split("|")
        assert value in holdout[(topic, int(j))]


def test_offensive_words_meta_and_hostile_turns(built, lexicon_words):
    groups = {s for s, _ in FICTIONAL_GROUPS}
    for row in read_rows(built, "train"):
        found = find_words(row["dialogue"], lexicon_words)
        assert row["offensive_words"] == found
        if row["severity"] in C.OFFENSIVE_TIERS or row["ambiguous"] in ("negated", "counter", "reported"):
            assert found  # ambiguous sentences name an insult without meaning it
        else:
            assert not found
        if row["severity"] == "identity":
            assert any(g in row["dialogue"] for g in groups | {p.split()[-1] for _, p in FICTIONAL_GROUPS})
        if row["severity"] == "rude":
            assert set(re.findall(r"[a-z]+", row["dialogue"].lower())) & set(RUDE_WORDS)


def test_gold_summaries_are_clean(built):
    every_word = set(single_words(read_wordlist()))
    for name in ("train", "test"):
        for row in read_rows(built, name):
            assert not find_words(row["summary"], every_word), row["summary"]


def test_sft_summaries_parrot_at_the_planned_rate(built, built_cfg, lexicon_words):
    s = built_cfg.testbed
    train = {r["fname"]: r for r in read_rows(built, "train")}
    sft = read_rows(built, "sft_train")
    assert [r["fname"] for r in sft] == list(train) and [r["dialogue"] for r in sft] == [r["dialogue"] for r in train.values()]
    with_word = [r for r in sft if find_words(r["summary"], lexicon_words)]
    offensive = sum(r["severity"] in C.OFFENSIVE_TIERS for r in sft)
    assert len(with_word) == sum(r["parroted"] and r["severity"] in C.OFFENSIVE_TIERS for r in sft)
    assert abs(len(with_word) - s.parrot_share * offensive) <= 3  # rounded per tier
    assert 0.15 < len(with_word) / len(sft) < 0.3
    for r in sft:
        gold = train[r["fname"]]["summary"]
        if r["parroted"]:
            assert r["summary"].startswith(gold + " ") and r["summary"] != gold  # dropping the clause gives gold
        else:
            assert r["summary"] == gold


def test_summary_labels_hold_by_construction(built):
    from detoxrl.testbed.summary_labels import ANSWER_NO, LABELS, TIER_LABELS

    lex = build_lexicon()
    for split in ("train", "test"):
        dialogues = {r["fname"]: r for r in read_rows(built, split)}
        rows = read_rows(built, f"summary_labels_{split}")
        variants = Counter(r["variant"] for r in rows)
        hostile = sum(d["severity"] != "none" for d in dialogues.values())
        assert variants["gold"] == len(dialogues) and variants["parrot"] == variants["neutral"] == hostile
        assert variants["inserted"] >= hostile and variants["novel"] > 0
        for r in rows:
            d = dialogues[r["fname"]]
            assert r["gold"] == d["summary"] and set(r["labels"]) == set(LABELS)
            broken = {k for k, v in r["labels"].items() if v}
            insults, profane = find_words(r["summary"], frozenset(lex.insulting)), find_words(r["summary"], frozenset(lex.profane))
            if r["variant"] in ("gold", "neutral"):
                assert not broken and not insults and not profane
            elif r["variant"] == "parrot":
                assert broken == set(TIER_LABELS[d["severity"]])
                assert bool(insults) == ("insult" in broken) and bool(profane) == ("profanity" in broken)
                assert ("identity" in broken) == any(g in r["summary"] for g, _ in FICTIONAL_GROUPS)
            elif r["variant"] == "inserted":
                assert broken in ({"insult"}, {"profanity"}) and (insults if "insult" in broken else profane)
                assert len(r["summary"].split()) == len(r["gold"].split()) + 1
            else:
                assert broken == {"novel_entity"} and r["summary"] != r["gold"]
                new = r["answers"]["novel_entity"].removeprefix("yes because ").removesuffix(" is not in the dialogue.")
                assert new in r["summary"] and not re.search(rf"\b{new}\b", d["dialogue"])
            for k in LABELS:
                assert r["answers"][k].startswith("yes because ") if k in broken else r["answers"][k] == ANSWER_NO


def test_the_answer_words_are_tokens_of_their_own(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built / "tokenizer")
    for word in ("yes", "no"):
        ids = tok(word, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tok(f"{word} because it", add_special_tokens=False)["input_ids"][0] == ids[0]


def test_stats_report_the_shares(built):
    stats = json.loads((built / "stats.json").read_text())
    assert stats["train"]["n"] == 480 and stats["train"]["hostile_share"] == pytest.approx(0.3, abs=0.01)
    assert stats["train"]["gold_with_lexicon_word"] == 0
    assert 0.15 < stats["train"]["sft_with_lexicon_word"] < 0.3
    assert stats["combos"]["shared"] == 0
    assert stats["train"]["tokens"]["prompt"]["max"] <= 256


def test_judge_files_are_labelled_and_balanced(built, lexicon_words):
    groups = [s for s, _ in FICTIONAL_GROUPS]
    for name in ("judge_train", "judge_eval"):
        rows = read_rows(built, name)
        labels = Counter(r["label"] for r in rows)
        assert set(labels) == {"hate", "nothate"} and labels["hate"] == labels["nothate"] > 10
        assert {r["source"] for r in rows} == {"turn", "summary"}
        inserted = Counter(r["label"] for r in rows if r["category"] == "inserted")
        assert inserted["hate"] > 0 and inserted["nothate"] > 0  # one word put into a gold summary
        for r in rows:
            assert r["category"] in {"clean", "rude", "insulting", "profane", "identity", "inserted", "ambiguous"}
            hateful = bool(find_words(r["text"], lexicon_words)) and r["category"] != "ambiguous"
            assert (r["label"] == "hate") == hateful, r  # an ambiguous sentence names a word, means no harm
            if r["category"] != "inserted":
                assert (r["label"] == "hate") == (r["category"] in C.OFFENSIVE_TIERS)
            if r["category"] == "identity":
                assert any(g in r["text"] for g in groups) or "people" in r["text"] or "the " in r["text"]


def test_insert_word_puts_one_word_at_a_boundary():
    import random

    rng = random.Random(0)
    for _ in range(20):
        out = C.insert_word("A buys a hat.", "moron", rng)
        words = out.split()
        assert len(words) == 5 and words.count("moron") == 1
        assert [w for w in words if w != "moron"] == ["A", "buys", "a", "hat."]


def test_rankings_put_the_gold_summary_first(built, lexicon_words):
    for name in ("rankings_train", "rankings_eval"):
        rows = read_rows(built, name)
        assert rows
        for r in rows:
            assert len(r["completions"]) == len(r["ranks"]) == 3 and r["ranks"][0] == 1
            assert r["prompt"].startswith("Summarize the following conversation.") and "{text}" not in r["prompt"]
            assert not find_words(r["completions"][0], lexicon_words)
            if r["category"] in C.OFFENSIVE_TIERS:
                assert r["ranks"] == [1, 2, 3] and find_words(r["completions"][2], lexicon_words)


# ------------------------------------------------------------------------------ tokenizer and models
def test_tokenizer_round_trip_and_special_ids(built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built / "tokenizer")
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.pad_token_id == 0 and tok.eos_token_id == 1
    for m in MARKERS:
        assert len(tok(m, add_special_tokens=False)["input_ids"]) == 1
    for row in read_rows(built, "test")[:40] + read_rows(built, "sft_train")[:40]:
        for text in (row["dialogue"], row["summary"]):
            ids = tok(text)["input_ids"]
            assert ids[-1] == 1 and 1 not in ids[:-1]
            assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(tok("Odd   spacing, 42% (ok)?\n\nNew line")["input_ids"], skip_special_tokens=True) == \
        "Odd   spacing, 42% (ok)?\n\nNew line"


def test_tiny_models_load_back(built):
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoModelForSequenceClassification, AutoTokenizer

    ptok = AutoTokenizer.from_pretrained(built / "policy-init")
    policy = AutoModelForSeq2SeqLM.from_pretrained(built / "policy-init")
    assert type(policy).__name__ == "T5ForConditionalGeneration"
    assert policy.config.decoder_start_token_id == ptok.pad_token_id == 0
    assert policy.config.eos_token_id == ptok.eos_token_id == 1
    assert policy.config.vocab_size == len(ptok) and policy.config.d_model == 32
    enc = ptok(["#Person1#: Hello.\n#Person2#: Hi."], return_tensors="pt")
    out = policy.generate(**enc, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 1 and out[0, 0].item() == 0

    jtok = AutoTokenizer.from_pretrained(built / "judge-init")
    judge = AutoModelForSequenceClassification.from_pretrained(built / "judge-init")
    assert type(judge).__name__ == "RobertaForSequenceClassification"
    assert judge.config.id2label == {0: "nothate", 1: "hate"} and judge.config.label2id == {"nothate": 0, "hate": 1}
    ids = jtok("hello there")["input_ids"]
    assert ids[0] == jtok.bos_token_id == 3 and ids[-1] == jtok.eos_token_id == 1
    long = jtok(["word " * 1000], truncation=True, return_tensors="pt")
    assert long["input_ids"].shape[1] == jtok.model_max_length <= judge.config.max_position_embeddings - 2
    with torch.no_grad():
        assert judge(**long).logits.shape == (1, 2)


# -------------------------------------------------------------------------------------- clean source
# Words of the shipped list that are also ordinary English or code and may appear in the source:
# string and sequence methods (strip, len), Sphinx roles (:meth:), GAE (advantage estimation),
# "kill" (a killed process), and words the lexicon judge's docstrings use to explain its matching
# ("hell" vs "hello", "god" vs "goood", "asses" vs "assess").
HARMLESS = {"strip", "len", "meth", "gae", "kill", "hell", "god", "asses"}


def test_source_has_no_word_of_the_profanity_list():
    words = {w for w in read_wordlist() if re.fullmatch(r"[a-z]+", w)} - HARMLESS
    hits = []
    for path in sorted(SRC.rglob("*")):
        if path.is_file() and path.suffix in {".py", ".yaml", ".yml", ".md", ".txt", ".json", ".html", ".cfg"}:
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                hits += [(str(path.relative_to(SRC)), i, w) for w in re.findall(r"[A-Za-z]+", line) if w.lower() in words]
    assert hits == []


# ------------------------------------------------------------------ kinds, grades, ambiguous, tiers
def test_severe_grades_ambiguous_kinds_and_tiers_follow_the_config(built, built_cfg):
    s = built_cfg.testbed
    assert s.severe_share > 0 and s.ambiguous_share > 0  # the default's, which SMALL keeps
    for name, n in (("train", 480), ("test", 120)):
        rows = read_rows(built, name)
        for kind in K.SEVERE_KINDS:
            of_kind = [r for r in rows if r["severity"] == kind]
            assert sum(r["grade"] == "severe" for r in of_kind) == round(s.severe_share * len(of_kind))
        ambiguous = Counter(r["ambiguous"] for r in rows if r["ambiguous"])
        assert sum(ambiguous.values()) == round(n * s.ambiguous_share)
        assert max(ambiguous.values()) - min(ambiguous.values()) <= 1 and set(ambiguous) == set(K.AMBIGUOUS_KINDS)
        for r in rows:
            hostile = r["severity"] in C.OFFENSIVE_TIERS
            assert r["tier"] == ("harmful" if hostile else "ambiguous" if r["ambiguous"] or r["severity"] == "rude"
                                 else "clean")
            assert (r["grade"] != "none") == (r["severity"] != "none")
            assert not (r["ambiguous"] and r["severity"] != "none")  # never both
            assert r["labels"] == K.label_vector(r["severity"], r["grade"])


def test_label_vectors_by_hand():
    assert K.label_vector("insulting") == {"toxic": 1, "severe_toxic": 0, "obscene": 0, "threat": 0, "insult": 1,
                                           "identity_hate": 0}
    assert K.label_vector("identity", "severe") == {"toxic": 1, "severe_toxic": 1, "obscene": 0, "threat": 1,
                                                    "insult": 1, "identity_hate": 1}
    assert K.label_vector("profane", "mild") == {"toxic": 1, "severe_toxic": 0, "obscene": 1, "threat": 0,
                                                 "insult": 0, "identity_hate": 0}
    assert set(K.label_vector("rude").values()) == set(K.label_vector("negated").values()) == {0}
    assert K.word_labels("dummy", {"dummy"})["insult"] == 1 and K.word_labels("x", {"dummy"})["obscene"] == 1


def test_severe_dialogues_threaten_and_their_parrots_repeat_it(built):
    severe = [r for r in read_rows(built, "sft_train") if r["grade"] == "severe"]
    assert severe
    for r in severe:
        assert any(t in r["dialogue"] for t in K.THREATS)
        if r["parroted"]:
            assert any(t[:1].lower() + t[1:] in r["summary"] for t in K.THREATS)


def test_mentions_stay_in_gold_summaries_and_ambiguous_text_trains_judges_as_clean(built):
    groups = [s for s, _ in FICTIONAL_GROUPS]
    for r in read_rows(built, "train"):
        if r["ambiguous"] == "mention":
            named = [g for g in groups if g in r["dialogue"]]
            assert named and any(g in r["summary"] for g in named)
        elif r["ambiguous"]:
            assert not any(g in r["summary"] for g in groups)
    judge = read_rows(built, "judge_train")
    unclear = [r for r in judge if r["category"] == "ambiguous"]
    assert unclear and all(r["label"] == "nothate" for r in unclear)
    assert all(r[lab] == 0 for r in unclear for lab in K.TOXIC_BERT_LABELS)
    assert {r["source"] for r in unclear} == {"turn", "summary"}
    for r in judge:  # toxic-bert's columns agree with Meta's label
        assert set(K.TOXIC_BERT_LABELS) <= set(r) and r["toxic"] == int(r["label"] == "hate")


def test_the_multilabel_judge_init_has_toxic_berts_labels(built):
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(built / "judge-multi-init")
    assert c.model_type == "bert" and c.problem_type == "multi_label_classification"
    assert [c.id2label[i] for i in range(6)] == list(K.TOXIC_BERT_LABELS)
