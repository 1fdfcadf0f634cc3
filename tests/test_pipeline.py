"""`detoxrl run` skips a stage only when what it is made from is unchanged (issue: a changed setting
used to leave the old policy, eval.json and report in place). The stages here are stand-ins that write
their output file; the fingerprints, the decisions and the messages are the real ones."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import detoxrl.pipeline as pipeline
from detoxrl.config import load_config
from detoxrl.errors import ConfigError
from detoxrl.stages import fingerprint


@pytest.fixture
def fake_stages(monkeypatch):
    """Replace every stage's work with writing its output file; ``ran`` lists the stages run."""
    ran: list[str] = []
    fail = set()

    def make(stage, real):
        def run(cfg, **kw):
            if stage in fail:
                raise RuntimeError(f"{stage} failed")
            ran.append(stage)
            out = real.output(cfg)
            out.parent.mkdir(parents=True, exist_ok=True)
            # like the real stages, a deterministic function of what they read
            out.write_text(json.dumps(fingerprint.stage_config(cfg, stage), sort_keys=True))
            return out

        return SimpleNamespace(run=run, output=real.output)

    for stage, real in list(pipeline.MODULES.items()):
        monkeypatch.setitem(pipeline.MODULES, stage, make(stage, real))
    return ran, fail


def _cfg(tmp_path, *overrides):
    return load_config(None, list(overrides), tmp_path / "run")


ALL = [s for s in pipeline.STAGES if s not in ("candidates", "labels", "constitution", "redteam")]  # the default's


def _printed(capsys) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err


def test_unchanged_config_skips_everything_and_says_so(tmp_path, fake_stages, capsys):
    ran, _ = fake_stages
    pipeline.run_pipeline(_cfg(tmp_path))
    assert ran == ALL
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path))
    assert ran == ["prepare"]  # prepare always runs; it reuses its own build when nothing changed
    out = _printed(capsys)
    for stage in ALL[1:]:
        assert f"{stage}: up to date" in out


@pytest.mark.parametrize("override, expected", [
    ("sft.epochs=1", ["sft", "ppo", "eval", "report"]),
    ("train_rm.epochs=1", ["train-rm", "ppo", "eval", "report"]),
    ("ppo.learning_rate=0.0001234", ["ppo", "eval", "report"]),
    ("eval.n_prompts=10", ["eval", "report"]),
    ("report.examples=2", ["report"]),
    ("ppo.checkpoint_every=5", []),  # changes how PPO runs, not what it makes
])
def test_a_changed_key_reruns_its_stage_and_the_stages_after_it_only(tmp_path, fake_stages, capsys,
                                                                      override, expected):
    ran, _ = fake_stages
    pipeline.run_pipeline(_cfg(tmp_path))
    ran.clear()
    capsys.readouterr()
    pipeline.run_pipeline(_cfg(tmp_path, override))
    assert ran == ["prepare"] + expected
    key, value = override.split("=")
    if expected:
        assert f"{key}: " in _printed(capsys)
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, override))  # and then everything is up to date again
    assert ran == ["prepare"]


def test_redteam_runs_only_when_enabled_after_ppo_and_feeds_the_report(tmp_path, fake_stages, capsys):
    ran, _ = fake_stages
    pipeline.run_pipeline(_cfg(tmp_path))
    assert "redteam" not in ran and "redteam: disabled in the config" in _printed(capsys)
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "redteam.enabled=true"))
    assert ran == ["prepare", "redteam", "report"]  # eval does not read it; the report shows its cases
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "redteam.enabled=true", "redteam.budget=50"))
    assert ran == ["prepare", "redteam", "report"] and "redteam.budget: 2000 → 50" in _printed(capsys)
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "redteam.enabled=true", "redteam.budget=50", "ppo.learning_rate=1e-3"))
    assert ran == ["prepare", "ppo", "redteam", "eval", "report"]


@pytest.mark.parametrize("override, expected", [
    ("constitution.sl.n_prompts=10", ["constitution", "ppo", "eval", "report"]),
    ("sft.epochs=1", ["sft", "constitution", "ppo", "eval", "report"]),
    ("constitution.violation_weight=2", ["ppo", "eval", "report"]),  # PPO's penalty only
])
def test_the_sl_cai_stage_runs_between_train_rm_and_ppo_when_the_constitution_is_on(tmp_path, fake_stages,
                                                                                   override, expected):
    ran, _ = fake_stages
    pipeline.run_pipeline(_cfg(tmp_path, "constitution.enabled=true"))
    assert ran == ["prepare", "sft", "train-rm", "constitution", "ppo", "eval", "report"]
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "constitution.enabled=true", override))
    assert ran == ["prepare"] + expected
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "constitution.enabled=true", "constitution.sl.enabled=false", override))
    assert "constitution" not in ran and "ppo" in ran  # PPO's input changed: no SL-CAI model any more


def test_the_changed_key_is_printed_with_both_values(tmp_path, fake_stages, capsys):
    pipeline.run_pipeline(_cfg(tmp_path))
    capsys.readouterr()
    pipeline.run_pipeline(_cfg(tmp_path, "ppo.learning_rate=1e-3"))
    out = _printed(capsys)
    assert "ppo: rerunning, what it is made from changed" in out
    assert "ppo.learning_rate: 0.0001 → 0.001" in out
    assert "eval: rerunning" in out and "input ppo was remade" in out


def test_no_rerun_refuses_with_the_list_of_changes(tmp_path, fake_stages):
    ran, _ = fake_stages
    pipeline.run_pipeline(_cfg(tmp_path))
    ran.clear()
    with pytest.raises(ConfigError, match=r"ppo: ppo.learning_rate: 0.0001 → 0.001"):
        pipeline.run_pipeline(_cfg(tmp_path, "ppo.learning_rate=1e-3"), rerun=False)
    assert ran == []
    pipeline.run_pipeline(_cfg(tmp_path), rerun=False)  # nothing stale: runs (skips) as usual
    assert ran == ["prepare"]


def test_a_failed_rerun_keeps_the_previous_output_and_its_fingerprint(tmp_path, fake_stages):
    ran, fail = fake_stages
    cfg = _cfg(tmp_path)
    pipeline.run_pipeline(cfg)
    out = pipeline.stage_output(cfg, "ppo")
    before = (out.read_text(), fingerprint.read(out, "ppo"))
    fail.add("ppo")
    with pytest.raises(RuntimeError, match="ppo failed"):
        pipeline.run_pipeline(_cfg(tmp_path, "ppo.learning_rate=1e-3"))
    assert (out.read_text(), fingerprint.read(out, "ppo")) == before
    fail.clear()
    ran.clear()
    pipeline.run_pipeline(_cfg(tmp_path, "ppo.learning_rate=1e-3"))  # still stale: rerun now
    assert ran == ["prepare", "ppo", "eval", "report"]


def test_data_files_are_fingerprinted_by_content(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_text('{"dialogue": "a", "summary": "b"}\n')
    cfg = _cfg(tmp_path, "train_rm.train_file=" + str(data))
    a = fingerprint.compute(cfg, "train-rm", {"prepare": None})
    data.write_text('{"dialogue": "a", "summary": "c"}\n')
    b = fingerprint.compute(cfg, "train-rm", {"prepare": None})
    assert a["hash"] != b["hash"] and fingerprint.changes(a, b) == [f"data file {data} changed"]


def test_red_team_keys_enter_the_fingerprints_only_when_set(tmp_path):
    cfg = _cfg(tmp_path)
    assert "ppo.redteam_prompts" not in fingerprint.stage_config(cfg, "ppo")
    assert "eval.redteam_replay" not in fingerprint.stage_config(cfg, "eval")
    cfg = _cfg(tmp_path, "ppo.redteam_prompts=cases.jsonl", "eval.redteam_replay=cases.jsonl")
    assert fingerprint.stage_config(cfg, "ppo")["ppo.redteam_prompts"] == "cases.jsonl"
    assert fingerprint.stage_config(cfg, "eval")["eval.redteam_replay"] == "cases.jsonl"


def test_tier_curriculum_keys_enter_the_fingerprint_and_checkpoints_only_when_changed(tmp_path):
    from detoxrl.stages import ppo

    keys = ("curriculum.tier_column", "curriculum.grade_column", "curriculum.tier_thresholds", "curriculum.severe_at")
    cfg = _cfg(tmp_path)
    assert not set(keys) & set(fingerprint.stage_config(cfg, "ppo")) and not set(keys) & set(ppo.run_config(cfg))
    cfg = _cfg(tmp_path, "curriculum.tier_thresholds=[0.2,0.6]", "curriculum.severe_at=0.9")
    assert fingerprint.stage_config(cfg, "ppo")["curriculum.tier_thresholds"] == [0.2, 0.6]
    assert ppo.run_config(cfg)["curriculum.severe_at"] == 0.9 and "curriculum.tier_column" not in ppo.run_config(cfg)


@pytest.mark.parametrize("override, expected", [
    ("labels.simulated.noise=0.3", ["labels", "train-rm", "ppo", "eval", "report"]),  # rerank, no resampling
    # the stand-in labels stage writes the same rankings for the new batch: train-rm, which reads them by
    # content, is up to date
    ("labels.n_candidates=3", ["candidates", "labels"]),
    ("train_rm.epochs=1", ["train-rm", "ppo", "eval", "report"]),
])
def test_the_human_feedback_loop_chains_through_the_rankings(tmp_path, fake_stages, override, expected):
    """candidates → labels → train-rm: train-rm reads the labels' rankings (its train_file, by content)."""
    ran, _ = fake_stages
    cfg = load_config("human-feedback", [], tmp_path / "run")
    pipeline.run_pipeline(cfg)
    assert ran == [s for s in pipeline.STAGES if s not in ("constitution", "redteam")]
    ran.clear()
    pipeline.run_pipeline(load_config("human-feedback", [override], tmp_path / "run"))
    assert ran == ["prepare", *expected]


def test_the_default_skips_the_labelling_stages(tmp_path, fake_stages, capsys):
    pipeline.run_pipeline(_cfg(tmp_path))
    out = _printed(capsys)
    assert "candidates: disabled in the config" in out and "labels: disabled in the config" in out
