"""A reward model is a judge like any other: train-rm saves its normalisation and calibration, and
``{type: reward_model, path: ...}`` scores (prompt, response) with them, with no label or dimensions."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch
from conftest import learning_seed, record_margin
from test_train_rm import make_cfg, synthetic_text, write_jsonl

from detoxrl.config import JudgeSettings, config_from_dict
from detoxrl.errors import ConfigError, ModelError
from detoxrl.rewards.reward_model import RM_FILE, RewardModelJudge, platt_fit, rm_calibration

T = "2026-03-01T12:00:00Z"
PROMPT = "summarise the meeting"


# ------------------------------------------------------------------------------------ pure parts
def test_platt_fit_hand_computed():
    """One pair: the worse response at s = −1, the better at s = 1. Platt's targets are t = (1+1)/(1+2) =
    2/3 and 1/(1+2) = 1/3, fitted exactly by σ(a − b) = 2/3, σ(a + b) = 1/3: a = 0, b = −ln 2."""
    a, b = platt_fit(torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert a == pytest.approx(0.0, abs=1e-12) and b == pytest.approx(-math.log(2), abs=1e-12)
    # perfectly separated pairs stay finite (the smoothed targets are never 0 or 1)
    a, b = platt_fit(torch.tensor([-3.0, -2.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert math.isfinite(b) and b < 0 and a == pytest.approx(0.0, abs=1e-9)


def test_rm_calibration_normalises_over_the_pair_members():
    info = rm_calibration(torch.tensor([3.0, 5.0]), torch.tensor([1.0, 3.0]))
    assert info["score_mean"] == pytest.approx(3.0)
    assert info["score_std"] == pytest.approx(torch.tensor([3.0, 5.0, 1.0, 3.0]).std().item())
    assert info["n_pairs"] == 2 and info["calibration"]["kind"] == "platt" and info["calibration"]["b"] < 0
    assert rm_calibration(torch.zeros(3), torch.zeros(3))["score_std"] == 1.0  # no spread: scale kept


def test_reward_model_settings_defaults_and_errors():
    s = JudgeSettings.model_validate({"type": "reward_model", "path": "{run_dir}/judge"})
    assert (s.name, s.path, s.model, s.label, s.dimensions) == ("reward-model", "{run_dir}/judge",
                                                                  "{run_dir}/judge", None, {})
    assert JudgeSettings.model_validate({"type": "reward_model", "model": "rm"}).path == "rm"
    for bad, message in [({}, "needs `path`"), ({"path": "a", "model": "b"}, "differ"),
                         ({"path": "a", "label": "nothate"}, "remove label"),
                         ({"path": "a", "dimensions": {"hate": "hate"}}, "remove dimensions")]:
        with pytest.raises(ValueError, match=message):
            JudgeSettings.model_validate({"type": "reward_model", **bad})


def test_a_folder_without_the_reward_model_file_is_refused(tmp_path):
    from test_rewards_hf import make_roberta_dir

    folder = make_roberta_dir(tmp_path / "cls")
    with pytest.raises(ModelError, match=f"judge rm: .*cls has no {RM_FILE}: it is not a reward model"):
        RewardModelJudge("rm", str(folder))


# ------------------------------------------------------------------------------------ end to end
def ranking_rows(rng: random.Random, n: int) -> list[dict]:
    """Two labellers rank three completions (two clean, one with an offensive word) the same way up to
    ties; every tenth item also gets a special label from a third labeller."""
    rows = []
    for k in range(n):
        n_bad = [0, 0, 1]
        rng.shuffle(n_bad)
        comps = [synthetic_text(rng, b) for b in n_bad]
        prompt = f"{PROMPT} {k}"
        rows.append({"prompt": prompt, "completions": comps, "ranks": [1 + 2 * b if b else 1 for b in n_bad],
                     "labeller": "ann", "time": T})
        rows.append({"prompt": prompt, "completions": comps[::-1], "ranks": [3 if b else 1 for b in n_bad[::-1]],
                     "labeller": "bob", "time": T})
        if k % 10 == 0:
            rows.append({"prompt": prompt, "completions": comps, "special": "all_unusable", "labeller": "cat",
                         "time": T})
    return rows


@pytest.mark.slow
@pytest.mark.learning
def test_train_rm_then_a_reward_model_judge_in_the_composite_reward(tmp_path, request):
    """Margins, seeds 0/1/2 (the same on generic and AVX2 kernels): score clean − offensive
    1.624/1.098/1.588, toxicity offensive − clean 0.984/0.738/0.982; both must be positive."""
    from detoxrl.rewards.composite import CompositeReward
    from detoxrl.rewards.train import train_rm

    train = write_jsonl(tmp_path / "rankings.jsonl", ranking_rows(random.Random(0), 100))
    cfg = make_cfg(tmp_path, mode="rankings", train_file=str(train), heldout_share=0.2, epochs=3,
                   batch_size=32, learning_rate=3e-3, output_dir="{run_dir}/rm", seed=learning_seed())
    out = train_rm(cfg)
    metrics = json.loads((out / "train_metrics.json").read_text())
    summary = metrics["rankings"]["train_file"]
    # 100 items × 2 labellers × 2 pairs (the two clean completions tie), 10 special rows excluded
    assert (summary["rows"], summary["pairs"], summary["tied_pairs"], summary["special"]) == (
        210, 400, 200, {"all_unusable": 10})
    assert summary["agreement"]["items"] == 100 and summary["agreement"]["kendall_tau_b"] == 1.0
    assert summary["agreement"]["krippendorff_alpha_ordinal"] == 1.0
    assert metrics["n_train"] + metrics["eval"]["n_pairs"] == 400 and metrics["eval"]["n_pairs"] == 80
    info = json.loads((out / RM_FILE).read_text())
    assert info["n_pairs"] == 320 and info["score_std"] > 0 and info["calibration"]["b"] < 0

    # the trained model is a judge by path alone: no label, no dimensions, no overrides
    run = config_from_dict({
        "name": "t", "run_dir": str(tmp_path / "run"), "data": {"source": "x.jsonl"},
        "policy": {"name_or_path": "p"}, "reward": {"judges": [{"type": "reward_model", "path": "{run_dir}/rm"}]}})
    reward = CompositeReward.from_config(run)
    (judge,) = reward.judges
    assert judge.name == "reward-model" and judge.dimensions == ()
    texts = ["you are a kind friend thanks for help", "you are a zorp blarg friend"]
    res = judge.score(texts, [f"{PROMPT} 3"] * 2)
    record_margin(request, "score clean - offensive", res.score[0] - res.score[1], 0.0)
    record_margin(request, "toxicity offensive - clean", res.toxicity[1] - res.toxicity[0], 0.0)
    assert res.score[0] > res.score[1] and res.toxicity[1] > res.toxicity[0]
    out_reward = reward(texts, [f"{PROMPT} 3"] * 2)
    assert out_reward.total[0] > out_reward.total[1]
    assert set(out_reward.components) == {"judge/reward-model", "severity_penalty"}
    assert torch.allclose(out_reward.total, res.score)  # weight 1, no dimensions, no tiers
    # the score is the raw output normalised with the saved statistics
    raw = judge.logits(texts, [f"{PROMPT} 3"] * 2)[:, 0]
    assert torch.allclose(res.score, (raw - info["score_mean"]) / info["score_std"], atol=1e-5)


def test_a_reward_model_judge_needs_a_config_for_run_dir_paths():
    from detoxrl.rewards.build import build_judge

    with pytest.raises(ConfigError, match="contains {run_dir} but no config"):
        build_judge(JudgeSettings.model_validate({"type": "reward_model", "path": "{run_dir}/rm"}))


def test_train_rm_names_the_bad_row_and_takes_the_configured_special_labels(tmp_path):
    from detoxrl.errors import DataError
    from detoxrl.rewards.train import train_rm

    rows = ranking_rows(random.Random(1), 12)
    rows[5] = {**rows[5], "ranks": [1, 3, 3]}
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(DataError, match=r"bad.jsonl row 6: ranks \[1, 3, 3\] are not standard competition ranks; "
                                        r"expected \[1, 2, 2\]"):
        train_rm(make_cfg(tmp_path / "a", mode="rankings", train_file=str(bad)))
    rows = ranking_rows(random.Random(1), 12) + [{"prompt": "p", "completions": ["a"], "special": "duplicate",
                                                 "labeller": "dan", "time": T}]
    extra = write_jsonl(tmp_path / "extra.jsonl", rows)
    with pytest.raises(DataError, match="extra.jsonl row 27: unknown special label 'duplicate'"):
        train_rm(make_cfg(tmp_path / "b", mode="rankings", train_file=str(extra)))
    out = train_rm(make_cfg(tmp_path / "c", mode="rankings", train_file=str(extra), epochs=0.2,
                            special_labels=["duplicate"], heldout_share=0.25))
    summary = json.loads((out / "train_metrics.json").read_text())["rankings"]["train_file"]
    assert summary["special"] == {"all_unusable": 2, "duplicate": 1} and summary["pairs"] == 48


def test_the_model_card_names_the_reward_model_folder_and_the_config_round_trips(tmp_path):
    from detoxrl.evaluation.model_card import _judge_rows

    cfg = config_from_dict({"name": "t", "run_dir": str(tmp_path / "run"), "data": {"source": "x.jsonl"},
                            "policy": {"name_or_path": "p"},
                            "reward": {"judges": [{"type": "reward_model", "path": "{run_dir}/judge"}]}})
    rows = _judge_rows(cfg)
    assert rows[2] == f"| reward-model | reward_model | {tmp_path / 'run' / 'judge'} | reward |"
    # and the resolved config round-trips (config.yaml is written from it)
    again = config_from_dict(cfg.model_dump(mode="json"))
    assert again.reward.judges[0].path == "{run_dir}/judge" and again.reward.judges[0].name == "reward-model"
