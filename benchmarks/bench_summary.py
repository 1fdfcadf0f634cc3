"""The last line of ``make bench``: the best detoxrl configuration on this machine, over the benchmark's JSON files.

Usage::

    python benchmarks/bench_summary.py runs/bench/ppo_vs_trl_legacy_headline.json \\
        runs/bench/ppo_vs_trl_legacy_flan-t5-small-lora.json

Each file is one ``ppo_vs_trl_legacy.py`` run; its ``best`` is the detoxrl configuration (fp32, bf16
autocast, bf16 weights, ...) with the lowest median seconds per step at that size. The line names the
configuration that is best at every size (or each size's best when they differ), its speed-up and memory
ratio against the legacy trainer at each size, what detoxrl's ``auto`` precision chooses on this CPU, and
the CPU (model name and torch's kernel level), e.g.::

    best detoxrl configuration on this machine: detoxrl fp32 (headline 1.21x legacy, memory 0.90; ...);
    auto precision here: float32 (...); CPU: AMD EPYC 7B13 (torch CPU capability AVX2, 2 cores)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ppo_vs_trl_legacy import SIDES, cpu_name, native_bf16  # noqa: E402


def read_run(path: Path) -> dict[str, Any]:
    """One benchmark file; a missing, unreadable or legacy-only one stops with a message naming it."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"{path}: cannot read the benchmark's figures ({exc})") from None
    if "best" not in data:
        raise SystemExit(f"{path}: no detoxrl run in it (a --legacy-only run?); nothing to compare")
    return data


def best_line(runs: list[dict[str, Any]], cpu: str, auto: str) -> str:
    """The summary line over ``runs`` (each a benchmark file's JSON)."""
    def figures(r: dict[str, Any], name: str) -> str:
        ratio = r["ratios"][name]
        return f"{r['size']} {ratio['speedup']:.2f}x legacy, memory {ratio['memory_ratio']:.2f}"

    bests = {r["best"] for r in runs}
    if len(bests) == 1:
        (name,) = bests
        what = f"{SIDES.get(name, name)} ({'; '.join(figures(r, name) for r in runs)})"
    else:
        what = "; ".join(f"at {r['size']} {SIDES.get(r['best'], r['best'])} ({figures(r, r['best'])})" for r in runs)
    return f"best detoxrl configuration on this machine: {what}; auto precision here: {auto}; CPU: {cpu}"


def auto_precision() -> str:
    """What ``policy.dtype: auto`` becomes on this CPU, and why (detoxrl's own detection)."""
    native, reason = native_bf16()
    return f"{'bfloat16' if native else 'float32'} ({reason})"


def main(argv: list[str] | None = None) -> int:
    paths = [Path(a) for a in (sys.argv[1:] if argv is None else argv)]
    if not paths:
        raise SystemExit("usage: bench_summary.py RESULT.json [RESULT.json ...] (ppo_vs_trl_legacy.py's files)")
    runs = [read_run(p) for p in paths]
    print(best_line(runs, runs[0].get("cpu") or cpu_name(), auto_precision()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
