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
  no score normalisation or clipping, no gradient clipping;
* with ``--lora-r R`` (the ``flan-t5-*-lora`` sizes): ``policy.lora`` enabled with the same rank, alpha,
  dropout and target modules as the legacy side's peft config, loaded by ``load_policy_model(...,
  apply_lora=True)`` as the ``ppo`` stage loads it; detoxrl's trainer then keeps no reference copy and
  computes the reference logprobs with the adapters disabled, as TRL 0.11.4 does for a peft model.

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

import torch  # noqa: E402
from _common import (  # noqa: E402
    LoraSpec,
    Workload,
    cuda_peak_mb,
    current_rss_mb,
    emit_result,
    even_token_reward,
    lora_b_abs_sum,
    lora_from_args,
    make_prompts,
    peak_rss_mb,
    worker_parser,
    workload_dict,
    workload_from_args,
)


def build_trainer(model_dir: Path, work: Workload, seed: int, precision: str = "fp32", compiled: bool = False,
                  lora: LoraSpec | None = None, settings_update: dict | None = None) -> tuple[Any, dict[str, Any]]:
    """Load the policy (with value head) and a separate frozen reference from ``model_dir``; build the trainer.

    ``precision`` ``"bf16"`` sets ``ppo.mixed_precision="bf16"`` (bf16 autocast for generation and every
    forward pass, fp32 master weights, optimiser and logprobs); ``"bf16-weights"`` stores the policy
    (and so its reference copy) in bfloat16 after the checksum, as ``policy.dtype: bfloat16`` loads it
    (transformers 5 rounds every T5 weight), and trains float32 master weights (``MasterWeights``)
    without autocast; ``"fp32"`` runs everything in float32. ``compiled`` gives the trainer an
    ``Accelerator(dynamo_backend="inductor")``, as ``accelerate launch --dynamo_backend inductor`` would:
    accelerate compiles the model it prepares, which the PPO update passes run through (generation and
    the no-grad passes use the unwrapped, eager model); compilation happens in the warm-up step.

    ``lora`` adds LoRA adapters as ``policy.lora`` does (the reference is then the policy with its adapters
    disabled). ``settings_update``: more ``ppo`` settings (e.g. ``{"freeze_encoder": True}``).

    Returns ``(trainer, info)`` where ``info`` holds ``n_params`` (policy without value head or adapters),
    ``trainable_params``, ``param_checksum`` and ``forward_fingerprint`` (``_common``'s, of the policy as
    loaded, which the harness compares with the legacy side's) and ``vocab_size``.
    """
    from _common import PhaseClock, forward_fingerprint, param_checksum

    from detoxrl.config import GenerationSettings, KLSettings, LoraSettings, ModelSettings, PPOSettings
    from detoxrl.models.policy import load_policy_model
    from detoxrl.rl.trainer import PPOTrainer
    from detoxrl.utils import set_seed

    class EvenTokenTrainer(PPOTrainer):
        """detoxrl's trainer, scoring token ids with the benchmark's shared reward, with CPU clocks per phase.

        The wrappers only time (``PhaseClock``) and call the trainer's own methods: ``forward`` = the
        no-grad policy pass and the reference pass, ``update`` = :meth:`learn`, ``score`` = this score,
        ``generate`` = the rest of ``make_experience`` (sampling, plus the KL rewards and GAE, < 1 %).
        """

        clock = PhaseClock()

        def score(self, gen, prompts):
            with self.clock.phase("score"):
                return even_token_reward(gen.response_ids).float(), {}

        def make_experience(self, *args, **kwargs):
            with self.clock.phase("experience"):
                return super().make_experience(*args, **kwargs)

        def _policy_forward_nograd(self, *args, **kwargs):
            with self.clock.phase("forward"):
                return super()._policy_forward_nograd(*args, **kwargs)

        def _reference_forward(self, *args, **kwargs):
            with self.clock.phase("forward"):
                return super()._reference_forward(*args, **kwargs)

        def learn(self, *args, **kwargs):
            with self.clock.phase("update"):
                return super().learn(*args, **kwargs)

        def take_cpu(self) -> dict[str, float]:
            """CPU seconds per phase since the last call: ``generate``, ``score``, ``forward``, ``update``."""
            cpu = self.clock.take()[1]
            exp = cpu.pop("experience", 0.0)
            cpu["generate"] = max(0.0, exp - cpu.get("forward", 0.0) - cpu.get("score", 0.0))
            return cpu

    set_seed(seed)
    lora_settings = LoraSettings(enabled=lora is not None)
    if lora is not None:
        lora_settings = LoraSettings(enabled=True, r=lora.r, alpha=lora.alpha, dropout=lora.dropout,
                                     target_modules=list(lora.target_modules))
    model_settings = ModelSettings(name_or_path=str(model_dir), dtype="float32", lora=lora_settings)  # not auto
    device = "cuda" if torch.cuda.is_available() else "cpu"  # as the stages do (detoxrl.stages.device)
    lp = load_policy_model(model_settings, device=device, apply_lora=lora is not None)
    vocab = int(lp.model.config.vocab_size)
    info = {"n_params": sum(p.numel() for n, p in lp.model.named_parameters() if "lora_" not in n),
            "param_checksum": param_checksum(lp.model),
            "forward_fingerprint": forward_fingerprint(lp.model, vocab, seed),
            "vocab_size": vocab}
    if precision == "bf16-weights":
        lp.model.to(torch.bfloat16)
    settings = PPOSettings(
        steps=1_000_000, batch_size=work.batch_size, mini_batch_size=work.mini_batch_size,
        ppo_epochs=work.ppo_epochs, learning_rate=work.learning_rate,
        kl=KLSettings(penalty="kl", init_coef=0.2, adaptive=True, target=6.0, horizon=10_000),
        gamma=1.0, lam=0.95, cliprange=0.2, cliprange_value=0.2, vf_coef=0.1, whiten_advantages=True,
        score_norm=False, score_clip=None, mixed_precision="bf16" if precision == "bf16" else "no",
        max_grad_norm=1e30,  # the legacy trainer does not clip; a norm this large never clips
        generation=GenerationSettings(max_new_tokens=work.response_len, min_new_tokens=work.response_len,
                                      do_sample=True, top_k=0, top_p=1.0, temperature=1.0),
    )
    if settings_update:
        settings = settings.model_copy(update=settings_update)
    accelerator = None
    if compiled:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=not torch.cuda.is_available(), dynamo_backend="inductor")
    trainer = EvenTokenTrainer(settings, lp, reward_fn=None, seed=seed, accelerator=accelerator)
    if lora is not None and (trainer.ref_model is not None or not trainer.use_lora):
        raise RuntimeError("detoxrl kept a reference copy of a LoRA policy; expected disabled adapters instead")
    info["trainable_params"] = sum(p.numel() for p in trainer.module.parameters() if p.requires_grad)
    return trainer, info


def ppo_step(trainer: Any, prompts: torch.Tensor, work: Workload) -> dict[str, float]:
    """One PPO step on ``prompts`` ``(B, prompt_len)``: generate, score with ``even_token_reward``, learn.

    Returns wall seconds per phase (see the module docstring), CPU seconds per phase under ``cpu``,
    ``mean_score`` and ``kl``.
    """
    prompts = prompts.to(trainer.acc.device)
    mask = torch.ones_like(prompts)
    trainer.take_cpu()
    stats = trainer.step([""] * prompts.shape[0], prompts, mask, work.response_len)
    return {
        "cpu": trainer.take_cpu(),
        "generate": stats["perf/generate_s"],
        "score": stats["perf/score_s"],
        "forward": stats["perf/policy_fwd_s"] + stats["perf/reference_s"],
        "update": stats["perf/update_s"],
        "mean_score": stats["reward/mean"],
        "kl": stats["kl/mean"],
    }


def main() -> None:
    """Parse arguments, build the trainer, run warm-up and timed steps, print the result line."""
    parser = worker_parser(__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["fp32", "bf16", "bf16-weights"], default="fp32",
                        help="bf16: detoxrl's bf16 autocast (ppo.mixed_precision=bf16); bf16-weights: the "
                             "policy stored in bfloat16 with float32 master weights")
    parser.add_argument("--compile", action="store_true",
                        help="accelerate's inductor backend (torch.compile) for the model the update runs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = workload_from_args(args)
    rss_start = current_rss_mb()

    import transformers

    import detoxrl

    # What build_trainer uses, imported before the import figure as the legacy worker imports TRL's trainer.
    import detoxrl.models.policy  # noqa: F401
    import detoxrl.rl.trainer  # noqa: F401

    rss_import = current_rss_mb()
    lora = lora_from_args(args)
    trainer, info = build_trainer(args.model_dir, work, args.seed, precision=args.precision,
                                  compiled=args.compile, lora=lora)
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
    lora_b = lora_b_abs_sum(trainer.module)

    extra = {"step", "step_cpu", "mean_score", "kl", "cpu"}
    phases = sorted({k for r in records for k in r} - extra)
    cpu_phases = sorted({k for r in records for k in r.get("cpu", {})})
    emit_result({
        "side": "detoxrl",
        "precision": args.precision,
        "compiled": args.compile,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__,
                     "detoxrl": getattr(detoxrl, "__version__", "unknown")},
        "threads": torch.get_num_threads(),
        "workload": workload_dict(work),
        "n_params": info["n_params"],
        "trainable_params": info["trainable_params"],
        "lora": None if lora is None else vars(lora),
        "reference": "disabled adapters" if lora is not None else "frozen copy",
        "param_checksum": info["param_checksum"],
        "forward_fingerprint": info["forward_fingerprint"],
        "lora_b_abs_sum": lora_b,
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
        "cuda_peak_mb": cuda_peak_mb(),
        "device": str(trainer.acc.device),
    })


__all__ = ["build_trainer", "ppo_step"]

if __name__ == "__main__":
    main()
