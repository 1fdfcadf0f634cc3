"""Full-size stand-ins: the real configs, tokenizers of the real kind and size, loaded by the normal
loaders. Most tests shrink the hidden sizes (the vocabularies stay real) so that they run in seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from detoxrl.cli import app
from detoxrl.errors import ConfigError, DataError
from detoxrl.models.standin import STANDINS, build_model, resolve_names, write_standin, write_standins
from detoxrl.models.standin_tokenizers import TOKENIZERS

DIALOGSUM = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "dialogsum"
needs_dialogsum = pytest.mark.skipif(not (DIALOGSUM / "dialogsum.dev.jsonl").exists(),
                                     reason="DialogSum files not present beside the project")

# Small hidden sizes, real vocabularies: the tests build in seconds and the tokenizers stay full-size.
SMALL = {
    "flan-t5-small": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
    "flan-t5-base": {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2, "d_kv": 16},
    "roberta-hate-speech-dynabench-r4-target": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                                                "intermediate_size": 64},
    "toxic-bert": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64},
    "gpt2": {"n_embd": 32, "n_layer": 1, "n_head": 2},
}
TEXTS = [f"#Person1#: Hello {name}, how was the {thing} today?\n#Person2#: It was {adj}, thank you."
         for name in ("Ann", "Bob", "Carol", "Dan") for thing in ("game", "trip", "meeting") for adj in ("fine", "long")]

# The hub checkpoints' sizes (what `sum(p.numel())` gives for each loaded model).
PARAMETERS = {"flan-t5-small": 76_961_152, "flan-t5-base": 247_577_856,
              "roberta-hate-speech-dynabench-r4-target": 124_647_170, "toxic-bert": 109_486_854,
              "gpt2": 124_439_808}


def test_configs_are_the_hub_models():
    base, small = STANDINS["flan-t5-base"].config, STANDINS["flan-t5-small"].config
    for cfg, sizes in ((base, (768, 2048, 12, 12, 64)), (small, (512, 1024, 8, 6, 64))):
        assert (cfg["d_model"], cfg["d_ff"], cfg["num_layers"], cfg["num_heads"], cfg["d_kv"]) == sizes
        assert cfg["num_decoder_layers"] == cfg["num_layers"] and cfg["vocab_size"] == 32128
        assert cfg["feed_forward_proj"] == "gated-gelu" and cfg["tie_word_embeddings"] is False
    hate = STANDINS["roberta-hate-speech-dynabench-r4-target"].config
    assert hate["architectures"] == ["RobertaForSequenceClassification"] and hate["vocab_size"] == 50265
    assert hate["id2label"] == {0: "nothate", 1: "hate"} and hate["max_position_embeddings"] == 514
    tox = STANDINS["toxic-bert"].config
    assert tox["architectures"] == ["BertForSequenceClassification"] and tox["vocab_size"] == 30522
    assert list(tox["id2label"].values()) == ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
    assert tox["problem_type"] == "multi_label_classification"
    gpt2 = STANDINS["gpt2"].config
    assert (gpt2["n_embd"], gpt2["n_layer"], gpt2["n_head"], gpt2["vocab_size"]) == (768, 12, 12, 50257)


@pytest.mark.parametrize("name", list(PARAMETERS))
def test_full_size_parameter_counts(name):
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        model = build_model(STANDINS[name])
    assert sum(p.numel() for p in model.parameters()) == PARAMETERS[name]


def test_resolve_names():
    assert resolve_names(None) == list(STANDINS)
    assert resolve_names(["flan-t5-base,toxic-bert", "gpt2", "toxic-bert"]) == ["flan-t5-base", "toxic-bert", "gpt2"]
    with pytest.raises(ConfigError, match="unknown stand-in.*'flan-t5-xl'.*known: flan-t5-small"):
        resolve_names(["flan-t5-xl"])


@pytest.mark.parametrize("kind, size, specials", [
    ("t5", 32_100, {"pad_token_id": 0, "eos_token_id": 1, "unk_token_id": 2}),
    ("roberta", 50_265, {"bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2, "unk_token_id": 3,
                         "mask_token_id": 50_264}),
    ("gpt2", 50_257, {"eos_token_id": 50_256, "bos_token_id": 50_256}),
    ("bert", 30_522, {"pad_token_id": 0, "unk_token_id": 100, "cls_token_id": 101, "sep_token_id": 102,
                      "mask_token_id": 103}),
])
def test_tokenizers_have_the_real_size_and_special_ids(kind, size, specials, tmp_path):
    from transformers import AutoTokenizer

    trained = TOKENIZERS[kind](TEXTS, size)
    assert len(trained.tokenizer) == size and trained.fillers > 0
    trained.tokenizer.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    assert type(back) is type(trained.tokenizer) and len(back) == size
    assert {k: getattr(back, k) for k in specials} == specials
    text = "#Person1#: Hello Ann, how was the game today?"
    assert back(text)["input_ids"] == trained.tokenizer(text)["input_ids"]
    if kind != "bert":  # BERT lower-cases
        assert back.decode(back(text)["input_ids"], skip_special_tokens=True) == text
    if kind == "t5":
        assert back.convert_tokens_to_ids(["<extra_id_0>", "<extra_id_99>"]) == [32_099, 32_000]
        assert back(text)["input_ids"][-1] == 1  # </s> appended, as T5's


def test_a_t5_stand_in_loads_as_a_policy_with_its_own_output_layer(tmp_path):
    from detoxrl.models.policy import load_policy_model

    res = write_standin(STANDINS["flan-t5-base"], tmp_path / "flan-t5-base", TEXTS, overrides=SMALL["flan-t5-base"])
    saved = json.loads((tmp_path / "flan-t5-base" / "config.json").read_text())
    assert saved["tie_word_embeddings"] is False and saved["vocab_size"] == 32128
    lp = load_policy_model(str(tmp_path / "flan-t5-base"))
    assert lp.is_seq2seq and len(lp.tokenizer) == 32_100 and lp.pad_id == 0 and lp.eos_id == 1
    model = lp.model
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()  # untied, as FLAN-T5's checkpoints
    assert res.parameters == sum(p.numel() for p in model.parameters())
    out = model.generate(**lp.tokenizer(["Summarize: hello"], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] <= 4


def test_a_gpt2_stand_in_loads_as_a_causal_policy(tmp_path):
    from detoxrl.models.policy import load_policy_model

    write_standin(STANDINS["gpt2"], tmp_path / "gpt2", TEXTS, overrides=SMALL["gpt2"])
    lp = load_policy_model(str(tmp_path / "gpt2"))
    assert not lp.is_seq2seq and len(lp.tokenizer) == 50_257 and lp.eos_id == 50_256
    assert lp.tokenizer.padding_side == "left" and lp.pad_id == 50_256


@pytest.mark.parametrize("name, preset", [("roberta-hate-speech-dynabench-r4-target", "meta-hate"),
                                          ("toxic-bert", "toxic-bert")])
def test_judge_presets_load_the_classifier_stand_ins(name, preset, tmp_path):
    from detoxrl.config import JudgeSettings
    from detoxrl.rewards.build import build_judge

    write_standin(STANDINS[name], tmp_path / name, TEXTS, overrides=SMALL[name])
    judge = build_judge(JudgeSettings(name=preset, preset=preset, model=str(tmp_path / name)))
    out = judge(["You did well today.", "See you at the game."])
    assert out.score.shape == (2,) and torch.isfinite(out.score).all()
    assert ((out.toxicity >= 0) & (out.toxicity <= 1)).all()


def test_write_standins_keeps_a_readme_of_every_folder(tmp_path):
    write_standins(tmp_path, ["gpt2"], TEXTS, overrides=SMALL["gpt2"])
    write_standins(tmp_path, ["toxic-bert"], TEXTS, overrides=SMALL["toxic-bert"])
    readme = (tmp_path / "README.txt").read_text()
    assert "MEANINGLESS" in readme and "- gpt2: stands in for gpt2;" in readme
    assert "- toxic-bert: stands in for unitary/toxic-bert;" in readme and "fillers" in readme


def test_cli_names_a_missing_data_folder(tmp_path):
    result = CliRunner().invoke(app, ["standin", str(tmp_path / "out"), "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2
    assert "DialogSum folder" in result.output and "nowhere" in result.output
    result = CliRunner().invoke(app, ["standin", str(tmp_path / "out"), "--models", "flan-t5-xxl"])
    assert result.exit_code == 2 and "unknown stand-in" in result.output
    assert not (tmp_path / "out").exists()


def test_dialogsum_texts_refuses_a_folder_without_splits(tmp_path):
    from detoxrl.data.loaders import dialogsum_texts

    with pytest.raises(DataError, match="no DialogSum split file"):
        dialogsum_texts(tmp_path)


@needs_dialogsum
def test_dialogsum_texts_reads_every_dialogue_and_reference():
    from detoxrl.data.loaders import dialogsum_texts

    texts = dialogsum_texts(DIALOGSUM)
    assert len(texts) == 500 * 2 + 500 * 4  # dev: dialogue + summary; test: dialogue + 3 summaries
    assert texts[0].startswith("#Person1#:")


def test_cli_writes_the_stand_ins_and_prints_their_sizes(tmp_path, monkeypatch):
    import detoxrl.models.standin as standin

    data = tmp_path / "dialogsum"
    data.mkdir()
    rows = [{"fname": f"dev_{i}", "dialogue": t, "summary": "They talk.", "topic": "chat"} for i, t in enumerate(TEXTS)]
    (data / "dialogsum.dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    full = standin.write_standins
    monkeypatch.setattr(standin, "write_standins", lambda folder, names, texts, seed: full(
        folder, names, texts, seed=seed, overrides=SMALL[names[0]]))
    result = CliRunner().invoke(app, ["standin", str(tmp_path / "out"), "--models", "gpt2", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "gpt2 stand-in" in result.output and "tokenizer 50,257 tokens" in result.output
    assert (tmp_path / "out" / "gpt2" / "model.safetensors").exists() and (tmp_path / "out" / "README.txt").exists()
