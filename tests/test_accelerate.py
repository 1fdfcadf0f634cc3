"""Data-parallel PPO through `accelerate launch` with two CPU processes on tiny models.

accelerate 1.x starts several CPU processes with `--cpu` only through mpirun; without MPI,
`--multi_gpu --num_processes 2` starts them with torchrun, and detoxrl's Accelerator(cpu=True)
then runs data-parallel on the gloo backend (distributed type MULTI_CPU).

Every decision that changes how many collectives a rank runs must be the same on every rank, or the run
deadlocks (one rank in a gather, the other in DDP's all-reduce). These tests run the embedded default's
PPO settings with an early stop that triggers, a NaN on one rank only, and a rank that stalls; each
launch has a hard time-out, so a deadlock fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_tiny_run
from safetensors.torch import load_file

from detoxrl.config import DEFAULT_CONFIG

WORKER = Path(__file__).with_name("_ddp_worker.py")


def _launch(tmp_path: Path, cfg: Path, *extra: str, timeout: int = 300) -> tuple[subprocess.CompletedProcess, str]:
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        launcher = shutil.which("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DETOXRL_NO_PROGRESS": "1",
           "PYTHONPATH": os.pathsep.join([str(WORKER.parent), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(WORKER), str(cfg),
           str(tmp_path / "weights"), *extra]
    # A session of its own, so that a deadlocked run's workers are killed with the launcher.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"the two-process run did not finish within {timeout} s (deadlock?):\n{(stdout + stderr)[-4000:]}")
    res = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
    return res, stdout + stderr


def _default_ppo(**overrides) -> dict:
    """The embedded default's PPO section (batch 64, minibatch 16, 4 epochs, target_approx_kl ...)."""
    ppo = yaml.safe_load(Path(DEFAULT_CONFIG).read_text())["ppo"]
    ppo.update(overrides)
    return ppo


def _metrics(tmp_path: Path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "run" / "ppo" / "metrics.jsonl").read_text().splitlines()]


def _assert_replicas_equal(tmp_path: Path) -> None:
    a = load_file(str(tmp_path / "weights" / "rank-0.safetensors"))
    b = load_file(str(tmp_path / "weights" / "rank-1.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs between the two ranks"


@pytest.mark.slow
def test_default_ppo_settings_with_early_stop_finish_on_both_ranks(tmp_path, tiny_t5_dir):
    steps = 4
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, ppo=_default_ppo(
        steps=steps, learning_rate=1e-3, target_approx_kl=0.023, generation={"max_new_tokens": 8}))
    res, out = _launch(tmp_path, cfg)
    assert res.returncode == 0, out[-4000:]
    for r in (1, 2):  # both processes ran every step
        assert f"process {r}/2 finished at step {steps}" in out, out[-4000:]
    lines = _metrics(tmp_path)
    assert [x["step"] for x in lines] == list(range(1, steps + 1))  # one metrics writer, not two
    stopped = [x for x in lines if x["ppo/early_stop"]]
    assert stopped and "early stop at epoch" in out, [x["ppo/updates"] for x in lines]
    assert all(x["ppo/updates"] < 4 * 64 // 16 for x in stopped)
    # the result is saved once, by the main process, as a complete folder
    assert out.count("saved the policy") == 1
    policy = tmp_path / "run" / "policy"
    assert (policy / "config.json").exists() and (policy / "value_head.safetensors").exists()
    assert not [p for p in policy.parent.iterdir() if p.name.endswith(".tmp")]
    _assert_replicas_equal(tmp_path)


@pytest.mark.slow
def test_nan_loss_on_one_rank_is_skipped_by_every_rank(tmp_path, tiny_t5_dir):
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.steps": 2, "ppo.ppo_epochs": 2})
    res, out = _launch(tmp_path, cfg, "--nan-on-rank-1-at-call", "2")
    assert res.returncode == 0, out[-4000:]
    assert "rank 1 injects a NaN loss at call 2" in out
    assert "process 1/2 finished at step 2" in out and "process 2/2 finished at step 2" in out
    lines = _metrics(tmp_path)
    # rank 0 writes the metrics and saw no NaN itself: it skipped the minibatch because rank 1 did
    assert lines[0]["ppo/bad_updates"] == 1 and lines[0]["ppo/updates"] == 2 * 8 // 4 - 1
    assert lines[1]["ppo/bad_updates"] == 0 and lines[1]["ppo/updates"] == 2 * 8 // 4
    _assert_replicas_equal(tmp_path)


@pytest.mark.slow
def test_a_stalled_rank_becomes_an_error_naming_step_and_phase(tmp_path, tiny_t5_dir):
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.steps": 3, "ppo.checkpoint_every": 1,
                                                    "ppo.collective_timeout_s": 5})
    t0 = time.monotonic()
    res, out = _launch(tmp_path, cfg, "--stall-rank-1-at-step", "2", timeout=240)
    assert res.returncode != 0
    assert time.monotonic() - t0 < 200  # well before the stalled rank's 600 s sleep ends
    assert "rank 1 stalls at step 2" in out
    assert ("process 1/2: step 2, phase 'rollout: agreeing on finite scores': a collective with the other "
            "processes did not complete within ppo.collective_timeout_s=5 s") in out, out[-4000:]
    # what was written before is complete: the step-1 checkpoint loads
    from detoxrl.rl import checkpoint as ckpt

    latest = ckpt.latest_checkpoint(tmp_path / "run" / "ppo" / "checkpoints")
    assert latest is not None and latest.name == "step-000001"
    step, model_state, _, _ = ckpt.load_checkpoint(latest)
    assert step == 1 and model_state


@pytest.mark.slow
def test_only_the_main_process_probes_and_every_rank_stops_at_its_probe_target(tmp_path, tiny_t5_dir):
    (tmp_path / "held.txt").write_text("w10\nw11\nw12\n")
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, **{
        "ppo.steps": 6, "ppo.probe_every": 2, "ppo.probe_prompts": 8, "ppo.stop_at_probe_toxic_rate": 1.0,
        "eval.extra_judges": [{"name": "held", "type": "lexicon", "lexicon": str(tmp_path / "held.txt")}]})
    res, out = _launch(tmp_path, cfg)
    assert res.returncode == 0, out[-4000:]
    for r in (1, 2):  # the stop, decided on the main process's probe, is taken by both processes
        assert f"process {r}/2 finished at step 2" in out, out[-4000:]
    lines = _metrics(tmp_path)
    assert [x["step"] for x in lines] == [1, 2]
    assert "probe/rougeL" not in lines[0] and lines[1]["probe/n"] == 8 and lines[1]["ppo/stop"] == 1
    meta = json.loads((tmp_path / "run" / "policy" / "detoxrl.json").read_text())
    assert meta["stop"]["step"] == 2 and meta["stop"]["reason"].startswith("reached stop_at_probe_toxic_rate 1")
    assert out.count("saved the policy") == 1
    _assert_replicas_equal(tmp_path)


@pytest.mark.slow
def test_probes_without_a_stop_target_on_two_ranks(tmp_path, tiny_t5_dir):
    """Without a target no rank waits for the probe in a collective of its own: the other rank goes on to
    the next step and waits there."""
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, **{"ppo.steps": 3, "ppo.probe_every": 1, "ppo.probe_prompts": 8})
    res, out = _launch(tmp_path, cfg)
    assert res.returncode == 0, out[-4000:]
    assert "process 1/2 finished at step 3" in out and "process 2/2 finished at step 3" in out, out[-4000:]
    lines = _metrics(tmp_path)
    assert [x["step"] for x in lines] == [1, 2, 3] and all(x["probe/n"] == 8 for x in lines)
    assert "probe/toxic_rate_heldout" not in lines[0]  # no held-out judge configured
    _assert_replicas_equal(tmp_path)


@pytest.mark.slow
def test_a_probe_the_main_process_cannot_build_ends_every_rank(tmp_path, tiny_t5_dir):
    cfg = write_tiny_run(tmp_path, tiny_t5_dir, **{
        "ppo.probe_every": 1, "ppo.collective_timeout_s": 60,
        "eval.extra_judges": [{"name": "held", "type": "lexicon", "lexicon": str(tmp_path / "missing.txt")}]})
    res, out = _launch(tmp_path, cfg, timeout=240)
    assert res.returncode != 0
    assert "missing.txt does not exist" in out  # the main process's own error
    # the other rank's: it learnt of the failure in the agreement instead of waiting in its first step
    assert "the main process could not build the probe" in out, out[-4000:]
    assert not (tmp_path / "run" / "ppo" / "metrics.jsonl").exists()
