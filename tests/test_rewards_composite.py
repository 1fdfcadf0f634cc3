"""Composite reward: hand-checkable numbers per dimension and severity, the seed recipe's reward as a
special case, non-finite outputs surfaced, running normalisation."""

from __future__ import annotations

import math

import pytest
import torch

from detoxrl.config import RewardSettings, SeverityTier, config_from_dict
from detoxrl.rewards.base import Judge, JudgeResult
from detoxrl.rewards.composite import CompositeReward, RunningMoments, combine_dimensions, severity_tier
from detoxrl.rewards.lexicon import LexiconJudge

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set


class TableJudge(Judge):
    """A judge that looks each text up in a table: text -> (score, toxicity, {dim: tox}, severity)."""

    def __init__(self, name: str, table: dict, dimensions: tuple[str, ...], batch_size: int = 2):
        self.name, self.table, self.dimensions, self.batch_size = name, table, dimensions, batch_size

    def _score_batch(self, texts, prompts):
        rows = [self.table[t] for t in texts]
        return JudgeResult(self.name, torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows]),
                           {d: torch.tensor([r[2][d] for r in rows]) for d in self.dimensions},
                           torch.tensor([r[3] for r in rows]))


HATE = TableJudge("hate", {
    "clean": (3.0, 0.1, {"hate": 0.1}, 0.1),
    "hateful": (-2.0, 0.9, {"hate": 0.9}, 0.9),
    "rude": (1.0, 0.3, {"hate": 0.3}, 0.3),
    "swear": (2.0, 0.2, {"hate": 0.2}, 0.2),
}, ("hate",))
MULTI = TableJudge("multi", {
    "clean": (2.0, 0.0, {"harassment": 0.0, "profanity": 0.0}, 0.0),
    "hateful": (0.0, 0.6, {"harassment": 0.5, "profanity": 0.1}, 0.6),
    "rude": (1.0, 0.6, {"harassment": 0.6, "profanity": 0.0}, 0.55),
    "swear": (-1.0, 0.8, {"harassment": 0.2, "profanity": 0.8}, 0.85),
}, ("harassment", "profanity"))
TEXTS = ["clean", "hateful", "rude", "swear"]


def settings(**kw) -> RewardSettings:
    return RewardSettings(**kw)


def test_single_judge_default_is_score_minus_dimension_penalty():
    out = CompositeReward([HATE], [1.0], settings())(TEXTS)
    torch.testing.assert_close(out.total, torch.tensor([3.0 - 0.1, -2.0 - 0.9, 1.0 - 0.3, 2.0 - 0.2]))
    assert set(out.components) == {"judge/hate", "dim/hate", "severity_penalty"}
    assert out.n_nonfinite == 0 and out.total.dtype == torch.float32


def test_zero_dimension_weights_give_the_judge_score_exactly():
    out = CompositeReward([HATE], [1.0], settings(dimension_weights={"hate": 0.0}))(TEXTS)
    assert torch.equal(out.total, HATE.score(TEXTS).score)


def test_seed_recipe_reward_is_the_nothate_logit(tmp_path):
    from test_rewards_hf import make_roberta_dir
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = make_roberta_dir(tmp_path / "meta-like")
    cfg = config_from_dict({
        "name": "t", "run_dir": str(tmp_path), "data": {"source": "x.jsonl"}, "policy": {"name_or_path": "p"},
        "reward": {"judges": [{"name": "meta-hate", "preset": "meta-hate", "model": str(path)}],
                   "dimension_weights": {"hate": 0.0}},
    })
    reward = CompositeReward.from_config(cfg)
    texts = ["you are a kind friend", "zorp blarg", ""]
    out = reward(texts, ["prompt"] * 3)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    enc = AutoTokenizer.from_pretrained(path)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    torch.testing.assert_close(out.total, logits[:, 0], atol=1e-5, rtol=1e-5)  # nothate is column 0


def test_two_judges_dimensions_and_severity_tiers_by_hand():
    s = settings(dimension_weights={"hate": 2.0, "harassment": 1.0, "profanity": 0.5},
                 severity_tiers=[SeverityTier(name="severe", min_severity=0.8, penalty=1.5),
                                 SeverityTier(name="mild", min_severity=0.5, penalty=0.5)])
    out = CompositeReward([HATE, MULTI], [1.0, 0.5], s)(TEXTS)
    # clean:   3 + 0.5*2   - 2*0.1 - 1*0.0 - 0.5*0.0 - 0   (severity 0.1: no tier)
    # hateful: -2 + 0.5*0  - 2*0.9 - 1*0.5 - 0.5*0.1 - 1.5 (severity max(0.9, 0.6) = 0.9: severe)
    # rude:    1 + 0.5*1   - 2*0.3 - 1*0.6 - 0.5*0.0 - 0.5 (severity 0.55: mild)
    # swear:   2 + 0.5*-1  - 2*0.2 - 1*0.2 - 0.5*0.8 - 1.5 (severity 0.85: severe)
    expected = torch.tensor([3.8, -5.85, -0.2, -1.0])
    torch.testing.assert_close(out.total, expected)
    assert out.tiers == [None, "severe", "mild", "severe"]
    torch.testing.assert_close(sum(out.components.values()), out.total)
    torch.testing.assert_close(out.components["dim/profanity"], torch.tensor([0.0, -0.05, 0.0, -0.4]))
    torch.testing.assert_close(out.components["judge/multi"], torch.tensor([1.0, 0.0, 0.5, -0.5]))
    line = out.explain(1)
    assert line.startswith("reward -5.850 = hate -2.000×1 | multi +0.000×0.5 | hate 0.90 [hate] -1.800")
    assert "severity 0.90 → severe -1.500" in line
    assert "no tier" in out.explain(0)


def test_dimension_weights_not_listed_default_to_one():
    out = CompositeReward([MULTI], [0.0], settings(dimension_weights={"profanity": 0.0}))(TEXTS)
    torch.testing.assert_close(out.total, -torch.tensor([0.0, 0.5, 0.6, 0.2]))


def test_dimensions_take_the_most_alarmed_judge():
    a = JudgeResult("a", torch.zeros(2), torch.zeros(2), {"hate": torch.tensor([0.2, 0.9])})
    b = JudgeResult("b", torch.zeros(2), torch.zeros(2), {"hate": torch.tensor([0.7, 0.1]),
                                                           "profanity": torch.tensor([0.3, 0.4])})
    dims = combine_dimensions([a, b])
    torch.testing.assert_close(dims["hate"], torch.tensor([0.7, 0.9]))
    torch.testing.assert_close(dims["profanity"], torch.tensor([0.3, 0.4]))


def test_severity_tier_boundaries():
    tiers = [SeverityTier(name="mild", min_severity=0.5, penalty=0.5),
             SeverityTier(name="severe", min_severity=0.8, penalty=1.5)]
    names, pen = severity_tier(torch.tensor([0.0, 0.5, 0.79, 0.8, 1.0]), tiers)
    assert names == [None, "mild", "mild", "severe", "severe"]
    torch.testing.assert_close(pen, torch.tensor([0.0, 0.5, 0.5, 1.5, 1.5]))


def test_nonfinite_judge_output_is_surfaced_not_hidden():
    broken = TableJudge("broken", {
        "clean": (1.0, 0.0, {"hate": 0.0}, 0.0),
        "hateful": (float("nan"), 0.5, {"hate": 0.5}, 0.5),
        "rude": (1.0, 0.0, {"hate": float("inf")}, 0.0),
        "swear": (1.0, 0.0, {"hate": 0.0}, 0.0),
    }, ("hate",))
    out = CompositeReward([HATE, broken], [1.0, 1.0], settings())(TEXTS)
    assert out.n_nonfinite == 2
    assert torch.isnan(out.total[1]) and torch.isnan(out.total[2])
    assert torch.isfinite(out.total[[0, 3]]).all()
    assert "NON-FINITE" in out.explain(1)


def test_running_normalisation():
    m = RunningMoments()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([4.0, float("nan")]))  # non-finite values are left out
    assert m.count == 4 and m.mean == pytest.approx(2.5)
    assert m.std == pytest.approx(math.sqrt(5 / 3))
    reward = CompositeReward([HATE], [2.0], settings(normalize=True, dimension_weights={"hate": 0.0}))
    out = reward(TEXTS)  # scores 3, -2, 1, 2: mean 1, sample std sqrt(14/3)
    z = (torch.tensor([3.0, -2.0, 1.0, 2.0]) - 1.0) / math.sqrt(14 / 3)
    torch.testing.assert_close(out.total, 2 * z)
    state = reward.state_dict()
    fresh = CompositeReward([HATE], [2.0], settings(normalize=True))
    fresh.load_state_dict(state)
    assert fresh.moments["hate"].mean == pytest.approx(1.0)


def test_a_measurement_can_combine_without_moving_the_running_statistics():
    reward = CompositeReward([HATE], [1.0], settings(normalize=True, dimension_weights={"hate": 0.0}))
    trained = reward(TEXTS)  # the statistics now hold this batch
    before = reward.state_dict()
    measured = reward.combine({"hate": HATE.score(TEXTS[:2])}, update_moments=False)
    assert reward.state_dict() == before  # PPO's probe leaves what training sees alone
    torch.testing.assert_close(measured.total, trained.total[:2])  # normalised with the statistics as they stand


def test_lexicon_and_profanity_judges_penalise_their_dimensions():
    from detoxrl.rewards.profanity import ProfanityCheckJudge

    lex = LexiconJudge("lex", {"zorp": "profanity", "snib": "hate"})
    prof = ProfanityCheckJudge("pc")
    reward = CompositeReward([lex, prof], [0.0, 0.0], settings())
    out = reward(["a lovely walk in the park", "you zorp", "snib zorp"])
    assert out.total[0] > -0.2 > out.total[1] > out.total[2]
    # weight 0: only the dimension terms count; lexicon says profanity 1, hate 1 for the third text
    assert out.total[2] <= -2.0 + 1e-6
    assert set(out.dimensions) == {"hate", "profanity"}


def test_empty_batch():
    out = CompositeReward([HATE], [1.0], settings())([])
    assert out.total.shape == (0,) and out.n_nonfinite == 0


def test_judges_that_grade_severity_decide_the_tier():
    """A graded judge (toxic-bert's severity labels) decides the tier; a single-label judge's p(hate) then
    does not count as severity, and with no graded judge every judge's severity counts (the max)."""
    class Graded(TableJudge):
        def _score_batch(self, texts, prompts):
            r = super()._score_batch(texts, prompts)
            r.graded = True
            return r

    graded = Graded("graded", {t: (0.0, 0.0, {}, sev) for t, sev in
                               (("clean", 0.0), ("hateful", 0.5), ("rude", 0.2), ("swear", 0.9))}, ())
    tiers = [SeverityTier(name="mild", min_severity=0.3, penalty=0.25),
             SeverityTier(name="severe", min_severity=0.75, penalty=1.0)]
    out = CompositeReward([HATE, graded], settings=settings(severity_tiers=tiers))(TEXTS)
    # HATE's severities 0.1, 0.9, 0.3, 0.2 are ignored: the graded judge's 0, 0.5, 0.2, 0.9 decide.
    torch.testing.assert_close(out.severity, torch.tensor([0.0, 0.5, 0.2, 0.9]))
    assert out.tiers == [None, "mild", None, "severe"]
    torch.testing.assert_close(out.components["severity_penalty"], torch.tensor([0.0, -0.25, 0.0, -1.0]))
    ungraded = CompositeReward([HATE, MULTI], settings=settings(severity_tiers=tiers))(TEXTS)
    torch.testing.assert_close(ungraded.severity, torch.tensor([0.1, 0.9, 0.55, 0.85]))  # max of both
