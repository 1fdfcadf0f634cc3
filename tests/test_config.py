"""Configuration: presets load, overrides apply, bad values are rejected with the key's full path."""

from __future__ import annotations

import pytest

from detoxrl.config import apply_override, load_config
from detoxrl.errors import ConfigError


def test_default_and_seed_recipe_presets_validate():
    d = load_config()
    assert d.name == "default" and d.testbed is not None and d.sft.enabled
    f = load_config("flan-t5-dialogsum")
    assert f.policy.name_or_path == "google/flan-t5-base"
    assert f.policy.lora.enabled and (f.policy.lora.r, f.policy.lora.alpha) == (32, 32)
    assert f.policy.lora.dropout == 0.05 and f.policy.lora.target_modules == ["q", "v"]
    assert f.data.source == "knkarthick/dialogsum"
    assert f.data.prompt_template.startswith("Summarize the following conversation.")
    judge = f.reward.judges[0]
    assert judge.model == "facebook/roberta-hate-speech-dynabench-r4-target"
    assert (judge.label, judge.score) == ("nothate", "logit")
    # the seed recipe: 200 < len(dialogue) <= 1000 characters, and the raw `nothate` logit as PPO's score
    assert (f.data.min_text_chars, f.data.max_text_chars, f.data.min_prompt_tokens) == (201, 1000, 1)
    assert f.ppo.score_norm is False and f.reward.normalize is False and f.ppo.score_clip is None


def test_the_default_runs_the_whole_system_and_the_multi_preset_is_the_recipe_with_two_judges():
    from detoxrl.rewards.presets import apply_preset

    d = load_config()
    assert [j.name for j in d.reward.judges] == ["testbed-hate", "testbed-toxic-bert"]
    assert [(t.name, t.min_severity, t.penalty) for t in d.reward.severity_tiers] == [("mild", 0.3, 0.25),
                                                                                      ("severe", 0.75, 1.0)]
    assert d.reward.dimension_weights["discrimination"] == 2 * d.reward.dimension_weights["harassment"]
    assert [e.mode for e in d.train_rm.extra] == ["multilabel"] and d.train_rm.extra[0].output_dir.endswith("multi")
    assert (d.curriculum.enabled, d.curriculum.difficulty, d.curriculum.pacing) == (True, "tier", "tiers")
    assert d.ppo.probe_every > 0 and d.testbed.ambiguous_share > 0 and d.testbed.severe_share > 0
    f, m = load_config("flan-t5-dialogsum"), load_config("flan-t5-dialogsum-multi")
    for key in ("data", "policy", "ppo", "eval"):  # only the reward and the curriculum differ
        assert getattr(f, key) == getattr(m, key), key
    meta, bert = (apply_preset(j) for j in m.reward.judges)
    assert meta.model == "facebook/roberta-hate-speech-dynabench-r4-target" and meta.score == "logit"
    assert bert.model == "unitary/toxic-bert" and bert.severity_labels == ["severe_toxic", "toxic"]
    assert set(bert.dimensions.values()) == {"harassment", "discrimination", "profanity"}
    assert m.reward.severity_tiers == d.reward.severity_tiers and m.curriculum.difficulty == "tier"


def test_dotted_overrides_and_run_dir(tmp_path):
    c = load_config(overrides=["ppo.learning_rate=1e-5", "ppo.kl.penalty=abs", "eval.n_prompts=10",
                               "reward.judges.0.threshold=0.7"], run_dir=tmp_path / "r")
    assert c.ppo.learning_rate == 1e-5 and c.ppo.kl.penalty == "abs" and c.eval.n_prompts == 10
    assert c.reward.judges[0].threshold == 0.7
    assert c.path("{run_dir}/sft") == tmp_path / "r" / "sft"


@pytest.mark.parametrize("override, key, words", [
    ("ppo.learning_rate=-1", "ppo.learning_rate", "greater than 0"),
    ("ppo.bogus=1", "ppo.bogus", "unknown key"),
    ("ppo.batch_size=abc", "ppo.batch_size", "integer"),
    ("ppo.kl.penalty=huge", "ppo.kl.penalty", "kl"),
    ("ppo.mini_batch_size=5", "ppo", "multiple"),
    ("testbed.hostile_share=1.5", "testbed.hostile_share", "less than or equal"),
    ("data.prompt_template=no placeholder", "data", "{text}"),
    ("reward.dimension_weights.rudeness=1", "reward.dimension_weights", "unknown dimension"),
    ("reward.judges.0.dimensions.hate=rudeness", "reward.judges.0.dimensions",
     "label 'hate': unknown dimension 'rudeness'"),
])
def test_bad_values_name_the_full_key(override, key, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    msg = str(err.value)
    assert f"  {key}" in msg and words in msg


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(overrides=["ppo.learning_rate"])
    with pytest.raises(ConfigError, match="empty key"):
        apply_override({}, "ppo..x=1")


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")
    (tmp_path / "bytes.yaml").write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(tmp_path / "bytes.yaml")


def test_nothing_in_a_config_is_evaluated_as_code(tmp_path):
    (tmp_path / "evil.yaml").write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "evil.yaml")


def test_resolved_config_round_trips(tmp_path):
    c = load_config()
    path = tmp_path / "c.yaml"
    path.write_text(c.to_yaml())
    assert load_config(path) == c
