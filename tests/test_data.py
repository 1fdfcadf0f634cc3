"""Data loaders and prompt building: real DialogSum files, column-mapped tables, bad rows, prompts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from detoxrl.config import DataSettings, load_config
from detoxrl.data.files import column, read_rows
from detoxrl.data.loaders import Example, load_dialogsum, load_examples, load_table
from detoxrl.data.prompts import build_prompts, count_tokens, describe_prompt_stats
from detoxrl.errors import DataError

DIALOGSUM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dialogsum"
needs_dialogsum = pytest.mark.skipif(not (DIALOGSUM / "dialogsum.dev.jsonl").exists(),
                                     reason="DialogSum files not present beside the project")

ROWS = [
    {"key": "a", "prompt": "hello there friend", "answer": "greeting", "extra": 1},
    {"key": "b", "prompt": "how are you today", "answer": "question", "extra": 2},
    {"key": "c", "prompt": "see you later", "answer": "goodbye", "extra": 3},
]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ------------------------------------------------------------------------------------ real DialogSum
@needs_dialogsum
def test_dialogsum_dev_has_500_rows_with_one_reference():
    res = load_dialogsum(DIALOGSUM, "dev")
    assert len(res.examples) == 500 and res.skipped == 0
    ex = res.examples[0]
    assert ex.id == "dev_0" and ex.text.startswith("#Person1#:") and len(ex.references) == 1
    assert ex.meta == {"topic": "see a doctor"}
    assert all(len(e.references) == 1 for e in res.examples)
    # DialogSum calls validation "dev": both names find the same file
    assert [e.id for e in load_dialogsum(str(DIALOGSUM), "validation").examples] == [e.id for e in res.examples]


@needs_dialogsum
def test_dialogsum_test_has_500_rows_with_three_references():
    res = load_dialogsum(DIALOGSUM / "dialogsum.test.jsonl", "test")
    assert len(res.examples) == 500
    assert all(len(e.references) == 3 and all(r.strip() for r in e.references) for e in res.examples)
    assert set(res.examples[0].meta) == {"topic1", "topic2", "topic3"}


@needs_dialogsum
def test_dialogsum_max_rows_and_missing_split():
    assert len(load_dialogsum(DIALOGSUM, "test", max_rows=7).examples) == 7
    with pytest.raises(DataError, match="no file for split 'train'"):
        load_dialogsum(DIALOGSUM, "train")


def test_dialogsum_csv_in_hub_layout(tmp_path):
    rows = [{"id": "train_0", "dialogue": "#Person1#: Hi.\n#Person2#: Hello.", "summary": "They greet.", "topic": "greeting"}]
    write_csv(tmp_path / "train.csv", rows)
    res = load_dialogsum(tmp_path, "train")
    assert res.examples == [Example("train_0", rows[0]["dialogue"], ["They greet."], {"topic": "greeting"})]


def test_dialogsum_hub_id_asks_for_validation(monkeypatch):
    import datasets

    asked = {}

    def fake_load_dataset(name, split):
        asked.update(name=name, split=split)
        return datasets.Dataset.from_dict({"id": ["d0", "d1"], "dialogue": ["#Person1#: a", "#Person1#: b"],
                                           "summary": ["s0", "s1"], "topic": ["t", "t"]})

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    res = load_dialogsum("knkarthick/dialogsum", "dev")
    assert asked == {"name": "knkarthick/dialogsum", "split": "validation"}
    assert [(e.id, e.references) for e in res.examples] == [("d0", ["s0"]), ("d1", ["s1"])]


def test_dialogsum_hub_offline_is_a_data_error(monkeypatch):
    import datasets

    def boom(name, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", boom)
    with pytest.raises(DataError, match="cannot load hub dataset some/data split 'train': no network"):
        load_dialogsum("some/data", "train")


# ------------------------------------------------------------------------------- column-mapped tables
@pytest.mark.parametrize("writer,name", [(write_jsonl, "t.jsonl"), (write_csv, "t.csv"), (write_parquet, "t.parquet")])
def test_table_formats_with_column_mapping(tmp_path, writer, name):
    path = writer(tmp_path / name, ROWS)
    res = load_table(path, "auto", "prompt", ["answer"], id_column="key")
    assert [e.id for e in res.examples] == ["a", "b", "c"]
    assert res.examples[1].text == "how are you today" and res.examples[1].references == ["question"]
    extra = res.examples[2].meta["extra"]
    assert extra == (3 if name != "t.csv" else "3")  # csv has text cells only
    assert res.source == str(path)
    assert len(load_table(path, "auto", "prompt", ["answer"], max_rows=2).examples) == 2
    default_ids = [e.id for e in load_table(path, "auto", "prompt", [], max_rows=2).examples]
    assert default_ids == ["t-1", "t-2"]


def test_explicit_format_overrides_extension(tmp_path):
    path = write_jsonl(tmp_path / "rows.txt", ROWS)
    assert len(load_table(path, "jsonl", "prompt", ["answer"]).examples) == 3
    with pytest.raises(DataError, match="unknown format"):
        load_table(path, "auto", "prompt", ["answer"])
    with pytest.raises(DataError, match="unknown format 'xml'"):
        load_table(path, "xml", "prompt", ["answer"])


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_table(tmp_path / "nope.jsonl", "auto", "prompt", ["answer"])
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl is empty"):
        load_table(tmp_path / "empty.jsonl", "auto", "prompt", ["answer"])
    (tmp_path / "header.csv").write_text("prompt,answer\n")
    with pytest.raises(DataError, match="no rows"):
        load_table(tmp_path / "header.csv", "auto", "prompt", ["answer"])


def test_csv_header_without_the_column(tmp_path):
    path = write_csv(tmp_path / "t.csv", ROWS)
    with pytest.raises(DataError, match=r"t\.csv: row 1 \(header\): column 'summary' is missing"):
        load_table(path, "auto", "prompt", ["summary"])


# -------------------------------------------------------------------------------------------- bad rows
def _bad_jsonl(tmp_path: Path, kind: str) -> tuple[Path, str]:
    """A jsonl file whose 3rd line is bad in the way ``kind`` says; returns it and the expected text."""
    good = [json.dumps(r).encode() for r in ROWS[:2]]
    bad_line = {
        "missing column": (json.dumps({"key": "x", "prompt": "hi"}).encode(), "column 'answer' is missing"),
        "empty field": (json.dumps({"key": "x", "prompt": "  ", "answer": "a"}).encode(), "column 'prompt' is empty"),
        "non-text field": (json.dumps({"key": "x", "prompt": "hi", "answer": 5}).encode(), "column 'answer' is not text"),
        "null field": (json.dumps({"key": "x", "prompt": None, "answer": "a"}).encode(), "column 'prompt' is missing"),
        "undecodable bytes": (b'{"key": "x", "prompt": "caf\xe9", "answer": "a"}', "undecodable bytes"),
        "invalid JSON": (b'{"key": "x", "prompt": "hi", ', "invalid JSON"),
        "not an object": (b'["hi", "a"]', "expected a JSON object"),
    }[kind]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(good + [bad_line[0], json.dumps(ROWS[2]).encode()]) + b"\n")
    return path, bad_line[1]


BAD_KINDS = ["missing column", "empty field", "non-text field", "null field", "undecodable bytes",
             "invalid JSON", "not an object"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_jsonl_row_names_file_line_and_column(tmp_path, kind):
    path, expected = _bad_jsonl(tmp_path, kind)
    with pytest.raises(DataError) as err:
        load_table(path, "auto", "prompt", ["answer"], id_column="key")
    msg = str(err.value)
    assert msg.startswith(f"{path}: line 3: ") and expected in msg


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_skip_mode_counts_bad_rows(tmp_path, kind, caplog):
    path, _ = _bad_jsonl(tmp_path, kind)
    with caplog.at_level(logging.WARNING, logger="detoxrl.data.loaders"):
        res = load_table(path, "auto", "prompt", ["answer"], id_column="key", skip_bad_rows=True)
    assert [e.id for e in res.examples] == ["a", "b", "c"]
    assert res.skipped == 1 and sum(res.skip_reasons.values()) == 1
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "skipped 1 bad row" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage()


def test_skip_reasons_are_counted_by_kind(tmp_path):
    lines = [json.dumps(ROWS[0]), "{oops", json.dumps({"prompt": "x"}), "{oops again", json.dumps(ROWS[1])]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")
    res = load_table(path, "auto", "prompt", ["answer"], skip_bad_rows=True)
    assert len(res.examples) == 2 and res.skipped == 3
    assert res.skip_reasons == {"invalid JSON": 2, "missing column 'answer'": 1}


def test_every_row_bad_is_an_error_even_when_skipping(tmp_path):
    path = tmp_path / "all_bad.jsonl"
    path.write_text("{x\n{y\n")
    with pytest.raises(DataError, match="every row is bad"):
        load_table(path, "auto", "prompt", ["answer"], skip_bad_rows=True)


def test_bad_csv_rows(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b'prompt,answer\n"multi\nline text",ok\nhello,\ncaf\xe9,ok\nshort\n')
    with pytest.raises(DataError, match=r"bad\.csv: row 2 \(line 4\): column 'answer' is empty"):
        load_table(path, "auto", "prompt", ["answer"])
    res = load_table(path, "auto", "prompt", ["answer"], skip_bad_rows=True)
    assert [e.text for e in res.examples] == ["multi\nline text"]
    assert res.skip_reasons == {"empty 'answer'": 1, "undecodable bytes": 1, "missing column 'answer'": 1}


def test_bad_csv_undecodable_names_row_and_column(tmp_path):
    path = tmp_path / "bytes.csv"
    path.write_bytes(b"prompt,answer\nfine,ok\ncaf\xe9,ok\n")
    with pytest.raises(DataError, match=r"bytes\.csv: row 2 \(line 3\): column 'prompt': undecodable bytes"):
        load_table(path, "auto", "prompt", ["answer"])


def test_bad_parquet_rows(tmp_path):
    rows = [dict(ROWS[0]), {"key": "n", "prompt": None, "answer": "x", "extra": 0}, dict(ROWS[1])]
    path = write_parquet(tmp_path / "p.parquet", rows)
    with pytest.raises(DataError, match=r"p\.parquet: row 2: column 'prompt' is missing"):
        load_table(path, "auto", "prompt", ["answer"])
    assert load_table(path, "auto", "prompt", ["answer"], skip_bad_rows=True).skipped == 1
    with pytest.raises(DataError, match=r"row 1 \(header\): column 'nope' is missing"):
        load_table(path, "auto", "prompt", ["nope"])


# ------------------------------------------------------------------------------------------ read_rows
def test_read_rows_one_reader_for_every_table_format(tmp_path):
    """read_rows (judge files, reward-model data, prompts) reads what the loaders read, plus JSON
    arrays and tsv; ``_row`` is a row's line in a text file and its position in an array."""
    jsonl = write_jsonl(tmp_path / "t.jsonl", ROWS)
    (tmp_path / "t.json").write_text(json.dumps(ROWS), encoding="utf-8")
    (tmp_path / "t.tsv").write_text("key\tprompt\na\thello there\n\nb\thow are you\n", encoding="utf-8")
    csv_path = tmp_path / "t.csv"
    csv_path.write_bytes(b'\xef\xbb\xbfkey,prompt\na,"two\nlines"\nb,hi\n')
    assert [r["_row"] for r in read_rows(jsonl)] == [1, 2, 3]
    assert read_rows(tmp_path / "t.json") == [{**r, "_row": i} for i, r in enumerate(ROWS, 1)]
    assert [(r["key"], r["_row"]) for r in read_rows(tmp_path / "t.tsv")] == [("a", 2), ("b", 4)]
    rows = read_rows(csv_path)  # the byte-order mark is not part of the first column's name
    assert [(r["key"], r["prompt"], r["_row"]) for r in rows] == [("a", "two\nlines", 2), ("b", "hi", 4)]
    with pytest.raises(DataError, match=r"t\.csv row 4: no column 'answer'"):
        column(rows[1:], "answer", csv_path)


def test_read_rows_names_file_and_row_of_a_bad_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"text,label\nfine,0\ncaf\xe9,1\n")
    with pytest.raises(DataError, match=r"bad\.csv row 3: column 'text': undecodable bytes"):
        read_rows(bad)
    (tmp_path / "list.json").write_text('[{"a": 1}, 2]')
    with pytest.raises(DataError, match="list.json must hold a list of objects"):
        read_rows(tmp_path / "list.json")
    with pytest.raises(DataError, match="does not exist"):
        read_rows(tmp_path / "missing.jsonl")


# -------------------------------------------------------------------------------------- load_examples
def _cfg(tmp_path, *overrides):
    return load_config(overrides=list(overrides), run_dir=tmp_path / "run")


def test_load_examples_testbed_split(tmp_path):
    cfg = _cfg(tmp_path, "data.max_train_rows=2")
    data = tmp_path / "run" / "testbed" / "data"
    data.mkdir(parents=True)
    rows = [{"fname": f"train_{i}", "dialogue": f"#Person1#: hi {i}", "summary": f"s{i}", "topic": "t",
             "severity": "none", "offensive_words": []} for i in range(3)]
    write_jsonl(data / "train.jsonl", rows)
    res = load_examples(cfg, "train")
    assert [e.id for e in res.examples] == ["train_0", "train_1"]
    assert res.examples[0].meta == {"topic": "t", "severity": "none", "offensive_words": []}
    with pytest.raises(DataError, match="run `detoxrl prepare` first"):
        load_examples(cfg, "test")


def test_load_examples_local_table_with_split_placeholder(tmp_path):
    for split in ("train", "test"):
        write_csv(tmp_path / f"{split}.csv", [{**r, "prompt": f"{split} {r['prompt']}"} for r in ROWS])
    cfg = _cfg(tmp_path, f"data.source={tmp_path}/{{split}}.csv", "data.text_column=prompt",
               "data.reference_columns=[answer]", "data.id_column=key", "data.max_eval_rows=1")
    assert [e.text for e in load_examples(cfg, "train").examples][0] == "train hello there friend"
    assert len(load_examples(cfg, "test").examples) == 1


@needs_dialogsum
def test_load_examples_dialogsum_folder(tmp_path):
    cfg = _cfg(tmp_path, f"data.source={DIALOGSUM}", "data.eval_split=test", "data.max_eval_rows=10")
    res = load_examples(cfg, "test")
    assert len(res.examples) == 10 and len(res.examples[0].references) == 3


def test_load_examples_hub_with_mapping(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets, "load_dataset",
                        lambda name, split: datasets.Dataset.from_dict({"q": ["a", "b"], "r": ["x", "y"]}))
    cfg = _cfg(tmp_path, "data.source=someone/qa", "data.text_column=q", "data.reference_columns=[r]")
    res = load_examples(cfg, "train")
    assert [(e.text, e.references) for e in res.examples] == [("a", ["x"]), ("b", ["y"])]


# -------------------------------------------------------------------------------------------- prompts
WORDS = "summarize the following conversation summary : hello there friend how are you today see later a b c d e".split()


@pytest.fixture(scope="module")
def word_tokenizer():
    """A word-level fast tokenizer that appends ``</s>`` (so one word = one token, + 1)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>"] + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def _examples(*texts: str) -> list[Example]:
    return [Example(f"e{i}", t, ["ref"], {"k": i}) for i, t in enumerate(texts)]


def test_build_prompts_fills_template_and_filters(word_tokenizer):
    data = DataSettings(prompt_template="summarize : {text} summary :", min_prompt_tokens=7, max_prompt_tokens=9)
    # overhead: 4 template words + </s> = 5 tokens; text of 1 / 2 / 4 / 6 words
    exs = _examples("a", "a b", "a b c d", "a b c d e a")
    kept, stats = build_prompts(exs, word_tokenizer, data)
    assert [p.id for p in kept] == ["e1", "e2"]
    assert kept[0].prompt == "summarize : a b summary :" and kept[0].references == ["ref"] and kept[0].meta == {"k": 1}
    assert stats == {"total": 4, "kept": 2, "too_few_chars": 0, "too_many_chars": 0, "too_short": 1,
                     "too_long": 1, "truncated": 0, "min_tokens": 7, "mean_tokens": 8.0, "max_tokens": 9}
    assert describe_prompt_stats(stats, 9) == ("prompts: kept 2 of 4 (1 dropped as longer than 9 tokens, "
                                               "1 dropped as too short)")
    assert describe_prompt_stats(build_prompts(exs[1:3], word_tokenizer, data)[1], 9) is None


def test_character_filter_counts_the_text_not_the_prompt(word_tokenizer):
    # the seed recipe's filter: 200 < len(dialogue) <= 1000, here 3 < len(text) <= 7 (inclusive bounds 4..7)
    data = DataSettings(prompt_template="summarize : {text} summary :", min_text_chars=4, max_text_chars=7)
    exs = _examples("a b", "a b c", "a b c d", "a b c d e")  # 3, 5, 7 and 9 characters
    kept, stats = build_prompts(exs, word_tokenizer, data)
    assert [p.id for p in kept] == ["e1", "e2"]
    assert (stats["too_few_chars"], stats["too_many_chars"], stats["kept"]) == (1, 1, 2)
    assert describe_prompt_stats(stats, 512, data) == (
        "prompts: kept 2 of 4 (1 dropped as shorter than 4 characters, 1 dropped as longer than 7 characters)")


def test_character_filter_runs_before_the_token_filter(word_tokenizer):
    data = DataSettings(prompt_template="{text}", max_text_chars=5, max_prompt_tokens=3)  # with </s>
    kept, stats = build_prompts(_examples("a b", "a b c", "a b c d"), word_tokenizer, data)
    assert [p.text for p in kept] == ["a b"]
    assert (stats["too_many_chars"], stats["too_long"]) == (1, 1)  # "a b c d" counts once, as too many chars


def test_character_bounds_are_checked():
    with pytest.raises(ValueError, match="min_text_chars must not exceed max_text_chars"):
        DataSettings(min_text_chars=10, max_text_chars=5)
    assert DataSettings(min_text_chars=5, max_text_chars=5).max_text_chars == 5


@needs_dialogsum
def test_the_seed_recipes_character_filter_on_real_dialogues(word_tokenizer):
    exs = load_dialogsum(DIALOGSUM, "dev").examples
    data = load_config("flan-t5-dialogsum").data
    assert (data.min_text_chars, data.max_text_chars) == (201, 1000)
    kept, stats = build_prompts(exs, word_tokenizer, data.model_copy(update={"max_prompt_tokens": 10_000}))
    assert len(kept) == sum(200 < len(e.text) <= 1000 for e in exs) == stats["kept"]
    assert stats["too_few_chars"] + stats["too_many_chars"] == len(exs) - len(kept) > 0


def test_build_prompts_truncates_text_not_instruction(word_tokenizer):
    data = DataSettings(prompt_template="summarize : {text} summary :", max_prompt_tokens=8, truncate=True)
    kept, stats = build_prompts(_examples("a b c d e a", "a b"), word_tokenizer, data)
    assert [p.text for p in kept] == ["a b c", "a b"]
    assert kept[0].prompt == "summarize : a b c summary :"
    assert count_tokens(word_tokenizer, [kept[0].prompt]) == [8]
    assert stats["truncated"] == 1 and stats["too_long"] == 0 and stats["kept"] == 2
    assert describe_prompt_stats(stats, 8) == "prompts: kept 2 of 2 (1 truncated to 8 tokens)"


def test_truncation_impossible_when_instruction_alone_is_too_long(word_tokenizer):
    data = DataSettings(prompt_template="summarize the following conversation : {text} summary :",
                        max_prompt_tokens=5, truncate=True)
    kept, stats = build_prompts(_examples("a b"), word_tokenizer, data)
    assert kept == [] and stats["too_long"] == 1


@needs_dialogsum
def test_truncation_with_a_trained_bpe_on_real_dialogues():
    from detoxrl.testbed.tokenizer import policy_tokenizer, train_tokenizer

    exs = load_dialogsum(DIALOGSUM, "dev", max_rows=60).examples
    tok = policy_tokenizer(train_tokenizer([e.text for e in exs], vocab_size=400))
    data = DataSettings(max_prompt_tokens=120, truncate=True)
    kept, stats = build_prompts(exs, tok, data)
    assert stats["kept"] == 60 and stats["truncated"] > 0
    lengths = count_tokens(tok, [p.prompt for p in kept])
    assert max(lengths) <= 120
    for p, ex in zip(kept, exs):
        assert p.prompt.startswith("Summarize the following conversation.\n\n") and p.prompt.endswith("\n\nSummary:")
        assert ex.text.startswith(p.text)
    # without truncation the long ones are dropped
    kept2, stats2 = build_prompts(exs, tok, DataSettings(max_prompt_tokens=120))
    assert stats2["too_long"] == stats["truncated"] and len(kept2) == 60 - stats["truncated"]
