"""AI preference pairs: the self-critique of a frozen model ranks two sampled responses, in the rankings
format that train-rm reads."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import write_tiny_run

from detoxrl.config import config_from_dict, load_config
from detoxrl.data.rankings import read_rankings
from detoxrl.feedback.ai_preferences import critique_judge, pair_ranks, run_ai_preferences
from detoxrl.testing import VOCAB

JUDGE = {"name": "self", "type": "self_critique", "principles": ["no-insults", "respect-groups"],
         "yes_words": ["w1"], "no_words": ["w2"], "dimensions": {"no-insults": "harassment"}}


def test_pair_ranks_by_hand():
    assert pair_ranks(0.2, 0.9) == [1, 2]
    assert pair_ranks(1.3, 0.4) == [2, 1]
    assert pair_ranks(0.5, 0.5) == [1, 1]
    assert pair_ranks(0.50, 0.55, margin=0.1) == [1, 1] and pair_ranks(0.5, 0.65, margin=0.1) == [1, 2]


def test_pairs_are_rankings_the_less_violating_first_and_train_rm_reads_them(tmp_path, tiny_t5_dir):
    from test_rewards_hf import make_roberta_dir

    from detoxrl.rewards.train import train_rm

    path = write_tiny_run(tmp_path, tiny_t5_dir, **{"reward.judges": [{**JUDGE, "model": str(tiny_t5_dir)}]})
    cfg = load_config(path)
    out = run_ai_preferences(cfg, n_prompts=16)
    assert out == cfg.run_path / "ai_feedback" / "rankings.jsonl"
    rankings = read_rankings(out)  # the current format, checked as train-rm checks it
    raw = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rankings) == len(raw) >= 12
    judge = critique_judge(cfg, "cpu")
    assert [p for p, _ in judge.principles] == ["no-insults", "respect-groups"]
    ranked = 0
    for r, row in zip(rankings, raw):
        assert len(r.completions) == 2 and r.completions[0] != r.completions[1] and r.labeller == "self-critique:" + tiny_t5_dir.name
        pv = judge.p_violates(list(r.completions), [r.prompt] * 2)  # by hand: the sum over principles
        v = [float(pv["no-insults"][j] + pv["respect-groups"][j]) for j in (0, 1)]
        assert row["violation"] == pytest.approx(v, abs=1e-5)
        assert row["p_violates"]["respect-groups"] == pytest.approx(pv["respect-groups"].tolist(), abs=1e-5)
        if list(r.ranks) != [1, 1]:
            ranked += 1
            best, worst = list(r.ranks).index(1), list(r.ranks).index(2)
            assert v[best] < v[worst]
    assert ranked >= 10
    info = json.loads((out.parent / "rankings_info.json").read_text())
    assert info["n_rows"] == len(raw) and info["mean_violation_chosen"] < info["mean_violation_rejected"]
    # train-rm, rankings mode, accepts the file: one pair per ranked row
    base = make_roberta_dir(tmp_path / "rm-init", words=[w for w in VOCAB if not w.startswith("<")], hidden=16)
    rm_cfg = config_from_dict({
        "name": "t", "run_dir": str(tmp_path / "run"), "data": {"source": "x.jsonl"}, "policy": {"name_or_path": "p"},
        "reward": {"judges": [{"name": "ai-rm", "type": "reward_model", "path": "{run_dir}/ai-rm"}]},
        "train_rm": {"enabled": True, "mode": "rankings", "train_file": str(out), "base_model": str(base),
                     "epochs": 1, "output_dir": "{run_dir}/ai-rm"}})
    metrics = json.loads((train_rm(rm_cfg) / "train_metrics.json").read_text())
    assert metrics["n_train"] + metrics["eval"]["n_pairs"] == ranked


def test_critic_and_principles_can_be_given(tmp_path, tiny_t5_dir):
    path = write_tiny_run(tmp_path, tiny_t5_dir)
    cfg = load_config(path)
    with pytest.raises(Exception, match="none of the answer words"):  # the default words, a tiny vocabulary
        critique_judge(cfg, "cpu", critic=str(tiny_t5_dir), principles=["no-insults"])
    data = yaml.safe_load(path.read_text())
    data["reward"]["judges"].append({**JUDGE, "model": "elsewhere"})
    path.write_text(yaml.safe_dump(data))
    judge = critique_judge(load_config(path), "cpu", critic=str(tiny_t5_dir), principles=["faithful"])
    assert [p for p, _ in judge.principles] == ["faithful"] and judge.dimensions == ()


def test_the_cli_writes_the_pairs(tmp_path, tiny_t5_dir):
    from typer.testing import CliRunner

    from detoxrl.cli import app

    path = write_tiny_run(tmp_path, tiny_t5_dir, **{"reward.judges": [{**JUDGE, "model": str(tiny_t5_dir)}]})
    out = tmp_path / "pairs.jsonl"
    res = CliRunner().invoke(app, ["ai-preferences", str(path), "--n", "4", "--principles", "no-insults",
                                   "--margin", "0.5", "--out", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 4 and all(list(r["p_violates"]) == ["no-insults"] for r in rows)
    assert all(r["ranks"] == [1, 1] for r in rows if abs(r["violation"][0] - r["violation"][1]) <= 0.5)
