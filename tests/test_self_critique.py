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


# ------------------------------------------------------------------------------ SFT task examples
def _labels_file(tmp_path):
    import json

    rows = [{"summary": f"s{i}", "gold": f"g{i}", "dialogue": f"d{i}",
             "labels": {"insult": i % 3 == 0, "profanity": i % 4 == 0},
             "answers": {"insult": f"yes because i{i}." if i % 3 == 0 else "no because it follows the principle."}}
            for i in range(24)]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_sft_task_pairs_from_labelled_summaries(tmp_path):
    from detoxrl.config import load_config
    from detoxrl.constitution.tasks import task_pairs

    cfg = load_config(overrides=[f"sft.tasks.labels_file={_labels_file(tmp_path)}", "sft.tasks.critique_share=0.5",
                                 "sft.tasks.revision_share=0.25",
                                 "sft.tasks.principles={no-insults: insult, no-profanity: profanity}"],
                      run_dir=tmp_path / "run")
    pairs = task_pairs(cfg, 400, seed=0)
    assert pairs == task_pairs(cfg, 400, seed=0)  # seeded
    crit = [p for p in pairs if p.task == "critique"]
    rev = [p for p in pairs if p.task == "revision"]
    assert len(crit) == 200 and len(rev) == 100
    assert {p.principle for p in pairs} == {"no-insults", "no-profanity"}
    assert 0.4 < sum(p.label for p in crit) / len(crit) < 0.6  # half yes
    const_text = "The response does not insult, belittle or call anyone names."
    for p in crit:
        i = int(p.prompt.split("Summary: s")[1].split("\n")[0])
        label = {"no-insults": i % 3 == 0, "no-profanity": i % 4 == 0}[p.principle]
        assert p.label == label and p.prompt.endswith(f"Dialogue:\nd{i}")
        if p.principle == "no-insults":
            assert const_text in p.prompt and p.target == (f"yes because i{i}." if label else "no because it follows the principle.")
        else:
            assert p.target == ("yes" if label else "no")  # no answers given: the bare word
    for p in rev:
        i = int(p.prompt.split("Summary: s")[1].split("\n")[0])
        assert p.prompt.startswith("Rewrite the summary so that it follows '") and p.target == f"g{i}"
        assert (i % 3 == 0) if p.principle == "no-insults" else (i % 4 == 0)  # only violating summaries


def test_sft_task_errors_name_the_file_row_or_key(tmp_path):
    from detoxrl.config import load_config
    from detoxrl.constitution.tasks import read_labelled, task_pairs
    from detoxrl.errors import DataError

    cfg = load_config(overrides=["sft.tasks.critique_share=0.5", "sft.tasks.principles={no-insult: insult}"],
                      run_dir=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"sft.tasks.principles: \['no-insult'\] are not principles"):
        task_pairs(cfg, 10, 0)
    path = tmp_path / "bad.jsonl"
    path.write_text('{"summary": "s", "gold": "g", "dialogue": "d", "labels": {"insult": true}}\n'
                    '{"summary": "s", "gold": "g", "dialogue": "d", "labels": {"insult": "yes"}}\n')
    with pytest.raises(DataError, match=r"bad.jsonl row 2: `labels` must give true or false for each of \['insult'\]"):
        read_labelled(path, ["insult"])
    path.write_text('{"summary": "s", "gold": "g", "fname": "x", "labels": {"insult": true}}\n')
    with pytest.raises(DataError, match="no run says where dialogues are"):
        read_labelled(path, ["insult"])


def test_critique_eval_accuracy_and_auc_by_hand(tiny_t5_dir):
    from detoxrl.constitution.critique_eval import critique_eval, format_critique_eval
    from detoxrl.constitution.tasks import Labelled

    lp = load_policy_model(str(tiny_t5_dir))
    rows = [Labelled(f"w{10 + i} w{20 + i}", "g", f"w{30 + i}", {"insult": i < 3}) for i in range(7)]
    res = critique_eval(lp, [(PRINCIPLE, "insult")], rows, ConstitutionSettings(), n=4, seed=0,
                        max_prompt_tokens=64, threshold=0.5, yes_words=["w1"], no_words=["w2"])["no-insults"]
    assert (res["n"], res["positives"]) == (4, 2)  # balanced: 2 of the 3 violating, 2 of the 4 others
    shown = {e["summary"]: e for e in res["examples"]}
    assert len(shown) == 2 and {e["violates"] for e in shown.values()} == {True, False}
    # by hand: P(yes) of every row, then the accuracy and AUC of the four drawn
    probs = {r.summary: float(p_yes(lp, [critique_request(PRINCIPLE, r.summary, r.dialogue)], max_prompt_tokens=64,
                                    yes_words=["w1"], no_words=["w2"])) for r in rows}
    for s, e in shown.items():
        assert e["p_yes"] == pytest.approx(probs[s], abs=1e-4)
    import random

    from detoxrl.constitution.critique_eval import balanced_sample

    drawn = balanced_sample(rows, "insult", 4, random.Random("0:critique-eval:no-insults"))
    pos = [probs[r.summary] for r in drawn if r.labels["insult"]]
    neg = [probs[r.summary] for r in drawn if not r.labels["insult"]]
    auc = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg) / 4
    acc = (sum(a >= 0.5 for a in pos) + sum(b < 0.5 for b in neg)) / 4
    assert res["auc"] == pytest.approx(auc) and res["accuracy"] == pytest.approx(acc)
    assert res["mean_p_yes_violating"] == pytest.approx(sum(pos) / 2, abs=1e-6)
    table = format_critique_eval({"model": "m", "labels_file": "f", "principles": {"no-insults": res}})
    assert "no-insults" in table and f"{auc:.3f}" in table


def test_an_sft_critique_example_keeps_its_summary_and_trains_the_token_p_yes_reads(tiny_t5_dir):
    """A request longer than the SFT's prompt length loses the end of its dialogue, not the summary, and
    the target's first token, learnt at the decoder's first position, is the answer token P(yes) reads."""
    from detoxrl.stages.sft import Pair, encode

    lp = load_policy_model(str(tiny_t5_dir))
    tok = lp.tokenizer
    dialogue = " ".join(f"w{10 + i % 40}" for i in range(200))
    request = critique_request(PRINCIPLE, "w7 w8 w9", dialogue)
    [(prompt_ids, target_ids)] = encode(lp, [Pair(request, "w1 w3")], 48, 8)
    summary = tok.convert_tokens_to_ids(["w7", "w8", "w9"])
    assert len(prompt_ids) == 48 and any(prompt_ids[i: i + 3] == summary for i in range(46))
    yes, _ = answer_ids(tok, ["w1"], ["w2"])
    assert target_ids[0] == yes[0]
    shifted = lp.model._shift_right(torch.tensor([target_ids]))
    assert shifted[0, 0].item() == lp.model.config.decoder_start_token_id  # what first_token_logits feeds
