"""eval.json by type and severity (detoxrl.evaluation.breakdown): per-dimension toxic rates, severity tier
shares, per prompt tier, the content words kept (over-correction), all against hand-computed values, and
the same blocks through ``summarize``, the console, the report section and the model card."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from detoxrl.config import SeverityTier, config_from_dict
from detoxrl.errors import DataError
from detoxrl.evaluation import breakdown as B
from detoxrl.evaluation import judging as J
from detoxrl.evaluation import metrics as M
from detoxrl.evaluation import printing as P
from detoxrl.evaluation.model_card import evaluation_markdown
from detoxrl.evaluation.report_breakdown import breakdown_section
from detoxrl.evaluation.summary import json_clean, summarize
from detoxrl.rewards.base import JudgeResult

TIERS = [SeverityTier(name="severe", min_severity=0.8, penalty=1.5),
         SeverityTier(name="mild", min_severity=0.5, penalty=0.5)]


# ------------------------------------------------------------------------------ content words
def test_content_words_and_kept_share_by_hand():
    assert M.word_tokens("#Person1#: Hi, Bob's 2 cats!") == ["#person1#", "hi", "bob", "s", "2", "cats"]
    # "the", "about" are stop words, "on" and "is" too short
    assert M.content_words("Bob asks Alice about the meeting on Monday.") == {"bob", "asks", "alice", "meeting",
                                                                             "monday"}
    assert M.kept_share("Bob asks Alice about the meeting.", "bob ASKS alice") == pytest.approx(3 / 4)
    assert M.kept_share("#Person1# wants coffee", "#Person1# wants coffee now") == 1.0
    assert M.kept_share("#Person1# wants coffee", "they want tea") == 0.0  # "want" is not "wants"
    assert math.isnan(M.kept_share("the of and is", "anything"))
    assert math.isnan(M.kept_share("", "anything"))
    assert isinstance(M.STOPWORDS, frozenset)


# ---------------------------------------------------------------------------------- dimensions
JUDGES = [{"name": "a", "type": "hf", "model": "m", "threshold": 0.5, "trained_against": True},
          {"name": "b", "type": "hf", "model": "n", "threshold": 0.5, "trained_against": False}]


def arrays(**cols) -> dict:
    return {k: np.array([v], dtype=np.float64) for k, v in cols.items()}


JUDGED_BEFORE = {
    "a": arrays(toxicity=[0.9, 0.1, 0.6, 0.0], score=[0.0, 1.0, 0.0, 1.0], severity=[0.9, 0.1, 0.6, 0.0],
                tox_hate=[0.9, 0.1, 0.6, 0.0]),
    "b": arrays(toxicity=[0.0, 0.7, 0.8, 0.0], score=[1.0, 0.0, 0.0, 1.0], severity=[0.0, 0.95, 0.8, 0.0],
                tox_hate=[0.0, 0.7, 0.0, 0.0], tox_profanity=[0.0, 0.0, 0.8, 0.0]),
}
JUDGED_AFTER = {
    "a": arrays(toxicity=[0.2, 0.1, 0.6, 0.0], score=[1.0, 1.0, 0.0, 1.0], severity=[0.2, 0.1, 0.6, 0.0],
                tox_hate=[0.2, 0.1, 0.6, 0.0]),
    "b": arrays(toxicity=[0.0, 0.0, 0.0, 0.0], score=[1.0, 1.0, 1.0, 1.0], severity=[0.0, 0.0, 0.0, 0.0],
                tox_hate=[0.0, 0.0, 0.0, 0.0], tox_profanity=[0.0, 0.0, 0.0, 0.0]),
}
THRESHOLDS = {"a": 0.5, "b": 0.5}


def test_dimension_rates_per_group_by_hand():
    assert B.judge_groups(JUDGES) == {"reward": ["a"], "held_out": ["b"], "all": ["a", "b"]}
    flags = B.dimension_flags(JUDGED_BEFORE, THRESHOLDS, ["a", "b"], "hate")
    assert flags.tolist() == [[True, True, True, False]]
    assert B.dimension_flags(JUDGED_BEFORE, THRESHOLDS, ["a"], "profanity") is None
    per = B.per_dimension(JUDGES, JUDGED_BEFORE, JUDGED_AFTER, THRESHOLDS, n_boot=200, seed=0)
    assert set(per) == {"reward", "held_out", "all"}
    # reward judge a: hate before p0, p2 -> 0.5; after p2 -> 0.25; it reports nothing else
    assert per["reward"]["hate"]["before"]["toxic_rate"] == pytest.approx(0.5)
    assert per["reward"]["hate"]["after"]["toxic_rate"] == pytest.approx(0.25)
    assert per["reward"]["hate"]["judges"] == ["a"]
    for d in ("harassment", "discrimination", "profanity"):
        assert per["reward"][d] == {"absent": True}
    assert per["held_out"]["hate"]["before"]["toxic_rate"] == pytest.approx(0.25)
    assert per["held_out"]["profanity"]["before"]["toxic_rate"] == pytest.approx(0.25)
    assert per["held_out"]["profanity"]["after"]["toxic_rate"] == 0.0
    # any judge: hate before p0 (a), p1 (b), p2 (a) -> 0.75, after p2 -> 0.25
    allh = per["all"]["hate"]
    assert allh["before"]["toxic_rate"] == pytest.approx(0.75) and allh["after"]["toxic_rate"] == pytest.approx(0.25)
    assert allh["judges"] == ["a", "b"]
    lo, hi = allh["before"]["toxic_rate_ci95"]
    assert 0 <= lo <= 0.75 <= hi <= 1
    # paired per prompt: d = [-1, -1, 0, 0]
    assert allh["paired"]["mean_diff"] == pytest.approx(-0.5)
    assert allh["paired"]["n_better"] == 2 and allh["paired"]["n_ties"] == 2
    assert allh["paired"]["verdict"] in {"less toxic", "no significant change"}


def test_no_held_out_group_without_extra_judges():
    judges = [JUDGES[0]]
    per = B.per_dimension(judges, {"a": JUDGED_BEFORE["a"]}, {"a": JUDGED_AFTER["a"]}, THRESHOLDS, n_boot=50, seed=0)
    assert set(per) == {"reward", "all"}


# ------------------------------------------------------------------------------------ severity
def test_response_severity_uses_reward_judges_and_tier_shares_by_hand():
    sev = B.response_severity(JUDGED_BEFORE, JUDGES)
    assert sev.tolist() == [[0.9, 0.1, 0.6, 0.0]]  # held-out judge b's 0.95 on p1 does not count
    assert B.tier_of(sev, TIERS).tolist() == [["severe", None, "mild", None]]
    # toxicity stands in when a judge kept no severity
    no_sev = {"a": {"toxicity": np.array([[0.3, 0.85]])}}
    assert B.response_severity(no_sev, JUDGES[:1]).tolist() == [[0.3, 0.85]]
    out = B.per_severity_tier(TIERS, JUDGES, JUDGED_BEFORE, JUDGED_AFTER, n_boot=100, seed=0)
    assert [t["name"] for t in out["tiers"]] == ["mild", "severe"]
    assert out["judges"] == ["a"]
    assert out["before"]["severe"]["share"] == pytest.approx(0.25)
    assert out["before"]["mild"]["share"] == pytest.approx(0.25)
    assert out["below_tiers"]["before"]["share"] == pytest.approx(0.5)
    assert out["after"]["severe"]["share"] == 0.0 and out["after"]["mild"]["share"] == pytest.approx(0.25)
    assert out["below_tiers"]["after"]["share"] == pytest.approx(0.75)
    assert B.per_severity_tier([], JUDGES, JUDGED_BEFORE, JUDGED_AFTER, n_boot=10, seed=0) == {
        "note": "no tiers: reward.severity_tiers is empty"}


# ---------------------------------------------------------------------------------- prompt tiers
class _P:
    def __init__(self, i, ref, tier=None):
        self.id, self.text, self.prompt, self.references = f"p{i}", f"dialogue {i}", f"prompt {i}", [ref, "other"]
        self.meta = {} if tier is None else {"tier": tier}


REFS = ["The cat sat on the mat", "Bob asks Alice about the meeting", "#Person1# wants coffee", "the of and"]
PROMPTS = [_P(i, r, t) for i, (r, t) in enumerate(zip(REFS, ["harmful", " Ambiguous", "clean", "clean"]))]
TEXTS_BEFORE = [["a cat", "Bob asks Alice.", "#Person1# wants coffee now", "x"]]
TEXTS_AFTER = [["a dog", "Bob talks.", "They want tea", "y"]]


def test_prompt_tiers_read_normalise_and_reject():
    assert B.prompt_tiers(PROMPTS, "tier") == ["harmful", "ambiguous", "clean", "clean"]
    assert B.prompt_tiers([_P(0, "r"), _P(1, "r")], "tier") is None
    with pytest.raises(DataError, match=r"'tier'.*prompt 'p1'.*'severe'"):
        B.prompt_tiers([_P(0, "r", "clean"), _P(1, "r", "severe")], "tier")
    with pytest.raises(DataError, match=r"prompt 'p1'"):
        B.prompt_tiers([_P(0, "r", "clean"), _P(1, "r")], "tier")


class _TextJudge:
    """A judge whose toxicity and severity of each text are looked up in a table."""

    def __init__(self, table):
        self.name, self.table = "t", table

    def score(self, texts):
        return JudgeResult("t", torch.zeros(len(texts)), torch.tensor([self.table[t][0] for t in texts]),
                           {}, torch.tensor([self.table[t][1] for t in texts]))


def test_eval_tiers_from_the_column_else_from_the_reward_judges_and_the_curriculum_thresholds(tmp_path):
    cfg = config_from_dict({"name": "t", "run_dir": str(tmp_path), "data": {"source": "x.jsonl"},
                            "policy": {"name_or_path": "p"},
                            "reward": {"judges": [{"name": "j", "model": "m", "label": "nothate"}]},
                            "curriculum": {"tier_thresholds": [0.2, 0.6]}})
    assert B.eval_tiers(cfg, PROMPTS, []) == (["harmful", "ambiguous", "clean", "clean"], "column")
    plain = [_P(i, "r") for i in range(4)]
    judge = _TextJudge({"dialogue 0": (0.1, 0.0), "dialogue 1": (0.2, 0.0), "dialogue 2": (0.59, 0.1),
                        "dialogue 3": (0.9, 0.9)})
    # 0.1 < 0.2: clean; 0.2 and 0.59 in [0.2, 0.6): ambiguous; 0.9 ≥ 0.6: harmful
    assert B.eval_tiers(cfg, plain, [judge]) == (["clean", "ambiguous", "ambiguous", "harmful"], "thresholds")
    assert B.eval_tiers(cfg, plain, []) == (None, None)


def test_per_prompt_tier_by_hand():
    tiers = B.prompt_tiers(PROMPTS, "tier")
    out = B.per_prompt_tier(tiers, "tier", JUDGES, "a", JUDGED_BEFORE, JUDGED_AFTER, THRESHOLDS, n_boot=100, seed=0)
    t = out["tiers"]
    assert {k: v["n_prompts"] for k, v in t.items()} == {"clean": 2, "ambiguous": 1, "harmful": 1}
    assert t["harmful"]["before"]["primary_toxic_rate"] == 1.0 and t["harmful"]["after"]["primary_toxic_rate"] == 0.0
    assert t["clean"]["before"]["primary_toxic_rate"] == pytest.approx(0.5)
    assert t["clean"]["after"]["primary_toxic_rate"] == pytest.approx(0.5)
    assert t["ambiguous"]["before"]["held_out_toxic_rate"] == 1.0
    assert t["clean"]["before"]["held_out_toxic_rate"] == pytest.approx(0.5)
    assert t["clean"]["after"]["held_out_toxic_rate"] == 0.0
    none = B.per_prompt_tier(None, "tier", JUDGES, "a", JUDGED_BEFORE, JUDGED_AFTER, THRESHOLDS, n_boot=10, seed=0)
    assert "tiers" not in none and "prompts have no tier column" in none["note"]


def test_over_correction_by_hand():
    tiers = B.prompt_tiers(PROMPTS, "tier")
    oc = B.over_correction(PROMPTS, tiers, TEXTS_BEFORE, TEXTS_AFTER, n_boot=200, seed=0)
    # ambiguous p1: {bob, asks, alice, meeting}: 3/4 -> 1/4; clean p2: 3/3 -> 0; clean p3 has no content word
    assert oc["prompts"] == "ambiguous and clean" and oc["n_skipped"] == 1
    o = oc["overall"]
    assert o["n_prompts"] == 2
    assert o["before"] == pytest.approx(0.875) and o["after"] == pytest.approx(0.125)
    assert o["paired"]["mean_diff"] == pytest.approx(-0.75)
    assert oc["per_tier"]["ambiguous"]["before"] == pytest.approx(0.75)
    assert oc["per_tier"]["ambiguous"]["after"] == pytest.approx(0.25)
    assert oc["per_tier"]["clean"]["n_prompts"] == 1 and oc["per_tier"]["clean"]["after"] == 0.0
    # without tiers every prompt counts: p0 {cat, sat, mat}: 1/3 -> 0 as well
    oc_all = B.over_correction(PROMPTS, None, TEXTS_BEFORE, TEXTS_AFTER, n_boot=200, seed=0)
    assert oc_all["prompts"] == "all (no tier column)" and "per_tier" not in oc_all
    assert oc_all["overall"]["n_prompts"] == 3
    assert oc_all["overall"]["before"] == pytest.approx((1 / 3 + 0.75 + 1) / 3)
    # two samples per prompt are averaged first: p1 (3/4 + 1/4) / 2
    two = B.over_correction(PROMPTS[1:2], None, [["Bob asks Alice."], ["Bob talks."]], [["x"], ["y"]], n_boot=10, seed=0)
    assert two["overall"]["before"] == pytest.approx(0.5)


# ----------------------------------------------------------------------------------- judging
def test_score_texts_keeps_severity_and_dimensions():
    class DimJudge:
        name, threshold = "d", 0.5

        def score(self, texts):
            tox = torch.tensor([0.2 * len(t) for t in texts])
            return JudgeResult("d", 1 - tox, tox, {"hate": tox / 2}, tox / 4, 0.5)

    ej = J.EvalJudge(DimJudge(), None, True)
    res = J.score_texts(ej, ["a", "bb"], ["p", "p"])
    assert set(res) == {"toxicity", "score", "severity", "tox_hate"}
    assert res["tox_hate"] == pytest.approx([0.1, 0.2]) and res["severity"] == pytest.approx([0.05, 0.1])


# ------------------------------------------------------------------------- through summarize
def _cfg(tmp_path, **reward):
    return config_from_dict({
        "name": "t", "run_dir": str(tmp_path / "run"), "seed": 0,
        "policy": {"name_or_path": "google/flan-t5-base", "kind": "seq2seq"},
        "data": {"source": "knkarthick/dialogsum", "format": "hub"},
        "reward": {"judges": [{"name": "a", "preset": "meta-hate"}], **reward},
        "eval": {"bootstrap": 200, "extra_judges": [{"name": "b", "type": "profanity"}]},
    })


def test_summarize_writes_the_breakdown_blocks(tmp_path):
    cfg = _cfg(tmp_path, severity_tiers=[t.model_dump() for t in TIERS])
    ones = np.ones((1, 4))
    res = json_clean(summarize(
        cfg=cfg, judges=JUDGES, primary="a", prompts=PROMPTS, samples=1, decoding={}, seed=0, before_model="ref",
        after_model="pol", texts_before=TEXTS_BEFORE, texts_after=TEXTS_AFTER, lengths_before=ones,
        lengths_after=ones, judged_before=JUDGED_BEFORE, judged_after=JUDGED_AFTER, kl=None, timing={}))
    json.dumps(res, allow_nan=False)
    assert {"per_dimension", "per_severity_tier", "per_prompt_tier", "over_correction"} <= set(res)
    assert res["before"]["toxic_rate"] == pytest.approx(0.75)  # the existing keys stay as they were
    pd = res["per_dimension"]
    assert pd["all"]["hate"]["before"]["toxic_rate"] == pytest.approx(0.75)
    assert pd["all"]["harassment"] == {"absent": True}
    assert pd["held_out"]["profanity"]["paired"]["mean_diff"] == pytest.approx(-0.25)
    assert res["per_severity_tier"]["before"]["severe"]["share"] == pytest.approx(0.25)
    assert res["per_prompt_tier"]["column"] == "tier"
    assert res["per_prompt_tier"]["tiers"]["harmful"]["before"]["primary_toxic_rate"] == 1.0
    assert res["over_correction"]["overall"]["paired"]["mean_diff"] == pytest.approx(-0.75)

    # the console, the report section and the model card show them
    table = P.dimension_table(res)
    assert table is not None and table.row_count == 4
    line = P.over_correction_line(res)
    assert "0.875 → 0.125" in line and "-0.750" in line
    html = breakdown_section(res)
    assert "Absent (no judge of the group" in html and "<img" in html and "0.875 → 0.125" in html and "severe" in html
    card = evaluation_markdown(res)
    assert "- **hate:** 0.7500" in card and "**profanity:**" in card and "**harassment:**" not in card

    # no tiers configured, no tier column: notes, not numbers
    plain = [_P(i, r) for i, r in enumerate(REFS)]
    res2 = summarize(
        cfg=_cfg(tmp_path), judges=JUDGES, primary="a", prompts=plain, samples=1, decoding={}, seed=0,
        before_model="ref", after_model="pol", texts_before=TEXTS_BEFORE, texts_after=TEXTS_AFTER,
        lengths_before=ones, lengths_after=ones, judged_before=JUDGED_BEFORE, judged_after=JUDGED_AFTER, kl=None,
        timing={})
    assert set(res2["per_severity_tier"]) == {"note"}
    assert "prompts have no tier column" in res2["per_prompt_tier"]["note"]
    assert res2["over_correction"]["prompts"] == "all (no tier column)"
