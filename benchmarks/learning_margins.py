"""How far each learning test clears its threshold, on every CPU kernel set torch can pick here.

The learning tests (an easy reward goes up, a loss goes down, an accuracy goes up) train tiny models,
and how much they learn depends on the kernels torch dispatches to: AVX-512, AVX2 or the generic
("default") ones give different float rounding, which sampling turns into other rollouts. This script
runs those tests in subprocesses under each kernel setting and seed, collects the figure each test
asserts on (``record_margin`` in tests/conftest.py writes them to ``$DETOXRL_MARGINS_FILE``), and prints

- every measurement: test, figure, setting (and the capability torch reported), seed, value, threshold;
- per figure, the smallest value over all runs against the threshold, and whether the threshold has
  room to spare: for a gain (reward up, loss down) the threshold is at most half the smallest gain;
  for a level capped at 1 (accuracy, AUC, F1) the error it allows is at least twice the largest seen.

    python benchmarks/learning_margins.py                  # 3 settings x seeds 0, 1, 2
    python benchmarks/learning_margins.py --seeds 0 --settings native

A test that fails still reports its figure (it is written before the assertion); the exit status is 1
when some threshold lacks that room or a run failed for another reason.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# name -> (environment, the capability torch must report; None: whatever the CPU has)
SETTINGS: dict[str, tuple[dict[str, str], str | None]] = {
    "native": ({}, None),
    "avx2": ({"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}, "AVX2"),
    "default": ({"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                 "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}, "DEFAULT"),
}
KNOB_NAMES = sorted({k for env, _ in SETTINGS.values() for k in env})

# The tests marked `learning` (pyproject.toml); --tests narrows them to some files or node ids.
SELECT = ["-m", "learning"]

# Figures that are levels capped at 1 rather than gains: judged by the error they allow.
LEVELS = {"accuracy", "auc", "f1", "pair accuracy", "P(hate) of the zorp text", "P(nothate) of the kind text",
          "mean AUC", "AUC of b"}


def run_one(setting: str, seed: int, tests: list[str], workers: int) -> tuple[list[dict], int, float, str]:
    env_over, _ = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in KNOB_NAMES}
    env.update(env_over)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "margins.jsonl"
        env.update({"DETOXRL_TEST_SEED": str(seed), "DETOXRL_MARGINS_FILE": str(out)})
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers), *SELECT, *tests]
        t0 = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        seconds = time.time() - t0
        rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    return rows, proc.returncode, seconds, tail[-1] if tail else ""


def is_level(figure: str) -> bool:
    return figure in LEVELS


def room(figure: str, worst: float, threshold: float) -> tuple[bool, str]:
    if is_level(figure):
        allowed, seen = 1 - threshold, 1 - worst
        return allowed >= 2 * seen, f"error allowed {allowed:.3f} vs worst seen {seen:.3f}"
    return worst > 0 and threshold <= worst / 2, f"threshold / smallest = {threshold / worst:.2f}" if worst > 0 \
        else "smallest gain <= 0"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--tests", nargs="+", default=["tests"], help="files or node ids (default: all of tests/)")
    ap.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers per run")
    ap.add_argument("--json", type=Path, help="also write every measurement here")
    args = ap.parse_args(argv)

    rows: list[dict] = []
    problems: list[str] = []
    for setting in args.settings:
        for seed in args.seeds:
            got, rc, seconds, last = run_one(setting, seed, args.tests, args.workers)
            want = SETTINGS[setting][1]
            caps = {r["capability"] for r in got}
            print(f"# {setting:8s} seed {seed}: {len(got)} figures, pytest exit {rc}, {seconds:.0f} s: {last}",
                  flush=True)
            if want and caps - {want}:
                problems.append(f"{setting} seed {seed}: torch reported {sorted(caps)}, not {want}")
            if rc not in (0, 1) or not got:  # 1: some assertion failed; its figure is in the table
                problems.append(f"{setting} seed {seed}: pytest exit {rc}, {len(got)} figures: {last}")
            rows += [{**r, "setting": setting} for r in got]

    print()
    print(f"{'test':68s} {'figure':30s} {'setting':8s} {'capability':10s} {'seed':>4s} {'value':>8s} {'thresh':>7s}")
    for r in sorted(rows, key=lambda r: (r["test"], r["figure"], args.settings.index(r["setting"]), r["seed"])):
        print(f"{r['test']:68s} {r['figure']:30s} {r['setting']:8s} {r['capability']:10s} {r['seed']:4d} "
              f"{r['value']:8.4f} {r['threshold']:7.3f}{'' if r['value'] > r['threshold'] else '  FAIL'}")

    print()
    print(f"{'test':68s} {'figure':30s} {'smallest':>8s} {'thresh':>7s}  room")
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["test"], r["figure"]), []).append(r)
    for (test, figure), rs in sorted(groups.items()):
        worst = min(r["value"] for r in rs)
        thresholds = {r["threshold"] for r in rs}
        threshold = max(thresholds)
        ok, why = room(figure, worst, threshold)
        print(f"{test:68s} {figure:30s} {worst:8.4f} {threshold:7.3f}  {'ok' if ok else 'TOO TIGHT'}: {why}")
        if not ok:
            problems.append(f"{test} {figure}: {why}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    for p in problems:
        print("problem:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
