"""Legacy side of the PPO benchmark: TRL 0.11.4's ``PPOTrainer`` on a tiny T5 (runs inside ``.bench-venv``).

It does what the legacy FLAN-T5 detox recipe does, with full fine-tuning and a separate frozen reference
(``create_reference_model``: a deep copy), on the workload the harness passes:

    per step:  prompts (B × prompt_len ids)                       same ids as the detoxrl side
               → ppo_trainer.generate(list, batch_size=B)         sampling, top_k=0, top_p=1,
                                                                   min_new_tokens = max_new_tokens
               → even_token_reward(responses)                     the shared cheap reward
               → ppo_trainer.step(queries, responses, scores)     old logprobs/values, reference
                                                                   logprobs, rewards, GAE, PPO epochs

With ``--lora-r R`` (the ``flan-t5-*-lora`` sizes) it does what the recipe does with LoRA instead: peft
adapters (``LoraConfig(r, lora_alpha, lora_dropout, target_modules, task_type=SEQ_2_SEQ_LM)``, passed to
``AutoModelForSeq2SeqLMWithValueHead.from_pretrained(..., peft_config=...)``) and ``ref_model=None``, for
which TRL 0.11.4's ``PPOTrainer`` keeps no reference copy: it computes the reference logprobs with the
same model inside ``pretrained_model.disable_adapter()`` (``trl/trainer/ppo_trainer.py``: ``ref_model =
None`` when ``is_peft_model``, ``optional_peft_ctx`` around the reference ``batched_forward_pass``).

Generation is batched (the whole batch at once), the fastest way TRL 0.11.4 offers; the original recipe
generated one prompt at a time, which would make the legacy side slower still.

A whole step (generation + scoring + ``trainer.step``) is timed with ``time.perf_counter`` after the
warm-up steps; TRL's own ``time/ppo/*`` figures are recorded per step. The result is one line
``BENCH_RESULT {json}`` on stdout (see ``_common.emit_result``).

Compatibility patches for torch 2.13 / current packages: none were needed. TRL 0.11.4, transformers
4.46.3 and peft 0.13.2 run unchanged on torch 2.13.0 (CPU); the only adjustments are pinned versions
of accelerate, datasets, huggingface-hub, fsspec, pandas and rich (see the harness's install list).
"""

from __future__ import annotations

import os
import platform
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import (  # noqa: E402
    PhaseClock,
    cuda_peak_mb,
    current_rss_mb,
    emit_result,
    even_token_reward,
    forward_fingerprint,
    lora_b_abs_sum,
    lora_from_args,
    make_prompts,
    param_checksum,
    peak_rss_mb,
    worker_parser,
    workload_dict,
    workload_from_args,
)

TRL_PHASES = {
    "time/ppo/forward_pass": "forward",  # old logprobs + values (policy) and reference logprobs
    "time/ppo/compute_rewards": "rewards",  # per-token KL penalty + score
    "time/ppo/compute_advantages": "advantages",  # GAE and whitening
    "time/ppo/optimize_step": "update",  # ppo_epochs × minibatches: forward, backward, Adam
    "time/ppo/calc_stats": "stats",
    "time/ppo/total": "trainer_step",
}


def instrument(trainer, clock: PhaseClock) -> None:
    """Time TRL's forward passes and minibatch updates on both clocks, without changing what they do.

    ``batched_forward_pass`` runs without gradients for the old logprobs/values and the reference
    (phase ``forward``) and with gradients inside the PPO epochs (phase ``update``, together with
    ``train_minibatch``: loss, backward, optimiser step). Instance attributes shadow the methods.
    """
    forward, train = trainer.batched_forward_pass, trainer.train_minibatch

    def timed_forward(*args, **kwargs):
        with clock.phase("update" if torch.is_grad_enabled() else "forward"):
            return forward(*args, **kwargs)

    def timed_train(*args, **kwargs):
        with clock.phase("update"):
            return train(*args, **kwargs)

    trainer.batched_forward_pass = timed_forward
    trainer.train_minibatch = timed_train


def main() -> None:
    """Parse arguments, build the TRL trainer, run warm-up and timed steps, print the result line."""
    args = worker_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(args.threads)
    work = workload_from_args(args)
    rss_start = current_rss_mb()

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers
    import trl
    from transformers import AutoTokenizer
    from trl import AutoModelForSeq2SeqLMWithValueHead, PPOConfig, PPOTrainer, create_reference_model

    transformers.logging.set_verbosity_error()
    rss_import = current_rss_mb()

    tokenizer = AutoTokenizer.from_pretrained(str(args.model_dir))
    lora = lora_from_args(args)
    peft_kwargs = {}
    if lora is not None:
        from peft import LoraConfig, TaskType

        peft_kwargs["peft_config"] = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                                target_modules=list(lora.target_modules),
                                                task_type=TaskType.SEQ_2_SEQ_LM)
    model = AutoModelForSeq2SeqLMWithValueHead.from_pretrained(str(args.model_dir), **peft_kwargs)
    checksum = param_checksum(model.pretrained_model)
    n_params = sum(p.numel() for n, p in model.pretrained_model.named_parameters() if "lora_" not in n)
    vocab = model.pretrained_model.config.vocab_size
    fingerprint = forward_fingerprint(model.pretrained_model, vocab, args.seed)
    # LoRA: no reference copy; TRL disables the adapters for the reference pass (see the module docstring).
    ref_model = create_reference_model(model) if lora is None else None
    config = PPOConfig(
        model_name=str(args.model_dir), batch_size=work.batch_size, mini_batch_size=work.mini_batch_size,
        ppo_epochs=work.ppo_epochs, learning_rate=work.learning_rate, seed=args.seed, log_with=None,
    )
    trainer = PPOTrainer(config=config, model=model, ref_model=ref_model, tokenizer=tokenizer)
    if lora is not None and (trainer.ref_model is not None or not trainer.is_peft_model):
        raise RuntimeError("TRL kept a reference copy of a LoRA policy; expected disabled adapters instead")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    gen_kwargs = {
        "do_sample": True, "top_k": 0, "top_p": 1.0, "temperature": 1.0,
        "min_new_tokens": work.response_len, "max_new_tokens": work.response_len,
        "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
    }
    clock = PhaseClock()
    instrument(trainer, clock)
    rss_setup = current_rss_mb()

    def one_step(step: int) -> dict[str, float]:
        prompts = make_prompts(step, work.batch_size, work.prompt_len, vocab, args.seed)
        clock.take()
        t0, c0 = time.perf_counter(), time.process_time()
        queries = list(prompts)
        with clock.phase("generate"):
            responses = trainer.generate(queries, batch_size=work.batch_size, return_prompt=False, **gen_kwargs)
        t1 = time.perf_counter()
        with clock.phase("score"):
            # Seq2seq outputs start with the decoder start token; TRL's step expects it kept.
            generated = torch.stack([r[1:] for r in responses])
            if generated.shape[1] != work.response_len:
                raise RuntimeError(f"expected {work.response_len} response tokens, got {generated.shape[1]}")
            scores = list(even_token_reward(generated))
        t2 = time.perf_counter()
        stats = trainer.step(queries, responses, scores)
        t3, c3 = time.perf_counter(), time.process_time()
        out = {"step": t3 - t0, "step_cpu": c3 - c0, "generate": t1 - t0, "score": t2 - t1,
               "mean_score": float(torch.stack(scores).mean()),
               "kl": float(stats.get("objective/kl", float("nan")))}
        out.update({name: float(stats[key]) for key, name in TRL_PHASES.items() if key in stats})
        out["cpu"] = clock.take()[1]
        return out

    warm = [one_step(s)["step"] for s in range(args.warmup)]
    records = [one_step(args.warmup + s) for s in range(args.steps)]
    lora_b = lora_b_abs_sum(model)

    phases = sorted({k for r in records for k in r} - {"step", "step_cpu", "mean_score", "kl", "cpu"})
    cpu_phases = sorted({k for r in records for k in r["cpu"]})
    emit_result({
        "side": "legacy",
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "trl": trl.__version__},
        "threads": torch.get_num_threads(),
        "workload": workload_dict(work),
        "n_params": n_params,
        "trainable_params": trainable,
        "lora": None if lora is None else vars(lora),
        "reference": "disabled adapters" if lora is not None else "frozen copy",
        "param_checksum": checksum,
        "forward_fingerprint": fingerprint,
        "lora_b_abs_sum": lora_b,
        "warmup_seconds": warm,
        "step_seconds": [r["step"] for r in records],
        "step_cpu_seconds": [r["step_cpu"] for r in records],
        "phases": {p: [r.get(p, float("nan")) for r in records] for p in phases},
        "cpu_phases": {p: [r["cpu"].get(p, 0.0) for r in records] for p in cpu_phases},
        "mean_score": [r["mean_score"] for r in records],
        "kl": [r["kl"] for r in records],
        "rss_start_mb": rss_start,
        "rss_after_import_mb": rss_import,
        "rss_after_setup_mb": rss_setup,
        "peak_rss_mb": peak_rss_mb(),
        "cuda_peak_mb": cuda_peak_mb(),
        "device": str(trainer.accelerator.device),
    })


if __name__ == "__main__":
    main()
