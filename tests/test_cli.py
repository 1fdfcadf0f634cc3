"""The command line: every stage has help, user errors are one clear line with exit status 2."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from detoxrl.cli import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", ["prepare", "sft", "train-rm", "constitution", "ppo", "eval", "report", "run", "judge-eval",
                                 "critique-eval", "ai-preferences", "score", "generate"])
def test_every_stage_has_help(cmd):
    res = runner.invoke(app, [cmd, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_config_command_prints_resolved_yaml():
    res = runner.invoke(app, ["config", "--set", "ppo.steps=7"])
    assert res.exit_code == 0 and "steps: 7" in res.output


def test_bad_override_is_one_clear_error():
    res = runner.invoke(app, ["config", "--set", "ppo.cliprange=-1"])
    assert res.exit_code == 2
    assert "ppo.cliprange" in res.output and "Traceback" not in res.output


def test_run_rejects_unknown_force_stage(tmp_path):
    res = runner.invoke(app, ["run", "--force", "nope", "--run-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown stage" in res.output


def test_score_explains_the_composite_reward(tmp_path):
    """`detoxrl score` prints each text's reward term by term and writes components that add up."""
    import json

    from conftest import write_tiny_run

    cfg = write_tiny_run(tmp_path, tmp_path / "no-policy-needed",
                         **{"reward.severity_tiers": [{"name": "severe", "min_severity": 0.5, "penalty": 2.0}]})
    (tmp_path / "more.txt").write_text("w20 w8 w21\n\n")
    out = tmp_path / "scores.jsonl"
    res = runner.invoke(app, ["score", "w10 w11", "w10 W7", "--config", str(cfg),
                              "--file", str(tmp_path / "more.txt"), "-o", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["text"] for r in rows] == ["w10 w11", "w10 W7", "w20 w8 w21"]
    clean, *toxic = rows
    # clean: the lexicon's reward-scale score is P(clean) = 1, no dimension penalty, no tier
    assert clean["reward"] == pytest.approx(1.0) and clean["tier"] is None
    for r in toxic:  # a listed word (any case): score 0, dimension penalty -1, severe tier -2
        assert r["tier"] == "severe" and r["reward"] == pytest.approx(-3.0)
        assert sum(r["components"].values()) == pytest.approx(r["reward"])
    assert "→ severe -2.000" in res.output and "→ no tier" in res.output


def test_score_without_texts_is_one_clear_error(tmp_path):
    res = runner.invoke(app, ["score"])
    assert res.exit_code == 2 and "nothing to score" in res.output


def _judge_eval_file(tmp_path, monkeypatch, labels):
    """A tiny run with the word-list judge (w7 w8 w9) and a HateCheck-style csv beside it; the csv is
    named relatively so that error lines stay short enough not to wrap."""
    from conftest import write_tiny_run

    cfg = write_tiny_run(tmp_path, tmp_path / "no-policy-needed")
    texts = ["w7 w10", "you w8", "w10 w11", "w12 w13"]
    rows = "".join(f"{t},{lab},f{i % 2}\n" for i, (t, lab) in enumerate(zip(texts, labels)))
    (tmp_path / "hatecheck.csv").write_text("test_case,label_gold,functionality\n" + rows)
    monkeypatch.chdir(tmp_path)
    return ["judge-eval", "hatecheck.csv", "--config", str(cfg), "--text-column", "test_case",
            "--label-column", "label_gold", "--category-column", "functionality"]


HATECHECK = ["hateful", "hateful", "non-hateful", "non-hateful"]


def test_judge_eval_positive_label_reads_hatecheck_labels(tmp_path, monkeypatch):
    import json

    args = _judge_eval_file(tmp_path, monkeypatch, HATECHECK)
    res = runner.invoke(app, [*args, "--positive-label", "hateful"])
    assert res.exit_code == 0, res.output
    (result,) = json.loads((tmp_path / "run" / "judge_eval_hatecheck.json").read_text())
    assert result["positives"] == 2 and result["accuracy"] == 1.0 and result["auc"] == 1.0
    # repeatable, case-insensitive: both spellings count, anything else is negative
    res = runner.invoke(app, [*args, "--positive-label", "HATEFUL", "--positive-label", "toxic"])
    assert res.exit_code == 0, res.output


def test_judge_eval_refuses_a_file_with_no_positive_row(tmp_path, monkeypatch):
    args = _judge_eval_file(tmp_path, monkeypatch, HATECHECK)
    res = runner.invoke(app, args)  # today's default labels: none of HateCheck's is positive
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "hatecheck.csv" in flat and "no row is positive" in flat, flat
    assert "'hateful'" in flat and "'non-hateful'" in flat and "--positive-label" in flat, flat
    assert not (tmp_path / "run" / "judge_eval_hatecheck.json").exists()


def test_judge_eval_refuses_a_file_with_no_negative_row(tmp_path, monkeypatch):
    args = _judge_eval_file(tmp_path, monkeypatch, ["toxic", "hate", "1", "TRUE"])
    res = runner.invoke(app, args)
    flat = " ".join(res.output.split())
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "hatecheck.csv" in flat and "every row is positive" in flat, flat
    assert "'toxic'" in flat and "'TRUE'" in flat, flat
