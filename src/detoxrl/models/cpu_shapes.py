"""Shape choices for low-precision encoder-decoders on the CPU, where oneDNN keeps kernels per shape.

In bfloat16 or float16 on the CPU every matmul runs as a oneDNN primitive built once per shape and kept
for the life of the process. Two settings keep the number of shapes small: a static key-value cache
while generating (:func:`static_kv_cache`) and padding batches to a multiple of 16 tokens
(:func:`length_multiple`). Elsewhere neither is needed and both stay off.
"""

from __future__ import annotations

from typing import Any

import torch

from detoxrl.config import GenerationSettings


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def static_kv_cache(gen: GenerationSettings, model: Any) -> bool:
    """Whether ``model`` decodes with a key-value cache allocated at its full length (``gen.kv_cache``).

    ``auto`` chooses it for an encoder-decoder model (T5, BART) that computes in bfloat16 or float16 on
    the CPU, through its weights' dtype or CPU autocast. There every matmul runs as a oneDNN primitive
    that is built once per shape and cached with its kernels (≈ 0.5 MB each), and a growing cache gives
    the decoder's self-attention a new key length at every token: 2 × ``max_new_tokens`` primitives that
    stay for the life of the process (≈ 34 MB at 32 tokens: the benchmark's headline PPO step peaks at
    711 instead of 748 MB), against one shape for the static cache. Generation time is unchanged, and
    for T5 and BART the logits are the same bits as with the growing cache (the masked positions add
    exact zeros); ``tests/test_perf_equivalence.py`` checks both. Float32 matmuls do not go through
    those primitives, so ``auto`` leaves float32 models, decoder-only models and other devices on the
    growing cache, as does a model that transformers cannot give a static cache.
    """
    if gen.kv_cache != "auto":
        return gen.kv_cache == "static"
    return getattr(model, "_can_compile_fullgraph", False) and low_precision_cpu_seq2seq(model, _cpu_autocast())


def length_multiple(requested: int | None, model: Any, autocast: bool) -> int:
    """``ppo.length_multiple`` / ``sft.length_multiple`` resolved: ``requested``, or for ``None`` 16 where
    :func:`low_precision_cpu_seq2seq` holds (every new sequence length would build new oneDNN kernels
    that stay) and 1, no padding, elsewhere."""
    if requested is not None:
        return requested
    return 16 if low_precision_cpu_seq2seq(model, autocast) else 1


def low_precision_cpu_seq2seq(model: Any, autocast: bool) -> bool:
    """Whether ``model`` is an encoder-decoder on the CPU whose matmuls run in bfloat16 or float16 (its
    weights' dtype, or ``autocast``): the case where oneDNN builds and keeps kernels per matmul shape."""
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return False
    device = getattr(model, "device", torch.device("cpu"))
    low = getattr(model, "dtype", torch.float32) in (torch.bfloat16, torch.float16) or autocast
    return torch.device(device).type == "cpu" and low
