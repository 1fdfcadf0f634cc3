"""configs/human-feedback.yaml end to end on tiny budgets: prepare → sft → candidates → labels (the
testbed's simulated labeller) → train-rm (rankings) → ppo against the reward-model judge → eval → report.
The stages' outputs exist and chain: the reward model trained on the pairs of the simulated rankings, PPO
and eval used the reward model as the trained-against judge and the held-out judges only for eval, and
the report shows the reward model's held-out pair accuracy. A person's rankings stop or replace the
simulated labeller's, never get overwritten."""

from __future__ import annotations

import json

import pytest

from detoxrl.config import PACKAGE_CONFIGS, load_config
from detoxrl.data.rankings import read_rankings
from detoxrl.errors import ConfigError, DataError
from detoxrl.pipeline import STAGES as ALL_STAGES
from detoxrl.pipeline import run_pipeline, stage_enabled
from detoxrl.rewards.rm_data import pairs_of, split_by_item

STAGES = [s for s in ALL_STAGES if s not in ("constitution", "redteam")]  # the loop: SL-CAI and red teaming off

CONFIG = PACKAGE_CONFIGS / "human-feedback.yaml"
TINY = ["testbed.n_train=480", "testbed.n_test=120", "testbed.vocab_size=600",
        "testbed.policy.d_model=32", "testbed.policy.d_ff=64", "testbed.policy.d_kv=8",
        "testbed.judge.hidden_size=32", "testbed.judge.intermediate_size=64",
        "sft.epochs=1", "labels.n_prompts=24", "labels.n_candidates=3", "labels.batch_size=24",
        "labels.max_resamples=1", "labels.simulated.special_rate=0.2",
        "labels.simulated.faithfulness_margin=0",  # a tiny policy's candidates may have no offensive word
        "train_rm.epochs=1",
        "train_rm.heldout_share=0.25", "ppo.steps=2", "ppo.batch_size=8", "ppo.mini_batch_size=4",
        "ppo.ppo_epochs=1", "ppo.generation.max_new_tokens=12", "eval.n_prompts=8", "eval.batch_size=8",
        "eval.generation.max_new_tokens=12"]


def tiny_cfg(run_dir, *extra):
    return load_config(str(CONFIG), TINY + list(extra), run_dir)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    cfg = tiny_cfg(tmp_path_factory.mktemp("hf") / "run")
    run_pipeline(cfg)
    return cfg


def test_every_stage_runs_and_the_outputs_chain(hf_run):
    cfg = hf_run
    run = cfg.run_path
    assert all(stage_enabled(cfg, s) for s in STAGES)
    timings = json.loads((run / "timings.json").read_text())
    assert list(timings) == list(STAGES)
    batch = [json.loads(line) for line in (run / "labels" / "batch.jsonl").read_text().splitlines()]
    rankings = read_rankings(run / "labels" / "rankings.jsonl")
    assert len(batch) == len(rankings) == 24
    assert [r.prompt for r in rankings] == [b["prompt"] for b in batch]
    assert {r.labeller for r in rankings} == {"simulated"}
    info = json.loads((run / "labels" / "simulated_info.json").read_text())
    specials = sum(r.special is not None for r in rankings)
    assert info["special"] == specials and info["ranked"] == 24 - specials

    # train-rm trained on exactly the simulated rankings' pairs, split by item as documented
    metrics = json.loads((run / "rm" / "train_metrics.json").read_text())
    train, held = split_by_item(rankings, cfg.train_rm.heldout_share, cfg.seed)
    assert metrics["mode"] == "rankings"
    assert metrics["n_train"] == len(pairs_of(train)) and metrics["n_eval"] == len(pairs_of(held)) > 0
    assert metrics["rankings"]["train_file"]["pairs"] == len(pairs_of(rankings))
    assert sum(metrics["rankings"]["train_file"]["special"].values()) == specials
    assert 0.0 <= metrics["eval"]["pair_accuracy"] <= 1.0
    assert (run / "rm" / "detoxrl_rm.json").exists()

    # PPO trained against the reward model; eval scored it as the trained judge, the others held out
    assert (run / "policy" / "config.json").exists() and (run / "ppo" / "metrics.jsonl").exists()
    ev = json.loads((run / "eval.json").read_text())
    judges = {j["name"]: j for j in ev["judges"]}
    assert judges["reward-model"]["trained_against"] is True and judges["reward-model"]["type"] == "reward_model"
    assert {n for n, j in judges.items() if not j["trained_against"]} == {"testbed-lexicon", "profanity-check"}
    report = (run / "report.html").read_text()
    assert "Reward model" in report and f"{metrics['eval']['pair_accuracy']:.3f}" in report


def test_a_second_run_skips_every_stage_and_new_labeller_settings_rerank_only(hf_run, capsys):
    run_pipeline(hf_run)
    captured = capsys.readouterr()
    out = captured.out + captured.err
    for stage in STAGES[1:]:
        assert f"{stage}: up to date" in " ".join(out.split())
    before = (hf_run.run_path / "labels" / "batch.jsonl").read_bytes()
    changed = load_config(str(CONFIG), TINY + ["labels.simulated.noise=0.5", "ppo.steps=1"], hf_run.run_path)
    from detoxrl.pipeline import _why_run, current_fingerprint, stage_output

    why = {s: _why_run(s, stage_output(changed, s), current_fingerprint(changed, s), ()) for s in STAGES[1:]}
    assert why["candidates"] is None and why["sft"] is None  # a new noise reranks, it does not resample
    assert "labels.simulated.noise: 0.1 → 0.5" in why["labels"]
    assert (hf_run.run_path / "labels" / "batch.jsonl").read_bytes() == before


def test_people_replace_the_simulated_labeller(hf_run, tmp_path):
    from detoxrl.stages import labels

    people = tiny_cfg(tmp_path / "run", "labels.simulated=null")
    with pytest.raises(DataError, match=r"no rankings at .*rankings\.jsonl yet.*detoxrl label"):
        labels.run(people)
    # a person's row in the file: the simulated labeller refuses to overwrite it, and people's mode reads it
    src = hf_run.run_path / "labels"
    dst = people.path(people.labels.output_dir)
    dst.mkdir(parents=True)
    (dst / "batch.jsonl").write_bytes((src / "batch.jsonl").read_bytes())
    row = json.loads((src / "rankings.jsonl").read_text().splitlines()[0])
    row["labeller"] = "ana"
    (dst / "rankings.jsonl").write_text(json.dumps(row) + "\n")
    assert labels.run(people) == dst / "rankings.jsonl"
    simulated = tiny_cfg(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"rankings\.jsonl line 1 is not the simulated labeller's"):
        labels.run(simulated)
