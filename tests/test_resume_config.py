"""A resume never mixes two configurations silently, and a finished run can be extended exactly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import write_tiny_run
from safetensors.torch import load_file

from detoxrl.config import load_config
from detoxrl.errors import ConfigError
from detoxrl.stages import ppo


def _weights(cfg) -> dict:
    return load_file(str(cfg.path(cfg.ppo.output_dir) / "model.safetensors"))


@pytest.fixture
def finished_run(tmp_path, tiny_t5_dir):
    """A finished 4-step run (no checkpoint cadence: the last step's checkpoint is written anyway)."""
    path = write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.steps": 4})
    ppo.run(load_config(path))
    return path


def test_extending_a_finished_run_matches_an_uninterrupted_longer_run_bit_for_bit(tmp_path, tiny_t5_dir,
                                                                                    finished_run, capsys):
    extended = load_config(finished_run, ["ppo.steps=6"])
    ppo.run(extended, resume=True)
    out = capsys.readouterr()
    assert "continuing from step-000004" in out.out + out.err  # not from an earlier step
    assert "ppo.steps: 4 → 6" in out.out + out.err  # an allowed change, printed
    ref_path = write_tiny_run(tmp_path / "ref", tiny_t5_dir, **{"ppo.steps": 6})
    ref = load_config(ref_path)
    ppo.run(ref)
    got, want = _weights(extended), _weights(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    steps = [json.loads(x)["step"] for x in (extended.run_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_with_a_forbidden_change_refuses_with_the_diff(finished_run):
    cfg = load_config(finished_run, ["ppo.learning_rate=0.01", "ppo.steps=6"])
    with pytest.raises(ConfigError) as err:
        ppo.run(cfg, resume=True)
    msg = str(err.value)
    assert "ppo.learning_rate: 0.001 → 0.01" in msg and "--allow-config-change" in msg
    assert "ppo.steps" not in msg  # allowed, so not among the reasons to refuse


def test_allow_config_change_resumes_and_records_the_change(finished_run):
    cfg = load_config(finished_run, ["ppo.learning_rate=0.01", "ppo.steps=5"])
    out = ppo.run(cfg, resume=True, allow_config_change=True)
    recorded = [json.loads(x) for x in (cfg.run_path / "ppo" / "config_changes.jsonl").read_text().splitlines()]
    assert recorded == [{"at_step": 4, "checkpoint": "step-000004", "changes": ["ppo.learning_rate: 0.001 → 0.01"]}]
    meta = json.loads((out / "detoxrl.json").read_text())
    assert meta["config_changes"] == recorded


def test_a_stop_target_set_on_resume_that_the_history_meets_stops_at_once(finished_run, capsys):
    cfg = load_config(finished_run, ["ppo.steps=8", "ppo.stop_at_reward=-1000", "ppo.stop_window=3"])
    out = ppo.run(cfg, resume=True)  # an allowed change: no --allow-config-change needed
    printed = capsys.readouterr()
    assert "ppo.stop_at_reward: None → -1000" in printed.out + printed.err
    meta = json.loads((out / "detoxrl.json").read_text())
    assert meta["steps_done"] == 4 and meta["stop"]["step"] == 4  # the restored rewards meet it: no step more
    assert meta["stop"]["reason"].startswith("reached stop_at_reward -1000: moving mean ")
    assert meta["stop"]["reason"].endswith(" over 3 steps at step 4")
    steps = [json.loads(x)["step"] for x in (cfg.run_path / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
