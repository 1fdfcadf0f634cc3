"""detoxrl side of the PPO benchmark: detoxrl's own PPO trainer on the same tiny T5 (runs in ``.venv``).

The work per step must match the legacy worker's exactly:

* prompts: ``make_prompts(step, B, prompt_len, vocab, seed)``, every row ``prompt_len`` ids, no padding;
* generation: sampling with top_k=0, top_p=1, temperature 1, exactly ``response_len`` new tokens
  (``min_new_tokens = max_new_tokens``), all B prompts in one batch;
* reward: ``even_token_reward(generated_ids)`` on the generated tokens (no decoder start token);
* PPO: full fine-tuning with a separate frozen reference copy, old logprobs/values and reference
  logprobs in forward chunks of ``mini_batch_size``, ``ppo_epochs`` passes over shuffled minibatches of
  ``mini_batch_size``, Adam at ``learning_rate``; the legacy trainer's other defaults are adaptive KL
  (init 0.2, target 6, horizon 10000), γ = 1, λ = 0.95, clip 0.2/0.2, vf_coef 0.1, advantage whitening,
  no score normalisation or clipping, no gradient clipping.

Only :func:`build_trainer` and :func:`ppo_step` know detoxrl; everything else (arguments, warm-up,
timing, memory, the result line) is shared with the legacy worker's conventions. A whole step is timed
with ``time.perf_counter`` around :func:`ppo_step`; the phases it returns are wall seconds, named
``generate``, ``score``, ``forward`` (old logprobs + values + reference logprobs), ``rewards``
(KL penalty), ``advantages`` (GAE + whitening) and ``update`` (the PPO epochs: forward, backward,
optimiser) — ``update`` is the phase whose model FLOPs utilisation the harness reports.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    Workload,
    current_rss_mb,
    emit_result,
    even_token_reward,
    make_prompts,
    peak_rss_mb,
    worker_parser,
    workload_dict,
    workload_from_args,
)

import torch  # noqa: E402

NOT_READY_EXIT = 3
"""Exit status meaning 'the detoxrl trainer is not plugged in yet' (the harness says so and stops)."""


class TrainerNotReady(NotImplementedError):
    """Raised until :func:`build_trainer` and :func:`ppo_step` call detoxrl's PPO trainer."""


def build_trainer(model_dir: Path, work: Workload, seed: int) -> tuple[Any, dict[str, Any]]:
    """Load the policy (with value head) and a separate frozen reference from ``model_dir``; build the trainer.

    Returns ``(trainer, info)`` where ``info`` holds ``n_params`` (policy without value head),
    ``param_checksum`` (``_common.param_checksum`` of the policy as loaded, which the harness compares
    with the legacy side's) and ``vocab_size``.
    """
    raise TrainerNotReady(
        "the detoxrl side of the benchmark is not plugged in yet: benchmarks/_detoxrl_worker.py needs "
        "build_trainer() and ppo_step() to call detoxrl.rl.trainer (see the module docstring for the work "
        "each step must do)")


def ppo_step(trainer: Any, prompts: torch.Tensor, work: Workload) -> dict[str, float]:
    """One PPO step on ``prompts`` ``(B, prompt_len)``: generate, score with ``even_token_reward``, learn.

    Returns wall seconds per phase (see the module docstring) and ``mean_score``; may add ``kl`` and
    ``cpu``: CPU seconds per phase (``_common.PhaseClock`` gives both; at least ``generate``, ``forward``
    and ``update``, which the harness shows beside the legacy side's).
    """
    raise TrainerNotReady("ppo_step() is not plugged in yet")


def main() -> None:
    """Parse arguments, build the trainer, run warm-up and timed steps, print the result line."""
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    work = workload_from_args(args)
    rss_start = current_rss_mb()

    import transformers

    import detoxrl

    rss_import = current_rss_mb()
    try:
        trainer, info = build_trainer(args.model_dir, work, args.seed)
    except TrainerNotReady as e:
        print(f"detoxrl worker: {e}", file=sys.stderr)
        raise SystemExit(NOT_READY_EXIT) from None
    rss_setup = current_rss_mb()

    def one_step(step: int) -> dict[str, float]:
        prompts = make_prompts(step, work.batch_size, work.prompt_len, info["vocab_size"], args.seed)
        t0, c0 = time.perf_counter(), time.process_time()
        out = ppo_step(trainer, prompts, work)
        out["step"] = time.perf_counter() - t0
        out["step_cpu"] = time.process_time() - c0
        return out

    warm = [one_step(s)["step"] for s in range(args.warmup)]
    records = [one_step(args.warmup + s) for s in range(args.steps)]

    extra = {"step", "step_cpu", "mean_score", "kl", "cpu"}
    phases = sorted({k for r in records for k in r} - extra)
    cpu_phases = sorted({k for r in records for k in r.get("cpu", {})})
    emit_result({
        "side": "detoxrl",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "detoxrl": getattr(detoxrl, "__version__", "unknown")},
        "threads": torch.get_num_threads(),
        "workload": workload_dict(work),
        "n_params": info["n_params"],
        "param_checksum": info["param_checksum"],
        "warmup_seconds": warm,
        "step_seconds": [r["step"] for r in records],
        "step_cpu_seconds": [r["step_cpu"] for r in records],
        "phases": {p: [r.get(p, float("nan")) for r in records] for p in phases},
        "cpu_phases": {p: [r.get("cpu", {}).get(p, 0.0) for r in records] for p in cpu_phases},
        "mean_score": [r.get("mean_score", float("nan")) for r in records],
        "kl": [r.get("kl", float("nan")) for r in records],
        "rss_start_mb": rss_start,
        "rss_after_import_mb": rss_import,
        "rss_after_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
    })


# even_token_reward is imported for ppo_step's use once it is plugged in.
__all__ = ["build_trainer", "ppo_step", "even_token_reward", "NOT_READY_EXIT"]

if __name__ == "__main__":
    main()
