"""Checkpoints: nested optimiser state round-trips through safetensors + JSON; incomplete or
pickle-bearing checkpoints are never loaded."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from detoxrl.errors import CheckpointError
from detoxrl.rl import checkpoint as ckpt


def _opt_state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95))
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    return model, opt


def test_split_join_round_trip_of_optimizer_state():
    _, opt = _opt_state()
    sd = opt.state_dict()
    skeleton, tensors = ckpt.split_tensors(sd, "opt")
    back = ckpt.join_tensors(json.loads(json.dumps(skeleton)), tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.95)
    for k in sd["state"]:
        for name, v in sd["state"][k].items():
            assert torch.equal(back["state"][k][name], v)


def test_save_load_and_prune(tmp_path):
    model, opt = _opt_state()
    for step in (1, 2, 3):
        ckpt.save_checkpoint(tmp_path, step, model.state_dict(), opt.state_dict(), {"x": step, "t": torch.arange(3)}, keep=2)
    steps = [s for s, _ in ckpt.list_checkpoints(tmp_path)]
    assert steps == [2, 3]
    step, ms, os_, st = ckpt.load_checkpoint(ckpt.latest_checkpoint(tmp_path))
    assert step == 3 and st["x"] == 3 and torch.equal(st["t"], torch.arange(3))
    assert torch.equal(ms["weight"], model.state_dict()["weight"])
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt2.load_state_dict(os_)


def test_incomplete_checkpoint_is_skipped(tmp_path):
    model, opt = _opt_state()
    ckpt.save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {})
    ckpt.save_checkpoint(tmp_path, 2, model.state_dict(), opt.state_dict(), {})
    (tmp_path / "step-000002" / "state.json").write_text("{\"form")  # torn write
    (tmp_path / ".step-000003.abc.tmp").mkdir()  # a temporary folder from a killed write
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000001"


def test_pickle_in_checkpoint_is_refused(tmp_path):
    model, opt = _opt_state()
    path = ckpt.save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {})
    torch.save({"evil": 1}, path / "extra.pt")
    with pytest.raises(CheckpointError, match="pickle"):
        ckpt.load_checkpoint(path)


def test_rng_state_round_trip():
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = json.loads(json.dumps({k: v for k, v in ckpt.rng_state().items() if k != "torch"}))
    state["torch"] = torch.get_rng_state()
    a = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    ckpt.set_rng_state(state)
    b = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    assert a == b


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    model, opt = _opt_state()
    ckpt.save_checkpoint(tmp_path, 1, model.state_dict(), opt.state_dict(), {"x": 1})

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(CheckpointError, match="No space left on device.*step-000001 is intact"):
        ckpt.save_checkpoint(tmp_path, 2, model.state_dict(), opt.state_dict(), {"x": 2})
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "step-000001" and ckpt.load_checkpoint(latest)[3]["x"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
