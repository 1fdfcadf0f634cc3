"""The rankings format (detoxrl.data.rankings) and what train-rm makes of it (detoxrl.rewards.rm_data):
every bad row is one error naming the file and the row, ties and special labels make no pairs, several
labellers' rankings are all used, and rows of the earlier format read as before."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detoxrl.data.rankings import (
    SPECIAL_LABELS,
    competition_ranks,
    parse_time,
    ranking_row,
    read_rankings,
    special_labels,
)
from detoxrl.errors import DataError
from detoxrl.rewards.rm_data import (
    Pair,
    format_rankings_summary,
    pairs_of,
    rankings_summary,
    rankings_to_pairs,
    split_by_item,
)

T = "2026-03-01T12:00:00Z"


def row(**kw) -> dict:
    base = {"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 2, 3], "labeller": "ann", "time": T}
    base.update(kw)
    return {k: v for k, v in base.items() if v is not ...}


def write(path, rows) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


# ----------------------------------------------------------------------------------- the format
def test_competition_ranks_and_special_labels():
    assert competition_ranks([0.1, 0.5, 0.5, 0.9]) == [1, 2, 2, 4]
    assert competition_ranks([1, 1, 2]) == [1, 1, 3]  # dense ranks to competition ranks
    assert competition_ranks([3, 1, 2]) == [3, 1, 2]
    assert tuple(SPECIAL_LABELS) == ("all_unusable", "prompt_unsafe", "skip")
    assert special_labels(["dup", "skip"]) == ("all_unusable", "prompt_unsafe", "skip", "dup")
    assert parse_time("2026-03-01T12:00:00Z") and parse_time("2026-03-01T12:00:00.123456+02:00")
    assert parse_time("2026-03-01") and not parse_time("yesterday") and not parse_time(3)


@pytest.mark.parametrize("ranks", [[1, 2, 3], [3, 1, 2], [1, 1, 3], [1, 2, 2], [2, 2, 1], [1, 1, 1], [2.0, 1.0, 3.0]])
def test_standard_competition_ranks_are_read(tmp_path, ranks):
    (r,) = read_rankings(write(tmp_path / "r.jsonl", [row(ranks=ranks)]))
    assert r.ranks == tuple(int(x) for x in ranks) and r.labeller == "ann" and r.row == "row 1"


@pytest.mark.parametrize("bad, message", [
    # a rank out of range
    (row(ranks=[1, 2, 4]), "rank 4 is out of range: the ranks of 3 completions are 1..3"),
    (row(ranks=[0, 1, 2]), "rank 0 is out of range"),
    # duplicate ranks that are not a declared (standard competition) tie, with the form expected
    (row(ranks=[1, 3, 3]), r"ranks \[1, 3, 3\] are not standard competition ranks; expected \[1, 2, 2\]"),
    (row(ranks=[1, 1, 2]), r"ranks \[1, 1, 2\] are not standard competition ranks; expected \[1, 1, 3\]"),
    (row(completions=["a", "b"], ranks=[2, 2]), r"ranks \[2, 2\] are not standard competition ranks; "
                                                r"expected \[1, 1\] \(tied completions share a rank and the next "
                                                r"rank skips the tied places: 1, 2, 2, 4\)"),
    (row(ranks=[1, 2, 2.5]), "rank 2.5 is not a whole number"),
    (row(ranks=[1, 2, "3"]), "rank '3' is not a whole number"),
    (row(ranks=[1, 2, True]), "rank True is not a whole number"),
    # an unknown special label
    (row(ranks=..., special="boring"), "unknown special label 'boring' \\(known: all_unusable, prompt_unsafe, skip\\)"),
    # a ranks count that does not match the completions count
    (row(ranks=[1, 2]), "3 completions but 2 ranks"),
    # both or neither of ranks / special
    (row(special="skip"), "has both `ranks` and `special`; give exactly one"),
    (row(ranks=...), "has neither `ranks` nor `special`; give exactly one"),
    # the rest of the row
    (row(labeller=""), "`labeller` must be a non-empty string"),
    (row(labeller=...), "`labeller` must be a non-empty string"),
    (row(time=...), "`time` is missing"),
    (row(time="yesterday"), "`time` 'yesterday' is not an ISO-8601 date-time"),
    (row(prompt=...), "`prompt` must be a string"),
    (row(completions=[]), "`completions` must be a non-empty list of strings"),
    (row(ranks="123"), "`ranks` must be a list of whole numbers"),
    (row(completions=["a", "a", "b"], ranks=[1, 2, 3]), "the same completion is ranked both 1 and 2"),
])
def test_each_bad_row_is_one_error_naming_file_and_line(tmp_path, bad, message):
    path = write(tmp_path / "ranks.jsonl", [row(), row(prompt="q"), bad])
    with pytest.raises(DataError, match=f"ranks.jsonl row 3: {message}"):
        read_rankings(path)


def test_the_row_named_is_the_line_of_the_file(tmp_path):
    path = tmp_path / "ranks.jsonl"
    path.write_text(json.dumps(row()) + "\n\n\n" + json.dumps(row(ranks=[1, 3, 3])) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"ranks.jsonl row 4: ranks \[1, 3, 3\]"):
        read_rankings(path)


def test_extra_special_labels_come_from_the_caller(tmp_path):
    path = write(tmp_path / "r.jsonl", [row(ranks=..., special="duplicate")])
    with pytest.raises(DataError, match="unknown special label 'duplicate'"):
        read_rankings(path)
    (r,) = read_rankings(path, special_labels(["duplicate"]))
    assert r.special == "duplicate" and r.ranks is None


def test_ranking_row_writes_checked_rows():
    out = ranking_row("p", ["a", "b"], "ann", ranks=[2, 1], time=T)
    assert out == {"prompt": "p", "completions": ["a", "b"], "ranks": [2, 1], "labeller": "ann", "time": T}
    assert parse_time(ranking_row("p", ["a"], "ann", special="skip")["time"])  # now, by default
    with pytest.raises(DataError, match="ranking: rank 3 is out of range"):
        ranking_row("p", ["a", "b"], "ann", ranks=[1, 3])
    with pytest.raises(DataError, match=r"import row 2: ranks \[1, 1, 2\] are not standard"):
        ranking_row("p", ["a", "b", "c"], "ann", ranks=[1, 1, 2], where="import row 2")


# ---------------------------------------------------------------------------------------- pairs
def test_ties_specials_and_several_labellers_exact_pair_counts(tmp_path):
    rows = [
        row(),                                                                    # 3 pairs
        row(labeller="bob", completions=["c", "a", "b"], ranks=[3, 1, 1]),         # same item: 2 pairs, 1 tie
        row(labeller="cat", ranks=[1, 1, 1]),                                      # all tied: 0 pairs, 3 ties
        row(labeller="dan", ranks=..., special="all_unusable"),                    # excluded, counted
        row(labeller="eve", ranks=..., special="skip"),                            # excluded, counted
        row(labeller="eve", ranks=..., special="skip", prompt="q"),                # excluded, counted
        row(prompt="q", completions=["x", "y"], ranks=[2, 1]),                     # 1 pair
        row(prompt="r", completions=["only"], ranks=[1]),                          # 0 pairs
    ]
    rankings = read_rankings(write(tmp_path / "r.jsonl", rows))
    pairs = pairs_of(rankings, "r.jsonl")
    assert pairs == [Pair("p", "a", "b"), Pair("p", "a", "c"), Pair("p", "b", "c"),
                     Pair("p", "a", "c"), Pair("p", "b", "c"), Pair("q", "y", "x")]
    summary = rankings_summary(rankings, len(pairs))
    assert {k: summary[k] for k in ("rows", "ranked", "special", "pairs", "tied_pairs", "labellers", "items")} == {
        "rows": 8, "ranked": 5, "special": {"all_unusable": 1, "skip": 2}, "pairs": 6, "tied_pairs": 4,
        "labellers": 5, "items": 4}  # p/abc, q/abc, q/xy, r/only
    line = format_rankings_summary(summary)
    assert line.startswith("8 rows → 6 pairs (4 tied pairs make none); excluded: all_unusable 1, skip 2; 5 labellers")


def test_labellers_who_disagree_give_opposite_pairs_but_one_labeller_may_not(tmp_path):
    ann = row(completions=["a", "b"], ranks=[1, 2])
    bob = row(completions=["a", "b"], ranks=[2, 1], labeller="bob")
    assert pairs_of(read_rankings(write(tmp_path / "ok.jsonl", [ann, bob]))) == [Pair("p", "a", "b"), Pair("p", "b", "a")]
    again = row(completions=["b", "a"], ranks=[1, 2])
    with pytest.raises(DataError, match=r"bad.jsonl row 1, row 3: contradictory rankings by labeller 'ann' "
                                        r"for prompt 'p'"):
        pairs_of(read_rankings(write(tmp_path / "bad.jsonl", [ann, bob, again])), "bad.jsonl")


def test_split_by_item_keeps_every_labellers_rankings_together(tmp_path):
    rows = []
    for k in range(20):
        for who in ("ann", "bob"):
            rows.append(row(prompt=f"p{k}", labeller=who, ranks=[1, 2, 3] if who == "ann" else [1, 3, 2]))
    rankings = read_rankings(write(tmp_path / "r.jsonl", rows))
    train, held = split_by_item(rankings, 0.25, seed=0)
    assert len(train) == 30 and len(held) == 10
    assert not {r.item for r in train} & {r.item for r in held}
    assert split_by_item(rankings, 0.25, seed=0) == (train, held)


# ------------------------------------------------------------------------------ the earlier format
def test_rows_of_the_earlier_format_read_as_before():
    rows = [{"prompt": "p", "completions": ["a", "b", "c"], "ranks": [1, 3, 3]},   # any numbers, lower = better
            {"completions": ["u", "v"], "ranks": ["2", 0.5]},                      # numeric strings, no prompt
            {"prompt": "q", "completions": ["x", "y"], "ranks": [2, 2], "category": "rude"}]  # extra keys ignored
    assert rankings_to_pairs(rows) == [Pair("p", "a", "b"), Pair("p", "a", "c"), Pair("", "v", "u")]


def test_the_testbed_and_constitution_rows_are_also_rows_of_the_current_format():
    """Their ranks ([1, 2, 3], [1, 2, 2], [1, 2]) are standard competition ranks: adding a labeller and a
    time to them gives valid rows of the current format."""
    for ranks in ([1, 2, 3], [1, 2, 2]):
        assert ranking_row("p", ["a", "b", "c"], "testbed", ranks=ranks, time=T)["ranks"] == ranks
    assert ranking_row("p", ["revised", "original"], "constitution", ranks=[1, 2], time=T)


# ------------------------------------------------------------------------------------------- fuzz
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2, 5), st.floats(allow_nan=True), st.text(max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.fixed_dictionaries(
    {"prompt": st.one_of(st.text(max_size=3), scalar),
     "completions": st.one_of(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=4), scalar),
     "labeller": st.one_of(st.sampled_from(["ann", "bob"]), scalar), "time": st.sampled_from([T, "x", None])},
    optional={"ranks": st.one_of(st.lists(st.one_of(st.integers(0, 5), scalar), max_size=4), scalar),
              "special": st.one_of(st.sampled_from(list(SPECIAL_LABELS) + ["boring"]), scalar)}), max_size=4))
def test_current_rows_never_crash_and_make_exactly_the_untied_pairs(rows):
    try:
        pairs = rankings_to_pairs(rows, "fuzz.jsonl")
    except DataError as err:
        assert "fuzz.jsonl row" in str(err)
        return
    expected = sum(r["ranks"][i] != r["ranks"][j] for r in rows if r.get("ranks") is not None
                   for i in range(len(r["ranks"])) for j in range(i + 1, len(r["ranks"])))
    assert len(pairs) == expected
    for r in rows:
        if r.get("ranks") is not None:
            assert sorted(r["ranks"]) == sorted(competition_ranks(r["ranks"]))


def test_what_the_labelling_page_writes_is_what_train_rm_reads(tmp_path):
    """The page's rows (``detoxrl.feedback.rankings.ranking_row``, with the batch item's ``id``) are rows of
    this format: the extra key is ignored, the special labels are the same constant."""
    from detoxrl.feedback import rankings as page
    from detoxrl.feedback.batch import BatchItem

    item = BatchItem("3f2a", "p", ["a", "b", "c", "d"])
    subs = [page.check_submission({"labeller": "ana", "id": "3f2a", "ranks": [1, 2, 2, 4]}, {"3f2a": item}),
            page.check_submission({"labeller": "ben", "id": "3f2a", "special": "prompt_unsafe"}, {"3f2a": item})]
    rankings = read_rankings(write(tmp_path / "rankings.jsonl", [page.ranking_row(s) for s in subs]))
    assert [(r.labeller, r.ranks, r.special) for r in rankings] == [("ana", (1, 2, 2, 4), None),
                                                                     ("ben", None, "prompt_unsafe")]
    assert len(pairs_of(rankings)) == 5 and page.SPECIAL_LABELS is SPECIAL_LABELS
