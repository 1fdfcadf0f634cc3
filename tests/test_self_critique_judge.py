"""The ``self_critique`` reward judge: P(violates) by hand on a tiny model, its settings and errors, and
its model frozen through PPO."""

from __future__ import annotations

import math

import pytest
import torch

from detoxrl.config import GenerationSettings, JudgeSettings
from detoxrl.constitution.critic import answer_token_ids
from detoxrl.errors import ConfigError, ModelError
from detoxrl.models.policy import load_policy_model
from detoxrl.rewards.build import build_judge
from detoxrl.rewards.critique import critique_request
from detoxrl.rewards.self_critique import SelfCritiqueJudge, dialogue_from_prompt, principle_texts

WORDS = {"yes_words": ["w1"], "no_words": ["w2"]}


def _p_yes_by_hand(lp, request: str) -> float:
    tok = lp.tokenizer
    ids = torch.tensor([tok(request)["input_ids"]])
    start = torch.tensor([[lp.model.config.decoder_start_token_id]])
    with torch.no_grad():
        logits = lp.model.eval()(input_ids=ids, decoder_input_ids=start).logits[0, 0].double()
    p = torch.softmax(logits, -1)
    y, n = tok.convert_tokens_to_ids("w1"), tok.convert_tokens_to_ids("w2")
    return float(p[y] / (p[y] + p[n]))


def test_dialogue_from_prompt():
    t = "Summarize.\n\n{text}\n\nSummary:"
    assert dialogue_from_prompt("Summarize.\n\nA: hi\n\nSummary:", t) == "A: hi"
    assert dialogue_from_prompt("something else", t) == "something else"
    assert dialogue_from_prompt("w3 w4", None) == "w3 w4"


def test_score_toxicity_and_dimensions_by_hand(tiny_t5_dir):
    lp = load_policy_model(str(tiny_t5_dir))
    principles = [("kind", "w9 w9"), ("clean", "w10"), ("true", "w11 w12")]
    judge = SelfCritiqueJudge("self", lp, principles, dimensions={"kind": "harassment", "clean": "profanity",
                                                                   "true": "harassment"},
                              score="logit", prompt_template="w3 {text} w4", **WORDS)
    texts, prompts = ["w20 w21", "w22"], ["w3 w30 w31 w4", "w3 w32 w4"]
    res = judge.score(texts, prompts)
    v = {pid: [_p_yes_by_hand(lp, critique_request(words, t, p.split(" ", 1)[1].rsplit(" ", 1)[0]))
               for t, p in zip(texts, prompts)] for pid, words in principles}
    for i in range(2):
        tox = max(v[k][i] for k in v)
        assert res.toxicity[i].item() == pytest.approx(tox, abs=1e-5)
        assert res.score[i].item() == pytest.approx(math.log(1 - tox) - math.log(tox), abs=1e-4)
        assert res.dimensions["harassment"][i].item() == pytest.approx(max(v["kind"][i], v["true"][i]), abs=1e-5)
        assert res.dimensions["profanity"][i].item() == pytest.approx(v["clean"][i], abs=1e-5)
    assert set(res.dimensions) == {"harassment", "profanity"} and not res.graded
    pv = judge.p_violates(texts, prompts)
    assert pv["clean"].tolist() == pytest.approx(v["clean"], abs=1e-5)
    # without prompts the request has no dialogue
    alone = judge.p_violates(["w20 w21"])["kind"].item()
    assert alone == pytest.approx(_p_yes_by_hand(lp, critique_request("w9 w9", "w20 w21")), abs=1e-5)
    assert not any(p.requires_grad for p in judge.model.parameters()) and not judge.model.training


def test_answer_words_prefer_whole_word_tokens(tiny_t5_dir):
    tok = load_policy_model(str(tiny_t5_dir)).tokenizer
    w = tok.convert_tokens_to_ids
    assert answer_token_ids(tok, ["w3 w4", "w1"]) == [w("w1")]  # "w3 w4" takes two tokens: its w3 is a prefix
    assert answer_token_ids(tok, ["w3 w4", "w5 w6"]) == [w("w3"), w("w5")]  # none whole: first tokens


def test_build_from_settings_and_its_errors(tiny_t5_dir, tmp_path):
    s = JudgeSettings(name="self", type="self_critique", model=str(tiny_t5_dir),
                      principles=["no-insults", "respect-groups"], dimensions={"no-insults": "harassment"}, **WORDS)
    judge = build_judge(s)
    assert isinstance(judge, SelfCritiqueJudge) and judge.dimensions == ("harassment",)
    assert judge.principles[0] == ("no-insults", "The response does not insult, belittle or call anyone names.")
    with pytest.raises(ValueError, match="type self_critique needs `model`"):
        JudgeSettings(name="self", type="self_critique", principles=["no-insults"])
    with pytest.raises(ValueError, match=r"dimensions name \['faithful'\]"):
        JudgeSettings(name="self", type="self_critique", model="m", principles=["no-insults"],
                      dimensions={"faithful": "hate"})
    with pytest.raises(ValueError, match="`principles` is for type self_critique only"):
        JudgeSettings(name="j", type="lexicon", lexicon="x", principles=["no-insults"])
    with pytest.raises(ConfigError, match=r"judge self: principles \['kindness'\] are not principles"):
        principle_texts(["kindness"], "configs/constitution.yaml", judge="self")
    from detoxrl.config import load_config

    cfg = load_config(run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match="is ppo.output_dir, where the policy being trained is saved"):
        build_judge(s.model_copy(update={"model": "{run_dir}/policy"}), cfg)
    bad = s.model_copy(update={"yes_words": ["yes"], "no_words": ["no"]})
    with pytest.raises(ModelError, match="judge self: none of the answer words"):
        build_judge(bad)


def test_the_judges_model_does_not_change_during_ppo(tiny_t5_dir):
    from detoxrl.config import KLSettings, PPOSettings
    from detoxrl.models.policy import tokenize_prompts
    from detoxrl.rewards.composite import CompositeReward
    from detoxrl.rl.trainer import PPOTrainer

    s = JudgeSettings(name="self", type="self_critique", model=str(tiny_t5_dir), principles=["no-insults"],
                      dimensions={"no-insults": "harassment"}, score="logprob", **WORDS)
    judge = build_judge(s)
    calls = []
    score_batch = judge._score_batch
    judge._score_batch = lambda texts, prompts: calls.append(len(texts)) or score_batch(texts, prompts)
    frozen = {k: v.clone() for k, v in judge.model.state_dict().items()}
    lp = load_policy_model(str(tiny_t5_dir), apply_lora=True)  # the same folder: still its own copy
    start = {k: v.clone() for k, v in lp.model.state_dict().items()}
    settings = PPOSettings(steps=2, batch_size=4, mini_batch_size=2, ppo_epochs=2, learning_rate=1e-2,
                           kl=KLSettings(adaptive=False), generation=GenerationSettings(max_new_tokens=5))
    tr = PPOTrainer(settings, lp, CompositeReward([judge]), seed=0)
    prompts = ["w10 w11 w12", "w13 w14", "w5 w6 w7", "w20 w21 w22 w23"]
    q, qm = tokenize_prompts(lp.tokenizer, prompts, 32)
    for _ in range(2):
        tr.step(prompts, q, qm, 5)
    assert sum(calls) >= 8  # the judge scored every response
    assert judge.model is not lp.model
    assert any(not torch.equal(v, start[k]) for k, v in lp.model.state_dict().items())  # the policy moved
    assert all(torch.equal(v, frozen[k]) for k, v in judge.model.state_dict().items())  # its grader did not


def test_the_rlaif_ablation_arm_rewards_only_the_self_critique(tmp_path):
    import sys
    from pathlib import Path

    from detoxrl.config import load_config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import ablation

    cfg = load_config(overrides=ablation.ARMS["rlaif"], run_dir=tmp_path / "run")
    weights = {j.name: j.weight for j in cfg.reward.judges}
    assert weights == {"testbed-hate": 0.0, "testbed-toxic-bert": 0.0, "self-critique": 2.0}
    critic = cfg.reward.judges[-1]
    assert critic.type == "self_critique" and cfg.resolve(critic.model) == str(tmp_path / "run" / "sft")
    assert not any(cfg.reward.dimension_weights.values()) and cfg.reward.severity_tiers == []
    default = load_config(run_dir=tmp_path / "run")
    assert [j.name for j in default.eval.extra_judges] == [j.name for j in cfg.eval.extra_judges]
