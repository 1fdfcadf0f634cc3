"""Policies: loading any Hugging Face seq2seq or causal LM, generating, and scoring responses.

Two shapes are first-class:

- **encoder-decoder** (FLAN-T5, BART): the query goes to the encoder; the response is the decoder
  sequence, which starts from ``decoder_start_token_id`` and does not continue the prompt.
- **decoder-only** (GPT-2, Llama-style): queries are left-padded so that every response starts at the
  same column; the response continues the prompt and position ids skip the padding.

Everything works on a ``[B, T]`` grid of response tokens with a mask that is 1 up to and including the
first EOS. :func:`response_logits` returns the logits that *predicted* each response token, so
``logits[:, t]`` scores ``response_ids[:, t]`` in both shapes.

This module gathers the public names; the code lives in:

- :mod:`~detoxrl.models.loading`: :func:`load_policy_model`, :class:`LoadedPolicy`, LoRA, fused GELUs;
- :mod:`~detoxrl.models.generation`: :func:`generate_responses`, :class:`Generation`, the sampler;
- :mod:`~detoxrl.models.forward`: :func:`forward_response`, :class:`PolicyWithValue` (the value head);
- :mod:`~detoxrl.models.saving`: :func:`save_policy`;
- :mod:`~detoxrl.models.cpu_shapes`: static KV cache and padding choices for low-precision CPU runs;
- :mod:`~detoxrl.models.tokens`: response masks from EOS.
"""

from __future__ import annotations

from detoxrl.models.cpu_shapes import length_multiple, low_precision_cpu_seq2seq, static_kv_cache
from detoxrl.models.forward import (
    PolicyWithValue,
    ValueHead,
    decoder_inputs,
    forward_response,
    hidden_size,
    response_logits,
)
from detoxrl.models.generation import (
    Generation,
    InverseCDFSampler,
    generate_from_ids,
    generate_responses,
    generation_config,
    sampling_processors,
    tokenize_prompts,
)
from detoxrl.models.loading import (
    ADAPTER_CONFIG,
    DTYPES,
    LoadedPolicy,
    add_lora,
    attention_kernel,
    fuse_gelu_tanh,
    load_policy_model,
    load_tokenizer,
)
from detoxrl.models.saving import is_peft, save_policy
from detoxrl.models.tokens import truncate_after_eos

__all__ = [
    "ADAPTER_CONFIG", "DTYPES", "Generation", "InverseCDFSampler", "LoadedPolicy", "PolicyWithValue", "ValueHead",
    "add_lora", "attention_kernel", "decoder_inputs", "forward_response", "fuse_gelu_tanh", "generate_from_ids",
    "generate_responses", "generation_config", "hidden_size", "is_peft", "length_multiple", "load_policy_model",
    "load_tokenizer", "low_precision_cpu_seq2seq", "response_logits", "sampling_processors", "save_policy",
    "static_kv_cache", "tokenize_prompts", "truncate_after_eos",
]
