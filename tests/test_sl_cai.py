"""SL-CAI: a revision is kept only when its own critique passes; the stage fine-tunes on exactly the
pairs it writes; PPO starts from its model."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from conftest import write_tiny_run

from detoxrl.config import load_config
from detoxrl.constitution.sl_cai import SLCAI, sl_metrics, training_pairs


class WordCritic:
    """P(yes) = 0.9 when the principle's word is in the response, else 0.1."""

    def __init__(self, words: dict[str, str]):
        self.words, self.calls = words, []

    def violations(self, responses, dialogues):
        self.calls.append(list(responses))
        probs = {pid: torch.tensor([0.9 if w in r.split() else 0.1 for r in responses]) for pid, w in self.words.items()}
        return probs, {pid: p >= 0.5 for pid, p in probs.items()}


def test_a_revision_is_kept_only_when_its_critique_passes():
    critic = WordCritic({"polite": "rude", "clean": "dirty"})
    fixes = {"a rude one": "a kind one",            # passes: kept
             "a dirty one": "still dirty",         # its own critique fails: dropped
             "rude and dirty": "rude but better",  # one principle still violated: dropped
             "very rude": "",                      # empty: dropped
             "rude again": "rude again",           # unchanged: dropped
             "rude now": "dirty now"}              # fixes one principle, breaks another: dropped
    seen = []

    def revise(responses, dialogues, prompts, targets):
        seen.append((list(responses), [list(t) for t in targets]))
        return [fixes[r] for r in responses]

    responses = ["fine", *fixes]
    samples = SLCAI(critic, revise).run([f"p{i}" for i in range(7)], [f"d{i}" for i in range(7)], responses)
    assert seen == [(list(fixes), [["polite"], ["clean"], ["polite", "clean"], ["polite"], ["polite"], ["polite"]])]
    assert critic.calls[1] == ["a kind one", "still dirty", "rude but better", "", "rude again", "dirty now"]
    assert [s.accepted for s in samples] == [False, True, False, False, False, False, False]
    assert samples[0].revision is None and samples[0].violated == []
    assert samples[2].remaining == ["clean"] and samples[6].remaining == ["clean"]
    assert samples[1].p_yes == pytest.approx({"polite": 0.9, "clean": 0.1})
    assert samples[1].revision_p_yes == pytest.approx({"polite": 0.1, "clean": 0.1})

    pairs = training_pairs(samples)
    assert [(p["prompt"], p["target"], p["source"]) for p in pairs] == [("p1", "a kind one", "revision")]
    with_clean = training_pairs(samples, include_compliant=True)
    assert [(p["prompt"], p["target"], p["source"]) for p in with_clean] == [
        ("p0", "fine", "compliant"), ("p1", "a kind one", "revision")]

    m = sl_metrics(samples, ["polite", "clean"])
    assert (m["responses"], m["violating"], m["accepted"]) == (7, 6, 1)
    assert m["accepted_share"] == pytest.approx(1 / 6)
    assert m["violating_share_before"] == pytest.approx(6 / 7)
    assert m["violating_share_after"] == pytest.approx(5 / 7)  # only the kept revision is clean now
    assert m["principles"]["polite"]["violation_rate_before"] == pytest.approx(5 / 7)
    assert m["principles"]["polite"]["violation_rate_after"] == pytest.approx(4 / 7)
    assert m["principles"]["polite"]["accepted_share"] == pytest.approx(1 / 5)
    assert m["principles"]["clean"]["violation_rate_before"] == pytest.approx(2 / 7)
    assert m["principles"]["clean"]["violation_rate_after"] == pytest.approx(2 / 7)
    assert m["principles"]["clean"]["accepted_share"] == 0.0


def test_nothing_to_revise_calls_no_reviser():
    critic = WordCritic({"polite": "rude"})
    samples = SLCAI(critic, lambda *a: pytest.fail("revised")).run(["p"], ["d"], ["fine"])
    assert not samples[0].violated and training_pairs(samples) == []
    assert sl_metrics(samples, ["polite"])["accepted_share"] is None


# ------------------------------------------------------------------------------------ the stage
PRINCIPLES = [{"id": "no-w7", "principle": "w1 w2", "critique": "w7?", "revision": "w3 w4",
               "check": {"kind": "pattern", "patterns": [r"\bw7\b"]}}]


def _run_cfg(tmp_path, tiny_t5_dir, *extra):
    (tmp_path / "const.yaml").write_text(yaml.safe_dump({"name": "t", "principles": PRINCIPLES}))
    path = write_tiny_run(tmp_path, tiny_t5_dir)
    return load_config(path, ["constitution.enabled=true", f"constitution.path={tmp_path / 'const.yaml'}",
                              "constitution.sl.n_prompts=24", "constitution.sl.batch_size=8",
                              "constitution.sl.epochs=1", "constitution.sl.train_batch_size=4",
                              "constitution.sl.max_new_tokens=6", *extra])


class CritiqueByWord:
    """Stands in for SelfCritic (the tiny vocabulary has no "yes"): every response that names a word
    violates; of the revisions, every other one passes its critique."""

    def __init__(self, lp, principles, settings, **kw):
        self.ids, self.calls = [p.id for p in principles], 0

    def violations(self, responses, dialogues):
        self.calls += 1
        if self.calls == 1:
            p = [0.9 if r.split() else 0.2 for r in responses]
        else:
            p = [0.2 if i % 2 == 0 else 0.9 for i in range(len(responses))]
        probs = {pid: torch.tensor(p) for pid in self.ids}
        return probs, {pid: v >= 0.5 for pid, v in probs.items()}


@pytest.mark.parametrize("revision", ["policy", "rewrite"])
def test_the_stage_fine_tunes_on_exactly_the_pairs_it_writes(tmp_path, tiny_t5_dir, monkeypatch, revision):
    import detoxrl.stages.constitution as stage

    cfg = _run_cfg(tmp_path, tiny_t5_dir, f"constitution.sl.revision={revision}")
    monkeypatch.setattr(stage, "SelfCritic", CritiqueByWord)
    import detoxrl.constitution.sl_cai as sl

    real_generate = sl.generate_responses

    def generate(*args, **kw):  # the tiny random T5 answers greedily with special tokens only
        g = real_generate(*args, **kw)
        g.texts = [t or f"w1 w{i + 2}" for i, t in enumerate(g.texts)]
        return g

    monkeypatch.setattr(sl, "generate_responses", generate)
    consumed = []
    real_fit = stage.fit

    def fit(settings, lp, items, g, device, multiple, label="sft"):
        consumed.append([(list(p), list(t)) for p, t in items])
        assert (settings.epochs, settings.batch_size, settings.learning_rate) == (1, 4, cfg.constitution.sl.learning_rate)
        return real_fit(settings, lp, items, g, device, multiple, label)

    monkeypatch.setattr(stage, "fit", fit)
    out = stage.run(cfg, device="cpu")
    assert out == cfg.path(cfg.constitution.sl.output_dir) and stage.output(cfg).is_file()
    pairs = [json.loads(line) for line in (out / "sl_pairs.jsonl").read_text().splitlines()]
    samples = [json.loads(line) for line in (out / "sl_samples.jsonl").read_text().splitlines()]
    metrics = json.loads((out / "sl_metrics.json").read_text())
    assert len(samples) == 24 and metrics["responses"] == 24
    kept = [s for s in samples if s["accepted"]]
    assert [(p["prompt"], p["target"]) for p in pairs] == [(s["prompt"], s["revision"]) for s in kept]
    assert all(max(s["revision_p_yes"].values()) < 0.5 for s in kept)  # kept only when the critique passes
    assert metrics["accepted"] == len(kept) and (out / "sl_figures.png").is_file()
    assert metrics["violating"] > 0 and (revision == "rewrite" or pairs)
    if pairs:
        from detoxrl.models.policy import load_policy_model
        from detoxrl.stages.sft import Pair, encode

        lp = load_policy_model(str(tiny_t5_dir))
        expected = encode(lp, [Pair(p["prompt"], p["target"]) for p in pairs], cfg.data.max_prompt_tokens,
                          cfg.sft.max_target_tokens)
        assert consumed == [[(list(p), list(t)) for p, t in expected]]
        assert metrics["fine_tuning"]["pairs"] == len(pairs)
    else:
        assert consumed == [] and metrics["fine_tuning"] is None


def test_ppo_starts_from_the_sl_cai_model_when_the_stage_runs(tmp_path, tiny_t5_dir):
    from detoxrl.stages.constitution import start_model

    cfg = _run_cfg(tmp_path, tiny_t5_dir)
    assert start_model(cfg) == str(cfg.path("{run_dir}/sl-cai"))
    off = load_config(write_tiny_run(tmp_path, tiny_t5_dir), ["constitution.enabled=true", "constitution.sl.enabled=false"])
    assert start_model(off) == str(tiny_t5_dir)
    assert start_model(load_config(write_tiny_run(tmp_path, tiny_t5_dir))) == str(tiny_t5_dir)


def test_unknown_principle_ids_are_refused(tmp_path, tiny_t5_dir):
    from detoxrl.errors import ConfigError
    from detoxrl.stages.constitution import principles_of

    cfg = _run_cfg(tmp_path, tiny_t5_dir, "constitution.sl.principles=[no-w7, nope]")
    with pytest.raises(ConfigError, match=r"constitution.sl.principles: \['nope'\] are not principles"):
        principles_of(cfg)


def test_the_sl_cai_preset_is_the_default_with_the_constitution_and_the_sft_tasks_on():
    from detoxrl.config import PACKAGE_CONFIGS
    from detoxrl.stages.fingerprint import flatten

    default = flatten(load_config().model_dump(mode="json"))
    sl = flatten(load_config("sl-cai").model_dump(mode="json"))
    changed = {k for k in set(default) | set(sl) if default.get(k) != sl.get(k)}
    assert changed - {k for k in changed if k.startswith("sft.tasks.")} == \
        {"name", "constitution.enabled", "constitution.sl.n_prompts"}
    assert sl["sft.tasks.critique_share"] > 0 and default["sft.tasks.critique_share"] == 0
    assert (PACKAGE_CONFIGS / "sl-cai.yaml").is_file() and sl["constitution.enabled"] is True
