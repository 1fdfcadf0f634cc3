"""``policy.dtype: auto`` and ``ppo.mixed_precision: auto``: bfloat16 only where the hardware computes it
natively, with the detection mocked both ways; explicit bfloat16 elsewhere is kept with a warning."""

from __future__ import annotations

import time

import pytest
import torch
import yaml

from detoxrl.config import GenerationSettings, KLSettings, ModelSettings, PPOSettings, load_config
from detoxrl.errors import ConfigError
from detoxrl.models import precision
from detoxrl.models.precision import (
    NATIVE_ENV,
    bf16_support,
    measure_bf16_ratio,
    resolve_dtype,
    resolve_mixed_precision,
)
from detoxrl.stages import fingerprint

AVX2 = frozenset({"sse2", "avx", "avx2", "fma"})
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}
AVX512_ONLY = AVX2 | {"avx512f", "avx512bw"}


@pytest.fixture
def detect(monkeypatch):
    """Fresh detection (no ``$DETOXRL_NATIVE_BF16``); ``detect(flags, ratio)`` mocks the CPU's flags and
    the matmul timing, which fails the test when ``ratio`` is None and the flags should have decided."""
    monkeypatch.delenv(NATIVE_ENV, raising=False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    precision.reset()
    timed: list[int] = []

    def mock(flags: frozenset[str] | None, ratio: float | None = None) -> list[int]:
        def measure() -> float:
            assert ratio is not None, "the flags should have decided without timing a matmul"
            timed.append(1)
            return ratio

        measure.cache_clear = lambda: None  # precision.reset() clears the real one's cache
        monkeypatch.setattr(precision, "cpu_flags", lambda: flags)
        monkeypatch.setattr(precision, "measure_bf16_ratio", measure)
        return timed

    yield mock
    monkeypatch.undo()
    precision.reset()


def _err(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())  # rich wraps lines at the terminal's width


# ------------------------------------------------------------------------------------------- config
def test_auto_is_the_default_and_validates():
    cfg = load_config()
    assert cfg.policy.dtype == "auto" and cfg.ppo.mixed_precision == "auto"
    assert ModelSettings(name_or_path="x").dtype == "auto" and PPOSettings().mixed_precision == "auto"
    cfg = load_config(overrides=["policy.dtype=auto", "ppo.mixed_precision=auto", "sft.base_model.dtype=auto"])
    assert cfg.sft.base_model.dtype == "auto"
    explicit = load_config(overrides=["policy.dtype=float32", "ppo.mixed_precision=no"])
    assert (explicit.policy.dtype, explicit.ppo.mixed_precision) == ("float32", "no")


@pytest.mark.parametrize("override, key", [("policy.dtype=fp8", "policy.dtype"),
                                           ("ppo.mixed_precision=fp16", "ppo.mixed_precision")])
def test_unknown_precisions_are_rejected(override, key):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[override])
    assert f"  {key}" in str(err.value) and "'auto'" in str(err.value)


# ---------------------------------------------------------------------------------------- detection
@pytest.mark.parametrize("flags, why", [(AVX512_BF16, "avx512_bf16"), (SAPPHIRE, "amx_bf16")])
def test_a_cpu_with_native_bf16_resolves_auto_to_bfloat16(detect, capsys, flags, why):
    detect(flags)
    d = resolve_dtype("auto", "cpu")
    assert (d.choice, d.ratio) == ("bfloat16", None) and why in d.reason
    assert resolve_mixed_precision("auto", "cpu").choice == "bf16"
    # bfloat16 weights already compute in bfloat16: no autocast on top
    m = resolve_mixed_precision("auto", "cpu", weights=torch.bfloat16)
    assert m.choice == "no" and "already bfloat16" in m.reason
    err = _err(capsys)
    assert f"precision: policy.dtype: auto → bfloat16 (CPU with {why})" in err
    assert "ppo.mixed_precision: auto → bf16" in err and "warning" not in err


def test_an_avx2_cpu_resolves_auto_to_float32_without_timing(detect, capsys):
    detect(AVX2)
    d = resolve_dtype("auto", "cpu")
    assert d.choice == "float32" and "AVX2" in d.reason and "emulated" in d.reason
    assert resolve_mixed_precision("auto", "cpu").choice == "no"
    assert "policy.dtype: auto → float32 (AVX2 CPU without AVX-512 bf16 or AMX" in _err(capsys)


@pytest.mark.parametrize("flags", [None, AVX512_ONLY, frozenset({"fp", "asimd", "bf16"})])
@pytest.mark.parametrize("ratio, choice", [(2.5, "bfloat16"), (0.01, "float32")])
def test_inconclusive_flags_are_settled_by_one_timing(detect, flags, ratio, choice):
    timed = detect(flags, ratio)
    d = resolve_dtype("auto", "cpu")
    assert d.choice == choice and d.ratio == ratio and "timed" in d.reason
    assert resolve_mixed_precision("auto", "cpu").choice == ("bf16" if choice == "bfloat16" else "no")
    resolve_dtype("auto", torch.device("cpu"))
    assert len(timed) == 1  # once per process
    assert ("as fast as" if ratio > 1 else "100× slower") in d.describe()


def test_a_capped_onednn_isa_makes_the_flags_inconclusive(detect, monkeypatch):
    detect(AVX512_BF16, ratio=0.02)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert resolve_dtype("auto", "cpu").choice == "float32"


@pytest.mark.parametrize("native, choice", [(True, "bfloat16"), (False, "float32")])
def test_cuda_follows_torch_native_bf16_check(detect, monkeypatch, native, choice):
    detect(AVX2)
    asked = []

    def supported(including_emulation=True):
        asked.append(including_emulation)
        return native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    d = resolve_dtype("auto", "cuda")
    assert d.choice == choice and asked == [False]  # emulated bf16 (before Ampere) does not count
    assert resolve_mixed_precision("auto", torch.device("cuda", 0)).choice == ("bf16" if native else "no")
    assert ("Test GPU" in d.reason) == native
    assert resolve_dtype("auto", "cpu").choice == "float32"  # the CPU is detected apart


def test_the_environment_overrides_the_detection(detect, monkeypatch):
    detect(AVX2)
    monkeypatch.setenv(NATIVE_ENV, "1")
    d = resolve_dtype("auto", "cpu")
    assert d.choice == "bfloat16" and NATIVE_ENV in d.reason
    precision.reset()
    monkeypatch.setenv(NATIVE_ENV, "0")
    detect(AVX512_BF16)
    assert resolve_dtype("auto", "cpu").choice == "float32"


def test_a_sharding_backend_keeps_float32_weights(detect):
    detect(AVX512_BF16)
    d = resolve_dtype("auto", "cpu", sharded=True)
    assert d.choice == "float32" and "sharding" in d.reason
    assert resolve_dtype("bfloat16", "cpu", sharded=True).choice == "bfloat16"  # explicit: as asked


# -------------------------------------------------------------------------------------- explicit bf16
def test_explicit_bf16_without_native_support_warns_with_the_ratio_and_is_kept(detect, capsys):
    timed = detect(AVX2, ratio=0.0125)
    d = resolve_dtype("bfloat16", "cpu")
    m = resolve_mixed_precision("bf16", "cpu")
    assert (d.choice, m.choice) == ("bfloat16", "bf16") and d.emulated and m.emulated
    assert d.ratio == m.ratio == 0.0125 and timed  # timed for the warning, though the flags decided
    err = _err(capsys)
    assert "warning: policy.dtype: bfloat16 (not native: AVX2 CPU" in err
    assert "80× slower than float32" in err and "kept as configured" in err
    assert "warning: ppo.mixed_precision: bf16 (not native" in err
    resolve_dtype("bfloat16", "cpu")
    assert _err(capsys) == ""  # each line once per process


def test_explicit_bf16_on_native_hardware_and_other_explicit_values_are_quiet(detect, capsys):
    detect(SAPPHIRE)
    assert resolve_dtype("bfloat16", "cpu").choice == "bfloat16"
    assert resolve_mixed_precision("bf16", "cpu").choice == "bf16"
    assert resolve_dtype("float32", "cpu").choice == "float32"
    assert resolve_mixed_precision("no", "cpu").choice == "no"
    assert _err(capsys) == ""


def test_the_real_timing_is_short_and_leaves_the_thread_count(detect):
    precision.reset()
    threads = torch.get_num_threads()
    t0 = time.perf_counter()
    ratio = measure_bf16_ratio()
    assert ratio > 0 and time.perf_counter() - t0 < 1.5
    assert torch.get_num_threads() == threads
    assert bf16_support("mps").native is False


# ------------------------------------------------------------------------------ loading and training
@pytest.mark.parametrize("flags, dtype", [(AVX512_BF16, torch.bfloat16), (AVX2, torch.float32)])
def test_load_policy_model_applies_auto(detect, tiny_t5_dir, flags, dtype):
    from detoxrl.models.policy import load_policy_model

    detect(flags)
    assert load_policy_model(ModelSettings(name_or_path=str(tiny_t5_dir))).model.dtype == dtype
    assert load_policy_model(ModelSettings(name_or_path=str(tiny_t5_dir), dtype="float32")).model.dtype \
        == torch.float32


@pytest.mark.parametrize("flags, mixed", [(AVX512_BF16, "bf16"), (AVX2, "no")])
def test_the_trainer_resolves_auto_autocast(detect, tiny_t5_dir, flags, mixed):
    from detoxrl.models.policy import load_policy_model
    from detoxrl.rl.trainer import PPOTrainer

    detect(flags)
    lp = load_policy_model(ModelSettings(name_or_path=str(tiny_t5_dir), dtype="float32"))
    settings = PPOSettings(steps=1, batch_size=4, mini_batch_size=4, ppo_epochs=1,
                           kl=KLSettings(adaptive=False), generation=GenerationSettings(max_new_tokens=4))
    tr = PPOTrainer(settings, lp, lambda texts, prompts=None: None, seed=0)
    assert tr.s.mixed_precision == mixed and tr.precision.requested == "auto"
    assert settings.mixed_precision == "auto"  # the caller's settings are left as they are
    with tr.amp():
        assert torch.is_autocast_enabled("cpu") == (mixed == "bf16")
    assert tr.length_multiple == (16 if mixed == "bf16" else 1)  # bucketed where oneDNN builds kernels


# ----------------------------------------------------------------------------- records and fingerprints
def test_fingerprints_hash_auto_whatever_the_hardware(detect, tmp_path):
    cfg = load_config(run_dir=tmp_path)
    hashes = []
    for flags in (AVX512_BF16, AVX2):
        precision.reset()
        detect(flags)
        keys = fingerprint.stage_config(cfg, "ppo")
        assert keys["policy.dtype"] == "auto" and keys["ppo.mixed_precision"] == "auto"
        hashes.append(fingerprint.compute(cfg, "ppo", {})["hash"])
    assert hashes[0] == hashes[1]


@pytest.mark.parametrize("flags, dtype, mixed", [(AVX512_BF16, "bfloat16", "no"), (AVX2, "float32", "no")])
def test_config_yaml_records_the_resolved_precision(detect, tmp_path, flags, dtype, mixed):
    from detoxrl.config import Config
    from detoxrl.pipeline import save_resolved_config

    detect(flags)
    cfg = load_config(run_dir=tmp_path)
    text = save_resolved_config(cfg).read_text(encoding="utf-8")
    assert f"#   policy.dtype: auto → {dtype} (" in text
    assert f"#   ppo.mixed_precision: auto → {mixed} (" in text  # bfloat16 weights need no autocast
    data = yaml.safe_load(text)  # the comments leave the config as it was: `auto`, and loadable
    assert data["policy"]["dtype"] == "auto" and Config.model_validate(data) == cfg
