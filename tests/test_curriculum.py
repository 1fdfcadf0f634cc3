"""Curriculum: pacing by hand, samplers' coverage and eligibility, self-paced stages, exact resumption, tiers."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from detoxrl.config import CurriculumSettings, config_from_dict
from detoxrl.curriculum.difficulty import (
    curriculum_scores,
    difficulty_for,
    from_column,
    from_judge,
    from_rewards,
    rank_normalize,
)
from detoxrl.curriculum.pacing import linear, sqrt_competence, stage_at, stage_competence, step_stages
from detoxrl.curriculum.sampler import CurriculumSampler, PromptSampler, UniformSampler, make_sampler
from detoxrl.curriculum.tiers import REDTEAM_MARK, prompt_tiers, tier_levels, tiers_from_toxicity
from detoxrl.errors import CheckpointError, ConfigError, DataError


# ------------------------------------------------------------------------------------------ pacing
@pytest.mark.parametrize("t, expected", [(0, 0.2), (25, 0.4), (50, 0.6), (100, 1.0), (150, 1.0)])
def test_linear_pacing(t, expected):
    # c = min(1, 0.2 + 0.8·t/100)
    assert linear(t, 100, 0.2) == pytest.approx(expected)


@pytest.mark.parametrize("t, expected", [
    (0, 0.2),                        # sqrt(0.04)
    (50, 0.7211102550927979),        # sqrt(50·0.96/100 + 0.04) = sqrt(0.52)
    (25, 0.5291502622129182),        # sqrt(0.24 + 0.04) = sqrt(0.28)
    (100, 1.0), (400, 1.0),
])
def test_sqrt_pacing(t, expected):
    assert sqrt_competence(t, 100, 0.2) == pytest.approx(expected, abs=1e-12)


def test_step_pacing():
    # 3 stages: 0.2 below T/2, 0.6 from T/2, 1.0 from T
    assert [step_stages(t, 100, 0.2, 3) for t in (0, 49, 50, 99, 100, 500)] == pytest.approx(
        [0.2, 0.2, 0.6, 0.6, 1.0, 1.0])
    # 5 stages: levels 0.2, 0.4, 0.6, 0.8, 1.0, changing every T/4
    assert [step_stages(t, 100, 0.2, 5) for t in (0, 24, 25, 74, 75, 100)] == pytest.approx(
        [0.2, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert stage_at(60, 100, 3) == 1
    assert stage_competence(0, 1, 0.2) == 1.0
    assert stage_competence(7, 3, 0.5) == 1.0  # beyond the last stage
    assert linear(0, 0, 0.3) == 1.0 and sqrt_competence(3, 0, 0.3) == 1.0
    with pytest.raises(ValueError):
        linear(0, 10, 0.0)


# -------------------------------------------------------------------------------------- difficulty
def test_rank_normalize_by_hand():
    assert rank_normalize([3.0, 1.0, 2.0]).tolist() == [1.0, 0.0, 0.5]
    # ties share their average rank: ranks 0,1 → 0.5 each; then 2, 3; divided by 3
    assert rank_normalize([1.0, 1.0, 2.0, 3.0]) == pytest.approx([0.5 / 3, 0.5 / 3, 2 / 3, 1.0])
    assert rank_normalize([42.0]).tolist() == [0.0]
    with pytest.raises(DataError, match="row 1"):
        rank_normalize([1.0, float("nan")])


def test_from_rewards_and_column():
    # lower reward is harder: -r = [-1, 2, 0] → ranks 0, 2, 1 → /2
    assert from_rewards([1.0, -2.0, 0.0]).tolist() == [0.0, 1.0, 0.5]
    assert from_column([10, 30, 20]).tolist() == [0.0, 1.0, 0.5]
    with pytest.raises(DataError, match="row 2"):
        from_column([1.0, 2.0, "high"], "severity")


class FakeJudge:
    name = "fake"

    def __init__(self, table: dict[str, float]):
        self.table = table
        self.calls = 0

    def score(self, texts):
        self.calls += 1
        return SimpleNamespace(toxicity=torch.tensor([self.table[t] for t in texts]))


def test_from_judge_more_toxic_is_harder():
    judge = FakeJudge({"calm": 0.01, "rude": 0.7, "mild": 0.2})
    assert from_judge(["rude", "calm", "mild"], judge, batch_size=2).tolist() == [1.0, 0.0, 0.5]
    assert judge.calls == 2


def _cfg(tmp_path, **curriculum):
    return config_from_dict({
        "policy": {"name_or_path": "unused"},
        "data": {"source": "prompts.jsonl"},
        "reward": {"judges": [{"name": "j", "type": "lexicon"}]},
        "run_dir": str(tmp_path / "run"),
        "curriculum": {"enabled": True, **curriculum},
    })


def _prompts(texts, metas=None):
    from detoxrl.data.prompts import PromptExample

    metas = metas or [{} for _ in texts]
    return [PromptExample(id=f"p{i}", prompt=f"Summarize: {t}", text=t, references=[], meta=m)
            for i, (t, m) in enumerate(zip(texts, metas))]


def test_difficulty_for_column_and_missing_column(tmp_path):
    prompts = _prompts(["a", "b", "c"], [{"severity": 2}, {"severity": 0}, {"severity": "1"}])
    d = difficulty_for(_cfg(tmp_path, difficulty="column", difficulty_column="severity"), prompts, None, None)
    assert d.tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(DataError, match="p0"):
        difficulty_for(_cfg(tmp_path / "x", difficulty="column", difficulty_column="topic"), prompts, None, None)
    with pytest.raises(ConfigError, match="difficulty_column"):
        difficulty_for(_cfg(tmp_path / "y", difficulty="column"), prompts, None, None)


def test_difficulty_for_judge_uses_prompt_text_and_caches(tmp_path):
    judges = [FakeJudge({"calm": 0.0, "rude": 0.9, "mild": 0.3}), FakeJudge({"calm": 0.2, "rude": 0.4, "mild": 0.5})]
    reward_fn = SimpleNamespace(judges=judges)
    cfg = _cfg(tmp_path, difficulty="judge")
    prompts = _prompts(["rude", "calm", "mild"])
    # mean toxicity: rude 0.65, calm 0.1, mild 0.4
    d = difficulty_for(cfg, prompts, reward_fn, None)
    assert d.tolist() == [1.0, 0.0, 0.5]
    calls = [j.calls for j in judges]
    again = difficulty_for(cfg, prompts, reward_fn, None)  # from {run_dir}/ppo/difficulty.json
    assert again.tolist() == d.tolist() and [j.calls for j in judges] == calls
    saved = json.loads((tmp_path / "run" / "ppo" / "difficulty.json").read_text())
    assert saved["raw"] == pytest.approx([0.65, 0.1, 0.4])
    # other prompts: the cache does not apply
    other = difficulty_for(cfg, _prompts(["calm", "rude"]), reward_fn, None)
    assert other.tolist() == [0.0, 1.0]


def test_difficulty_cache_is_invalidated_by_a_retrained_judge(tmp_path):
    judge_dir = tmp_path / "judge"
    judge_dir.mkdir()
    (judge_dir / "model.safetensors").write_bytes(b"v1")
    cfg = config_from_dict({
        "policy": {"name_or_path": "unused"}, "data": {"source": "prompts.jsonl"},
        "reward": {"judges": [{"name": "j", "type": "hf", "model": str(judge_dir)}]},
        "run_dir": str(tmp_path / "run"), "curriculum": {"enabled": True, "difficulty": "judge"},
    })
    judge = FakeJudge({"calm": 0.0, "rude": 0.9})
    prompts = _prompts(["rude", "calm"])
    difficulty_for(cfg, prompts, SimpleNamespace(judges=[judge]), None)
    difficulty_for(cfg, prompts, SimpleNamespace(judges=[judge]), None)
    assert judge.calls == 1
    (judge_dir / "model.safetensors").write_bytes(b"version 2")
    difficulty_for(cfg, prompts, SimpleNamespace(judges=[judge]), None)
    assert judge.calls == 2


def test_difficulty_for_judge_without_judges_uses_reward(tmp_path):
    reward = {"calm": 2.0, "rude": -3.0, "mild": 0.5}
    reward_fn = lambda texts, prompts: SimpleNamespace(total=torch.tensor([reward[t] for t in texts]))  # noqa: E731
    d = difficulty_for(_cfg(tmp_path, difficulty="judge"), _prompts(["rude", "calm", "mild"]), reward_fn, None)
    assert d.tolist() == [1.0, 0.0, 0.5]


@pytest.mark.cpus
def test_difficulty_for_base_reward_generates_once(tmp_path, tiny_t5_dir):
    from detoxrl.models.policy import load_policy_model

    lp = load_policy_model(str(tiny_t5_dir))
    seen: list[str] = []

    def reward_fn(responses, prompts):
        seen.extend(responses)
        return SimpleNamespace(total=torch.tensor([-float(len(r)) for r in responses]))

    cfg = _cfg(tmp_path, difficulty="base_reward")
    cfg.ppo.generation.max_new_tokens = 6
    prompts = _prompts(["w1 w2 w3", "w4 w5", "w6 w7 w8 w9", "w10"])
    d = difficulty_for(cfg, prompts, reward_fn, lp)
    assert len(seen) == 4 and len(d) == 4
    # longest (greedy) response = lowest reward = hardest
    lengths = [len(r) for r in seen]
    assert d.tolist() == pytest.approx(rank_normalize(lengths).tolist())


# ---------------------------------------------------------------------------------------- samplers
def test_uniform_sampler_covers_each_index_once_per_pass_and_is_deterministic():
    s = UniformSampler(12, seed=3)
    assert isinstance(s, PromptSampler)
    passes = []
    for _ in range(3):
        batch = s.next_batch(4) + s.next_batch(4) + s.next_batch(4)
        assert sorted(batch) == list(range(12))
        passes.append(batch)
    assert passes[0] != passes[1]  # reshuffled each pass
    again = UniformSampler(12, seed=3)
    assert [again.next_batch(4) for _ in range(9)] == [passes[i // 3][4 * (i % 3): 4 * (i % 3) + 4] for i in range(9)]
    assert UniformSampler(12, seed=4).next_batch(12) != passes[0]


def test_uniform_sampler_batch_crossing_a_pass():
    s = UniformSampler(10, seed=0)
    drawn = s.next_batch(4) + s.next_batch(4) + s.next_batch(4)
    assert sorted(drawn[:10]) == list(range(10))
    assert s.log_stats()["curriculum/epoch"] == 1.0


def _shuffled_difficulty(n=100, seed=0):
    return np.random.default_rng(seed).permutation(n) / (n - 1)


def test_curriculum_sampler_only_easy_prompts_early_then_all():
    diff = _shuffled_difficulty()
    rank = np.argsort(np.argsort(diff))  # 0 = easiest
    # linear, c0 = 0.2, T = 0.8 × 10 = 8: c(t) = 0.2 + 0.1·t
    s = CurriculumSampler(diff, "linear", total_steps=10, seed=1, start_competence=0.2, full_at=0.8)
    for t in range(8):
        batch = s.next_batch(10)
        limit = math.ceil((0.2 + 0.1 * t) * 100 - 1e-9)
        assert max(rank[batch]) < limit, (t, limit)
        assert len(set(batch)) == 10
        stats = s.log_stats()
        assert stats["curriculum/competence"] == pytest.approx(0.2 + 0.1 * t)
        assert stats["curriculum/mean_difficulty"] == pytest.approx(float(diff[batch].mean()))
    assert s.log_stats()["curriculum/eligible"] == 90
    late = [i for _ in range(30) for i in s.next_batch(10)]
    assert s.log_stats()["curriculum/competence"] == 1.0
    assert max(rank[late]) >= 95  # the hardest prompts now appear
    first = CurriculumSampler(diff, "linear", 10, seed=1).next_batch(10)
    stats = CurriculumSampler(diff, "linear", 10, seed=1)
    stats.next_batch(10)
    shares = [v for k, v in stats.log_stats().items() if k.startswith("curriculum/share_bucket")]
    assert len(shares) == 4 and sum(shares) == pytest.approx(1.0) and shares[0] == 1.0
    assert first == stats.last_batch


def test_curriculum_sampler_small_pool_repeats_and_ties_are_shuffled():
    s = CurriculumSampler([0.0] * 3 + [1.0] * 7, "step", total_steps=100, seed=0, start_competence=0.1, n_stages=2)
    batch = s.next_batch(5)  # only one prompt eligible at the start
    assert len(set(batch)) == 1 and batch[0] in (0, 1, 2)
    assert s.log_stats()["curriculum/stage"] == 0.0
    orders = {tuple(CurriculumSampler([0.5] * 20, "sqrt", 10, seed=k).order[:5]) for k in range(5)}
    assert len(orders) > 1  # equal scores are not taken in file order


def test_self_paced_advances_when_rewards_pass_threshold_and_not_before():
    diff = _shuffled_difficulty()
    rank = np.argsort(np.argsort(diff))
    s = CurriculumSampler(diff, "self_paced", total_steps=100, seed=0, start_competence=0.2, n_stages=3,
                          reward_threshold=0.5, window=3)
    rewards = [0.0, 0.0, 0.6, 0.6]  # window means: 0.2 (step 3), 0.4 (step 4)
    for step, r in enumerate(rewards, start=1):
        assert max(rank[s.next_batch(8)]) < 20
        s.observe(step, [r, r])
        assert s.stage == 0
    s.next_batch(8)
    s.observe(5, [0.6])  # window [0.6, 0.6, 0.6] → mean 0.6 > 0.5 → stage 1
    assert s.stage == 1 and s.advanced_at == [5]
    assert s.log_stats()["curriculum/stage"] == 1.0
    batch = s.next_batch(50)
    assert s.last_competence == pytest.approx(0.6) and max(rank[batch]) < 60
    # the window starts again in the new stage; exactly the threshold does not pass it
    for step in (6, 7, 8):
        s.observe(step, [0.5])
    assert s.stage == 1
    s.observe(9, [float("nan")])  # non-finite rewards are ignored
    assert s.stage == 1
    for step in (10, 11, 12):
        s.observe(step, [0.9])
    assert s.stage == 2 and s.competence(s.t) == 1.0
    for step in range(13, 20):
        s.observe(step, [5.0])
    assert s.stage == 2  # no stage beyond the last


def _run(sampler, steps, start=0):
    out = []
    for step in range(start + 1, start + steps + 1):
        batch = sampler.next_batch(7)
        sampler.observe(step, [math.sin(step) + 0.8])  # deterministic rewards that pass 0.5 sometimes
        out.append((batch, sampler.log_stats()))
    return out


def _resumed_run_matches(make, steps, split):
    """``steps`` batches straight, and the same with a JSON checkpoint after ``split``: equal batches and
    figures (asserted); returns the straight run, the resumed sampler and the checkpoint's state."""
    straight = _run(make(), steps)
    first = make()
    head = _run(first, split)
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make()
    resumed.load_state_dict(state)
    tail = _run(resumed, steps - split, start=split)
    assert [b for b, _ in head + tail] == [b for b, _ in straight]
    assert [s for _, s in head + tail] == [s for _, s in straight]
    return straight, resumed, state


@pytest.mark.parametrize("pacing", ["uniform", "linear", "sqrt", "step", "self_paced"])
def test_state_dict_round_trip_continues_exactly(pacing):
    diff = _shuffled_difficulty(50, seed=2)
    settings = CurriculumSettings(enabled=pacing != "uniform", pacing="sqrt" if pacing == "uniform" else pacing,
                                  start_competence=0.1, full_at=0.5, stages=4, reward_threshold=0.5, window=2)

    def make():
        return make_sampler(settings, 50, total_steps=12, seed=5, difficulty=diff)

    _, resumed, _ = _resumed_run_matches(make, 10, 5)
    if pacing == "self_paced":
        assert resumed.stage > 0  # the schedule did move


def test_load_state_dict_refuses_a_different_run():
    diff = _shuffled_difficulty(20)
    a = CurriculumSampler(diff, "linear", 10, seed=0)
    a.next_batch(3)
    with pytest.raises(CheckpointError, match="prompts"):
        CurriculumSampler(diff[:19], "linear", 10, seed=0).load_state_dict(a.state_dict())
    with pytest.raises(CheckpointError, match="pacing"):
        CurriculumSampler(diff, "sqrt", 10, seed=0).load_state_dict(a.state_dict())
    with pytest.raises(CheckpointError, match="difficulty order"):
        CurriculumSampler(diff[::-1].copy(), "linear", 10, seed=0).load_state_dict(a.state_dict())
    with pytest.raises(CheckpointError, match="uniform"):
        UniformSampler(20, 0).load_state_dict(a.state_dict())


def test_make_sampler():
    off = make_sampler(CurriculumSettings(enabled=False), 8, 10, seed=0)
    assert isinstance(off, UniformSampler) and off.log_stats()["curriculum/competence"] == 1.0
    on = make_sampler(CurriculumSettings(enabled=True, pacing="step", stages=2), 8, 10, 0, difficulty=[0.1] * 8)
    assert isinstance(on, CurriculumSampler) and on.n_stages == 2
    with pytest.raises(ValueError, match="difficulty"):
        make_sampler(CurriculumSettings(enabled=True), 8, 10, 0)
    with pytest.raises(ValueError, match="7 difficulty scores for 8"):
        make_sampler(CurriculumSettings(enabled=True), 8, 10, 0, difficulty=[0.0] * 7)


# ------------------------------------------------------------------------------------ three tiers
class TierJudge:
    """A judge with known toxicity and severity per text."""

    def __init__(self, name, tox: dict[str, float], sev: dict[str, float]):
        self.name, self.tox, self.sev = name, tox, sev
        self.calls = 0

    def score(self, texts):
        self.calls += 1
        return SimpleNamespace(toxicity=torch.tensor([self.tox[t] for t in texts], dtype=torch.float64),
                               severity=torch.tensor([self.sev[t] for t in texts], dtype=torch.float64))


def test_mixed_sampler_shares_passes_and_resume():
    from detoxrl.curriculum.mixed import MixedSampler, make_mixed_sampler

    is_extra = [i % 5 == 0 for i in range(20)]  # 4 extra prompts (0, 5, 10, 15), 16 others
    s = make_mixed_sampler(CurriculumSettings(enabled=False), is_extra, 0.5, 10, seed=3)
    first = [s.next_batch(4) for _ in range(2)]
    for batch in first:  # round(0.5 × 4) = 2 extra, listed first, then 2 others
        assert [is_extra[i] for i in batch] == [True, True, False, False]
    assert sorted(first[0][:2] + first[1][:2]) == [0, 5, 10, 15]  # every extra prompt once per pass
    assert s.log_stats()["curriculum/share_redteam"] == 0.5
    state = s.state_dict()
    again = make_mixed_sampler(CurriculumSettings(enabled=False), is_extra, 0.5, 10, seed=3)
    again.load_state_dict(state)
    assert [again.next_batch(4) for _ in range(3)] == [s.next_batch(4) for _ in range(3)]
    with pytest.raises(ValueError, match="both sides"):
        MixedSampler(s.base, [], [1], 0.5, 0)
    with pytest.raises(CheckpointError):
        make_sampler(CurriculumSettings(enabled=False), 20, 10, 3).load_state_dict(state)


def test_tier_settings_defaults_and_validation():
    c = CurriculumSettings()
    assert (c.tier_column, c.grade_column, c.tier_thresholds, c.severe_at) == ("tier", "grade", [0.1, 0.5], 0.8)
    base = {"policy": {"name_or_path": "x"}, "data": {"source": "prompts.jsonl"},
            "reward": {"judges": [{"name": "j", "type": "lexicon"}]}}
    for bad in ([0.5, 0.1], [0.3, 0.3], [0.0, 0.5], [0.2, 1.0], [0.2]):
        with pytest.raises(ConfigError, match=r"tier_thresholds must be two increasing values in \(0, 1\)"):
            config_from_dict({**base, "curriculum": {"tier_thresholds": bad}})
    with pytest.raises(ConfigError, match="severe_at"):
        config_from_dict({**base, "curriculum": {"severe_at": 0}})
    ok = config_from_dict({**base, "curriculum": {"difficulty": "tier", "pacing": "tiers"}}).curriculum
    assert (ok.difficulty, ok.pacing) == ("tier", "tiers")


def test_tier_levels_and_thresholds_by_hand():
    assert tier_levels(["clean", "ambiguous", "harmful", "harmful", "harmful"],
                       ["none", "none", "mild", "severe", "none"]).tolist() == [0, 1, 2, 3, 2]
    # below the first threshold clean, below the second ambiguous, from the second on harmful
    assert tiers_from_toxicity([0.0999, 0.1, 0.4999, 0.5, 1.0], [0.1, 0.5]) == [
        "clean", "ambiguous", "ambiguous", "harmful", "harmful"]


def test_prompt_tiers_from_the_column_with_grades(tmp_path):
    metas = [{"tier": "clean"}, {"tier": "Ambiguous"}, {"tier": 2, "grade": "severe"}, {"tier": "2", "grade": "mild"},
             {"tier": 0, "grade": "none"}, {"tier": "harmful", "grade": None}]
    tiers, grades, source = prompt_tiers(_cfg(tmp_path, difficulty="tier"), _prompts(list("abcdef"), metas), None)
    assert source == "column"
    assert tiers == ["clean", "ambiguous", "harmful", "harmful", "clean", "harmful"]
    assert grades == ["none", "none", "severe", "mild", "none", "none"]
    assert tier_levels(tiers, grades).tolist() == [0, 1, 3, 2, 0, 2]


def test_prompt_tiers_refuses_bad_values_and_a_partial_column(tmp_path):
    cfg = _cfg(tmp_path, difficulty="tier")
    with pytest.raises(DataError, match=r"prompt p1 \(row 1\) has the value 'toxic'"):
        prompt_tiers(cfg, _prompts(["a", "b"], [{"tier": "clean"}, {"tier": "toxic"}]), None)
    with pytest.raises(DataError, match=r"prompt p0 \(row 0\) has the value 3"):
        prompt_tiers(cfg, _prompts(["a"], [{"tier": 3}]), None)
    with pytest.raises(DataError, match=r"tier_column 'tier': prompt p2 \(row 2\) has no such column, but 2 of 4"):
        prompt_tiers(cfg, _prompts(list("abcd"), [{"tier": "clean"}, {"tier": 1}, {}, {}]), None)
    # the grade column: every harmful prompt or none; other tiers need not have it
    with pytest.raises(DataError, match=r"grade_column 'grade': prompt p2 \(row 2\) has no such column"):
        prompt_tiers(cfg, _prompts(list("abc"), [{"tier": "clean"}, {"tier": 2, "grade": "mild"}, {"tier": 2}]), None)
    with pytest.raises(DataError, match=r"prompt p0 \(row 0\) has the value 'extreme'"):
        prompt_tiers(cfg, _prompts(["a"], [{"tier": 2, "grade": "extreme"}]), None)
    # no column and no judges to apply the thresholds with
    with pytest.raises(ConfigError, match="no column 'tier'.*no judges"):
        prompt_tiers(cfg, _prompts(["a"]), SimpleNamespace())


TIER_TEXTS = ["a", "b", "c", "d", "e"]
# judge 1 (weight 1) and judge 2 (weight 3): weighted toxicity (t1 + 3 t2) / 4 = 0.06, 0.275, 0.45, 0.85, 0.55
TOX1 = {"a": 0.0, "b": 0.2, "c": 0.6, "d": 1.0, "e": 0.4}
TOX2 = {"a": 0.08, "b": 0.3, "c": 0.4, "d": 0.8, "e": 0.6}
# severity, max over judges: d 0.9 (severe at 0.8), e 0.6 (mild)
SEV1 = {"a": 0.0, "b": 0.1, "c": 0.3, "d": 0.7, "e": 0.5}
SEV2 = {"a": 0.0, "b": 0.0, "c": 0.95, "d": 0.9, "e": 0.6}


def _tier_reward():
    return SimpleNamespace(judges=[TierJudge("j1", TOX1, SEV1), TierJudge("j2", TOX2, SEV2)], weights=[1.0, 3.0])


def test_difficulty_for_tier_from_thresholds_by_hand_and_cached(tmp_path):
    reward_fn = _tier_reward()
    cfg = _cfg(tmp_path, difficulty="tier")
    prompts = _prompts(TIER_TEXTS)
    tiers, grades, source = prompt_tiers(cfg, prompts, reward_fn)
    assert source == "thresholds"
    assert tiers == ["clean", "ambiguous", "ambiguous", "harmful", "harmful"]
    assert grades == ["none", "none", "none", "severe", "mild"]  # c is severe by its severity, but ambiguous
    d, names = curriculum_scores(cfg, prompts, reward_fn, None)
    assert d.tolist() == [0, 1, 1, 3, 2] and names == tiers
    calls = [j.calls for j in reward_fn.judges]
    assert difficulty_for(cfg, prompts, reward_fn, None).tolist() == [0, 1, 1, 3, 2]
    assert [j.calls for j in reward_fn.judges] == calls  # from ppo/difficulty.json
    saved = json.loads((tmp_path / "run" / "ppo" / "difficulty.json").read_text())
    assert saved["tiers"] == tiers and saved["grades"] == grades and saved["tier_source"] == "thresholds"
    # other thresholds are another cache key: b (0.275) becomes clean
    cfg2 = _cfg(tmp_path, difficulty="tier", tier_thresholds=[0.3, 0.5], severe_at=0.95)
    d2, names2 = curriculum_scores(cfg2, prompts, reward_fn, None)
    assert names2 == ["clean", "clean", "ambiguous", "harmful", "harmful"] and d2.tolist() == [0, 0, 1, 2, 2]


def test_redteam_prompts_are_harmful_and_graded_by_severity(tmp_path):
    cfg = _cfg(tmp_path, difficulty="tier")
    metas = [{"tier": "clean"}, {"tier": "ambiguous"}, {"tier": "clean"},
             {"tier": "harmful", REDTEAM_MARK: True}, {"tier": "harmful", REDTEAM_MARK: True}]
    tiers, grades, source = prompt_tiers(cfg, _prompts(TIER_TEXTS, metas), _tier_reward())
    assert (tiers, grades, source) == (["clean", "ambiguous", "clean", "harmful", "harmful"],
                                       ["none", "none", "none", "severe", "mild"], "column")
    # the data has no tier column: the red team's rows do not make it a partial one
    metas = [{}, {}, {}, {"tier": "harmful", REDTEAM_MARK: True}, {"tier": "harmful", REDTEAM_MARK: True}]
    tiers, grades, source = prompt_tiers(cfg, _prompts(["a", "a", "a", "a", "e"], metas), _tier_reward())
    assert (tiers, grades, source) == (["clean"] * 3 + ["harmful"] * 2, ["none"] * 3 + ["mild"] * 2, "thresholds")
    # without judges a harmful prompt stays ungraded: level 2
    tiers, grades, _ = prompt_tiers(cfg, _prompts(["a", "b"], [{"tier": 0}, {"tier": 2}]), SimpleNamespace())
    assert grades == ["none", "none"] and tier_levels(tiers, grades).tolist() == [0, 2]


def test_harmful_examples_carry_the_redteam_mark():
    from detoxrl.redteam.training import harmful_examples

    ex = harmful_examples([{"text": "x", "prompt": "p", "response": "r"}])
    assert ex[0].meta == {"tier": "harmful", REDTEAM_MARK: True}


# levels 0 ×4, 1 ×3, 2 ×2, 3 ×1, shuffled
TIER_LEVELS = np.random.default_rng(4).permutation([0] * 4 + [1] * 3 + [2] * 2 + [3])
TIER_NAMES = [("clean", "ambiguous", "harmful", "harmful")[int(v)] for v in TIER_LEVELS]


def test_tiers_pacing_opens_one_level_per_stage_by_hand():
    # T = 0.6 × 10 = 6 steps, L = 4 levels: stage k(t) = floor(3 t / 6); eligible 4, 7, 9, 10 (levels <= k)
    s = CurriculumSampler(TIER_LEVELS, "tiers", total_steps=10, seed=0, full_at=0.6, tiers=TIER_NAMES)
    assert s.level_counts.tolist() == [4, 7, 9, 10]
    expected = {0: 4, 1: 4, 2: 7, 3: 7, 4: 9, 5: 9, 6: 10, 7: 10}
    for t, k_eligible in expected.items():
        batch = s.next_batch(6)
        stats = s.log_stats()
        stage = [4, 7, 9, 10].index(k_eligible)
        assert stats["curriculum/eligible"] == k_eligible and stats["curriculum/stage"] == stage, t
        assert stats["curriculum/competence"] == pytest.approx(k_eligible / 10)
        assert stats["curriculum/open_level"] == stage and isinstance(stats["curriculum/open_level"], int)
        assert max(TIER_LEVELS[batch]) <= stage
        if k_eligible >= 6:  # without replacement: a draw of 6 from 7 or more prompts has no repeat
            assert len(set(batch)) == 6
    # a level missing (no ambiguous prompt): three stages, the open level jumps 0 → 2 → 3
    s = CurriculumSampler([3, 0, 2, 0, 2], "tiers", total_steps=4, seed=0, full_at=1.0,
                          tiers=["harmful", "clean", "harmful", "clean", "harmful"])
    seen = []
    for _ in range(5):  # stage floor(2 t / 4): 0, 0, 1, 1, 2
        s.next_batch(2)
        st = s.log_stats()
        seen.append((st["curriculum/eligible"], st["curriculum/open_level"]))
    assert seen == [(2, 0), (2, 0), (4, 2), (4, 2), (5, 3)]


def test_tier_shares_by_hand():
    levels = [0, 0, 1, 3]
    names = ["clean", "clean", "ambiguous", "harmful"]
    u = UniformSampler(4, seed=0, difficulty=levels, tiers=names)
    u.next_batch(4)  # one whole pass: each prompt once
    st = u.log_stats()
    assert (st["curriculum/share_clean"], st["curriculum/share_ambiguous"], st["curriculum/share_harmful"]) == (0.5, 0.25, 0.25)
    assert st["curriculum/open_level"] == 3
    c = make_sampler(CurriculumSettings(enabled=True, pacing="tiers", full_at=0.5), 4, 10, 0,
                     difficulty=levels, tiers=names)
    c.next_batch(8)  # stage 0: only the two clean prompts
    st = c.log_stats()
    assert (st["curriculum/share_clean"], st["curriculum/share_ambiguous"], st["curriculum/share_harmful"]) == (1.0, 0.0, 0.0)
    # T = 5, three levels: stage floor(2 t / 5) is 1 at t = 3, a batch of 5 from the clean and ambiguous prompts
    for _ in range(3):
        batch = c.next_batch(5)
    st = c.log_stats()
    assert st["curriculum/open_level"] == 1 and st["curriculum/eligible"] == 3
    assert st["curriculum/share_ambiguous"] == pytest.approx(sum(i == 2 for i in batch) / 5)
    assert st["curriculum/share_clean"] + st["curriculum/share_ambiguous"] == 1.0
    assert "curriculum/share_clean" not in UniformSampler(4, 0, difficulty=levels).log_stats()
    with pytest.raises(ValueError, match="unknown tier 'toxic'"):
        make_sampler(CurriculumSettings(enabled=True), 2, 10, 0, difficulty=[0, 1], tiers=["clean", "toxic"])
    with pytest.raises(ValueError, match="1 tiers for 2 prompts"):
        make_sampler(CurriculumSettings(enabled=False), 2, 10, 0, difficulty=[0, 1], tiers=["clean"])


def test_tiers_pacing_resumes_exactly_and_refuses_other_tiers():
    settings = CurriculumSettings(enabled=True, pacing="tiers", full_at=0.5)

    def make(levels=TIER_LEVELS):
        return make_sampler(settings, 10, total_steps=12, seed=3, difficulty=levels, tiers=TIER_NAMES)

    straight, _, state = _resumed_run_matches(make, 10, 4)
    assert straight[-1][1]["curriculum/open_level"] == 3 and straight[0][1]["curriculum/open_level"] == 0
    # the same order but other levels (a severe prompt became mild): other stages, refused
    other = TIER_LEVELS.copy()
    other[other == 3] = 2
    with pytest.raises(CheckpointError, match="tiers changed"):
        make(other).load_state_dict(state)
