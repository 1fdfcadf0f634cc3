"""Judge audit: rank-based AUC with ties, F1, accuracy, per-category metrics, file errors, table."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from detoxrl.errors import DataError
from detoxrl.rewards.judge_eval import (
    average_ranks,
    binary_metrics,
    f1_score,
    format_judge_eval,
    is_positive,
    judge_eval,
    roc_auc,
)
from detoxrl.rewards.lexicon import LexiconJudge


def test_average_ranks_share_ties():
    assert average_ranks([0.3, 0.1, 0.3, 0.9]).tolist() == [2.5, 1.0, 2.5, 4.0]


def test_auc_hand_computed():
    # positives 0.8, 0.4; negatives 0.5, 0.1, 0.4.
    # pairs (pos > neg): 0.8 beats all 3; 0.4 beats 0.1, ties 0.4 (½), loses to 0.5 → 4.5 / 6
    assert roc_auc([0.8, 0.4, 0.5, 0.1, 0.4], [1, 1, 0, 0, 0]) == pytest.approx(0.75)
    assert roc_auc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    assert roc_auc([0.1, 0.9], [1, 0]) == 0.0
    assert roc_auc([0.5, 0.5, 0.5], [1, 0, 0]) == 0.5
    assert roc_auc([0.2, 0.3], [1, 1]) is None


def test_f1_and_metrics_hand_computed():
    pred = [1, 1, 0, 0, 1]
    y = [1, 0, 1, 0, 1]  # tp 2, fp 1, fn 1 → F1 = 4 / 6
    assert f1_score(pred, y) == pytest.approx(2 / 3)
    assert f1_score([0, 0], [0, 0]) == 0.0
    m = binary_metrics([0.9, 0.7, 0.2, 0.1, 0.6], y, threshold=0.5)
    assert m["accuracy"] == pytest.approx(3 / 5) and m["f1"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["auc"] == pytest.approx(4 / 6) and m["n"] == 5 and m["positives"] == 3


def test_positive_labels():
    assert [is_positive(v) for v in ["hate", "HATE", "nothate", 1, 0, True, False, "toxic", 1.0, "1"]] == [
        True, True, False, True, False, True, False, True, True, True]


def test_judge_eval_overall_and_per_category(tmp_path):
    rows = [
        {"text": "you zorp", "label": "hate", "category": "profane"},
        {"text": "what a blarg", "label": "hate", "category": "profane"},
        {"text": "you are rude", "label": "hate", "category": "rude"},
        {"text": "nice day", "label": "nothate", "category": "clean"},
        {"text": "the zorp movie", "label": "nothate", "category": "clean"},
        {"text": "lunch at noon", "label": "nothate", "category": "clean"},
    ]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = judge_eval(LexiconJudge("lex", ["zorp", "blarg"]), path, category_column="category")
    # predictions: 1 1 0 0 1 0 against 1 1 1 0 0 0 → tp 2, fp 1, fn 1, tn 2
    assert res["judge"] == "lex" and res["n"] == 6
    assert res["accuracy"] == pytest.approx(4 / 6) and res["f1"] == pytest.approx(2 / 3)
    # toxicity ties: positives (1, 1, 0), negatives (0, 1, 0) → (3 + 3 + 1) / 9 after ties counted ½
    assert res["auc"] == pytest.approx((2.5 + 2.5 + 1.0) / 9)
    assert res["categories"]["profane"]["accuracy"] == 1.0 and res["categories"]["profane"]["auc"] is None
    assert res["categories"]["clean"]["accuracy"] == pytest.approx(2 / 3)
    assert res["categories"]["clean"]["f1"] == 0.0  # one false positive, no true one
    assert binary_metrics([0.1, 0.2], [0, 0], 0.5)["f1"] is None  # nothing toxic, nothing flagged
    json.dumps(res)  # JSON-ready
    console = Console(record=True, width=120)
    console.print(format_judge_eval(res))
    text = console.export_text()
    assert "judge lex on eval.jsonl" in text and "profane" in text and "0.667" in text
    assert res["scoring_s"] > 0 and res["texts_per_s"] == pytest.approx(6 / res["scoring_s"])
    assert "scored 6 texts in" in text and "texts/s" in text


def test_judge_eval_csv_and_errors(tmp_path):
    csv_path = tmp_path / "e.csv"
    csv_path.write_text("comment,toxic\nyou zorp,1\nfine,0\n")
    res = judge_eval(LexiconJudge("lex", ["zorp"]), csv_path, text_column="comment", label_column="toxic")
    assert res["accuracy"] == 1.0 and res["auc"] == 1.0
    with pytest.raises(DataError, match=r"e.csv row 2: no column 'label'"):
        judge_eval(LexiconJudge("lex", ["zorp"]), csv_path, text_column="comment")
    with pytest.raises(DataError, match="does not exist"):
        judge_eval(LexiconJudge("lex", ["zorp"]), tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{oops\n')
    with pytest.raises(DataError, match="bad.jsonl row 2: invalid JSON"):
        judge_eval(LexiconJudge("lex", ["zorp"]), bad)


def test_one_class_files_are_refused_naming_the_labels(tmp_path):
    scores = tmp_path / "scores.csv"  # a score column mistaken for labels: fifty values, none positive
    scores.write_text("text,label\n" + "".join(f"t{i},0.{i:02d}5\n" for i in range(50)))
    with pytest.raises(DataError, match=r"scores.csv: no row is positive.*'0.005', .* and 40 more; positive"):
        judge_eval(LexiconJudge("lex", ["zorp"]), scores)
    res = judge_eval(LexiconJudge("lex", ["zorp"]), scores, positive_labels=["0.495"])
    assert res["positives"] == 1
