"""The PPO benchmark's harness (``benchmarks/``): its sizes, FLOP counts, model folders, options, the
``make bench`` summary line and ``gpu.sh`` without a GPU. The timed runs themselves are not tests."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import _common as common  # noqa: E402
import bench_summary  # noqa: E402
import ppo_vs_trl_legacy as harness  # noqa: E402

from detoxrl.models import precision  # noqa: E402
from detoxrl.models.standin import STANDINS  # noqa: E402

TINY = common.ModelSize(d_model=32, num_layers=2, num_decoder_layers=3, num_heads=2, d_kv=8, d_ff=48,
                        vocab_size=100, tied_head=False, lora=common.LoraSpec(r=4))


@pytest.fixture(scope="module")
def untied_dir(tmp_path_factory) -> Path:
    return common.build_model_folder(tmp_path_factory.mktemp("bench-untied"), TINY, seed=0)


# ------------------------------------------------------------------------------------------ sizes
@pytest.mark.parametrize("size,standin", [("flan-t5-small-lora", "flan-t5-small"), ("flan-t5-base-lora", "flan-t5-base")])
def test_lora_sizes_are_the_standins_architecture(size, standin):
    s, c = common.SIZES[size], STANDINS[standin].config
    assert (s.d_model, s.num_layers, s.num_decoder_layers, s.num_heads, s.d_kv, s.d_ff, s.vocab_size) == (
        c["d_model"], c["num_layers"], c["num_decoder_layers"], c["num_heads"], c["d_kv"], c["d_ff"], c["vocab_size"])
    assert s.tied_head is c["tie_word_embeddings"] is False
    assert s.lora == common.LoraSpec(r=32, alpha=32.0, dropout=0.05, target_modules=("q", "v"))
    assert common.default_workload(size) == common.RECIPE_WORKLOAD
    assert common.default_workload("headline") == common.Workload()


def test_recipe_workload_is_the_presets_ppo_settings():
    from detoxrl.config import load_config

    ppo = load_config(BENCH.parent / "configs" / "flan-t5-dialogsum.yaml").ppo
    w = common.RECIPE_WORKLOAD
    assert (w.batch_size, w.mini_batch_size, w.ppo_epochs, w.learning_rate) == (
        ppo.batch_size, ppo.mini_batch_size, ppo.ppo_epochs, ppo.learning_rate)


# ------------------------------------------------------------------------------------------ FLOPs
def test_lora_update_flops_hand_computed():
    """d=2, one head of 2 (a=2), d_ff 1, vocab 3, 1+1 layers, r=1, prompt 2, decoder 1, worked out by hand.

    forward F = encoder 2·2·(16+6) + 4·4·2 = 120; decoder self 2·16 + 4·2 = 40, cross 16 + 32 + 16 = 64,
    FFN 12; head 12 + value head 4: F = 252. Adapters (A 2·d·r = 4, B 2·r·a = 4 per token) read 2, 2
    (encoder q, v), 1, 1 (decoder self q, v), 1 (cross q), 2 (cross v) tokens: 9 · 8 = 72 forward;
    backward 12 per token for the first layers' (no ∂x of A): 6 · 12 = 72, 16 per token for cross: 3 · 16
    = 48. Frozen ∂x: F − attention 56 − first layers' q, k, v (3·2·8 + 3·1·8 = 72) = 124; attention twice
    = 112, less the first layers' ∂K (2·4·2 + 2·1·2 = 20); value head ∂w 4. Backward = 124 + 112 − 20 +
    120 + 4 = 340; total 252 + 72 + 340 = 664.
    """
    size = common.ModelSize(d_model=2, num_layers=1, num_decoder_layers=1, num_heads=1, d_kv=2, d_ff=1,
                            vocab_size=3, tied_head=False, lora=common.LoraSpec(r=1))
    assert common.t5_forward_flops(size, 2, 1) == 252
    assert common.t5_lora_update_flops(size, 2, 1) == 664
    work = common.Workload(batch_size=3, prompt_len=2, response_len=0, ppo_epochs=2, mini_batch_size=1)
    assert common.update_phase_flops(size, work) == 664 * 3 * 2  # decoder length = response + 1
    full = dataclasses.replace(size, lora=None)
    assert common.update_phase_flops(full, work) == 3 * 252 * 3 * 2


def test_lora_update_flops_match_torchs_flop_counter(untied_dir):
    """What autograd really runs (FlopCounterMode over forward + backward of a peft T5) is the formula."""
    from peft import LoraConfig, TaskType, get_peft_model
    from torch.utils.flop_counter import FlopCounterMode
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(untied_dir, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, lora_dropout=0.0, target_modules=["q", "v"],
                                             task_type=TaskType.SEQ_2_SEQ_LM))
    value_head = torch.nn.Linear(TINY.d_model, 1)
    le, ld = 7, 5
    x, dec = torch.randint(3, 100, (1, le)), torch.randint(3, 100, (1, ld))
    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=x, decoder_input_ids=dec, output_hidden_states=True)
        (out.logits.sum() + value_head(out.decoder_hidden_states[-1]).sum()).backward()
    assert counter.get_total_flops() == common.t5_lora_update_flops(TINY, le, ld)


def test_lora_flops_refuse_other_targets():
    size = dataclasses.replace(TINY, lora=common.LoraSpec(target_modules=("q", "k", "v")))
    with pytest.raises(ValueError, match="targets q and v"):
        common.t5_lora_update_flops(size, 4, 4)


# ----------------------------------------------------------------------------------- model folders
def test_untied_folder_loads_untied_and_unscaled(untied_dir):
    """FLAN-T5's layout: a head of its own, no d_model^-1/2 scaling; the fingerprint tells it from a tied one."""
    from transformers import T5ForConditionalGeneration

    assert json.loads((untied_dir / "config.json").read_text())["tie_word_embeddings"] is False
    model = T5ForConditionalGeneration.from_pretrained(untied_dir)
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    assert not torch.equal(model.lm_head.weight, model.shared.weight)
    assert model.config.scale_decoder_outputs is False
    fingerprint = common.forward_fingerprint(model, TINY.vocab_size, seed=0)
    model.lm_head.weight = model.shared.weight  # what a reader that ties the head would compute
    assert abs(common.forward_fingerprint(model, TINY.vocab_size, seed=0) - fingerprint) > 1e-2 * fingerprint


def test_checksum_and_fingerprint_ignore_fresh_adapters(untied_dir):
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import T5ForConditionalGeneration

    model = T5ForConditionalGeneration.from_pretrained(untied_dir)
    checksum, fingerprint = common.param_checksum(model), common.forward_fingerprint(model, 100, 0)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q", "v"], task_type=TaskType.SEQ_2_SEQ_LM))
    assert common.param_checksum(peft_model) == pytest.approx(checksum, rel=1e-12)
    assert common.forward_fingerprint(peft_model, 100, 0) == pytest.approx(fingerprint, rel=1e-6)
    assert common.lora_b_abs_sum(peft_model) == 0.0
    with pytest.raises(SystemExit, match="different logits"):
        harness.check_same_model("legacy", {"param_checksum": checksum, "forward_fingerprint": fingerprint * 1.01},
                                 checksum, fingerprint)


def test_detoxrl_worker_trains_the_adapters_against_disabled_ones(tmp_path):
    """One PPO step of the benchmark's detoxrl side with LoRA: no reference copy, the adapters change.

    As many decoder as encoder layers, as in FLAN-T5: transformers 5's generation cache is sized by the
    encoder's layer count, which a T5 with more decoder layers overruns."""
    import _detoxrl_worker as worker

    untied_dir = common.build_model_folder(tmp_path, dataclasses.replace(TINY, num_decoder_layers=2), seed=0)
    work = common.Workload(batch_size=2, prompt_len=8, response_len=3, ppo_epochs=1, mini_batch_size=2)
    trainer, info = worker.build_trainer(untied_dir, work, seed=0, lora=TINY.lora)
    assert trainer.ref_model is None and trainer.use_lora
    assert info["trainable_params"] < info["n_params"]
    out = worker.ppo_step(trainer, common.make_prompts(0, 2, 8, TINY.vocab_size, 0), work)
    assert out["update"] > 0
    assert common.lora_b_abs_sum(trainer.module) > 0


# ---------------------------------------------------------------------------------------- options
def _args(*argv: str) -> argparse.Namespace:
    return harness.parse_args(list(argv))


def test_workload_defaults_follow_the_size_and_options_override_them():
    assert harness.workload_for(_args()) == common.Workload()
    assert harness.workload_for(_args("--size", "flan-t5-base-lora")) == common.RECIPE_WORKLOAD
    w = harness.workload_for(_args("--size", "flan-t5-small-lora", "--batch-size", "2", "--prompt-len", "16"))
    assert (w.batch_size, w.prompt_len, w.response_len, w.ppo_epochs) == (2, 16, 22, 1)


def test_worker_command_passes_lora_for_lora_sizes(tmp_path):
    args = _args("--size", "flan-t5-small-lora")
    cmd = harness.worker_command(Path("python"), Path("w.py"), tmp_path, common.RECIPE_WORKLOAD, args,
                                 size=common.SIZES["flan-t5-small-lora"])
    assert cmd[cmd.index("--lora-r") + 1] == "32" and cmd[cmd.index("--lora-targets") + 1] == "q,v"
    assert "--lora-r" not in harness.worker_command(Path("python"), Path("w.py"), tmp_path, common.Workload(),
                                                    _args(), size=common.SIZES["headline"])
    parsed = common.worker_parser("x").parse_args(["--model-dir", "m", *cmd[cmd.index("--lora-r"):]])
    assert common.lora_from_args(parsed) == common.SIZES["flan-t5-small-lora"].lora


def test_overrides_shrink_a_size_and_name_a_bad_item():
    size = harness.size_with_overrides(common.SIZES["flan-t5-base-lora"], ["d_model=64", "lora_r=8"])
    assert size.d_model == 64 and size.lora.r == 8 and size.num_layers == 12
    with pytest.raises(SystemExit, match="'depth=3'"):
        harness.size_with_overrides(common.SIZES["headline"], ["depth=3"])
    with pytest.raises(SystemExit, match="without LoRA"):
        harness.size_with_overrides(common.SIZES["headline"], ["lora_r=8"])


@pytest.mark.parametrize("native,expected", [("0", ["legacy", "detoxrl-fp32"]),
                                             ("1", ["legacy", "detoxrl-fp32", "detoxrl-bf16", "detoxrl-bf16-weights"])])
def test_auto_precision_runs_bf16_only_where_native(monkeypatch, native, expected):
    monkeypatch.setenv(precision.NATIVE_ENV, native)
    precision.reset()
    try:
        assert harness.run_names(_args("--precision", "auto")) == expected
    finally:
        precision.reset()


# ---------------------------------------------------------------------------------- make bench line
def _result(size: str, best: str, speedups: dict[str, float]) -> dict:
    return {"size": size, "best": best, "cpu": "Some CPU (torch CPU capability AVX2, 2 cores)",
            "ratios": {n: {"speedup": v, "memory_ratio": 0.8} for n, v in speedups.items()}}


def test_summary_line_names_one_best_configuration_and_the_cpu(tmp_path):
    runs = [_result("headline", "detoxrl-fp32", {"detoxrl-fp32": 1.21, "detoxrl-bf16": 0.06}),
            _result("flan-t5-small-lora", "detoxrl-fp32", {"detoxrl-fp32": 2.5})]
    line = bench_summary.best_line(runs, runs[0]["cpu"], "float32 (no avx512_bf16)")
    assert line.startswith("best detoxrl configuration on this machine: detoxrl fp32 (headline 1.21x legacy")
    assert "flan-t5-small-lora 2.50x legacy" in line and line.endswith("CPU: Some CPU (torch CPU capability AVX2, 2 cores)")
    runs[0]["best"] = "detoxrl-bf16"
    split = bench_summary.best_line(runs, "c", "a")
    assert "at headline detoxrl bf16 (headline 0.06x" in split and "at flan-t5-small-lora detoxrl fp32" in split
    legacy_only = tmp_path / "legacy.json"
    legacy_only.write_text(json.dumps({"size": "headline"}))
    with pytest.raises(SystemExit, match="legacy.json: no detoxrl run"):
        bench_summary.read_run(legacy_only)


def test_cpu_name_names_torchs_capability():
    assert f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}" in harness.cpu_name()


# ------------------------------------------------------------------------------------------ gpu.sh
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: gpu.sh would run")
def test_gpu_sh_without_cuda_says_so_and_exits_3(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_OUT": str(tmp_path / "gpu")}
    proc = subprocess.run(["bash", str(BENCH / "gpu.sh")], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1 and "gpu.sh: no CUDA device" in proc.stderr
    assert "nothing was run" in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "gpu").exists()


def test_gpu_summary_line(tmp_path):
    import gpu_run

    (tmp_path / "gpu.json").write_text(json.dumps({
        "gpu": "Some GPU", "batch_size": 16, "ppo_cuda_peak_mib": 5000.0, "run_cuda_peak_mib": 6000.0,
        "ppo": {"steps": 4, "step_s": 2.5, "first_step_s": 9.0, "generation_tokens_per_s": 1234.0,
                "response_tokens": 250.0}}))
    assert gpu_run.main(["summary", "--out", str(tmp_path)]) == 0


def test_ppo_figures_from_metrics(tmp_path):
    import gpu_run

    rows = [{"perf/step_s": 10.0, "perf/generate_s": 5.0, "perf/update_s": 1.0, "response/length": 100.0},
            {"perf/step_s": 2.0, "perf/generate_s": 1.0, "perf/update_s": 0.5, "response/length": 50.0},
            {"perf/step_s": 4.0, "perf/generate_s": 2.0, "perf/update_s": 0.7, "response/length": 300.0}]
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + json.dumps({"probe/rouge": 0.1}) + "\n")
    f = gpu_run.ppo_figures(path, batch_size=16)
    assert f["steps"] == 3 and f["first_step_s"] == 10.0 and f["step_s"] == 3.0  # median of the two after the first
    assert f["generation_tokens_per_s"] == pytest.approx((16 * 50 / 1.0 + 16 * 300 / 2.0) / 2)
