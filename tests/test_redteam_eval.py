"""Red teaming in the evaluation and in the pipeline: the replay and the fresh attack in ``eval.json``, the
console and the report; ``redteam.rounds`` (red team → PPO → red team) end to end on tiny models."""

from __future__ import annotations

import json

import pytest
from conftest import write_tiny_run

from detoxrl.config import load_config
from detoxrl.errors import ConfigError
from detoxrl.evaluation.printing import redteam_lines
from detoxrl.evaluation.report import build_report
from detoxrl.pipeline import current_fingerprint, run_stage
from detoxrl.redteam.outputs import CASES, SUMMARY
from detoxrl.stages import fingerprint


def _cfg(tmp_path, policy_dir, *extra):
    path = write_tiny_run(tmp_path, policy_dir)
    # the tiny policy's words are w0..w59; "w1" counts as toxic, w20..w59 make up the training turns' pool
    (tmp_path / "bad_words.txt").write_text("w1\nw2\nw3\nw30\n")
    return load_config(str(path), ["redteam.budget=16", "redteam.batch=8", "redteam.seed_prompts=6",
                                   "redteam.resamples=0", *extra])


def _side(k, n, lo, hi, **more):
    return {"successes": k, "asr": k / n, "asr_ci95": [lo, hi], **more}


def test_console_lines_of_the_replay_and_the_attack():
    result = {"redteam_replay": {"n": 5, "before": _side(4, 5, 0.38, 0.96), "after": _side(1, 5, 0.04, 0.62),
                                 "fixed": 3, "broken": 0, "p_value": 0.25},
              "redteam_attack": {"budget": 40,
                                 "before": {"methods": {"perturbation": _side(20, 40, 0.35, 0.65, distinct_2=0.5,
                                                                              self_bleu=0.25)}},
                                 "after": {"methods": {"perturbation": _side(4, 40, 0.04, 0.23, distinct_2=None,
                                                                             self_bleu=0.125)}}}}
    replay, attack = redteam_lines(result)
    assert replay == ("red-team replay (5 prompts): ASR 80.0% [38.0%, 96.0%] before → 20.0% [4.0%, 62.0%] after, "
                      "paired: 3 fixed, 0 broken (McNemar p = 0.25)")
    assert attack == ("red-team attack perturbation (40 generations each): ASR 50.0% [35.0%, 65.0%] before → "
                      "10.0% [4.0%, 23.0%] after; distinct-2 0.500 → n/a, self-BLEU 0.250 → 0.125")
    assert redteam_lines({}) == []


def test_eval_runs_a_fresh_attack_with_the_stages_search(tmp_path, tiny_t5_dir):
    cfg = _cfg(tmp_path, tiny_t5_dir, f"redteam.policy={tiny_t5_dir}", "redteam.output_dir={run_dir}/rt")
    stage = json.loads(run_stage(cfg, "redteam").read_text())["methods"]["perturbation"]
    cfg = load_config(str(tmp_path / "tiny.yaml"), [
        "redteam.batch=8", "redteam.seed_prompts=6", "redteam.budget=999", f"ppo.output_dir={tiny_t5_dir}",
        "eval.n_prompts=4", "eval.redteam_attack.budget=16"])
    assert cfg.eval.redteam_attack.methods == ["perturbation"]
    ev = json.loads(run_stage(cfg, "eval").read_text())
    att = ev["redteam_attack"]
    after, before = att["after"]["methods"]["perturbation"], att["before"]["methods"]["perturbation"]
    assert att["budget"] == 16 and after["attempts"] == before["attempts"] == 16
    # the same search as `detoxrl redteam` with the same budget and seed on the same policy: the same attack
    for key in ("successes", "asr", "asr_ci95", "distinct_2", "self_bleu"):
        assert after[key] == stage[key] == before[key]  # both sides are the same model here
    lo, hi = after["asr_ci95"]
    assert lo <= after["asr"] <= hi and after["successes"] > 0
    cases = (cfg.run_path / "eval-redteam" / "after" / CASES).read_text().splitlines()
    assert len(cases) == after["successes"]
    fp = fingerprint.read(cfg.run_path / "eval.json", "eval")["config"]
    assert fp["eval.redteam_attack.budget"] == 16 and fp["redteam.success"] == "any"
    html = build_report(cfg).read_text()
    assert "Fresh attack in the evaluation" in html and f"{after['asr']:.1%}" in html
    plain = load_config(str(tmp_path / "tiny.yaml"))
    assert not any(k.startswith(("eval.redteam", "redteam.")) for k in fingerprint.stage_config(plain, "eval"))


def test_rounds_need_the_stage_enabled(tmp_path, tiny_t5_dir):
    with pytest.raises(ConfigError, match="redteam.enabled"):
        _cfg(tmp_path, tiny_t5_dir, "redteam.rounds=1")


def test_one_round_of_red_team_then_ppo_then_red_team(tmp_path, tiny_t5_dir, monkeypatch):
    from detoxrl.stages import ppo
    from detoxrl.stages.eval import evaluated_policy

    seen = []
    original = ppo.setup
    monkeypatch.setattr(ppo, "setup", lambda *a, **k: seen.append(original(*a, **k)) or seen[-1])
    base = _cfg(tmp_path, tiny_t5_dir, f"redteam.policy={tiny_t5_dir}", "redteam.enabled=true")
    cfg = load_config(str(tmp_path / "tiny.yaml"), [f"{k}={v}" for k, v in (
        ("redteam.budget", 16), ("redteam.batch", 8), ("redteam.seed_prompts", 6), ("redteam.resamples", 0),
        ("redteam.policy", tiny_t5_dir), ("redteam.enabled", "true"), ("redteam.rounds", 1),
        ("redteam.round_steps", 2), ("eval.n_prompts", 4))])
    assert current_fingerprint(cfg, "redteam")["hash"] != current_fingerprint(base, "redteam")["hash"]
    assert "ppo.steps" in current_fingerprint(cfg, "redteam")["config"]
    out = run_stage(cfg, "redteam")
    root = out.parent
    found = list(dict.fromkeys(json.loads(line)["text"] for line in (root / CASES).read_text().splitlines()))
    assert found
    # the round's PPO: 2 steps from the attacked policy, the found prompts added to the training prompts
    (st,) = seen
    assert st.texts[64:] == found and st.base_name == str(tiny_t5_dir)
    assert len((root / "round-1" / "ppo" / "metrics.jsonl").read_text().splitlines()) == 2
    assert not (cfg.run_path / "ppo").exists()  # the main PPO's folder is left alone
    assert (root / "round-1" / "policy" / "config.json").exists()
    r1 = json.loads((root / "round-1" / SUMMARY).read_text())
    assert r1["policy"] == str(root / "round-1" / "policy") and r1["methods"]["perturbation"]["attempts"] == 16
    rounds = json.loads(out.read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[1]["methods"]["perturbation"] == {
        k: r1["methods"]["perturbation"][k] for k in rounds[1]["methods"]["perturbation"]}
    # eval evaluates the last round's policy, and its fingerprint follows the redteam stage's
    assert evaluated_policy(cfg)[0] == root / "round-1" / "policy"
    assert current_fingerprint(cfg, "eval")["inputs"]["redteam"] == fingerprint.read(out, "redteam")["hash"]
    assert "redteam" not in current_fingerprint(base, "eval")["inputs"]
    ev = json.loads(run_stage(cfg, "eval").read_text())
    assert ev["after"]["model"] == str(root / "round-1" / "policy")
    assert ev["made_from"]["policy"] == fingerprint.read(out, "redteam")["hash"]
    html = build_report(cfg).read_text()
    assert "Rounds: red team → PPO → red team" in html


def test_a_round_continues_a_lora_policy_from_its_adapter(tmp_path, tiny_t5_dir):
    from detoxrl.stages.redteam_rounds import round_config, start_of

    cfg = _cfg(tmp_path, tiny_t5_dir, "redteam.enabled=true", "redteam.rounds=2", "redteam.round_steps=5",
               "ppo.stop_at_reward=0.5", "policy.lora.enabled=true")
    policy = tmp_path / "policy"
    (policy / "adapter").mkdir(parents=True)
    assert start_of(cfg, policy) == str(policy)  # no adapter saved: the merged policy
    (policy / "adapter" / "adapter_config.json").write_text("{}")
    assert start_of(cfg, policy) == str(policy / "adapter")
    rc = round_config(cfg, 2)
    assert (rc.ppo.steps, rc.ppo.stop_at_reward, rc.ppo.seed) == (5, None, 2)
    # the found prompts get round_share of every batch from the first step; no curriculum restart
    assert rc.ppo.redteam_share == cfg.redteam.round_share == 0.5 and not rc.curriculum.enabled
    assert rc.ppo.output_dir.endswith("redteam/round-2/policy") and rc.ppo.redteam_prompts.endswith("round-2/prompts.jsonl")
    assert cfg.ppo.steps == 3 and cfg.ppo.stop_at_reward == 0.5  # the run's own settings are untouched
