"""What each process of a two-process `accelerate launch` runs in tests/test_accelerate.py.

``python _ddp_worker.py CONFIG OUT_DIR [--nan-on-rank-1-at-call N] [--stall-rank-1-at-step K]``

It runs detoxrl's PPO stage on CONFIG exactly as ``detoxrl ppo CONFIG`` does, then writes this process's
trained tensors to ``OUT_DIR/rank-<r>.safetensors`` so the test can compare the replicas. The faults are
injected here, from the outside, by wrapping detoxrl's functions:

- ``--nan-on-rank-1-at-call N``: on rank 1 only, the N-th policy loss (counting from 1) is NaN;
- ``--stall-rank-1-at-step K``: on rank 1 only, scoring at step K sleeps for 10 minutes, so rank 0 waits
  in a collective until ``ppo.collective_timeout_s`` ends the run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from safetensors.torch import save_file

import detoxrl.rl.trainer as trainer_mod
import detoxrl.stages.ppo as ppo_stage
from detoxrl.config import load_config

trainers: list = []


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("out_dir")
    ap.add_argument("--nan-on-rank-1-at-call", type=int, default=None)
    ap.add_argument("--stall-rank-1-at-step", type=int, default=None)
    args = ap.parse_args()

    init = trainer_mod.PPOTrainer.__init__

    def keep(self, *a, **kw):
        init(self, *a, **kw)
        trainers.append(self)

    trainer_mod.PPOTrainer.__init__ = keep

    if args.nan_on_rank_1_at_call is not None:
        real_loss = trainer_mod.ppo_policy_loss
        calls = [0]

        def loss(*a, **kw):
            out, stats = real_loss(*a, **kw)
            calls[0] += 1
            if trainers[0].acc.process_index == 1 and calls[0] == args.nan_on_rank_1_at_call:
                print(f"worker: rank 1 injects a NaN loss at call {calls[0]}", flush=True)
                out = out * float("nan")
            return out, stats

        trainer_mod.ppo_policy_loss = loss

    if args.stall_rank_1_at_step is not None:
        real_score = trainer_mod.PPOTrainer.score

        def score(self, gen, prompts):
            if self.acc.process_index == 1 and self.step_count + 1 == args.stall_rank_1_at_step:
                print(f"worker: rank 1 stalls at step {args.stall_rank_1_at_step}", flush=True)
                time.sleep(600)
            return real_score(self, gen, prompts)

        trainer_mod.PPOTrainer.score = score

    ppo_stage.run(load_config(args.config))
    tr = trainers[0]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tr.trainable_state().items()},
              str(out / f"rank-{tr.acc.process_index}.safetensors"))


if __name__ == "__main__":
    main()
