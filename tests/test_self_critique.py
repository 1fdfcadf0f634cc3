"""Self-critique: the critique and revision requests, and P("yes") computed by hand from tiny models."""

from __future__ import annotations

import pytest
import torch

from detoxrl.config import ConstitutionSettings
from detoxrl.constitution.principles import Principle
from detoxrl.constitution.prompts import SelfCritic, answer_ids, critique_request, p_yes, revision_request
from detoxrl.errors import ConfigError, ModelError
from detoxrl.models.policy import load_policy_model

PRINCIPLE = Principle(id="no-insults", principle="The response does not insult anyone.",
                      critique="Does it insult?", revision="Rewrite it.", check={"kind": "pattern", "patterns": ["x"]})


def test_critique_and_revision_requests_word_for_word():
    assert critique_request(PRINCIPLE, " Ann calls Ben a fool. ", "A: hi\nB: hello") == (
        "Does this summary break the principle 'The response does not insult anyone.'? Answer yes or no, "
        "then why.\n\nSummary: Ann calls Ben a fool.\n\nDialogue:\nA: hi\nB: hello")
    # no dialogue: its part goes
    assert critique_request("Be kind.", "Ann is rude.") == (
        "Does this summary break the principle 'Be kind.'? Answer yes or no, then why.\n\nSummary: Ann is rude.")
    assert revision_request(PRINCIPLE, "Ann calls Ben a fool.", "A: hi") == (
        "Rewrite the summary so that it follows 'The response does not insult anyone.'.\n\n"
        "Summary: Ann calls Ben a fool.\n\nDialogue:\nA: hi")
    own = "{principle} | {response} | {dialogue} {other}"
    assert critique_request("P", "R", "D", template=own) == "P | R | D {other}"


def test_request_templates_are_validated():
    with pytest.raises(ValueError, match="must contain {principle}"):
        ConstitutionSettings(critique_request="Is {response} bad?")
    from detoxrl.config import load_config

    with pytest.raises(ConfigError, match="constitution.revision_request"):
        load_config(overrides=["constitution.revision_request=Rewrite {principle}."])


def _by_hand(logits: torch.Tensor, yes: list[int], no: list[int]) -> float:
    p = torch.softmax(logits.double(), -1)
    return float(p[yes].sum() / (p[yes].sum() + p[no].sum()))


@torch.no_grad()
def test_p_yes_of_a_tiny_t5_by_hand(tiny_t5_dir):
    lp = load_policy_model(str(tiny_t5_dir))
    lp.model.train()  # dropout on: p_yes must switch it off itself
    tok = lp.tokenizer
    requests = ["w5 w6 w7 w8 w9", "w10 w11"]
    got = p_yes(lp, requests, max_prompt_tokens=32, yes_words=["w1", "w2", "w1"], no_words=["w3"])
    yes, no = [tok.convert_tokens_to_ids(w) for w in ("w1", "w2")], [tok.convert_tokens_to_ids("w3")]
    lp.model.eval()
    for i, r in enumerate(requests):
        ids = torch.tensor([tok(r)["input_ids"]])  # "w5 ... </s>", one request alone: no padding
        start = torch.tensor([[lp.model.config.decoder_start_token_id]])
        logits = lp.model(input_ids=ids, decoder_input_ids=start).logits[0, 0]
        assert got[i].item() == pytest.approx(_by_hand(logits, yes, no), abs=1e-6)
    lp.model.train()
    p_yes(lp, requests, max_prompt_tokens=32, yes_words=["w1"], no_words=["w3"])
    assert lp.model.training  # restored


@torch.no_grad()
def test_p_yes_of_a_tiny_gpt2_by_hand_with_left_padding(tiny_gpt2_dir):
    lp = load_policy_model(str(tiny_gpt2_dir))
    tok = lp.tokenizer
    requests = ["w5 w6 w7 w8 w9 w10", "w11 w12"]  # different lengths: the short one is padded
    got = p_yes(lp, requests, max_prompt_tokens=32, yes_words=["w1"], no_words=["w3", "w4"])
    yes, no = [tok.convert_tokens_to_ids("w1")], [tok.convert_tokens_to_ids(w) for w in ("w3", "w4")]
    for i, r in enumerate(requests):
        ids = torch.tensor([tok(r)["input_ids"]])
        logits = lp.model(input_ids=ids).logits[0, -1]  # the position after the last request token
        assert got[i].item() == pytest.approx(_by_hand(logits, yes, no), abs=1e-5)


def test_answer_words_that_are_no_tokens_or_shared_are_refused(tiny_t5_dir):
    lp = load_policy_model(str(tiny_t5_dir))
    with pytest.raises(ModelError, match=r"none of the answer words \['yes', 'Yes'\] is a token"):
        answer_ids(lp.tokenizer)  # the tiny vocabulary has no "yes"
    with pytest.raises(ModelError, match="start with the same token"):
        answer_ids(lp.tokenizer, ["w1", "w2"], ["w2"])


def test_self_critic_gives_p_yes_and_verdicts_per_principle(tiny_t5_dir):
    lp = load_policy_model(str(tiny_t5_dir))
    other = PRINCIPLE.model_copy(update={"id": "kind", "principle": "w9 w9"})
    with pytest.raises(ModelError):  # the default answer words are not in the tiny vocabulary
        SelfCritic(lp, [PRINCIPLE], ConstitutionSettings(), max_prompt_tokens=48).p_yes(["w5"], ["w6"])
    critic = SelfCritic(lp, [PRINCIPLE, other], ConstitutionSettings(), max_prompt_tokens=48, threshold=0.5,
                        yes_words=["w1"], no_words=["w2"])
    probs, viol = critic.violations(["w5 w6", "w7"], ["w8", ""])
    assert list(probs) == ["no-insults", "kind"] and probs["kind"].shape == (2,)
    direct = p_yes(lp, [critique_request(other, "w7", "")], max_prompt_tokens=48, yes_words=["w1"], no_words=["w2"])
    assert probs["kind"][1].item() == pytest.approx(direct.item(), abs=1e-6)
    assert viol["kind"].tolist() == (probs["kind"] >= 0.5).tolist()
    assert list(critic.p_yes(["w5"], ["w6"], only=["kind"])) == ["kind"]
