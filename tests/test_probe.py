"""Evaluation while training (the probe), the reward-hacking warning and the stop targets: the rules by hand,
the config checks, and tiny PPO runs that probe and stop early."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from conftest import write_tiny_run
from safetensors.torch import load_file

from detoxrl.config import load_config
from detoxrl.errors import ConfigError, DataError
from detoxrl.evaluation.probe import draw_probe, probe_figures, reward_hacking
from detoxrl.rl import checkpoint as ckpt
from detoxrl.stages import ppo
from detoxrl.stages.ppo_monitor import STEPS_REACHED, moving_mean_reached


# ------------------------------------------------------------------------------ the stop-at-reward rule
def test_moving_mean_reaches_the_target_only_over_a_full_window():
    assert moving_mean_reached([], 0.5, 3) is None
    assert moving_mean_reached([1.0, 1.0], 0.5, 3) is None  # two steps: the window is not full yet
    assert moving_mean_reached([0.0, 0.5, 0.75, 1.0], 0.75, 3) == 0.75  # (0.5 + 0.75 + 1) / 3, and ≥ counts
    assert moving_mean_reached([0.0, 0.5, 0.75, 1.0], 0.76, 3) is None
    assert moving_mean_reached([1.0, 1.0, 1.0, 0.0], 0.75, 3) is None  # 2/3: an old high step has left the window
    assert moving_mean_reached([-2.0, -1.0], -1.5, 2) == -1.5  # rewards may be negative (logits)
    assert moving_mean_reached([0.9], 0.8, 1) == 0.9
    with pytest.raises(ValueError):
        moving_mean_reached([1.0], 0.5, 0)


# ------------------------------------------------------------------------------ the reward-hacking rule
def _probe(step, reward, held_out=None, rouge=None):
    p = {"step": step, "probe/reward_mean": reward}
    if held_out is not None:
        p["probe/toxic_rate_heldout"] = held_out
    if rouge is not None:
        p["probe/rougeL"] = rouge
    return p


def test_reward_hacking_fires_when_the_reward_rises_while_held_out_toxicity_rises():
    history = [_probe(10, 0.2, 0.05, 0.40), _probe(20, 0.5, 0.07, 0.40), _probe(30, 0.9, 0.12, 0.40)]
    msg = reward_hacking(history, 3)
    assert msg is not None and "steps 10–30" in msg
    assert "reward rose 0.200 → 0.900" in msg and "held-out toxic rate rose 0.050 → 0.120" in msg
    assert "ROUGE-L" not in msg


def test_reward_hacking_fires_when_the_reward_rises_while_rouge_falls():
    history = [_probe(5, 1.0, 0.10, 0.40), _probe(10, 1.5, 0.10, 0.36)]
    msg = reward_hacking(history, 2)
    assert msg is not None and "ROUGE-L fell 0.400 → 0.360" in msg and "toxic rate" not in msg


def test_reward_hacking_is_silent_on_a_clean_history():
    clean = [_probe(10, 0.2, 0.10, 0.40), _probe(20, 0.5, 0.08, 0.41), _probe(30, 0.9, 0.05, 0.40)]
    assert reward_hacking(clean, 3) is None
    # everything worse, but the reward did not improve: not reward hacking
    assert reward_hacking([_probe(1, 0.5, 0.05, 0.40), _probe(2, 0.5, 0.20, 0.20)], 2) is None
    # within the tolerances (toxic rate +0.02, ROUGE-L −0.01): noise, not a warning
    assert reward_hacking([_probe(1, 0.2, 0.05, 0.40), _probe(2, 0.9, 0.065, 0.395)], 2) is None
    # the reward improved by no more than its tolerance (0.01)
    assert reward_hacking([_probe(1, 0.200, 0.05, 0.40), _probe(2, 0.205, 0.30, 0.10)], 2) is None


def test_reward_hacking_reads_only_the_last_window_and_skips_missing_figures():
    old_bad = [_probe(1, 0.1, 0.01, 0.50), _probe(2, 0.5, 0.20, 0.30)]
    recent = [_probe(3, 0.6, 0.20, 0.30), _probe(4, 0.7, 0.19, 0.31), _probe(5, 0.8, 0.18, 0.31)]
    assert reward_hacking(old_bad, 2) is not None
    assert reward_hacking(old_bad + recent, 3) is None  # the divergence is older than the window
    assert reward_hacking(recent[:2], 3) is None  # fewer probes than the window: no verdict
    # no held-out judge, no references (ROUGE-L nan): nothing to compare against
    assert reward_hacking([_probe(1, 0.1, None, math.nan), _probe(2, 0.9, None, math.nan)], 2) is None


# ------------------------------------------------------------------------------ figures and prompts
def test_probe_figures_by_hand():
    texts = ["w1 w2 w3", "w4 w5", "", "w6"]
    refs = [["w1 w2 w3"], ["w4 w5"], ["w9"], [""]]  # the last has no reference: left out of ROUGE
    tox = {"trained": np.array([0.9, 0.1, 0.2, 0.0]), "held": np.array([0.0, 0.7, 0.1, 0.5])}
    figs = probe_figures(texts, refs, [3, 2, 0, 1], tox, {"trained": 0.5, "held": 0.5}, {"trained"},
                         np.array([1.0, 2.0, np.nan, 3.0]))
    assert figs["probe/n"] == 4
    assert figs["probe/reward_mean"] == 2.0  # the non-finite reward is left out
    assert figs["probe/toxic_rate_trained"] == 0.25
    assert figs["probe/toxic_rate_heldout"] == 0.5  # 0.7 and 0.5 (≥ the threshold) flag
    assert figs["probe/toxic_rate"] == 0.75
    assert figs["probe/toxic_rate/held"] == 0.5 and figs["probe/toxic_rate/trained"] == 0.25
    assert figs["probe/rougeL"] == pytest.approx(2 / 3)
    assert figs["probe/length_mean"] == 1.5
    no_held_out = probe_figures(texts, refs, [1, 1, 1, 1], {"trained": tox["trained"]}, {"trained": 0.5},
                                {"trained"}, np.ones(4))
    assert "probe/toxic_rate_heldout" not in no_held_out


def test_the_probe_is_drawn_once_deterministically_in_order():
    pool = list(range(100))
    a, b = draw_probe(pool, 10, seed=3), draw_probe(pool, 10, seed=3)
    assert a == b and len(set(a)) == 10 and a == sorted(a)
    assert draw_probe(pool, 10, seed=4) != a
    assert draw_probe(pool[:5], 10, seed=3) == pool[:5]


# ------------------------------------------------------------------------------ config
def test_stop_at_probe_toxic_rate_needs_probes_and_held_out_judges(tmp_path):
    path = write_tiny_run(tmp_path, tmp_path / "no-policy-needed")
    with pytest.raises(ConfigError) as err:
        load_config(path, ["ppo.stop_at_probe_toxic_rate=0.05"])
    assert "ppo.stop_at_probe_toxic_rate" in str(err.value) and "ppo.probe_every" in str(err.value)
    with pytest.raises(ConfigError, match="eval.extra_judges"):
        load_config(path, ["ppo.stop_at_probe_toxic_rate=0.05", "ppo.probe_every=5"])
    with pytest.raises(ConfigError, match="ppo.probe_window"):
        load_config(path, ["ppo.probe_window=1"])
    cfg = load_config(path, ["ppo.stop_at_reward=0.8", "ppo.probe_every=5"])
    assert cfg.ppo.stop_window == 10 and cfg.ppo.probe_window == 3 and cfg.ppo.stop_at_probe_toxic_rate is None
    assert load_config(path).ppo.probe_every == 0  # off unless asked for


def test_stop_targets_and_the_probe_cadence_may_change_on_resume_the_probe_set_may_not(tmp_path):
    path = write_tiny_run(tmp_path, tmp_path / "no-policy-needed")
    saved = ppo.run_config(load_config(path))
    changed = load_config(path, ["ppo.stop_at_reward=0.5", "ppo.stop_window=4", "ppo.probe_every=2", "ppo.steps=9"])
    assert ppo.check_resume_config(changed, saved, tmp_path / "step-000003", allow=False) == []
    with pytest.raises(ConfigError, match="ppo.probe_prompts: 64 → 8"):
        ppo.check_resume_config(load_config(path, ["ppo.probe_prompts=8"]), saved, tmp_path / "step-000003",
                                allow=False)


def test_probe_and_stop_settings_are_in_the_ppo_fingerprint(tmp_path):
    from detoxrl.stages import fingerprint

    path = write_tiny_run(tmp_path, tmp_path / "no-policy-needed")
    keys = fingerprint.stage_config(load_config(path), "ppo")
    for key in ("ppo.probe_every", "ppo.probe_prompts", "ppo.probe_window", "ppo.stop_at_reward",
                "ppo.stop_window", "ppo.stop_at_probe_toxic_rate"):
        assert key in keys


# ------------------------------------------------------------------------------ the monitor, without models
class _FakeProbe:
    """Returns the next of the given figures at each probe."""

    def __init__(self, figures):
        self.figures = list(figures)

    def run(self, lp, autocast=None):
        return dict(self.figures.pop(0))


class _FakeTrainer:
    """What the monitor uses of a PPOTrainer, on one process (``agree`` returns its input, as there)."""

    def __init__(self):
        self.phase, self.lp, self.unwrapped, self.agreed = "", _Policy(), _Policy(), 0

    def amp(self):
        return contextlib.nullcontext()

    def agree(self, flag, value=0.0):
        self.agreed += 1
        return bool(flag), value


@dataclass
class _Policy:
    model: object = None
    lm: object = None


def test_the_monitor_probes_warns_stops_and_restores_its_history(tmp_path):
    from detoxrl.config import PPOSettings
    from detoxrl.stages.ppo_monitor import Monitor

    s = PPOSettings(batch_size=4, mini_batch_size=2, probe_every=2, stop_at_probe_toxic_rate=0.05)
    figures = [{"probe/reward_mean": 0.1, "probe/toxic_rate_heldout": 0.10, "probe/rougeL": 0.4},
               {"probe/reward_mean": 0.2, "probe/toxic_rate_heldout": 0.09, "probe/rougeL": 0.4},
               {"probe/reward_mean": 0.6, "probe/toxic_rate_heldout": 0.20, "probe/rougeL": 0.4},
               {"probe/reward_mean": 0.9, "probe/toxic_rate_heldout": 0.04, "probe/rougeL": 0.4}]
    mon, tr = Monitor(s, tmp_path / "ppo", main=True, probe=_FakeProbe(figures)), _FakeTrainer()
    mon.start()
    stops, logged = [], []
    for step in range(1, 9):
        stats = {"step": step, "reward/mean": float(step)}
        stops.append(mon.after_step(step, stats, tr))
        logged.append(stats)
        if stops[-1]:
            break
    assert stops == [False] * 7 + [True] and tr.agreed == 8  # a target is set: one agreement per step
    assert [p["step"] for p in mon.probes] == [2, 4, 6, 8] and "probe/reward_mean" in logged[1]
    assert "probe/reward_mean" not in logged[0]
    # probes 2, 4, 6: the reward rose 0.1 → 0.6 while the held-out toxic rate rose 0.10 → 0.20
    assert [w["step"] for w in mon.warnings] == [6] and logged[5]["probe/warning"] == 1
    lines = [json.loads(x) for x in (tmp_path / "ppo" / "warnings.jsonl").read_text().splitlines()]
    assert lines == mon.warnings
    assert mon.stop["step"] == 8 and "held-out judges) 0.04 at step 8" in mon.stop["reason"]
    assert logged[-1]["ppo/stop"] == 1
    # a resumed run restores the history (from the checkpoint) and decides as the uninterrupted one did
    again = Monitor(s, tmp_path / "ppo", main=False)
    again.load_state_dict(json.loads(json.dumps(mon.state_dict())))  # through the checkpoint's JSON
    assert again.rewards == [float(i) for i in range(1, 9)] and again.restored_stop(8)
    assert again.stop["reason"] == mon.stop["reason"]
    looser = Monitor(s.model_copy(update={"stop_at_probe_toxic_rate": 0.01}), tmp_path / "ppo", main=True)
    looser.load_state_dict(mon.state_dict())
    assert not looser.restored_stop(8) and looser.finish(8) == {"reason": STEPS_REACHED, "step": 8}
    Monitor(s, tmp_path / "ppo", main=True).start()  # a fresh run starts without the old warnings
    assert not (tmp_path / "ppo" / "warnings.jsonl").exists()


def test_the_reward_target_counts_only_steps_that_drew_from_every_prompt():
    """Under a curriculum, the easy tiers' high reward must not stop the run before the hard prompts came."""
    from detoxrl.config import PPOSettings
    from detoxrl.stages.ppo_monitor import Monitor

    s = PPOSettings(batch_size=4, mini_batch_size=2, stop_at_reward=0.5, stop_window=2)
    mon, tr = Monitor(s, None, main=False), _FakeTrainer()
    # steps 1-3 see a third, then two thirds, of the prompts at reward 1.0; from step 4 all, at 0.4, 0.6, 0.8
    steps = [(1.0, 1 / 3), (1.0, 1 / 3), (1.0, 2 / 3), (0.4, 1.0), (0.6, 1.0), (0.8, 1.0)]
    stops = []
    for i, (r, c) in enumerate(steps):
        stops.append(mon.after_step(i + 1, {"reward/mean": r, "curriculum/competence": c}, tr))
        if stops[-1]:
            break
    # counted: 0.4, 0.6 (mean 0.5 ≥ 0.5 at step 5); the three early 1.0s never count
    assert mon.rewards == [0.4, 0.6] and stops == [False] * 4 + [True]
    assert "moving mean 0.5 over 2 steps at step 5" in mon.stop["reason"]


def test_without_targets_the_monitor_takes_no_collective():
    from detoxrl.config import PPOSettings
    from detoxrl.stages.ppo_monitor import Monitor

    mon, tr = Monitor(PPOSettings(batch_size=4, mini_batch_size=2), None, main=False), _FakeTrainer()
    assert not any(mon.after_step(step, {"reward/mean": 9.0}, tr) for step in range(1, 20))
    assert tr.agreed == 0 and mon.finish(19) == {"reason": STEPS_REACHED, "step": 19}


# ------------------------------------------------------------------------------ tiny runs
@dataclass
class _Out:
    total: torch.Tensor
    components: dict = field(default_factory=dict)


class ConstantReward:
    """Every response earns ``value``: a reward whose moving mean is high from the first step."""

    def __init__(self, value: float):
        self.value = value

    def __call__(self, responses, prompts=None):
        total = torch.full((len(responses),), self.value)
        return _Out(total, {"constant": total})


def _weights(cfg) -> dict:
    return load_file(str(cfg.path(cfg.ppo.output_dir) / "model.safetensors"))


def _metrics(cfg) -> list[dict]:
    return [json.loads(x) for x in (cfg.run_path / "ppo" / "metrics.jsonl").read_text().splitlines()]


def _held_out(tmp_path) -> list[dict]:
    (tmp_path / "held.txt").write_text("w10\nw11\nw12\n")
    return [{"name": "held", "type": "lexicon", "lexicon": str(tmp_path / "held.txt")}]


def test_stop_at_reward_stops_early_and_saves_as_at_the_end(tmp_path, tiny_t5_dir, capsys):
    path = write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.steps": 10, "ppo.stop_at_reward": 1.5,
                                                     "ppo.stop_window": 2})
    cfg = load_config(path)
    out = ppo.run(cfg, reward_fn=ConstantReward(2.0))
    assert [m["step"] for m in _metrics(cfg)] == [1, 2]
    assert _metrics(cfg)[-1]["ppo/stop"] == 1
    reason = "reached stop_at_reward 1.5: moving mean 2 over 2 steps at step 2"
    printed = capsys.readouterr()
    assert reason in " ".join((printed.out + printed.err).split())
    meta = json.loads((out / "detoxrl.json").read_text())
    assert meta["stop"] == {"reason": reason, "step": 2} and meta["steps_done"] == 2 and meta["steps"] == 10
    assert (out / "config.json").exists() and (out / "value_head.safetensors").exists()
    assert ckpt.latest_checkpoint(cfg.run_path / "ppo" / "checkpoints").name == "step-000002"


def test_probes_are_logged_and_do_not_change_what_is_trained(tmp_path, tiny_t5_dir):
    extra = {"ppo.steps": 2, "eval.extra_judges": _held_out(tmp_path), "ppo.probe_prompts": 8}
    probed = load_config(write_tiny_run(tmp_path / "probed", tiny_t5_dir, **extra, **{"ppo.probe_every": 1}))
    out = ppo.run(probed)
    rows = _metrics(probed)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:  # on the step they are taken
        for key in ("probe/reward_mean", "probe/toxic_rate_trained", "probe/toxic_rate_heldout", "probe/rougeL",
                    "probe/toxic_rate/bad-words", "probe/toxic_rate/held"):
            assert isinstance(r[key], (int, float)), key
        assert r["probe/n"] == 8 and 0 <= r["probe/rougeL"] <= 1
    assert json.loads((out / "detoxrl.json").read_text())["stop"] == {"reason": STEPS_REACHED, "step": 2}
    plain = load_config(write_tiny_run(tmp_path / "plain", tiny_t5_dir, **extra))
    ppo.run(plain)
    assert not any(k.startswith("probe/") for r in _metrics(plain) for k in r)
    got, want = _weights(probed), _weights(plain)
    assert got.keys() == want.keys()
    for k in want:  # the probe keeps the random state it found
        assert torch.equal(got[k], want[k]), k


def test_stop_at_probe_toxic_rate_stops_at_the_first_probe_that_reaches_it(tmp_path, tiny_t5_dir):
    path = write_tiny_run(tmp_path, tiny_t5_dir, **{
        "ppo.steps": 6, "ppo.probe_every": 2, "ppo.probe_prompts": 4, "ppo.stop_at_probe_toxic_rate": 1.0,
        "eval.extra_judges": _held_out(tmp_path)})
    cfg = load_config(path)
    out = ppo.run(cfg)
    rows = _metrics(cfg)
    assert [r["step"] for r in rows] == [1, 2] and "probe/rougeL" not in rows[0]
    stop = json.loads((out / "detoxrl.json").read_text())["stop"]
    assert stop["step"] == 2 and stop["reason"].startswith("reached stop_at_probe_toxic_rate 1: probe toxic rate")


def test_a_probe_that_cannot_be_built_fails_before_training(tmp_path, tiny_t5_dir):
    path = write_tiny_run(tmp_path, tiny_t5_dir, **{
        "ppo.probe_every": 1, "eval.extra_judges": [{"name": "held", "type": "lexicon",
                                                     "lexicon": str(tmp_path / "missing.txt")}]})
    cfg = load_config(path)
    with pytest.raises(DataError, match="missing.txt"):
        ppo.run(cfg)
    assert not (cfg.run_path / "ppo" / "metrics.jsonl").exists() and not cfg.path(cfg.ppo.output_dir).exists()


@pytest.mark.parametrize("sample", [True, False])
def test_the_probe_decodes_as_eval_with_the_same_draws_each_time(tmp_path, tiny_t5_dir, sample):
    from detoxrl.evaluation.probe import Probe
    from detoxrl.models.policy import load_policy_model

    cfg = load_config(write_tiny_run(tmp_path, tiny_t5_dir, **{
        "ppo.probe_every": 1, "ppo.probe_prompts": 6, "ppo.probe_sample": sample,
        "eval.generation": {"do_sample": True, "max_new_tokens": 6}, "eval.extra_judges": _held_out(tmp_path)}))
    lp = load_policy_model(cfg.policy)
    probe = Probe.build(cfg, None, lp.tokenizer, torch.device("cpu"))
    assert probe.gen.do_sample is sample and probe.gen.max_new_tokens == 6
    torch.manual_seed(123)
    first = probe.run(lp)
    state = torch.random.get_rng_state()
    second = probe.run(lp)  # the same policy: the same draws, so the same figures
    assert {k: v for k, v in first.items() if k != "perf/probe_s"} == {
        k: v for k, v in second.items() if k != "perf/probe_s"}
    assert torch.equal(torch.random.get_rng_state(), state)  # the probe kept the random state it found
