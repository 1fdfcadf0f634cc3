"""PPO step time with the encoder training against ``ppo.freeze_encoder``, side by side in one run.

    python benchmarks/freeze_encoder.py                      # the embedded default's shape and PPO settings
    python benchmarks/freeze_encoder.py --size headline --batch 16 --minibatch 4 --prompt-len 128

Both sides load the same seeded T5 (``_common.build_model_folder``) and train on the same prompts with the
benchmark's token reward; the runs alternate (plain, frozen, plain, ...) so drift in the machine's speed
falls on both. Prints seconds per step and per phase (median over the timed steps of every repeat), the
peak resident memory is not compared (both sides live in one process). The last line is the ratio
plain / frozen of the median step time, with the CPU named.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from _common import SIZES, Workload, build_model_folder, cpu_name, make_prompts  # noqa: E402

PHASES = ("generate", "forward", "update")


def run_side(model_dir: Path, work: Workload, frozen: bool, steps: int, warmup: int, seed: int) -> list[dict]:
    import _detoxrl_worker as w

    trainer, info = w.build_trainer(model_dir, work, seed, settings_update={"freeze_encoder": frozen})
    out = []
    for k in range(warmup + steps):
        phases = w.ppo_step(trainer, make_prompts(k, work.batch_size, work.prompt_len, info["vocab_size"], seed), work)
        if k >= warmup:
            out.append({p: phases[p] for p in PHASES} | {"step": sum(phases[p] for p in PHASES + ("score",))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="testbed")
    # the embedded default's PPO: 64 prompts of about 48 tokens, summaries of about 16, 4 epochs of 16
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--minibatch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--response-len", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="runs per side, alternated")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Workload(batch_size=args.batch, prompt_len=args.prompt_len, response_len=args.response_len,
                    ppo_epochs=args.epochs, mini_batch_size=args.minibatch, learning_rate=1e-4)
    rows: dict[bool, list[dict]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="freeze-enc-") as tmp:
        model_dir = build_model_folder(Path(tmp) / "model", SIZES[args.size], 0)
        for r in range(args.repeats):
            for frozen in (False, True):
                rows[frozen] += run_side(model_dir, work, frozen, args.steps, args.warmup, seed=r)
    med = {f: {k: statistics.median(x[k] for x in rows[f]) for k in ("step",) + PHASES} for f in rows}
    for f, name in ((False, "encoder trains"), (True, "freeze_encoder")):
        m = med[f]
        print(f"{name:15s} {m['step']:.3f} s/step (generate {m['generate']:.3f}, forward {m['forward']:.3f}, "
              f"update {m['update']:.3f}) over {len(rows[f])} steps")
    print(f"freeze_encoder: {med[False]['step'] / med[True]['step']:.2f}x the plain step's speed "
          f"(update {med[False]['update'] / med[True]['update']:.2f}x); size {args.size}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, {cpu_name()}")


if __name__ == "__main__":
    main()
