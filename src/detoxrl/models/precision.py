"""Precision that fits the hardware: what ``policy.dtype: auto`` and ``ppo.mixed_precision: auto`` become.

bfloat16 pays only where the hardware computes it. A CPU without AVX-512 bf16 or AMX has no bfloat16
instructions, and oneDNN emulates every bfloat16 matmul through float32 conversions: on an AVX2 CPU about
a hundred times slower than float32 (1.4 against 171 GFLOP/s), which makes a bfloat16 run some twenty
times slower. ``auto`` therefore picks bfloat16 only where it is native:

- CUDA: ``torch.cuda.is_bf16_supported(including_emulation=False)`` (Ampere and newer);
- CPU: the flags ``avx512_bf16`` or ``amx_bf16`` (``/proc/cpuinfo``; elsewhere torch's own CPU checks);
  an x86 CPU without AVX-512 is taken at its flags. Where they do not tell (no flag list, another
  architecture, AVX-512 without bf16, ``ONEDNN_MAX_CPU_ISA`` set), a short timing of a 256 × 256 matmul
  in both dtypes on one thread decides (a fraction of a second, once per process).

``$DETOXRL_NATIVE_BF16`` (``1`` or ``0``) overrides the detection. An explicit ``bfloat16`` / ``bf16``
is honoured on any hardware, with a warning where it is not native. The config keeps ``auto`` (so stage
fingerprints stay the same on every machine); the choice is logged once per process and recorded beside
the run's config (``detoxrl.pipeline.save_resolved_config``) and in each saved policy's ``detoxrl.json``.
"""

from __future__ import annotations

import functools
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from detoxrl.utils import console

NATIVE_ENV = "DETOXRL_NATIVE_BF16"
NATIVE_FLAGS = ("amx_bf16", "avx512_bf16")
LOW_DTYPES = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class Bf16Support:
    """Whether a device computes bfloat16 natively, why we think so, and the measured
    bfloat16 / float32 matmul throughput ratio when it was timed (``> 1``: bfloat16 is faster)."""

    native: bool
    reason: str
    ratio: float | None = None


@dataclass(frozen=True)
class Precision:
    """What one precision setting (``key``) resolved to on a device."""

    key: str
    requested: str
    choice: str
    reason: str
    ratio: float | None = None
    emulated: bool = False
    """An explicit bfloat16 request on a device that does not compute bfloat16 natively."""

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``policy.dtype: auto → float32 (…)``, or the explicit value with why it is not native."""
        head = f"{self.key}: {self.requested} → {self.choice}" if self.requested == "auto" else \
            f"{self.key}: {self.requested}"
        return f"{head} ({self.reason}{_ratio_note(self.ratio)})"


# ------------------------------------------------------------------------------------------ detection
def cpu_flags() -> frozenset[str] | None:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``: x86 ``flags``, Arm ``Features``), else the
    x86 ones torch can check itself; ``None`` when neither tells."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    checks = {"avx2": "_is_avx2_supported", "avx512f": "_is_avx512_supported",
              "avx512_bf16": "_is_avx512_bf16_supported", "amx_tile": "_is_amx_tile_supported"}
    found = {flag for flag, name in checks.items() if _torch_cpu_check(name)}
    if "amx_tile" in found:
        found.add("amx_bf16")  # every CPU with AMX tiles has the bf16 tile instructions
    return frozenset(found) or None


def _torch_cpu_check(name: str) -> bool:
    check = getattr(torch.cpu, name, None)
    try:
        return bool(check()) if check is not None else False
    except RuntimeError:
        return False


def _best_seconds(a: torch.Tensor, b: torch.Tensor, repeats: int, budget_s: float) -> float:
    torch.mm(a, b)  # the first call builds the kernel
    best, start = math.inf, time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return best


@functools.cache
def measure_bf16_ratio(n: int = 256, repeats: int = 3) -> float:
    """bfloat16 / float32 throughput of an ``n × n`` CPU matmul on one thread (a kernel's speed, not the
    scheduler's), best of ``repeats`` each; once per process, ≈ 0.15 s where bfloat16 is emulated."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            fp32 = _best_seconds(a, b, repeats, budget_s=0.05)
            bf16 = _best_seconds(a.bfloat16(), b.bfloat16(), repeats, budget_s=0.1)
    finally:
        torch.set_num_threads(threads)
    return fp32 / max(bf16, 1e-9)


def _cpu_support() -> Bf16Support:
    flags = cpu_flags()
    if flags is not None and not os.environ.get("ONEDNN_MAX_CPU_ISA"):
        native = [f for f in NATIVE_FLAGS if f in flags]
        if native:
            return Bf16Support(True, f"CPU with {native[0]}")
        if "avx2" in flags and "avx512f" not in flags:
            return Bf16Support(False, "AVX2 CPU without AVX-512 bf16 or AMX: bfloat16 is emulated")
    ratio = measure_bf16_ratio()
    where = "the CPU's flags do not tell" if flags is not None else "no CPU flags to read"
    return Bf16Support(ratio > 1, f"{where}, so a matmul was timed in both dtypes", ratio)


def _cuda_support() -> Bf16Support:
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch without the argument: it reports native support only
        native = torch.cuda.is_bf16_supported()
    name = torch.cuda.get_device_name() if native else "this GPU"
    return Bf16Support(bool(native), f"{name} computes bfloat16 natively" if native else
                       "GPU without native bfloat16 (before Ampere)")


def _forced() -> str | None:
    forced = os.environ.get(NATIVE_ENV, "").strip()
    return forced if forced in ("0", "1") else None


@functools.cache
def bf16_support(device_type: str) -> Bf16Support:
    """Whether ``device_type`` (``cpu``, ``cuda``, ...) computes bfloat16 natively (once per process)."""
    if (forced := _forced()) is not None:
        return Bf16Support(forced == "1", f"${NATIVE_ENV}={forced}")
    if device_type == "cuda":
        return _cuda_support()
    if device_type == "cpu":
        return _cpu_support()
    return Bf16Support(False, f"no bfloat16 detection for {device_type} devices")


def explicit_bf16_ratio(support: Bf16Support, device_type: str) -> float | None:
    """The measured ratio for the warning on an explicit bfloat16 request (timed now on a CPU whose
    flags alone decided; ``None`` when the detection was overridden or the device is not a CPU)."""
    if support.ratio is not None or device_type != "cpu" or _forced() is not None:
        return support.ratio
    return measure_bf16_ratio()


def reset() -> None:
    """Forget the detection and the log lines already printed (tests; a changed environment)."""
    bf16_support.cache_clear()
    measure_bf16_ratio.cache_clear()
    _ANNOUNCED.clear()


# ------------------------------------------------------------------------------------------ resolving
def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def resolve_dtype(requested: str, device: str | torch.device, *, key: str = "policy.dtype",
                  sharded: bool = False) -> Precision:
    """``policy.dtype`` on ``device``: ``auto`` is ``bfloat16`` where it is native, ``float32`` otherwise
    and under a backend that shards the model (DeepSpeed, FSDP: it keeps its own low-precision copies
    of float32 weights). An explicit value is kept."""
    kind = _device_type(device)
    if requested == "auto":
        if sharded:
            p = Precision(key, requested, "float32", "a sharding backend keeps its own low-precision copies")
        else:
            s = bf16_support(kind)
            p = Precision(key, requested, "bfloat16" if s.native else "float32", s.reason, s.ratio)
    else:
        p = _explicit(key, requested, kind, low=requested == "bfloat16")
    announce(p)
    return p


def resolve_mixed_precision(requested: str, device: str | torch.device, *,
                            weights: torch.dtype = torch.float32) -> Precision:
    """``ppo.mixed_precision`` on ``device``: ``auto`` is ``bf16`` (autocast) where bfloat16 is native and
    the policy's ``weights`` are float32, ``no`` otherwise (bfloat16 or float16 weights already compute
    in low precision). An explicit value is kept."""
    key, kind = "ppo.mixed_precision", _device_type(device)
    if requested != "auto":
        p = _explicit(key, requested, kind, low=requested == "bf16")
    elif weights in LOW_DTYPES:
        p = Precision(key, requested, "no", f"the policy's weights are already {str(weights).split('.')[-1]}")
    else:
        s = bf16_support(kind)
        p = Precision(key, requested, "bf16" if s.native else "no", s.reason, s.ratio)
    announce(p)
    return p


def _explicit(key: str, requested: str, kind: str, *, low: bool) -> Precision:
    if not low:
        return Precision(key, requested, requested, "as configured")
    s = bf16_support(kind)
    if s.native:
        return Precision(key, requested, requested, s.reason, s.ratio)
    return Precision(key, requested, requested, f"not native: {s.reason}", explicit_bf16_ratio(s, kind),
                     emulated=True)


_ANNOUNCED: set[str] = set()


def announce(p: Precision) -> None:
    """Log an ``auto`` choice, and warn about an explicit bfloat16 that is not native; each line once per
    process, and only on the main process under ``accelerate launch``."""
    if (p.requested != "auto" and not p.emulated) or int(os.environ.get("RANK", "0")) != 0:
        return
    line = p.describe()
    if line in _ANNOUNCED:
        return
    _ANNOUNCED.add(line)
    if p.emulated:
        console.print(f"[yellow]warning: {line}; kept as configured, though float32 is faster here")
    else:
        console.print(f"precision: {line}")


def _ratio_note(ratio: float | None) -> str:
    if ratio is None:
        return ""
    if ratio >= 1:
        return f"; a bfloat16 matmul measured {ratio:.1f}× as fast as float32"
    return f"; a bfloat16 matmul measured {1 / ratio:.0f}× slower than float32"
