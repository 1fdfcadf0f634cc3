"""The flan-t5-dialogsum preset on a CUDA GPU with full-size stand-ins: what ``benchmarks/gpu.sh`` runs.

Usage (``gpu.sh`` passes these)::

    python benchmarks/gpu_run.py preset --standins DIR --data DIALOGSUM --out DIR [--steps 4] [--eval-prompts 16]
    python benchmarks/gpu_run.py summary --out DIR                # the one summary line

``preset`` writes the stand-ins of FLAN-T5-base and Meta's judge into ``--standins`` unless they are there
(``detoxrl standin``; random weights, meaningless outputs: they measure cost), then runs the preset's stages
(prepare, ppo, eval, report) in this process, in ``--out/run``, with ``ppo.steps`` and ``eval.n_prompts``
cut to the budget and DialogSum's local files as the data (dev trains, test evaluates). The preset's own
settings stay: LoRA r=32 on q and v, batch 16, responses of 100-400 sampled tokens (random stand-ins never
emit ``</s>``, so each response runs to its sampled length), ``policy.dtype: auto`` (bfloat16 on a GPU that
computes it). It writes ``--out/gpu.json``: the PPO steps' seconds (median over the steps after the first,
which warms up the kernels), generation tokens per second (batch × mean response length ÷ generation
seconds, per step), ``torch.cuda.max_memory_allocated`` over the PPO stage and over the whole run, and
the seconds of each stage.

``summary`` prints one line from ``gpu.json`` and, when ``gpu.sh`` ran the legacy comparison,
``bench-flan-t5-base-lora.json`` (``ppo_vs_trl_legacy.py --size flan-t5-base-lora`` on the same GPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PRESET = ROOT / "configs" / "flan-t5-dialogsum.yaml"
POLICY, JUDGE = "flan-t5-base", "roberta-hate-speech-dynabench-r4-target"
STAGES = ("prepare", "ppo", "eval", "report")
NO_CUDA = 3
"""Exit status when torch sees no CUDA device (``gpu.sh`` documents it)."""


def ensure_standins(folder: Path, data: Path) -> None:
    """Write the policy's and the judge's stand-ins into ``folder`` unless a complete one is there."""
    from detoxrl.data.loaders import dialogsum_texts
    from detoxrl.models.standin import write_standins

    missing = [n for n in (POLICY, JUDGE) if not (folder / n / "model.safetensors").exists()]
    if missing:
        write_standins(folder, missing, dialogsum_texts(data))


def ppo_figures(metrics_path: Path, batch_size: int) -> dict[str, Any]:
    """Step seconds and generation tokens/s from ``ppo/metrics.jsonl`` (one line per step; the first step
    is reported apart: it compiles and caches kernels)."""
    rows = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "perf/step_s" in r]
    if not rows:
        raise SystemExit(f"{metrics_path}: no PPO step was recorded")
    timed = rows[1:] or rows
    gen_tps = [batch_size * r["response/length"] / r["perf/generate_s"] for r in timed if r.get("perf/generate_s")]
    return {"steps": len(rows), "first_step_s": rows[0]["perf/step_s"],
            "step_s": statistics.median(r["perf/step_s"] for r in timed),
            "generate_s": statistics.median(r.get("perf/generate_s", float("nan")) for r in timed),
            "update_s": statistics.median(r.get("perf/update_s", float("nan")) for r in timed),
            "response_tokens": statistics.median(r["response/length"] for r in timed),
            "generation_tokens_per_s": statistics.median(gen_tps) if gen_tps else None}


def run_preset(args: argparse.Namespace) -> int:
    """The preset's stages on the stand-ins and this GPU; writes ``gpu.json``."""
    import torch

    if not torch.cuda.is_available():
        print("gpu_run.py: torch sees no CUDA device; nothing was run", file=sys.stderr)
        return NO_CUDA
    from detoxrl.config import load_config
    from detoxrl.pipeline import run_stage
    from detoxrl.stages.device import run_precision

    ensure_standins(args.standins, args.data)
    run_dir = args.out / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run: every stage runs
    sets = [f"policy.name_or_path={args.standins / POLICY}", f"reward.judges.0.model={args.standins / JUDGE}",
            f"data.source={args.data}", "data.format=dialogsum", "data.train_split=dev", "data.eval_split=test",
            f"ppo.steps={args.steps}", f"eval.n_prompts={args.eval_prompts}"]
    cfg = load_config(PRESET, overrides=sets, run_dir=run_dir)
    stage_s, ppo_peak, before_ppo = {}, None, 0.0
    for stage in STAGES:
        if stage == "ppo":  # the PPO stage's own peak; the run's is the larger of the two spans
            before_ppo = torch.cuda.max_memory_allocated() / 2**20
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        run_stage(cfg, stage)
        torch.cuda.synchronize()
        stage_s[stage] = round(time.perf_counter() - t0, 1)
        if stage == "ppo":
            ppo_peak = torch.cuda.max_memory_allocated() / 2**20
    result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "stages_s": stage_s,
              "ppo": ppo_figures(run_dir / "ppo" / "metrics.jsonl", cfg.ppo.batch_size),
              "ppo_cuda_peak_mib": ppo_peak, "run_cuda_peak_mib": max(before_ppo, torch.cuda.max_memory_allocated() / 2**20),
              "batch_size": cfg.ppo.batch_size, "steps": args.steps, "eval_prompts": args.eval_prompts,
              "precision": [p.describe() for p in run_precision(cfg).values()]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def _legacy_part(bench: dict[str, Any] | None) -> str:
    if bench is None:
        return "legacy: not run (its environment did not install, or it failed; see the log)"
    legacy, best = bench["summary"]["legacy"], bench["summary"][bench["best"]]
    mem = lambda s: f"{s['cuda_peak_mb']:.0f} MiB" if s.get("cuda_peak_mb") else "n/a"  # noqa: E731
    return (f"recipe workload (flan-t5-base LoRA, batch 16, {bench['workload']['prompt_len']}+"
            f"{bench['workload']['response_len']} tokens): {bench['best']} {best['s_per_step']['median']:.2f} s/step, "
            f"{mem(best)} vs legacy {legacy['s_per_step']['median']:.2f} s/step, {mem(legacy)} "
            f"(speedup {bench['speedup']:.2f})")


def summary(args: argparse.Namespace) -> int:
    """Print the one summary line."""
    path = args.out / "gpu.json"
    if not path.exists():
        raise SystemExit(f"{path} does not exist: the preset run did not finish")
    g = json.loads(path.read_text())
    bench_path = args.out / "bench-flan-t5-base-lora.json"
    bench = json.loads(bench_path.read_text()) if bench_path.exists() else None
    p = g["ppo"]
    tps = f"{p['generation_tokens_per_s']:.0f}" if p["generation_tokens_per_s"] else "n/a"
    print(f"gpu.sh: {g['gpu']}: preset flan-t5-dialogsum on stand-ins, {p['steps']} PPO steps of batch "
          f"{g['batch_size']}: {p['step_s']:.2f} s/step (first {p['first_step_s']:.1f} s), generation {tps} tokens/s "
          f"({p['response_tokens']:.0f}-token responses), peak CUDA memory {g['ppo_cuda_peak_mib']:.0f} MiB in PPO "
          f"({g['run_cuda_peak_mib']:.0f} MiB whole run); {_legacy_part(bench)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("preset", help="run the preset on the GPU")
    pre.add_argument("--standins", type=Path, required=True)
    pre.add_argument("--data", type=Path, required=True, help="DialogSum folder (dialogsum.dev/test.jsonl)")
    pre.add_argument("--out", type=Path, required=True)
    pre.add_argument("--steps", type=int, default=4)
    pre.add_argument("--eval-prompts", type=int, default=16)
    summ = sub.add_parser("summary", help="print the summary line")
    summ.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    return run_preset(args) if args.command == "preset" else summary(args)


if __name__ == "__main__":
    sys.exit(main())
