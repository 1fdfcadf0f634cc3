"""Profile one detoxrl PPO step at a benchmark size (torch.profiler, operator table by self CPU time).

    python benchmarks/profile_detoxrl_step.py --size headline --threads 1 [--precision bf16|bf16-weights]

Builds the benchmark's seeded T5 in a temporary folder, runs one warm-up step, then profiles one step
and prints the top operators and detoxrl's own phase timings. Used to find the main costs of a step.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from _common import SIZES, Workload, build_model_folder, make_prompts  # noqa: E402


def main() -> None:
    """Parse arguments, build the trainer, warm up, profile one step and print the tables."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", choices=sorted(SIZES), default="headline")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16", "bf16-weights"], default="fp32")
    p.add_argument("--rows", type=int, default=25, help="operators to print")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import _detoxrl_worker as w

    work = Workload()
    with tempfile.TemporaryDirectory(prefix="ppo-prof-") as tmp:
        model_dir = build_model_folder(Path(tmp) / "model", SIZES[args.size], 0)
        trainer, info = w.build_trainer(model_dir, work, 0, precision=args.precision)
        w.ppo_step(trainer, make_prompts(0, work.batch_size, work.prompt_len, info["vocab_size"], 0), work)
        prompts = make_prompts(1, work.batch_size, work.prompt_len, info["vocab_size"], 0)
        from torch.profiler import ProfilerActivity, profile

        c0 = time.process_time()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            phases = w.ppo_step(trainer, prompts, work)
        # Self CPU times below are the profiler's clock (wall time per op): on a shared machine compare
        # shares and call counts, and the CPU seconds printed last.
        cpu = time.process_time() - c0
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(f"profiled step: {cpu:.2f} CPU s (profiler overhead included); phases (wall s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if isinstance(v, float))
          + "; CPU s: " + ", ".join(f"{k} {v:.2f}" for k, v in phases.get("cpu", {}).items()))


if __name__ == "__main__":
    main()
