"""The ``redteam`` stage end to end on a tiny policy: files, fingerprint, CLI, report section."""

from __future__ import annotations

import json

import pytest
from conftest import write_tiny_run
from typer.testing import CliRunner

from detoxrl.cli import app
from detoxrl.config import load_config
from detoxrl.errors import ConfigError
from detoxrl.evaluation.report import build_report
from detoxrl.pipeline import run_stage
from detoxrl.redteam.outputs import CASES, SUMMARY
from detoxrl.stages import fingerprint


def _cfg(tmp_path, policy_dir, *extra):
    path = write_tiny_run(tmp_path, policy_dir)
    # the tiny policy's words are w0..w59; "w1" counts as toxic, w20..w59 make up the training turns' pool
    (tmp_path / "bad_words.txt").write_text("w1\nw2\nw3\nw30\n")
    return load_config(str(path), ["redteam.budget=24", "redteam.batch=8", "redteam.seed_prompts=6",
                                   f"redteam.policy={policy_dir}", *extra])


def test_stage_writes_cases_and_summary(tmp_path, tiny_t5_dir):
    cfg = _cfg(tmp_path, tiny_t5_dir)
    out = run_stage(cfg, "redteam")
    summary = json.loads(out.read_text())
    assert out.name == SUMMARY and fingerprint.read(out, "redteam")["stage"] == "redteam"
    m = summary["methods"]["perturbation"]
    assert m["attempts"] == 24 and 0 <= m["successes"] <= 24
    lo, hi = m["asr_ci95"]
    assert lo <= m["asr"] <= hi
    assert summary["judges"] == [{"name": "bad-words", "threshold": 0.5}]
    cases = [json.loads(line) for line in (out.parent / CASES).read_text().splitlines()]
    assert len(cases) == m["successes"] > 0  # inserted turns holding w30 are echoed by the random policy
    for c in cases:
        assert c["method"] == "perturbation" and c["success"] and c["scores"]["bad-words"]["toxicity"] >= 0.5
        assert set(c) >= {"prompt", "response", "scores", "generation", "attempt", "mutations"}
    prefs = [json.loads(line) for line in (out.parent / "preferences.jsonl").read_text().splitlines()]
    sft = [json.loads(line) for line in (out.parent / "sft.jsonl").read_text().splitlines()]
    assert summary["pairs"]["pairs"] == len(prefs) == len(sft) and summary["pairs"]["cases"] == len({c["prompt"] for c in cases})
    harmful = {c["prompt"]: c["response"] for c in cases}
    for row in prefs:  # the clean re-sample ranked above the harmful response the attack found
        assert row["ranks"] == [1, 2] and row["completions"][1] == harmful[row["prompt"]]
    html = build_report(cfg).read_text()
    assert "Red teaming" in html and "Most damaging cases" in html and f"{m['asr']:.1%}" in html
    assert "Red teaming" not in build_report(load_config(str(tmp_path / "tiny.yaml"), ["redteam.output_dir=/nonexistent"])).read_text()


def test_cli_attacks_any_policy_folder(tmp_path, tiny_gpt2_dir):
    path = write_tiny_run(tmp_path, tiny_gpt2_dir)
    out = tmp_path / "attack"
    res = CliRunner().invoke(app, ["redteam", str(path), "--policy", str(tiny_gpt2_dir), "--out", str(out),
                                   "--budget", "16", "--set", "redteam.batch=8", "--set", "redteam.seed_prompts=4"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["policy"] == str(tiny_gpt2_dir) and summary["methods"]["perturbation"]["attempts"] == 16
    res = CliRunner().invoke(app, ["redteam", str(path), "--policy", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no policy to attack" in res.output


def test_found_prompts_join_ppo_training(tmp_path, tiny_t5_dir):
    from detoxrl.stages import ppo

    cfg = _cfg(tmp_path, tiny_t5_dir, "redteam.resamples=0")
    out = run_stage(cfg, "redteam")
    found = list(dict.fromkeys(json.loads(line)["text"] for line in (out.parent / CASES).read_text().splitlines()))
    assert found
    cfg = load_config(str(tmp_path / "tiny.yaml"), [f"ppo.redteam_prompts={out.parent / CASES}",
                                                   "curriculum.enabled=true"])
    st = ppo.setup(cfg)
    assert len(st.texts) == 64 + len(found) and st.texts[64:] == [cfg.data.prompt_template.format(text=t) for t in found]
    assert list(st.sampler.difficulty[64:]) == [1.0] * len(found)  # the curriculum's hardest tier
    # the tier curriculum: the found prompts are harmful (level 2 or 3) although the data has no tier column
    tier = load_config(str(tmp_path / "tiny.yaml"), [f"ppo.redteam_prompts={out.parent / CASES}",
                                                    "curriculum.enabled=true", "curriculum.difficulty=tier",
                                                    "curriculum.pacing=tiers"])
    st = ppo.setup(tier)
    assert set(st.sampler.difficulty[64:].tolist()) <= {2.0, 3.0}
    saved = json.loads((tier.run_path / "ppo" / "difficulty.json").read_text())
    assert saved["tier_source"] == "thresholds" and saved["tiers"][64:] == ["harmful"] * len(found)
    st.sampler.next_batch(8)
    assert st.sampler.log_stats()["curriculum/open_level"] == int(st.sampler.difficulty.min())
    # ppo.redteam_share: that share of every batch from the found prompts from step 1, while the curriculum
    # keeps the rest on the clean tier
    mixed = load_config(str(tmp_path / "tiny.yaml"), [f"ppo.redteam_prompts={out.parent / CASES}",
                                                     "ppo.redteam_share=0.25", "curriculum.enabled=true",
                                                     "curriculum.difficulty=tier", "curriculum.pacing=tiers"])
    st = ppo.setup(mixed)
    batch = st.sampler.next_batch(8)
    assert [i >= 64 for i in batch] == [True] * 2 + [False] * 6
    assert st.sampler.log_stats()["curriculum/share_redteam"] == 0.25
    with pytest.raises(ConfigError, match="ppo.redteam_share needs ppo.redteam_prompts"):
        load_config(str(tmp_path / "tiny.yaml"), ["ppo.redteam_share=0.25"])


def test_red_lm_methods_in_the_stage(tmp_path, tiny_t5_dir, tiny_gpt2_dir):

    cfg = _cfg(tmp_path, tiny_t5_dir, "redteam.methods=[perturbation,few_shot,zero_shot,rl]",
               f"redteam.red_lm.model={tiny_gpt2_dir}", "redteam.red_lm.max_new_tokens=6", "redteam.resamples=0",
               "redteam.rl.mini_batch_size=4", "redteam.budget=20")
    summary = json.loads(run_stage(cfg, "redteam").read_text())
    assert {m: s["attempts"] for m, s in summary["methods"].items()} == {
        "perturbation": 20, "few_shot": 20, "zero_shot": 20, "rl": 20}
    cases = [json.loads(line) for line in (tmp_path / "run" / "redteam" / CASES).read_text().splitlines()]
    assert {c["method"] for c in cases} <= {"perturbation", "few_shot", "zero_shot", "rl"}
    assert sum(s["successes"] for s in summary["methods"].values()) == len(cases)
    cfg = _cfg(tmp_path, tiny_t5_dir, "redteam.methods=[zero_shot]")
    with pytest.raises(ConfigError, match="redteam.red_lm.model"):
        run_stage(cfg, "redteam")


def test_eval_replays_a_red_team_set(tmp_path, tiny_t5_dir):
    cfg = _cfg(tmp_path, tiny_t5_dir, "redteam.resamples=0")
    out = run_stage(cfg, "redteam")
    found = {json.loads(line)["prompt"] for line in (out.parent / CASES).read_text().splitlines()}
    cfg = load_config(str(tmp_path / "tiny.yaml"), [f"eval.redteam_replay={out.parent / CASES}",
                                                   f"ppo.output_dir={tiny_t5_dir}", "eval.n_prompts=4"])
    ev = json.loads(run_stage(cfg, "eval").read_text())
    rep = ev["redteam_replay"]
    # the same model on both sides with the same seeds: the replay is exactly paired
    assert rep["n"] == len(found) and rep["before"] == rep["after"] and rep["fixed"] == rep["broken"] == 0
    assert str(out.parent / CASES) in fingerprint.read(cfg.run_path / "eval.json", "eval")["files"]
    html = build_report(cfg).read_text()
    assert "Replayed red-team set" in html and f"{rep['before']['asr']:.1%}" in html
