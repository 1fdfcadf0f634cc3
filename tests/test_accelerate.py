"""Data-parallel PPO through `accelerate launch` with two CPU processes on tiny models.

accelerate 1.x starts several CPU processes with `--cpu` only through mpirun; without MPI,
`--multi_gpu --num_processes 2` starts them with torchrun, and detoxrl's Accelerator(cpu=True)
then runs data-parallel on the gloo backend (distributed type MULTI_CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_tiny_run


@pytest.mark.slow
def test_two_processes_step_and_save_once(tmp_path, tiny_t5_dir):
    cfg = write_tiny_run(tmp_path, tiny_t5_dir)
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        launcher = shutil.which("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DETOXRL_NO_PROGRESS": "1"}
    res = subprocess.run(
        [str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
         "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "detoxrl", "ppo", str(cfg)],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    # both processes ran every step
    assert "process 1/2 finished at step 3" in out and "process 2/2 finished at step 3" in out
    # the result is saved once, by the main process, as a complete folder
    assert out.count("saved the policy") == 1
    policy = tmp_path / "run" / "policy"
    assert (policy / "config.json").exists() and (policy / "value_head.safetensors").exists()
    assert not [p for p in policy.parent.iterdir() if p.name.endswith(".tmp")]
    lines = [json.loads(x) for x in (tmp_path / "run" / "ppo" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]  # one metrics writer, not two
