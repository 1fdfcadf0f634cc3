"""Exact resume: a PPO run killed with SIGKILL at several moments (one of them in the middle of a
checkpoint write) and resumed ends with the same weights, bit for bit, as an uninterrupted run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_tiny_run
from safetensors.torch import load_file

pytestmark = pytest.mark.cpus  # numeric: `make test-cpus` runs it on every CPU kernel set

STEPS = 6


SLOW_CHECKPOINT = Path(__file__).with_name("_slow_checkpoint.py")


def _cmd(cfg: Path, resume: bool, delay: float) -> list[str]:
    """``detoxrl ppo CFG``, every checkpoint write held open ``delay`` s (see _slow_checkpoint.py)."""
    return [sys.executable, str(SLOW_CHECKPOINT), str(delay), "ppo", str(cfg)] + (["--resume"] if resume else [])


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DETOXRL_NO_PROGRESS": "1"}


def _checkpoints(run: Path) -> list[str]:
    root = run / "ppo" / "checkpoints"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _kill_when(cfg: Path, run: Path, resume: bool, condition, timeout: float = 240) -> bool:
    """Start a run, SIGKILL it as soon as ``condition(run, seconds since start)`` holds; False if it
    finished first."""
    proc = subprocess.Popen(_cmd(cfg, resume, 0.4), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if condition(run, time.time() - t0):
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def _weights(run: Path) -> dict:
    return load_file(str(run / "policy" / "model.safetensors"))


def _assert_same_weights(run: Path, expected: dict, when: str) -> None:
    got = _weights(run)
    assert got.keys() == expected.keys()
    for k in expected:
        assert (got[k] == expected[k]).all(), f"{k} differs {when}"


@pytest.mark.slow
def test_killed_and_resumed_run_matches_uninterrupted_run_bit_for_bit(tmp_path, tiny_t5_dir):
    overrides = {"ppo.steps": STEPS, "ppo.checkpoint_every": 1, "ppo.keep_checkpoints": 2,
                 "ppo.score_norm": True}
    ref_cfg = write_tiny_run(tmp_path / "ref", tiny_t5_dir, **overrides)
    t0 = time.time()
    subprocess.run(_cmd(ref_cfg, False, 0.0), env=_env(), check=True, capture_output=True)
    ref_seconds = time.time() - t0
    expected = _weights(tmp_path / "ref" / "run")

    cfg = write_tiny_run(tmp_path / "killed", tiny_t5_dir, **overrides)
    run = tmp_path / "killed" / "run"
    kill_points = [
        ("after the first checkpoint", lambda r, t: "step-000001" in _checkpoints(r), False),
        ("in the middle of a checkpoint write", lambda r, t: any(n.endswith(".tmp") for n in _checkpoints(r)),
         True),
        ("after step 4's checkpoint", lambda r, t: "step-000004" in _checkpoints(r), True),
    ]
    killed = []
    for name, cond, resume in kill_points:
        if _kill_when(cfg, run, resume, cond):
            killed.append(name)
    assert len(killed) == len(kill_points), f"the run ended before these kill points: {killed}"
    # a torn write is never picked up; finish the run from the newest complete checkpoint
    subprocess.run(_cmd(cfg, True, 0.0), env=_env(), check=True, capture_output=True)
    _assert_same_weights(run, expected, "after the chosen kill points")
    # the metrics log holds each step once, as if never interrupted
    import json

    steps = [json.loads(x)["step"] for x in (run / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, STEPS + 1))

    # and once at a moment nobody chose: a random time within a run's duration (the kill may land in
    # start-up, a step or a checkpoint write), then resume to the end. The duration is the reference
    # run's at first; runs beside this test change the machine's load, so a run that ends before its
    # kill time is itself timed, checked, and the draw repeated within its duration.
    rng = random.Random()
    seconds = ref_seconds
    for attempt in range(4):
        at = rng.uniform(0.1, 0.9) * seconds
        cfg = write_tiny_run(tmp_path / f"random{attempt}", tiny_t5_dir, **overrides)
        run = tmp_path / f"random{attempt}" / "run"
        t0 = time.time()
        if _kill_when(cfg, run, False, lambda r, t, at=at: t >= at):
            break
        seconds = time.time() - t0
        _assert_same_weights(run, expected, "after a run that was not killed")
    else:
        pytest.fail(f"four runs ended before a random time within their predecessor's duration (last {at:.2f} s)")
    subprocess.run(_cmd(cfg, True, 0.0), env=_env(), check=True, capture_output=True)
    _assert_same_weights(run, expected, f"after a kill at {at:.2f} s")
