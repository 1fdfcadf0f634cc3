"""HF classifier judges: tiny random RoBERTa (nothate/hate) and BERT (toxic-bert's six labels),
saved to a folder and loaded back exactly like hub models; presets; build_judge."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detoxrl.config import JudgeSettings, config_from_dict
from detoxrl.errors import ConfigError, DataError, ModelError
from detoxrl.rewards.build import build_judge, build_judges
from detoxrl.rewards.hf import HFClassifierJudge
from detoxrl.rewards.presets import META_HATE, TOXIC_BERT, apply_preset

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

WORDS = ("you are a kind friend the meeting went well today thanks for help zorp blarg snib "
         "quux vorlani people were late again cat dog report budget plan").split()
TOXIC_BERT_LABELS = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def make_word_tokenizer(words=WORDS, model_max_length: int = 512):
    """A whole-word tokenizer over ``words`` (lower-cased, punctuation split) with RoBERTa specials."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] + sorted(set(words))
    tk = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tk.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", cls_token="<s>", sep_token="</s>",
                                   model_max_length=model_max_length)


def make_roberta_dir(path: Path, labels=("nothate", "hate"), seed: int = 0, words=WORDS,
                     hidden: int = 16, layers: int = 1, max_positions: int = 66, init_range: float = 0.5) -> Path:
    """A tiny random RobertaForSequenceClassification (+ tokenizer) saved with save_pretrained."""
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(seed)
    tok = make_word_tokenizer(words)
    cfg = RobertaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden,
                        max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                        initializer_range=init_range, id2label=dict(enumerate(labels)),
                        label2id={n: i for i, n in enumerate(labels)})
    RobertaForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_bert_multilabel_dir(path: Path, labels=TOXIC_BERT_LABELS, seed: int = 0, words=WORDS,
                             hidden: int = 16, init_range: float = 0.5) -> Path:
    """A tiny random BertForSequenceClassification with toxic-bert's six labels (multi-label)."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    tok = make_word_tokenizer(words)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64, pad_token_id=1,
                     initializer_range=init_range,
                     id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)},
                     problem_type="multi_label_classification")
    BertForSequenceClassification(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory) -> Path:
    return make_roberta_dir(tmp_path_factory.mktemp("roberta"))


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert_multilabel_dir(tmp_path_factory.mktemp("bert"))


TEXTS = ["you are a kind friend", "zorp blarg snib", "the meeting went well today", "", "quux " * 200]


def reference_logits(path: Path, texts: list[str]) -> torch.Tensor:
    """Run the saved model by hand, one text at a time (no padding), truncated to 64 tokens."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    rows = []
    with torch.no_grad():
        for t in texts:
            enc = tok(t, truncation=True, max_length=64, return_tensors="pt")
            rows.append(model(**enc).logits[0])
    return torch.stack(rows)


# ------------------------------------------------------------------------------------- roberta
def test_roberta_logit_of_named_label_matches_model(roberta_dir):
    judge = HFClassifierJudge("meta-like", str(roberta_dir), label="nothate", dimensions={"hate": "hate"},
                              batch_size=2)
    assert judge.max_length == 64  # 66 positions minus RoBERTa's padding offset
    res = judge.score(TEXTS)
    ref = reference_logits(roberta_dir, TEXTS)
    p = torch.softmax(ref, -1)
    torch.testing.assert_close(res.score, ref[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.toxicity, p[:, 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dimensions["hate"], p[:, 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.severity, p[:, 1], atol=1e-5, rtol=1e-5)
    assert res.judge == "meta-like" and judge.dimensions == ("hate",)
    assert res.score.dtype == torch.float32 and not res.score.requires_grad
    assert res.score.std() > 0  # the texts are told apart


def test_batch_size_does_not_change_scores(roberta_dir):
    a = HFClassifierJudge("a", str(roberta_dir), label="nothate", batch_size=1).score(TEXTS)
    b = HFClassifierJudge("b", str(roberta_dir), label="nothate", batch_size=64).score(TEXTS)
    torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=1e-5)


def test_label_chosen_by_name_not_position(tmp_path, roberta_dir):
    swapped = make_roberta_dir(tmp_path / "swapped", labels=("hate", "nothate"))
    judge = HFClassifierJudge("s", str(swapped), label="nothate", dimensions={"hate": "hate"})
    res = judge.score(TEXTS[:3])
    ref = reference_logits(swapped, TEXTS[:3])
    torch.testing.assert_close(res.score, ref[:, 1], atol=1e-5, rtol=1e-5)  # nothate is column 1 here
    torch.testing.assert_close(res.toxicity, torch.softmax(ref, -1)[:, 0], atol=1e-5, rtol=1e-5)


def test_bad_label_scoring_and_kinds(roberta_dir):
    ref = reference_logits(roberta_dir, TEXTS[:3])
    logp = torch.log_softmax(ref, -1)
    bad = HFClassifierJudge("h", str(roberta_dir), label="hate", label_is_good=False).score(TEXTS[:3])
    torch.testing.assert_close(bad.score, -ref[:, 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bad.toxicity, logp[:, 1].exp(), atol=1e-5, rtol=1e-5)
    prob = HFClassifierJudge("p", str(roberta_dir), label="hate", label_is_good=False, score="prob").score(TEXTS[:3])
    torch.testing.assert_close(prob.score, logp[:, 0].exp(), atol=1e-5, rtol=1e-5)
    lp = HFClassifierJudge("l", str(roberta_dir), label="hate", label_is_good=False, score="logprob").score(TEXTS[:3])
    torch.testing.assert_close(lp.score, logp[:, 0], atol=1e-5, rtol=1e-5)
    lpg = HFClassifierJudge("g", str(roberta_dir), label="nothate", score="logprob").score(TEXTS[:3])
    torch.testing.assert_close(lpg.score, logp[:, 0], atol=1e-5, rtol=1e-5)


def test_unknown_label_lists_the_model_labels(roberta_dir):
    with pytest.raises(ModelError, match=r"no label 'not_hate'.*\['nothate', 'hate'\]"):
        HFClassifierJudge("x", str(roberta_dir), label="not_hate")
    with pytest.raises(ModelError, match="no label 'insult'"):
        HFClassifierJudge("x", str(roberta_dir), label="nothate", dimensions={"insult": "harassment"})
    with pytest.raises(ValueError, match="unknown dimension 'rudeness'"):  # JudgeSettings checks it
        JudgeSettings(name="x", model=str(roberta_dir), label="nothate", dimensions={"hate": "rudeness"})
    with pytest.raises(ConfigError, match="set `label`"):
        HFClassifierJudge("x", str(roberta_dir))


def test_missing_folder_or_weights_names_the_path(tmp_path):
    missing = tmp_path / "nope" / "judge"
    with pytest.raises(ModelError, match=f"{missing} does not exist"):
        HFClassifierJudge("x", str(missing), label="nothate")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelError, match="has no config.json"):
        HFClassifierJudge("x", str(empty), label="nothate")
    (empty / "config.json").write_text("{}")
    with pytest.raises(ModelError, match="no .safetensors"):
        HFClassifierJudge("x", str(empty), label="nothate")


# ---------------------------------------------------------------------------------------- bert
def test_bert_multilabel_dimensions_and_severity(bert_dir):
    settings = JudgeSettings(name="tb", preset="toxic-bert", model=str(bert_dir))
    judge = build_judge(settings)
    assert judge.dimensions == ("harassment", "discrimination", "profanity")
    res = judge.score(TEXTS)
    ref = reference_logits(bert_dir, TEXTS)
    p = torch.sigmoid(ref)
    col = {n: i for i, n in enumerate(TOXIC_BERT_LABELS)}
    torch.testing.assert_close(res.score, -ref[:, col["toxic"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.toxicity, p[:, col["toxic"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dimensions["harassment"],
                               torch.maximum(p[:, col["insult"]], p[:, col["threat"]]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dimensions["discrimination"], p[:, col["identity_hate"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dimensions["profanity"], p[:, col["obscene"]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.severity, (p[:, col["severe_toxic"]] + p[:, col["toxic"]]) / 2,
                               atol=1e-5, rtol=1e-5)


def test_bert_label_order_shuffled_still_maps_by_name(tmp_path, bert_dir):
    order = ["insult", "identity_hate", "toxic", "obscene", "severe_toxic", "threat"]
    shuffled = make_bert_multilabel_dir(tmp_path / "shuffled", labels=order)
    res = build_judge(JudgeSettings(name="tb", preset="toxic-bert", model=str(shuffled))).score(TEXTS[:2])
    p = torch.sigmoid(reference_logits(shuffled, TEXTS[:2]))
    torch.testing.assert_close(res.toxicity, p[:, order.index("toxic")], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.dimensions["profanity"], p[:, order.index("obscene")], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------ presets, build
def test_presets_fill_defaults_and_explicit_settings_win():
    meta = apply_preset(JudgeSettings(name="m", preset="meta-hate"))
    assert (meta.model, meta.label, meta.label_is_good, meta.score, meta.activation, meta.dimensions) == (
        META_HATE, "nothate", True, "logit", "softmax", {"hate": "hate"})
    local = apply_preset(JudgeSettings(name="m", preset="meta-hate", model="my/copy", score="prob"))
    assert local.model == "my/copy" and local.score == "prob" and local.label == "nothate"
    tb = apply_preset(JudgeSettings(name="t", preset="toxic-bert"))
    assert tb.model == TOXIC_BERT and tb.activation == "sigmoid" and tb.label_is_good is False
    assert tb.dimensions["identity_hate"] == "discrimination" and tb.severity_labels == ["severe_toxic", "toxic"]
    prof = apply_preset(JudgeSettings(name="p", preset="profanity"))
    assert prof.type == "profanity" and prof.score == "prob"
    lex = apply_preset(JudgeSettings(name="l", type="lexicon", lexicon="x.txt"))
    assert lex.score == "prob"
    assert apply_preset(JudgeSettings(name="l", type="lexicon", lexicon="x.txt", score="logit")).score == "logit"


def test_build_judge_resolves_run_dir_and_types(tmp_path, roberta_dir):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(roberta_dir, run / "judge")
    (run / "testbed").mkdir(parents=True)
    (run / "testbed" / "lexicon.txt").write_text("zorp\nblarg\n")
    cfg = config_from_dict({
        "name": "t", "run_dir": str(run), "data": {"source": "x.jsonl"}, "policy": {"name_or_path": "p"},
        "reward": {"judges": [{"name": "j", "model": "{run_dir}/judge", "label": "nothate",
                               "dimensions": {"hate": "hate"}}]},
        "eval": {"extra_judges": [{"name": "lex", "type": "lexicon", "lexicon": "testbed"},
                                  {"name": "pc", "type": "profanity"}]},
    })
    judges = build_judges(cfg.reward.judges + cfg.eval.extra_judges, cfg)
    assert [type(j).__name__ for j in judges] == ["HFClassifierJudge", "LexiconJudge", "ProfanityCheckJudge"]
    res = judges[1].score(["a zorp here", "all fine"])
    assert res.toxicity.tolist() == [1.0, 0.0] and res.score.tolist() == [0.0, 1.0]
    with pytest.raises(ConfigError, match="no config"):
        build_judge(cfg.reward.judges[0])
    with pytest.raises(ConfigError, match="lexicon 'testbed' needs a config"):
        build_judge(cfg.eval.extra_judges[0])
    (run / "testbed" / "lexicon.txt").unlink()
    with pytest.raises(DataError, match="lexicon.txt does not exist .run `detoxrl prepare`"):
        build_judge(cfg.eval.extra_judges[0], cfg)
    with pytest.raises(ConfigError, match="unique"):
        build_judges([cfg.eval.extra_judges[1], cfg.eval.extra_judges[1]], cfg)


def test_profanity_judge_scores_and_survives_empty():
    from detoxrl.rewards.lexicon import better_profanity_words

    judge = build_judge(JudgeSettings(name="pc", type="profanity"))
    words = better_profanity_words()  # offensive vocabulary only at run time
    bad = [w for w, p in zip(words, judge._predict_prob(words)) if p > 0.95 and w.isalpha()][:2]
    res = judge.score(["thank you for the lovely dinner", "", f"what a {bad[0]} you {bad[1]}"])
    assert res.toxicity[2] > 0.9 > 0.2 > res.toxicity[0]
    assert res.toxicity[1] < 0.5
    torch.testing.assert_close(res.score, 1 - res.toxicity)
    assert judge.dimensions == ("profanity",) and torch.equal(res.dimensions["profanity"], res.toxicity)


def test_empty_input_list(roberta_dir):
    res = HFClassifierJudge("e", str(roberta_dir), label="nothate").score([])
    assert len(res) == 0 and res.score.shape == (0,)


def test_small_judges_score_on_one_thread_and_restore_the_setting(roberta_dir, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    judge = HFClassifierJudge("t", str(roberta_dir), label="nothate")
    assert judge.threads == 1
    before = torch.get_num_threads()
    judge.score(TEXTS)
    assert torch.get_num_threads() == before
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert HFClassifierJudge("t", str(roberta_dir), label="nothate").threads is None
