"""PPO step speed and memory: detoxrl's trainer against TRL 0.11.4's legacy ``PPOTrainer`` on identical work.

Usage (from the project root, in the project's environment; ``make bench`` runs the first and the last line)::

    python benchmarks/ppo_vs_trl_legacy.py                   # headline size, 3 repeats x 5 steps
    python benchmarks/ppo_vs_trl_legacy.py --size large      # d_model 512, 6+6 layers
    python benchmarks/ppo_vs_trl_legacy.py --legacy-only     # the legacy baseline alone
    python benchmarks/ppo_vs_trl_legacy.py --size flan-t5-small-lora --precision auto   # the recipe's workload

What it does, in order:

1. makes sure ``.bench-venv`` (the legacy environment: torch 2.13 CPU, TRL 0.11.4, transformers 4.46.3,
   peft 0.13.2 and pinned companions) exists, creating it with pip and printing each command;
2. builds one seeded random T5 of the chosen size and a word-level tokenizer into a temporary folder
   (``save_pretrained``, safetensors), which both sides load (the ``flan-t5-*-lora`` sizes: FLAN-T5's
   architecture with its untied head, trained with LoRA on both sides, the reference being the same
   weights with the adapters disabled);
3. measures fp32 matrix-multiply throughput with torch in this process (best GFLOP/s over a few
   shapes), the reference for model FLOPs utilisation (MFU);
4. runs the two workers in fresh subprocesses, alternating ``legacy, detoxrl, detoxrl, legacy, ...``
   (ABBA order, so slow drift of the machine hits both sides alike), each doing warm-up steps then
   timed PPO steps, and reading one JSON result line from each; both sides are checked to have
   loaded the same weights and to compute the same logits with them;
5. measures matmul throughput again, prints seconds per PPO step (median, min, max over all timed
   steps of all runs), CPU seconds, peak RSS (the highest of each side's runs), phase medians and the
   update phase's MFU, writes every figure to a JSON file, and ends with the line
   ``speedup=<legacy s/step ÷ detoxrl s/step> memory_ratio=<detoxrl peak ÷ legacy peak>``.

MFU of the update phase = update FLOPs ÷ (update seconds × best matmul FLOP/s), with update FLOPs
= ppo_epochs × batch × 3 × forward FLOPs of the T5 (``_common.t5_forward_flops``, counted per matmul;
backward ≈ 2 × forward); with LoRA, ppo_epochs × batch × ``_common.t5_lora_update_flops`` (no weight
gradients for the frozen weights). It is given on wall-clock time and, beside it, on CPU time (update CPU seconds
against matmul throughput per CPU second), which stays meaningful when other processes share the CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _common import (  # noqa: E402
    SIZES,
    ModelSize,
    Workload,
    build_model_folder,
    cpu_name,
    default_workload,
    forward_fingerprint,
    lora_args,
    param_checksum,
    parse_result,
    update_phase_flops,
)

TORCH_SPEC = os.environ.get("BENCH_TORCH_SPEC", "torch==2.13.0")
"""Installed first and alone, so that pip takes the CPU build that the package index offers."""
LEGACY_PINS = [
    "trl==0.11.4", "transformers==4.46.3", "peft==0.13.2",
    # Companions from the same season as TRL 0.11.4 (October 2024): newer accelerate/datasets/hub
    # releases are not what TRL 0.11.4 was written against, and TRL needs rich, which it does not declare.
    "accelerate==1.1.1", "datasets==3.1.0", "huggingface-hub==0.26.5", "fsspec==2024.9.0",
    "tokenizers==0.20.3", "safetensors==0.8.0", "rich==13.9.4", "pandas==2.3.3", "numpy==2.4.6",
]
STAMP = ".bench-installed"


# --------------------------------------------------------------------------------- legacy venv
def _run_logged(cmd: list[str]) -> None:
    """Print a command, run it, stop with its output on failure."""
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def ensure_bench_venv(venv: Path, base_python: str = sys.executable) -> Path:
    """Create or update the legacy environment at ``venv``; return its python.

    A stamp file inside the venv records what was installed; the pip steps run again only when it is
    missing or differs from the pins above.
    """
    python = venv / "bin" / "python"
    wanted = "\n".join([TORCH_SPEC, *LEGACY_PINS]) + "\n"
    stamp = venv / STAMP
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    print(f"setting up the legacy environment in {venv.name}/ (TRL 0.11.4; a few minutes, once)", flush=True)
    if not python.exists():
        _run_logged([base_python, "-m", "venv", str(venv)])
    _run_logged([str(python), "-m", "pip", "install", "-q", "--upgrade", "pip"])
    _run_logged([str(python), "-m", "pip", "install", "-q", TORCH_SPEC])
    _run_logged([str(python), "-m", "pip", "install", "-q", *LEGACY_PINS])
    stamp.write_text(wanted)
    return python


# ------------------------------------------------------------------------------- matmul peak
def matmul_throughput(threads: int, shapes: list[tuple[int, int, int]], seconds: float = 0.5,
                      dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """GEMM throughput of ``(m×k) @ (k×n)`` in ``dtype`` for each shape, on wall and CPU clocks.

    FLOPs per product are 2·m·k·n; each shape runs for about ``seconds`` after two warm-up products.
    Returns per-shape GFLOP/s and the best of each clock (``best_wall_gflops``, ``best_cpu_gflops``).
    """
    torch.set_num_threads(threads)
    per_shape = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        for _ in range(2):
            a @ b
        count, w0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - w0 < seconds:
            a @ b
            count += 1
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        flops = 2.0 * m * k * n * count
        per_shape[f"{m}x{k}x{n}"] = {"wall_gflops": flops / wall / 1e9, "cpu_gflops": flops / max(cpu, 1e-9) / 1e9}
    return {
        "threads": threads,
        "dtype": str(dtype).replace("torch.", ""),
        "shapes": per_shape,
        "best_wall_gflops": max(v["wall_gflops"] for v in per_shape.values()),
        "best_cpu_gflops": max(v["cpu_gflops"] for v in per_shape.values()),
    }


def gemm_shapes(size: ModelSize, work: Workload) -> list[tuple[int, int, int]]:
    """Square products plus the model's own feed-forward product for one minibatch of prompts."""
    rows = work.mini_batch_size * work.prompt_len
    return [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
            (rows, size.d_model, size.d_ff)]


# ------------------------------------------------------------------------------------ workers
SIDES = {"legacy": "legacy (TRL 0.11.4, fp32)", "detoxrl-fp32": "detoxrl fp32", "detoxrl-bf16": "detoxrl bf16",
         "detoxrl-bf16-weights": "detoxrl bf16 weights",
         "detoxrl-bf16-weights-compiled": "detoxrl bf16 w. compiled"}
"""Run names and how the table labels them. The legacy side is always fp32, as TRL 0.11.4 runs it."""
BF16_RUNS = ("detoxrl-bf16", "detoxrl-bf16-weights", "detoxrl-bf16-weights-compiled")  # also vs the bf16 peak
COMPILED = "-compiled"
"""Suffix of a run whose update passes go through accelerate's inductor backend (``--compile``)."""


def worker_command(python: Path, script: Path, model_dir: Path, work: Workload, args: argparse.Namespace,
                   precision: str | None = None, size: ModelSize | None = None) -> list[str]:
    """The command line of one worker run (both sides take the same arguments, with ``--lora-*`` for a
    LoRA size; detoxrl also ``--precision``, and ``--compile`` for a precision named with the
    ``-compiled`` suffix)."""
    extra = []
    if precision:
        compiled = precision.endswith(COMPILED)
        extra = ["--precision", precision.removesuffix(COMPILED), *(["--compile"] if compiled else [])]
    return [str(python), str(script), "--model-dir", str(model_dir),
            "--batch-size", str(work.batch_size), "--prompt-len", str(work.prompt_len),
            "--response-len", str(work.response_len), "--ppo-epochs", str(work.ppo_epochs),
            "--mini-batch-size", str(work.mini_batch_size), "--learning-rate", repr(work.learning_rate),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed),
            "--threads", str(args.threads), *lora_args(size.lora if size else None), *extra]


def run_worker(side: str, cmd: list[str], log: Path, threads: int, timeout: float | None) -> dict[str, Any]:
    """Run one worker in a fresh process; return its result, its stderr going to ``log``."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TOKENIZERS_PARALLELISM="false", DETOXRL_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    with log.open("w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=str(ROOT),
                              timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-15:])
        raise RuntimeError(f"the {side} worker failed (exit {proc.returncode}); its log ends with:\n{tail}")
    return parse_result(proc.stdout)


def check_same_model(name: str, res: dict[str, Any], checksum: float, fingerprint: float) -> None:
    """Stop unless a worker loaded the weights the harness saved and computes the same logits with them.

    The checksum is exact up to float64 summation order; the logits may differ by float32 rounding
    (detoxrl runs T5's tanh GELU as torch's fused kernel, 2.4e-7 apart; a worker on CUDA sums in another
    order), so their absolute sums agree to 1e-4. A tied-versus-untied head or a scaled-versus-unscaled decoder output is far outside both.
    """
    if abs(res["param_checksum"] - checksum) > 1e-9 * max(1.0, abs(checksum)):
        raise SystemExit(f"the {name} worker loaded different weights (checksum {res['param_checksum']!r} vs "
                         f"{checksum!r})")
    got = res.get("forward_fingerprint")
    if got is not None and abs(got - fingerprint) > 1e-4 * max(1.0, abs(fingerprint)):
        raise SystemExit(f"the {name} worker computes different logits from the same weights (sum |logits| {got!r} vs "
                         f"{fingerprint!r}): its transformers reads the model differently")


def alternation(repeats: int, sides: list[str] | None = None) -> list[str]:
    """ABBA order over ``sides``: forwards in even repeats, backwards in odd ones.

    With ``["legacy", "detoxrl-fp32"]``: legacy, detoxrl-fp32, detoxrl-fp32, legacy, legacy, ...
    """
    sides = sides or ["legacy", "detoxrl-fp32"]
    order: list[str] = []
    for r in range(repeats):
        order += sides if r % 2 == 0 else sides[::-1]
    return order


# ------------------------------------------------------------------------------------ summary
def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of a non-empty list."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarise(runs: list[dict[str, Any]], flops_update: float, gemm: dict[str, Any],
              gemm_bf16: dict[str, Any] | None = None) -> dict[str, Any]:
    """Pool one side's runs: s/step, CPU s/step, phases, peak RSS and update-phase MFU.

    MFU is always given against the fp32 matmul peak (``update_mfu_wall``/``update_mfu_cpu``); with
    ``gemm_bf16`` also against the bf16 peak (``update_mfu_wall_bf16``/``update_mfu_cpu_bf16``).
    """
    steps = [s for r in runs for s in r["step_seconds"]]
    cpu = [s for r in runs for s in r.get("step_cpu_seconds", [])]
    phase_names = sorted({p for r in runs for p in r["phases"]})
    phases = {p: statistics.median([v for r in runs for v in r["phases"].get(p, [])]) for p in phase_names}
    cpu_names = sorted({p for r in runs for p in r.get("cpu_phases", {})})
    cpu_phases = {p: statistics.median([v for r in runs for v in r["cpu_phases"].get(p, [])]) for p in cpu_names}
    out = {
        "runs": len(runs),
        "s_per_step": spread(steps),
        "cpu_s_per_step": spread(cpu) if cpu else None,
        "phases_median_s": phases,
        "cpu_phases_median_s": cpu_phases,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "peak_rss_mb_runs": [r["peak_rss_mb"] for r in runs],
        "cuda_peak_mb": max((r.get("cuda_peak_mb") or 0.0 for r in runs), default=0.0) or None,
        "device": runs[0].get("device", "cpu"),
        "rss_after_import_mb": statistics.median([r["rss_after_import_mb"] for r in runs]),
        "rss_after_setup_mb": statistics.median([r["rss_after_setup_mb"] for r in runs]),
        "versions": runs[0]["versions"],
        "param_checksum": runs[0]["param_checksum"],
        "trainable_params": runs[0].get("trainable_params"),
        "lora_b_abs_sum": [r.get("lora_b_abs_sum") for r in runs],
        "warmup_s": [v for r in runs for v in r.get("warmup_seconds", [])],
    }
    if not str(out["device"]).startswith("cpu"):  # the peaks are this CPU's: no MFU for a GPU run
        return out
    if "update" in phases and phases["update"] > 0:
        out["update_mfu_wall"] = flops_update / phases["update"] / (gemm["best_wall_gflops"] * 1e9)
    if cpu_phases.get("update", 0) > 0:
        out["update_mfu_cpu"] = flops_update / cpu_phases["update"] / (gemm["best_cpu_gflops"] * 1e9)
    if gemm_bf16 is not None:
        if "update" in phases and phases["update"] > 0:
            out["update_mfu_wall_bf16"] = flops_update / phases["update"] / (gemm_bf16["best_wall_gflops"] * 1e9)
        if cpu_phases.get("update", 0) > 0:
            out["update_mfu_cpu_bf16"] = flops_update / cpu_phases["update"] / (gemm_bf16["best_cpu_gflops"] * 1e9)
    return out


def _pct(x: float | None) -> str:
    return "      n/a" if x is None else f"{x * 100:8.1f}%"


def _fmt_side(name: str, s: dict[str, Any]) -> str:
    """One table row: s/step spread, CPU s/step, peak RSS, update seconds and MFU against each peak."""
    st, cpu = s["s_per_step"], s["cpu_s_per_step"]
    cpu_txt = f"{cpu['median']:8.2f}" if cpu else "     n/a"
    upd = s["phases_median_s"].get("update", float("nan"))
    upd_cpu = s["cpu_phases_median_s"].get("update", float("nan"))
    return (f"{SIDES.get(name, name):<26} {st['median']:8.2f} {st['min']:8.2f} {st['max']:8.2f} {cpu_txt} "
            f"{s['peak_rss_mb']:10.0f} {upd:8.2f} {upd_cpu:8.2f} {_pct(s.get('update_mfu_wall'))} "
            f"{_pct(s.get('update_mfu_cpu'))} {_pct(s.get('update_mfu_cpu_bf16'))}")


def _gemm_line(gemm: dict[str, Any]) -> str:
    shapes = ", ".join(f"{k} {v['wall_gflops']:.0f}" for k, v in gemm["shapes"].items())
    return (f"matmul {gemm['dtype']} GFLOP/s (torch {torch.__version__}): {shapes}; best "
            f"{gemm['best_wall_gflops']:.1f} wall, {gemm['best_cpu_gflops']:.1f} per CPU-second")


def report(size_name: str, size: ModelSize, work: Workload, args: argparse.Namespace, n_params: int,
           gemm: dict[str, Any], gemm_bf16: dict[str, Any] | None, sides: dict[str, dict[str, Any]],
           flops_update: float) -> None:
    """Print the human-readable summary (everything but the final lines)."""
    print()
    print(f"PPO step benchmark, size {size_name}: T5 d_model {size.d_model}, {size.num_layers}+"
          f"{size.num_decoder_layers} layers, d_ff {size.d_ff}, vocab {size.vocab_size} "
          f"({n_params / 1e6:.2f} M params); batch {work.batch_size}, prompt {work.prompt_len}, response "
          f"{work.response_len}, {work.ppo_epochs} PPO epochs, minibatch {work.mini_batch_size}; "
          f"{args.threads} thread(s); {args.repeats} repeat(s) x {args.steps} steps (+{args.warmup} warm-up)")
    print(f"CPU: {cpu_name()}")
    if args.override:
        print(f"architecture overridden ({', '.join(args.override)}): a smoke test, not the size's figures")
    print(_training_line(size, sides))
    print("precision: the legacy side always runs fp32 (TRL 0.11.4 has no mixed precision on CPU); "
          "'detoxrl bf16' is bf16 autocast with fp32 master weights, optimiser and logprobs; 'detoxrl bf16 "
          "weights' stores the policy in bf16 (policy.dtype bfloat16, no autocast) with fp32 masters")
    if any(n.endswith(COMPILED) for n in sides):
        print("'detoxrl bf16 w. compiled': bf16 weights with accelerate's inductor backend (torch.compile of "
              "the model the PPO update runs; generation and the no-grad passes stay eager)")
    print(_gemm_line(gemm))
    if gemm_bf16 is not None:
        print(_gemm_line(gemm_bf16))
    how = ("forward + backward without frozen weights' gradients, t5_lora_update_flops" if size.lora else
           "3 x forward")
    print(f"update phase: {flops_update / 1e9:.1f} GFLOP per PPO step ({how}, counted per matmul); "
          "MFU = those FLOPs / (update seconds x best matmul throughput of the named dtype)")
    print(f"{'run':<26} {'s/step':>8} {'min':>8} {'max':>8} {'cpu-s':>8} {'peakRSS MB':>10} {'upd s':>8} "
          f"{'upd cpu':>8} {'MFU fp32':>9} {'MFUcpu32':>9} {'MFUcpu16':>9}")
    for name, s in sides.items():
        print(_fmt_side(name, s))
    print("(MFU fp32 = wall clock against the fp32 peak; MFUcpu32 / MFUcpu16 = CPU time against the fp32 / "
          "bf16 peak per CPU-second; the bf16 peak applies to the bf16 runs only)")
    for name, s in sides.items():
        ph = ", ".join(f"{k} {v:.2f}" for k, v in s["phases_median_s"].items() if v >= 0.005)
        cp = ", ".join(f"{k} {v:.2f}" for k, v in s["cpu_phases_median_s"].items() if v >= 0.005)
        print(f"{name} phases, median wall s: {ph}")
        if cp:
            print(f"{name} phases, median CPU s: {cp}")
        print(f"{name} memory: after imports {s['rss_after_import_mb']:.0f} MB, after setup "
              f"{s['rss_after_setup_mb']:.0f} MB, peak {s['peak_rss_mb']:.0f} MB"
              + (f"; on {s['device']}: peak torch.cuda.max_memory_allocated {s['cuda_peak_mb']:.0f} MiB"
                 if s.get("cuda_peak_mb") else ""))
        if s.get("warmup_s"):
            print(f"{name} warm-up step (untimed; a compiled run compiles here), s: "
                  + ", ".join(f"{v:.1f}" for v in s["warmup_s"]))
        print(f"{name} versions: " + ", ".join(f"{k} {v}" for k, v in s["versions"].items()))


def _training_line(size: ModelSize, sides: dict[str, dict[str, Any]]) -> str:
    """How both sides train: full fine-tuning with a frozen copy, or LoRA with the adapters disabled."""
    head = "untied LM head (FLAN-T5's)" if not size.tied_head else "LM head tied to the embedding"
    if size.lora is None:
        return f"training: full fine-tuning, the reference a frozen copy of the initial policy; {head}"
    lo = size.lora
    trainable = ", ".join(f"{n} {s['trainable_params'] / 1e6:.2f} M" for n, s in sides.items()
                          if s.get("trainable_params"))
    trained = "; ".join(f"{n} " + ", ".join(f"{v:.3g}" for v in s["lora_b_abs_sum"] if v is not None)
                        for n, s in sides.items())
    return (f"training: LoRA r={lo.r}, alpha {lo.alpha:g}, dropout {lo.dropout:g} on {', '.join(lo.target_modules)} "
            f"(peft; encoder and both decoder attentions) on both sides, the reference the same weights with the "
            f"adapters disabled (no copy); {head}; trainable parameters with the value head: {trainable}; "
            f"sum |lora_B| after each run (0 before training): {trained}")


def ratios(legacy: dict[str, Any], ours: dict[str, Any]) -> tuple[float, float]:
    """``(speedup, memory_ratio)`` = (legacy median s/step ÷ ours, our peak RSS ÷ legacy's)."""
    return (legacy["s_per_step"]["median"] / ours["s_per_step"]["median"],
            ours["peak_rss_mb"] / legacy["peak_rss_mb"])


def best_run(sides: dict[str, dict[str, Any]]) -> str:
    """The detoxrl run with the lowest median s/step (its memory is reported with it, whatever it is)."""
    ours = [k for k in sides if k.startswith("detoxrl")]
    return min(ours, key=lambda k: sides[k]["s_per_step"]["median"])


# --------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (the workload options default to the size's: ``_common.default_workload``)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="headline")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=N",
                   help="change one architecture value of the size (d_model, num_layers, num_decoder_layers, "
                        "num_heads, d_kv, d_ff, vocab_size, lora_r), for smoke tests: the figures are then not the "
                        "size's; repeatable")
    p.add_argument("--repeats", type=int, default=3, help="runs per side, alternated")
    p.add_argument("--steps", type=int, default=5, help="timed PPO steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed PPO steps per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads on both sides")
    for opt in WORKLOAD_OPTIONS:
        p.add_argument(f"--{opt.replace('_', '-')}", type=int, default=None,
                       help="default: the size's (headline/large: 16, 128, 32, 4, 4; flan-t5-*-lora: the "
                            "recipe's 16, 143, 22, 1, 4 for batch, prompt, response, epochs, minibatch)")
    p.add_argument("--precision", choices=["fp32", "bf16", "bf16-weights", "both", "all", "auto"], default="all",
                   help="detoxrl's precision: fp32, bf16 autocast, bf16-weights (policy.dtype bfloat16 with "
                        "float32 master weights), both = fp32 and bf16, all = the three, auto = fp32, and the "
                        "two bf16 runs only where detoxrl's policy.dtype auto would pick bfloat16 (native "
                        "bf16), in the same alternation (the legacy side always runs fp32)")
    p.add_argument("--compile", action="store_true",
                   help="also run bf16 weights with accelerate's inductor backend (torch.compile of the model the "
                        "PPO update runs; needs a C++ compiler on the CPU); compiled in each run's warm-up step")
    p.add_argument("--legacy-only", action="store_true", help="measure the legacy side alone")
    p.add_argument("--bench-venv", type=Path, default=ROOT / ".bench-venv", help="legacy environment")
    p.add_argument("--json-out", type=Path, default=None,
                   help="where to write every figure (default runs/bench/ppo_vs_trl_legacy_<size>.json)")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed per worker run")
    return p.parse_args(argv)


def _progress():
    """detoxrl's progress bar where the package is importable, otherwise none."""
    try:
        from detoxrl.utils import progress
    except ImportError:
        return None
    return progress()


def _best_gemm(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The better of two throughput measurements (best wall and best CPU figure taken separately)."""
    gemm = before if before["best_wall_gflops"] >= after["best_wall_gflops"] else after
    return dict(gemm, best_cpu_gflops=max(before["best_cpu_gflops"], after["best_cpu_gflops"]))


WORKLOAD_OPTIONS = ("batch_size", "prompt_len", "response_len", "ppo_epochs", "mini_batch_size")


def workload_for(args: argparse.Namespace) -> Workload:
    """The size's default workload with the options given on the command line."""
    given = {k: getattr(args, k) for k in WORKLOAD_OPTIONS if getattr(args, k) is not None}
    return dataclasses.replace(default_workload(args.size), **given)


def size_with_overrides(size: ModelSize, items: list[str]) -> ModelSize:
    """``size`` with ``FIELD=N`` items applied (``lora_r`` changes the adapters' rank); a bad item stops
    with a message naming it."""
    ints = {f.name for f in dataclasses.fields(ModelSize) if f.type in (int, "int")}
    for item in items:
        key, _, value = item.partition("=")
        if key not in ints | {"lora_r"} or not value.strip().isdigit() or int(value) <= 0:
            raise SystemExit(f"--override {item!r}: expected FIELD=N with N a positive integer and FIELD one of "
                             f"{', '.join(sorted(ints | {'lora_r'}))}")
        if key == "lora_r":
            if size.lora is None:
                raise SystemExit(f"--override {item!r}: this size trains without LoRA")
            size = dataclasses.replace(size, lora=dataclasses.replace(size.lora, r=int(value)))
        else:
            size = dataclasses.replace(size, **{key: int(value)})
    return size


def native_bf16() -> tuple[bool, str]:
    """Whether detoxrl's ``auto`` precision would pick bfloat16 on the device the workers use (CUDA where
    torch sees it, else this CPU), and why (detoxrl's own detection)."""
    from detoxrl.models.precision import bf16_support

    support = bf16_support("cuda" if torch.cuda.is_available() else "cpu")
    return support.native, support.reason


def run_names(args: argparse.Namespace) -> list[str]:
    """The runs of one alternation: legacy first, then detoxrl in the precisions asked for."""
    if args.legacy_only:
        return ["legacy"]
    precision = args.precision
    if precision == "auto":
        precision = "all" if native_bf16()[0] else "fp32"
    ours = {"both": ["fp32", "bf16"], "all": ["fp32", "bf16", "bf16-weights"]}.get(precision, [precision])
    if args.compile:
        ours = [*ours, "bf16-weights" + COMPILED]
    return ["legacy", *(f"detoxrl-{p}" for p in ours)]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success (a failing worker stops it with its log's tail)."""
    args = parse_args(argv)
    size = size_with_overrides(SIZES[args.size], args.override)
    work = workload_for(args)
    if work.batch_size % work.mini_batch_size:
        raise SystemExit("--batch-size must be a multiple of --mini-batch-size")
    legacy_python = ensure_bench_venv(args.bench_venv)
    flops_update = update_phase_flops(size, work)
    names = run_names(args)
    with_bf16 = any(n in BF16_RUNS for n in names)
    load_before = os.getloadavg()
    if load_before[0] > (os.cpu_count() or 1) + 0.5:
        print(f"note: load average {load_before[0]:.1f} on {os.cpu_count()} cores: other processes share the "
              "CPU, wall-clock figures will be noisy (CPU-time figures less so; --threads 1 avoids the worst of "
              "it)", flush=True)

    with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
        tmp_path = Path(tmp)
        import transformers
        from transformers import T5ForConditionalGeneration

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        model_dir = build_model_folder(tmp_path / "model", size, args.seed)

        reference = T5ForConditionalGeneration.from_pretrained(model_dir)
        checksum, n_params = param_checksum(reference), sum(p.numel() for p in reference.parameters())
        fingerprint = forward_fingerprint(reference, size.vocab_size, args.seed)
        del reference
        shapes = gemm_shapes(size, work)
        gemm_before = matmul_throughput(args.threads, shapes)
        bf16_before = matmul_throughput(args.threads, shapes, dtype=torch.bfloat16) if with_bf16 else None

        order = alternation(args.repeats, names)
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
        bar = _progress()
        with bar if bar is not None else nullcontext():
            task = bar.add_task("PPO benchmark", total=len(order), info="") if bar is not None else None
            for i, name in enumerate(order):
                if bar is not None:
                    bar.update(task, info=f"{name} run {len(results[name]) + 1}")
                if name == "legacy":
                    cmd = worker_command(legacy_python, HERE / "_legacy_trl_worker.py", model_dir, work, args,
                                         size=size)
                else:
                    cmd = worker_command(Path(sys.executable), HERE / "_detoxrl_worker.py", model_dir, work, args,
                                         precision=name.split("-", 1)[1], size=size)
                res = run_worker(name, cmd, tmp_path / f"{i:02d}-{name}.log", args.threads, args.timeout)
                check_same_model(name, res, checksum, fingerprint)
                results[name].append(res)
                if bar is not None:
                    bar.advance(task)
        gemm_after = matmul_throughput(args.threads, shapes)
        bf16_after = matmul_throughput(args.threads, shapes, dtype=torch.bfloat16) if with_bf16 else None

    gemm = _best_gemm(gemm_before, gemm_after)
    gemm_bf16 = _best_gemm(bf16_before, bf16_after) if with_bf16 else None
    sides = {name: summarise(runs, flops_update, gemm, gemm_bf16 if name in BF16_RUNS else None)
             for name, runs in results.items() if runs}
    report(args.size, size, work, args, n_params, gemm, gemm_bf16, sides, flops_update)
    load_after = os.getloadavg()
    print(f"load average before/after: {load_before[0]:.1f} / {load_after[0]:.1f} on {os.cpu_count()} cores")

    out_path = args.json_out or ROOT / "runs" / "bench" / f"ppo_vs_trl_legacy_{args.size}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "size": args.size, "model": dataclasses.asdict(size), "workload": vars(work), "threads": args.threads,
        "cpu": cpu_name(), "native_bf16": native_bf16()[1], "forward_fingerprint": fingerprint,
        "repeats": args.repeats, "steps": args.steps, "warmup": args.warmup, "n_params": n_params,
        "precision": {"legacy": "fp32", **{n: n.split("-", 1)[1] for n in names if n != "legacy"}},
        "update_flops": flops_update,
        "matmul": {"fp32": {"before": gemm_before, "after": gemm_after},
                   "bf16": {"before": bf16_before, "after": bf16_after} if with_bf16 else None},
        "load_average": {"before": load_before, "after": load_after},
        "summary": sides, "runs": results,
    }
    lines: list[str] = []
    if args.legacy_only:
        lines.append("legacy side only (--legacy-only): no speedup line")
    else:
        per_run = {n: ratios(sides["legacy"], sides[n]) for n in sides if n != "legacy"}
        best = best_run(sides)
        payload.update(ratios={n: {"speedup": a, "memory_ratio": b} for n, (a, b) in per_run.items()},
                       best=best, speedup=per_run[best][0], memory_ratio=per_run[best][1])
        if "detoxrl-fp32" in per_run:
            a, b = per_run["detoxrl-fp32"]
            lines.append(f"fp32: speedup={a:.2f} memory_ratio={b:.2f}")
        lw = sides["legacy"]["peak_rss_mb"] - sides["legacy"]["rss_after_import_mb"]
        for n, (a, b) in per_run.items():
            ow = sides[n]["peak_rss_mb"] - sides[n]["rss_after_import_mb"]
            print(f"{SIDES[n]} against legacy fp32: speedup {a:.2f}, memory ratio {b:.2f} (peak above the "
                  f"RSS after imports: {ow:.0f} MB against {lw:.0f} MB, {ow / lw:.2f})")
        lines.append(f"best detoxrl configuration: {SIDES[best]} (legacy runs fp32); the line below is that "
                     "configuration against legacy")
        lines.append(f"speedup={per_run[best][0]:.2f} memory_ratio={per_run[best][1]:.2f}")
    out_path.write_text(json.dumps(payload, indent=2))
    print(f"figures: {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
