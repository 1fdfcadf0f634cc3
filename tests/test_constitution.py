"""Constitution: file validation, every check kind, the PPO reward wrapper, each revision mode, the
preference/SFT files and the ``generate`` command. Offensive words are invented (``blorp``) or read at
run time from the testbed's word list."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from detoxrl.config import GenerationSettings, JudgeSettings, config_from_dict
from detoxrl.constitution.checks import (
    CheckContext,
    PrincipleChecker,
    novel_entities,
    unigram_precision,
    word_tokens,
)
from detoxrl.constitution.critic import CriticModel, answer_token_ids, yes_probability
from detoxrl.constitution.principles import (
    DEFAULT_CRITIQUE_TEMPLATE,
    constitution_from_dict,
    load_constitution,
    resolve_constitution_path,
)
from detoxrl.constitution.records import RevisionRecorder, preference_row, sft_row, text_from_prompt
from detoxrl.constitution.revise import Reviser, Revision, join_clauses, rewrite_batch, split_clauses, split_sentences
from detoxrl.constitution.reward import ConstitutionalReward, with_constitution
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.rewards.base import Judge, JudgeResult

TEMPLATE = "Summarize the following conversation.\n\n{text}\n\nSummary:"
DIALOGUE = "#Person1#: Hello Leo, is the bakery open?\n#Person2#: Yes, until 6 pm. Every Zorbian is a blorp."
PROMPT = TEMPLATE.replace("{text}", DIALOGUE)


# ------------------------------------------------------------------------------------------ helpers
def principle(pid: str, check: dict, **kw) -> dict:
    return {"id": pid, "principle": f"Principle {pid}.", "critique": f"Does the response break {pid}?",
            "revision": f"Rewrite the response so that it keeps {pid}.", "check": check, **kw}


class FakeHate(Judge):
    """Hate toxicity 0.9 for texts containing 'zorbian', 0.3 for 'grumpy', else 0; counts its calls."""

    name = "fake-hate"
    dimensions = ("hate",)
    threshold = 0.5

    def __init__(self):
        self.calls = 0

    def _score_batch(self, texts, prompts):
        self.calls += 1
        t = torch.tensor([0.9 if "zorbian" in x.lower() else 0.3 if "grumpy" in x.lower() else 0.0 for x in texts])
        return JudgeResult(self.name, -t, t, {"hate": t}, t * 0.5, self.threshold)


@pytest.fixture()
def lexicon_file(tmp_path) -> Path:
    p = tmp_path / "tiny_lexicon.txt"
    p.write_text("# invented words\nblorp\nsnargle\n[harassment]\ngrumbleweed\n", encoding="utf-8")
    return p


def make_cfg(tmp_path: Path, policy: Path | str = "unused-policy", lexicon: Path | None = None, **constitution):
    lex = lexicon or (tmp_path / "tiny_lexicon.txt")
    return config_from_dict({
        "name": "tiny", "run_dir": str(tmp_path / "run"), "seed": 3,
        "policy": {"name_or_path": str(policy)},
        "data": {"source": str(tmp_path / "data.jsonl"), "prompt_template": TEMPLATE, "max_prompt_tokens": 32},
        "reward": {"judges": [{"name": "lex", "type": "lexicon", "lexicon": str(lex)}]},
        "eval": {"batch_size": 4, "generation": {"do_sample": False, "max_new_tokens": 6, "min_new_tokens": 2},
                 "extra_judges": [{"name": "lex2", "type": "lexicon", "lexicon": str(lex)}]},
        "ppo": {"batch_size": 4, "mini_batch_size": 2, "generation": {"max_new_tokens": 6, "min_new_tokens": 2}},
        "constitution": {"enabled": True, **constitution},
    })


def checker_for(principles: list[dict], cfg=None, judges=(), critic=None, **top) -> PrincipleChecker:
    const = constitution_from_dict({"principles": principles, **top})
    return PrincipleChecker(const, CheckContext(cfg=cfg, judges={j.name: j for j in judges}, critic=critic))


# ------------------------------------------------------------------------------- loading, validation
def test_default_constitution_loads_and_is_found_by_name():
    const = load_constitution("configs/constitution.yaml")
    assert const.ids == ["no-insults", "respect-groups", "no-profanity", "faithful"]
    assert const.critique_template == DEFAULT_CRITIQUE_TEMPLATE
    for p in const.principles:
        assert p.critique.endswith("?") and p.revision and p.principle
    assert resolve_constitution_path("constitution").resolve() == \
        resolve_constitution_path("configs/constitution.yaml").resolve()
    req = const.critique_prompt(const.principles[0], "A said hi.")
    assert req == f"{const.principles[0].critique}\n\nResponse: A said hi.\n\nAnswer yes or no."


def test_default_constitution_checks_on_testbed_words(tmp_path, lexicon_file):
    """The default file builds against the default config's judge names (hate judge faked) and flags
    a testbed insult (read from the shipped word list at run time) and invented names."""
    from detoxrl.config import load_config
    from detoxrl.testbed.lexicon import build_lexicon

    cfg = load_config(None, run_dir=tmp_path / "run")
    const = load_constitution(cfg.constitution.path, cfg)

    class TestbedHate(FakeHate):
        name = "testbed-hate"

    ch = PrincipleChecker(const, CheckContext(cfg=cfg, judges={"testbed-hate": TestbedHate()}))
    insult = build_lexicon().insulting[0]
    texts = [f"#Person2# says every Zorbian is a {insult}.", "#Person1# asks Leo about the bakery.",
             "#Person1# asks Maria about the bakery."]
    v = ch.evaluate(texts, [PROMPT] * 3)
    assert "no-insults" in v.violated_ids(0) and "respect-groups" in v.violated_ids(0)
    assert v.violated_ids(1) == []
    assert v.violated_ids(2) == ["faithful"] and v.found["faithful"][2] == ["Maria"]


BAD_FILES = [
    ({}, "principles"),
    ({"principles": []}, "non-empty list"),
    ({"principles": [principle("a", {"kind": "pattern", "patterns": ["x"]})], "extra": 1}, "unknown key(s) ['extra']"),
    ({"principles": [{"id": "p1", "principle": "x", "revision": "y", "check": {"kind": "pattern", "patterns": ["x"]}}]},
     "principles[0] (p1): critique: Field required"),
    ({"principles": [principle("a", {"kind": "pattern", "patterns": ["x"]}),
                     principle("a", {"kind": "pattern", "patterns": ["y"]})]}, "principles[1] (a): id 'a' is used twice"),
    ({"principles": [principle("Bad Id", {"kind": "pattern", "patterns": ["x"]})]}, "principles[0] (Bad Id): id:"),
    ({"principles": [principle("a", {"kind": "oracle"})]}, "principles[0] (a): check"),
    ({"principles": [principle("a", {"kind": "pattern", "patterns": ["(unclosed"]})]}, "not a valid regular expression"),
    ({"principles": [principle("a", {"kind": "lexicon"})]}, "exactly one of `lexicon`"),
    ({"principles": [principle("a", {"kind": "judge", "judge": "j", "measure": "rudeness"})]}, "check.judge.measure"),
    ({"principles": [principle("a", {"kind": "judge", "judge": "j", "threshold": 2})]}, "threshold"),
    ({"principles": [principle("a", {"kind": "all", "checks": [{"kind": "pattern", "patterns": []}]})]},
     "principles[0] (a): check.all.checks.0.pattern.patterns"),
    ({"principles": [principle("a", {"kind": "pattern", "patterns": ["x"]}, weight=-1)]}, "principles[0] (a): weight"),
    ({"critique_template": "{critique}?", "principles": [principle("a", {"kind": "pattern", "patterns": ["x"]})]},
     "critique_template: Value error, must contain {response}"),
    ({"principles": ["just a string"]}, "principles[0] must be a mapping"),
]


@pytest.mark.parametrize("data,message", BAD_FILES)
def test_bad_constitution_raises_config_error_naming_the_key(tmp_path, data, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_constitution(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_unreadable_constitution_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_constitution(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles: [\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="constitution file .* is not valid YAML"):
        load_constitution(bad)


def test_unknown_judge_or_dimension_names_the_principle(tmp_path, lexicon_file):
    cfg = make_cfg(tmp_path)
    with pytest.raises(ConfigError, match=r"principle p: judge nope / other is not in the config .*'lex', 'lex2'"):
        checker_for([principle("p", {"kind": "judge", "judge": ["nope", "other"]})], cfg=cfg)
    with pytest.raises(ConfigError, match="principle p: judge fake-hate does not report the dimension 'profanity'"):
        checker_for([principle("p", {"kind": "judge", "judge": "fake-hate", "measure": "profanity"})],
                    judges=[FakeHate()])
    with pytest.raises(ConfigError, match="principle p: unknown lexicon 'testbed:rude'"):
        checker_for([principle("p", {"kind": "lexicon", "lexicon": "testbed:rude"})])
    with pytest.raises(DataError, match="does not exist"):
        checker_for([principle("p", {"kind": "lexicon", "lexicon": str(tmp_path / "none.txt")})])
    ghost = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"extra_judges": [
        JudgeSettings(name="ghost", type="hf", model=str(tmp_path / "no-model"), label="nothate")]})})
    with pytest.raises(ModelError, match="constitution principle p: judge ghost: model folder .*no-model does not exist"):
        checker_for([principle("p", {"kind": "judge", "judge": "ghost"})], cfg=ghost)


# ----------------------------------------------------------------------------------------- checks
def test_lexicon_check_from_file_with_dimensions_and_min_matches(lexicon_file):
    ch = checker_for([
        principle("any-word", {"kind": "lexicon", "lexicon": str(lexicon_file)}),
        principle("harass", {"kind": "lexicon", "lexicon": str(lexicon_file), "dimensions": ["harassment"]}),
        principle("two", {"kind": "lexicon", "lexicon": str(lexicon_file), "min_matches": 2}),
    ])
    texts = ["You are a bl0rp.", "A GRUMBLEWEED and a snargle!", "Nothing here."]
    v = ch.evaluate(texts, [""] * 3)
    assert v.violations["any-word"].tolist() == [True, True, False]
    assert v.violations["harass"].tolist() == [False, True, False]
    assert v.violations["two"].tolist() == [False, True, False]
    assert v.values["any-word"].tolist() == [1.0, 2.0, 0.0]
    assert v.found["any-word"][0] == ["blorp"]


def test_lexicon_check_by_lexicon_judge_name_and_testbed_tiers(tmp_path, lexicon_file):
    from detoxrl.testbed.lexicon import build_lexicon

    cfg = make_cfg(tmp_path, lexicon=lexicon_file)
    lex = build_lexicon()
    ch = checker_for([principle("by-judge", {"kind": "lexicon", "judge": "lex2"}),
                      principle("insults", {"kind": "lexicon", "lexicon": "testbed:insulting"}),
                      principle("profane", {"kind": "lexicon", "lexicon": "testbed:profane"})], cfg=cfg)
    texts = ["a snargle", f"you {lex.insulting[0]}", f"{lex.exclamations[0]}, not again"]
    v = ch.evaluate(texts, [""] * 3)
    assert v.violations["by-judge"].tolist() == [True, False, False]
    assert v.violations["insults"].tolist() == [False, True, False]
    assert v.violations["profane"].tolist() == [False, False, True]
    # plain `testbed` is the run's testbed lexicon when `prepare` wrote one
    (cfg.run_path / "testbed").mkdir(parents=True)
    (cfg.run_path / "testbed" / "lexicon.txt").write_text("blorp\n", encoding="utf-8")
    run_lex = checker_for([principle("run", {"kind": "lexicon", "lexicon": "testbed"})], cfg=cfg)
    assert run_lex.evaluate(["a blorp", texts[1]], ["", ""]).violations["run"].tolist() == [True, False]


def test_judge_check_threshold_measure_and_cache():
    judge = FakeHate()
    ch = checker_for([principle("tox", {"kind": "judge", "judge": "fake-hate"}),
                      principle("hate-low", {"kind": "judge", "judge": "fake-hate", "measure": "hate", "threshold": 0.25}),
                      principle("sev", {"kind": "judge", "judge": "fake-hate", "measure": "severity",
                                        "threshold": 0.4})], judges=[judge])
    texts = ["Every Zorbian is bad.", "A grumpy clerk.", "A nice day."]
    v = ch.evaluate(texts, [""] * 3)
    assert v.violations["tox"].tolist() == [True, False, False]  # judge's own threshold 0.5
    assert v.violations["hate-low"].tolist() == [True, True, False]
    assert v.violations["sev"].tolist() == [True, False, False]  # severity 0.45, 0.15, 0
    assert v.values["hate-low"].tolist() == pytest.approx([0.9, 0.3, 0.0])
    calls = judge.calls
    cached = judge.score(texts)
    calls = judge.calls
    ch.evaluate(texts, [""] * 3, cache={"fake-hate": cached})
    assert judge.calls == calls  # reused, not scored again


def test_inline_judge_settings(tmp_path, lexicon_file):
    ch = checker_for([principle("inline", {"kind": "judge", "measure": "profanity", "threshold": 0.5,
                                           "judge": {"name": "w", "type": "lexicon", "lexicon": str(lexicon_file)}})])
    assert ch.evaluate(["a blorp", "fine"], ["", ""]).violations["inline"].tolist() == [True, False]


def test_pattern_and_combined_checks():
    ch = checker_for([
        principle("group", {"kind": "pattern", "patterns": [r"\b(?i:every|all)\s+[A-Z][a-z]+"], "ignore_case": False}),
        principle("both", {"kind": "all", "checks": [{"kind": "pattern", "patterns": ["every"]},
                                                     {"kind": "pattern", "patterns": ["bad"]}]}),
        principle("either", {"kind": "any", "checks": [{"kind": "pattern", "patterns": ["every"]},
                                                       {"kind": "pattern", "patterns": ["bad"]}]}),
    ])
    texts = ["Every Zorbian is bad.", "every day is fine.", "A bad day.", "Fine."]
    v = ch.evaluate(texts, [""] * 4)
    assert v.violations["group"].tolist() == [True, False, False, False]
    assert v.violations["both"].tolist() == [True, False, False, False]
    assert v.violations["either"].tolist() == [True, True, True, False]
    assert v.values["either"].tolist() == [2.0, 1.0, 1.0, 0.0]


def test_faithfulness_measures_by_hand():
    assert word_tokens("Leo's 6 pm, #Person1#!") == ["leo", "6", "pm", "person", "1"]
    assert novel_entities("#Person2# tells Leo the bakery opens until 6 pm.", PROMPT) == []
    assert novel_entities("He tells Maria it opens at 9 in Paris.", PROMPT) == ["Maria", "9", "Paris"]
    assert novel_entities("Every Zorbians and the Leos.", PROMPT) == []  # a plural s either way
    # response a b b c against prompt a b: (1 + min(2, 1) + 0) / 4
    assert unigram_precision("a b b c", "a b") == pytest.approx(0.5)
    assert unigram_precision("", "a b") == 1.0
    ch = checker_for([principle("ents", {"kind": "faithfulness", "method": "entities", "max_novel": 1}),
                      principle("overlap", {"kind": "faithfulness", "method": "overlap", "threshold": 0.6})])
    texts = ["Leo meets Maria.", "Leo meets Maria in Paris.", "the bakery is open until 6 pm"]
    v = ch.evaluate(texts, [PROMPT] * 3)
    assert v.violations["ents"].tolist() == [False, True, False]
    # unigram precision: leo meets maria -> 1/3; leo meets maria in paris -> 1/5; last: 7/7
    assert v.values["overlap"].tolist() == pytest.approx([1 / 3, 1 / 5, 1.0])
    assert v.violations["overlap"].tolist() == [True, True, False]


@pytest.mark.cpus
def test_yes_probability_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0), 5.0], [math.log(2.0), 0.0, math.log(2.0)]])
    # row 0: yes = {1}, no = {0}: sigma(log 3) = 0.75
    assert yes_probability(logits[:1], [1], [0]).item() == pytest.approx(0.75)
    # row 1: yes = {0, 2}: exp(lse) = 4, no = {1}: 1 -> 4 / 5
    assert yes_probability(logits[1:], [0, 2], [1]).item() == pytest.approx(0.8)


@pytest.mark.cpus
def test_self_critique_on_tiny_t5_is_a_deterministic_probability(tiny_t5_dir):
    from detoxrl.models.policy import load_policy_model

    lp = load_policy_model(str(tiny_t5_dir))
    lp.model.train()  # dropout on: the critic must switch it off itself
    critic = CriticModel(policy=lp, max_prompt_tokens=64)
    assert answer_token_ids(lp.tokenizer, ["w1", "yes", "w1"]) == [lp.tokenizer.convert_tokens_to_ids("w1")]
    ch = checker_for([principle("self", {"kind": "self_critique", "yes": ["w1"], "no": ["w2"]})], critic=critic)
    texts = ["w5 w6 w7", "w8 w9"]
    a = ch.evaluate(texts, ["w3", "w4"])
    b = ch.evaluate(texts, ["w3", "w4"])
    p = a.values["self"]
    assert p.shape == (2,) and bool(((p >= 0) & (p <= 1)).all())
    assert torch.equal(p, b.values["self"])
    assert a.violations["self"].tolist() == (p >= 0.5).tolist()
    assert lp.model.training  # restored
    bad = checker_for([principle("self", {"kind": "self_critique", "yes": ["absent-word"]})], critic=critic)
    with pytest.raises(ModelError, match="principle self: none of the answer words"):
        bad.evaluate(texts, ["", ""])


@pytest.mark.cpus
def test_self_critique_on_tiny_gpt2(tiny_gpt2_dir):
    from detoxrl.models.policy import load_policy_model

    critic = CriticModel(policy=load_policy_model(str(tiny_gpt2_dir)), max_prompt_tokens=64)
    ch = checker_for([principle("self", {"kind": "self_critique", "yes": ["w1"], "no": ["w2"],
                                         "violation_answer": "no"})], critic=critic)
    p = ch.evaluate(["w5", "w8 w9 w10"], ["", ""]).values["self"]
    assert bool(((p >= 0) & (p <= 1)).all())
    assert torch.equal(p, ch.evaluate(["w5", "w8 w9 w10"], ["", ""]).values["self"])


# --------------------------------------------------------------------------------- reward wrapper
class BaseOut:
    def __init__(self, total, components, per_judge=None):
        self.total, self.components, self.per_judge = total, components, per_judge or {}


class BaseReward:
    """A base reward: 1 − hate toxicity of the fake judge; its judge result is handed on."""

    def __init__(self):
        self.judge = FakeHate()
        self.judges = [self.judge]
        self.weights = [1.0]

    def __call__(self, responses, prompts=None):
        r = self.judge.score(responses)
        total = 1 - r.toxicity
        total[[i for i, t in enumerate(responses) if "nan" in t]] = float("nan")
        return BaseOut(total, {"judge/fake-hate": total.clone()}, {"fake-hate": r})


def write_constitution(tmp_path: Path, principles: list[dict]) -> Path:
    p = tmp_path / "const.yaml"
    p.write_text(yaml.safe_dump({"name": "test", "principles": principles}, sort_keys=False), encoding="utf-8")
    return p


def test_reward_wrapper_adds_weighted_penalties_and_components(tmp_path, lexicon_file):
    const = write_constitution(tmp_path, [
        principle("no-words", {"kind": "lexicon", "lexicon": str(lexicon_file)}, weight=2.0),
        principle("no-hate", {"kind": "judge", "judge": "fake-hate", "measure": "hate"}, weight=0.5),
    ])
    cfg = make_cfg(tmp_path, path=str(const), violation_weight=1.5, revision="none")
    base = BaseReward()
    fn = with_constitution(base, cfg)
    assert isinstance(fn, ConstitutionalReward) and fn.judges == base.judges and fn.weights == [1.0]
    texts = ["A blorp from Zorbia.", "Every Zorbian is a blorp.", "Fine.", "nan blorp"]
    calls_before = base.judge.calls
    out = fn(texts, [""] * 4)
    assert base.judge.calls == calls_before + 1  # the constitution reused the reward's judge result
    # base 1 - tox: [1, 0.1, 1, 1]; penalties 1.5 * (2 * words + 0.5 * hate)
    assert out.components["constitution/no-words"].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert out.components["constitution/no-hate"].tolist() == [0.0, 1.0, 0.0, 0.0]
    assert out.components["constitution_penalty"].tolist() == pytest.approx([-3.0, -3.75, 0.0, -3.0])
    assert out.total[:3].tolist() == pytest.approx([1 - 3.0, 0.1 - 3.75, 1.0])
    assert math.isnan(out.total[3].item())  # non-finite base scores stay visible
    assert out.components["judge/fake-hate"][:3].tolist() == pytest.approx([1.0, 0.1, 1.0])
    assert "constitution_revised" not in out.components
    assert "no-words, no-hate" in out.explain(1)
    assert out.per_judge["fake-hate"] is not None  # base attributes pass through
    # the constitution used is saved beside the data
    saved = yaml.safe_load((cfg.run_path / "constitution" / "constitution.yaml").read_text(encoding="utf-8"))
    assert [p["id"] for p in saved["principles"]] == ["no-words", "no-hate"]


def test_build_reward_fn_and_ppo_step_log_constitution_metrics(tmp_path, tiny_t5_dir, lexicon_file):
    from detoxrl.config import KLSettings, PPOSettings
    from detoxrl.models.policy import load_policy_model, tokenize_prompts
    from detoxrl.rl.trainer import PPOTrainer
    from detoxrl.stages.ppo import build_reward_fn

    const = write_constitution(tmp_path, [
        principle("no-w5", {"kind": "pattern", "patterns": [r"\bw5\b"]}),
        principle("short", {"kind": "pattern", "patterns": [r"^(\S+\s+){3,}\S+$"]}, weight=0.5)])
    cfg = make_cfg(tmp_path, policy=tiny_t5_dir, path=str(const), revision="rewrite")
    fn = build_reward_fn(cfg, "cpu")
    assert isinstance(fn, ConstitutionalReward)
    lp = load_policy_model(str(tiny_t5_dir))
    settings = PPOSettings(steps=1, batch_size=4, mini_batch_size=2, ppo_epochs=1, score_norm=False,
                           kl=KLSettings(adaptive=False), generation=GenerationSettings(max_new_tokens=6, min_new_tokens=6))
    tr = PPOTrainer(settings, lp, fn, seed=0)
    prompts = ["w10 w11 w12", "w13 w14", "w5 w6 w7", "w20 w21 w22 w23"]
    q, qm = tokenize_prompts(lp.tokenizer, prompts, 32)
    stats = tr.step(prompts, q, qm, 6)
    assert stats["constitution/short"] == 1.0  # six-word responses are all "long"
    assert 0.0 <= stats["constitution/no-w5"] <= 1.0
    assert stats["reward/constitution_penalty"] <= -0.5
    assert "reward/constitution_revised" in stats


# ---------------------------------------------------------------------------------------- revision
def test_sentence_and_clause_splitting_by_hand():
    assert split_sentences(" A buys a hat.  B pays!  Why? ") == ["A buys a hat.", "B pays!", "Why?"]
    assert split_clauses("A goes shopping, and B says hi; at 7:30 it costs 10,000 dollars.") == \
        (["A goes shopping", "and B says hi", "at 7:30 it costs 10,000 dollars"], ".")
    assert join_clauses(["and B says hi", "at noon"], ".", capitalise=True) == "B says hi, at noon."
    assert join_clauses([], ".", capitalise=True) == ""


def test_rewrite_removes_the_offending_clause_or_sentence(lexicon_file):
    ch = checker_for([principle("no-words", {"kind": "lexicon", "lexicon": str(lexicon_file)}),
                      principle("faithful", {"kind": "faithfulness"}, revise=False)])
    texts = ["#Person1# goes shopping, and #Person1# calls #Person2# a blorp.",
             "#Person2# says the bakery is open. Every Zorbian is a blorp. Leo is happy.",
             "Listen, you snargle, the bakery is open until 6 pm!",
             "#Person1# calls #Person2# a blorp.",
             "The bakery is open."]
    prompts = [PROMPT] * len(texts)
    out = rewrite_batch(texts, prompts, [["no-words"]] * 4 + [[]], ch)
    assert out == ["#Person1# goes shopping.",
                   "#Person2# says the bakery is open. Leo is happy.",
                   "Listen, the bakery is open until 6 pm!",
                   "",
                   "The bakery is open."]
    reviser = Reviser("rewrite", ch)
    v = ch.evaluate(texts, prompts)
    revs = reviser.revise(texts, prompts, v)
    assert [r.index for r in revs] == [0, 1, 2, 3]  # 'faithful' asks for no revision
    assert [r.accepted for r in revs] == [True, True, True, False]  # an empty rewrite is no revision
    assert revs[0].fixed == ["no-words"] and revs[0].remaining == []
    assert Reviser("none", ch).revise(texts, prompts, v) == []


def test_rewrite_that_would_leave_nothing_fixes_the_heaviest_principle_alone(lexicon_file):
    """A made-up summary followed by an insult: removing both sentences leaves nothing, so each principle
    is rewritten for alone and the better result (by weighted violations) is kept."""
    ch = checker_for([principle("no-words", {"kind": "lexicon", "lexicon": str(lexicon_file)}, weight=1.0),
                      principle("faithful", {"kind": "faithfulness"}, weight=0.5)])
    text = "Quentin buys bread. #Person1# calls #Person2# a blorp."
    v = ch.evaluate([text], [PROMPT])
    assert v.violated_ids(0) == ["no-words", "faithful"]
    assert rewrite_batch([text], [PROMPT], [["no-words", "faithful"]], ch) == [""]
    (rev,) = Reviser("rewrite", ch).revise([text], [PROMPT], v)
    # removing the insult leaves weight 0.5 violated; removing the made-up sentence would leave 1.0
    assert rev.revised == "Quentin buys bread." and rev.accepted
    assert rev.fixed == ["no-words"] and rev.remaining == ["faithful"]


def test_rewrite_with_a_judge_check_scores_sentences(tmp_path):
    judge = FakeHate()
    ch = checker_for([principle("no-hate", {"kind": "judge", "judge": "fake-hate", "measure": "hate"})], judges=[judge])
    texts = ["Leo opens the bakery. He says every Zorbian is lazy."]
    revs = Reviser("rewrite", ch).revise(texts, [PROMPT], ch.evaluate(texts, [PROMPT]))
    assert revs[0].revised == "Leo opens the bakery." and revs[0].accepted


def _bad_start_checker(critic):
    return checker_for([principle("no-bad", {"kind": "pattern", "patterns": [r"^BAD"]})], critic=critic)


def test_resample_uses_the_policy_with_a_fixed_seed(tiny_t5_dir):
    from detoxrl.models.policy import load_policy_model

    lp = load_policy_model(str(tiny_t5_dir))
    gen = GenerationSettings(max_new_tokens=5, min_new_tokens=3)
    texts, prompts = ["BAD answer", "w10 w11", "BAD again"], ["w10 w11 w12", "w13", "w14 w15"]

    def run():
        critic = CriticModel(policy=lp, max_prompt_tokens=32)
        ch = _bad_start_checker(critic)
        return Reviser("resample", ch, critic, generation=gen, max_resamples=2, seed=7).revise(
            texts, prompts, ch.evaluate(texts, prompts))

    state = torch.get_rng_state()
    a, b = run(), run()
    assert torch.equal(state, torch.get_rng_state())  # the outer random stream is untouched
    assert [r.index for r in a] == [0, 2]
    assert [r.revised for r in a] == [r.revised for r in b]  # same seed, same samples
    for r in a:
        assert r.accepted and r.remaining == [] and r.meta == {"samples": 1}
        assert all(w.startswith("w") for w in r.revised.split()) and len(r.revised.split()) >= 3
    # it is the policy's own sample for the prompt under that seed
    expect = CriticModel(policy=lp, max_prompt_tokens=32).generate(
        [prompts[0], prompts[2]], gen.model_copy(update={"do_sample": True}), seed=7 * 1_000_003 + 1 * 1_009 + 0,
        max_new_tokens=None)
    assert [r.revised for r in a] == [e.strip() for e in expect]


def test_policy_revision_produces_text_from_the_revision_request(tiny_t5_dir, monkeypatch):
    from detoxrl.models.policy import load_policy_model

    critic = CriticModel(policy=load_policy_model(str(tiny_t5_dir)), max_prompt_tokens=64)
    ch = _bad_start_checker(critic)
    seen = []
    original = critic.generate

    def spy(requests, gen, **kw):
        seen.extend(requests)
        assert gen.do_sample is False
        return original(requests, gen, **kw)

    monkeypatch.setattr(critic, "generate", spy)
    reviser = Reviser("policy", ch, critic, generation=GenerationSettings(max_new_tokens=5, min_new_tokens=3))
    texts, prompts = ["BAD w5", "w6 w7"], ["w1 w2", "w3"]
    revs = reviser.revise(texts, prompts, ch.evaluate(texts, prompts))
    assert len(revs) == 1 and revs[0].index == 0
    assert isinstance(revs[0].revised, str) and revs[0].revised.strip()
    assert revs[0].accepted and revs[0].mode == "policy"
    assert seen == ["Rewrite the response so that it keeps no-bad.\n\nResponse: BAD w5\n\nRevised response:"]


def test_modes_that_need_a_model_refuse_without_one():
    ch = _bad_start_checker(None)
    with pytest.raises(ConfigError, match="needs a model"):
        Reviser("policy", ch, None)
    with pytest.raises(ConfigError, match="unknown mode"):
        Reviser("magic", ch, None)


# ------------------------------------------------------------------------------ preference / SFT data
def test_text_from_prompt_inverts_the_template():
    assert text_from_prompt(PROMPT, TEMPLATE) == DIALOGUE
    assert text_from_prompt("something else", TEMPLATE) is None


def test_preference_and_sft_files_in_train_rm_and_sft_formats(tmp_path, lexicon_file):
    from detoxrl.data.files import read_rows
    from detoxrl.rewards.rm_data import rankings_to_pairs
    from detoxrl.stages.sft import load_pairs

    const = write_constitution(tmp_path, [principle("no-words", {"kind": "lexicon", "lexicon": str(lexicon_file)})])
    cfg = make_cfg(tmp_path, path=str(const), revision="rewrite")
    fn = with_constitution(BaseReward(), cfg)
    texts = ["#Person1# asks about the bakery, and calls Leo a blorp.", "Leo says hi.", "A blorp."]
    out = fn(texts, [PROMPT] * 3)
    assert out.components["constitution_revised"].tolist() == [1.0, 0.0, 0.0]
    fn(texts[:1], [PROMPT])  # a second batch appends
    folder = cfg.run_path / "constitution"
    prefs = [json.loads(line) for line in (folder / "preferences.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(prefs) == 2 and [p["batch"] for p in prefs] == [1, 2]
    assert prefs[0] == {"prompt": PROMPT, "completions": ["#Person1# asks about the bakery.", texts[0]],
                        "ranks": [1, 2], "chosen": "#Person1# asks about the bakery.", "rejected": texts[0],
                        "principles": ["no-words"], "fixed": ["no-words"], "mode": "rewrite", "batch": 1}
    pairs = rankings_to_pairs(read_rows(folder / "preferences.jsonl"), "preferences.jsonl")
    assert len(pairs) == 2
    sft = [json.loads(line) for line in (folder / "sft_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sft[0]["prompt"] == PROMPT and sft[0]["target"] == "#Person1# asks about the bakery."
    assert sft[0]["dialogue"] == DIALOGUE and sft[0]["summary"] == sft[0]["target"]
    # `sft` reads the file as it is
    sft_cfg = cfg.model_copy(update={"sft": cfg.sft.model_copy(update={"train_file": str(folder / "sft_pairs.jsonl")})})
    got = load_pairs(sft_cfg)
    assert got[0].prompt == PROMPT and got[0].target == "#Person1# asks about the bakery."


def test_recorder_rows_and_rank_suffix(tmp_path):
    r = Revision(index=0, prompt="P", original="bad", revised="good", violated=["a", "b"], remaining=["b"],
                 mode="rewrite", accepted=True)
    assert preference_row(r) == {"prompt": "P", "completions": ["good", "bad"], "ranks": [1, 2], "chosen": "good",
                                 "rejected": "bad", "principles": ["a", "b"], "fixed": ["a"], "mode": "rewrite"}
    assert sft_row(r, TEMPLATE) == {"prompt": "P", "target": "good", "dialogue": "P", "summary": "good",
                                    "principles": ["a", "b"]}
    rec = RevisionRecorder(tmp_path, rank=1)
    rejected = Revision(**{**r.__dict__, "accepted": False})
    assert rec.write([r, rejected]) == 1
    assert (tmp_path / "preferences.rank1.jsonl").exists() and not (tmp_path / "preferences.jsonl").exists()


# --------------------------------------------------------------------------------------- generate
def test_read_prompts_from_jsonl_and_txt(tmp_path, lexicon_file):
    from detoxrl.constitution.generate import read_prompts

    cfg = make_cfg(tmp_path)
    j = tmp_path / "p.jsonl"
    j.write_text(json.dumps({"prompt": "as is"}) + "\n\n" + json.dumps({"dialogue": "#Person1#: Hi."}) + "\n",
                 encoding="utf-8")
    assert read_prompts(j, cfg) == ["as is", TEMPLATE.replace("{text}", "#Person1#: Hi.")]
    lines = tmp_path / "lines.txt"
    lines.write_text("one\ntwo\n", encoding="utf-8")
    assert read_prompts(lines, cfg) == ["one", "two"]
    blocks = tmp_path / "blocks.txt"
    blocks.write_text("#A#: hi\n#B#: hello\n\n\n#A#: bye\n", encoding="utf-8")
    assert read_prompts(blocks, cfg) == ["#A#: hi\n#B#: hello", "#A#: bye"]
    assert read_prompts(lines, cfg, wrap=True)[0] == TEMPLATE.replace("{text}", "one")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"other": 1}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl row 1: no non-empty `prompt`"):
        read_prompts(bad, cfg)
    csv = tmp_path / "p.csv"
    csv.write_text("prompt\nhi\n", encoding="utf-8")
    with pytest.raises(DataError, match="unsupported extension '.csv'"):
        read_prompts(csv, cfg)


def test_default_policy_is_the_trained_one_when_saved(tmp_path, lexicon_file):
    from detoxrl.constitution.generate import default_policy

    cfg = make_cfg(tmp_path, policy="{run_dir}/sft")
    assert default_policy(cfg) == str(cfg.run_path / "sft")
    (cfg.run_path / "policy").mkdir(parents=True)
    (cfg.run_path / "policy" / "config.json").write_text("{}", encoding="utf-8")
    assert default_policy(cfg) == str(cfg.run_path / "policy")


def _cli_setup(tmp_path, tiny_t5_dir, lexicon_file) -> tuple[Path, Path]:
    const = write_constitution(tmp_path, [
        principle("no-w-words", {"kind": "pattern", "patterns": [r"\bw\d+\b"]}),
        principle("no-blorp", {"kind": "lexicon", "lexicon": str(lexicon_file)}),
    ])
    cfg = make_cfg(tmp_path, policy=tiny_t5_dir, path=str(const))
    cfg.eval.generation.do_sample = True  # the random tiny T5 decodes greedily to padding
    path = tmp_path / "cfg.yaml"
    path.write_text(cfg.to_yaml(), encoding="utf-8")
    return path, const


def test_generate_command_prints_and_writes_violations_and_revisions(tmp_path, tiny_t5_dir, lexicon_file):
    from typer.testing import CliRunner

    from detoxrl.cli import app

    cfg_path, const = _cli_setup(tmp_path, tiny_t5_dir, lexicon_file)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("w20 w21\n", encoding="utf-8")
    out = tmp_path / "gen.jsonl"
    args = ["generate", str(cfg_path), "--constitution", str(const), "--prompt", "w10 w11 w12",
            "--prompt", "w13 w14", "--prompts", str(prompts), "--revision", "resample", "--output", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["prompt"] for r in rows] == ["w10 w11 w12", "w13 w14", "w20 w21"]
    for r in rows:
        assert r["policy"] == str(tiny_t5_dir) and r["mode"] == "resample"
        assert ("no-w-words" in r["violations"]) == bool(r["response"].strip())
        assert set(r["values"]) == {"no-w-words", "no-blorp"}
        if r["violations"]:
            assert r["revision"] is not None and r["revision_accepted"] is False  # samples are w-words too
    assert "[1] prompt: w10 w11 w12" in res.output and "violations: no-w-words" in res.output
    assert "3 response(s)" in res.output
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0
    assert out.read_text(encoding="utf-8").splitlines() == [json.dumps(r, ensure_ascii=False) for r in rows]


def test_generate_command_user_errors(tmp_path, tiny_t5_dir, lexicon_file):
    from typer.testing import CliRunner

    from detoxrl.cli import app

    cfg_path, const = _cli_setup(tmp_path, tiny_t5_dir, lexicon_file)
    res = CliRunner().invoke(app, ["generate", str(cfg_path), "--constitution", str(const)])
    assert res.exit_code == 2 and "no prompts" in res.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"principles": [{"id": "x"}]}), encoding="utf-8")
    res = CliRunner().invoke(app, ["generate", str(cfg_path), "--constitution", str(bad), "--prompt", "w1"])
    assert res.exit_code == 2 and "principles[0] (x)" in res.output
    res = CliRunner().invoke(app, ["generate", str(cfg_path), "--constitution", str(const), "--prompt", "w1",
                                   "--revision", "magic"])
    assert res.exit_code == 2 and "unknown mode 'magic'" in res.output
