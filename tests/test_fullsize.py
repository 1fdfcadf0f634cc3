"""The seed-recipe preset end to end on stand-ins of its models (``detoxrl standin``) and DialogSum's
local files, as ``detoxrl run configs/flan-t5-dialogsum.yaml`` runs it with the hub.

- ``test_the_preset_runs_on_small_stand_ins``: the stand-ins' real vocabularies and tokenizers with
  small hidden sizes and short responses (slow: about a minute).
- ``test_the_preset_at_full_size``: the real sizes (FLAN-T5-base, 248M parameters, and Meta's judge,
  125M), two PPO steps and 24 evaluation prompts, recording each stage's seconds, the run's CPU seconds
  and peak RSS in ``fullsize.json`` beside ``timings.json`` (the run's console output in
  ``fullsize.log``). Marked ``fullsize``: ``make test`` leaves it out, ``make fullsize`` runs it (over
  an hour on two cores). ``$DETOXRL_STANDINS`` keeps the stand-ins between runs and
  ``$DETOXRL_FULLSIZE_RUN`` names the run folder (default: temporary folders).

Both skip when DialogSum's files are not beside the project.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from detoxrl.models.standin import STANDINS, write_standins

ROOT = Path(__file__).resolve().parents[1]
DIALOGSUM = ROOT.parent / "shared" / "data" / "dialogsum"
needs_dialogsum = pytest.mark.skipif(not (DIALOGSUM / "dialogsum.dev.jsonl").exists(),
                                     reason="DialogSum files not present beside the project")
POLICY = "flan-t5-base"
JUDGE = "roberta-hate-speech-dynabench-r4-target"
STAGES = ("prepare", "ppo", "eval", "report")  # the preset's enabled stages (no sft, no train-rm)

# Runs `detoxrl run ...` as a child, then prints its peak RSS (kB, Linux) and its CPU seconds (user + system,
# which, unlike the stages' wall seconds, do not grow while a busy machine makes the run wait).
RSS_WRAPPER = ("import resource, subprocess, sys; rc = subprocess.call(sys.argv[1:]); "
               "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print('usage', u.ru_maxrss, round(u.ru_utime + u.ru_stime, 1)); sys.exit(rc)")


def preset_overrides(standins: Path, run_dir: Path, steps: int, eval_prompts: int) -> list[str]:
    """The ``--set`` overrides that point the preset at the stand-ins and DialogSum's local files (its
    dev split trains, as the hub's train split is not there; its test split evaluates)."""
    sets = [f"policy.name_or_path={standins / POLICY}", f"reward.judges.0.model={standins / JUDGE}",
            f"data.source={DIALOGSUM}", "data.format=dialogsum", "data.train_split=dev", "data.eval_split=test",
            f"ppo.steps={steps}", f"eval.n_prompts={eval_prompts}", f"run_dir={run_dir}"]
    return [arg for s in sets for arg in ("--set", s)]


def run_preset(standins: Path, run_dir: Path, *, steps: int, eval_prompts: int, extra: list[str] = ()) -> dict:
    """``detoxrl run configs/flan-t5-dialogsum.yaml`` on the stand-ins (every stage forced); returns the
    stage timings, the wall time and the peak RSS, after checking that every stage finished."""
    cmd = [sys.executable, "-m", "detoxrl", "run", str(ROOT / "configs" / "flan-t5-dialogsum.yaml"),
           *preset_overrides(standins, run_dir, steps, eval_prompts), *extra,
           *[arg for stage in STAGES[1:] for arg in ("--force", stage)]]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], env=env, cwd=ROOT, text=True,
                          capture_output=True)
    wall = time.perf_counter() - t0
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "fullsize.log").write_text(proc.stdout + proc.stderr)  # the run's console output
    assert proc.returncode == 0, f"detoxrl run failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    timings = json.loads((run_dir / "timings.json").read_text())
    assert set(STAGES) <= set(timings), timings
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["n_prompts"] == eval_prompts and evaluation["prompt_filter"]["too_many_chars"] > 0
    assert (run_dir / "report.html").exists() and (run_dir / "policy" / "adapter" / "adapter_config.json").exists()
    metrics = [json.loads(line) for line in (run_dir / "ppo" / "metrics.jsonl").read_text().splitlines() if line]
    metrics = [m for m in metrics if "reward/mean" in m]  # one line per PPO step
    assert len(metrics) == steps
    _, rss_kb, cpu_s = proc.stdout.strip().splitlines()[-1].split()
    return {"stages_s": {s: timings[s] for s in STAGES}, "wall_s": round(wall, 1), "cpu_s": float(cpu_s),
            "peak_rss_mb": round(int(rss_kb) / 1024), "ppo_steps": steps, "eval_prompts": eval_prompts,
            "ppo_step_s": [round(m["perf/step_s"], 1) for m in metrics],
            "ppo_response_tokens": [m["response/length"] for m in metrics]}


SMALL = {POLICY: {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2, "num_heads": 2, "d_kv": 32},
         JUDGE: {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}}


@pytest.mark.slow
@needs_dialogsum
def test_the_preset_runs_on_small_stand_ins(tmp_path):
    from detoxrl.data.loaders import dialogsum_texts

    texts = dialogsum_texts(DIALOGSUM)
    for name, sizes in SMALL.items():
        write_standins(tmp_path / "standins", [name], texts, overrides=sizes)
    # shorter responses than the preset's 100-400 tokens: the point is every stage's wiring, in seconds
    short = ["--set", "ppo.generation.length_sampler=[6,12]", "--set", "eval.generation.max_new_tokens=8",
             "--set", "eval.bootstrap=100"]
    result = run_preset(tmp_path / "standins", tmp_path / "run", steps=2, eval_prompts=6, extra=short)
    assert result["peak_rss_mb"] > 0
    print(json.dumps(result))


def _standins(folder: Path) -> Path:
    """The full-size policy and judge in ``folder``, written by the CLI unless an earlier run left them."""
    missing = [n for n in (POLICY, JUDGE) if not (folder / n / "model.safetensors").exists()]
    if missing:
        cmd = [sys.executable, "-m", "detoxrl", "standin", str(folder), "--models", ",".join(missing),
               "--data", str(DIALOGSUM)]
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        proc = subprocess.run(cmd, env=env, cwd=ROOT, text=True, capture_output=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
        print(proc.stdout)
    return folder


@pytest.mark.slow
@pytest.mark.fullsize
@needs_dialogsum
def test_the_preset_at_full_size(tmp_path, request):
    if "fullsize" not in (request.config.getoption("markexpr") or ""):  # e.g. `-m slow` selected it
        pytest.skip("over an hour: run it with -m fullsize (make fullsize)")
    standins = _standins(Path(os.environ.get("DETOXRL_STANDINS") or tmp_path / "standins").resolve())
    run_dir = Path(os.environ.get("DETOXRL_FULLSIZE_RUN") or tmp_path / "run").resolve()
    result = run_preset(standins, run_dir, steps=2, eval_prompts=24)
    result["parameters"] = {n: json.loads((standins / "standins.json").read_text()).get(n) for n in (POLICY, JUDGE)}
    (run_dir / "fullsize.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    assert STANDINS[POLICY].config["d_model"] == 768  # the real size, not a shrunk one
