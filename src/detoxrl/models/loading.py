"""Loading a policy: any Hugging Face seq2seq or causal LM with its tokenizer, optionally with LoRA.

:func:`load_policy_model` reads a hub id or a ``save_pretrained`` folder (safetensors only; a peft
adapter folder loads its base model and the adapter), picks the attention kernel, swaps tanh GELUs
for torch's fused kernel and returns a :class:`LoadedPolicy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)
from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

from detoxrl.config import ModelSettings
from detoxrl.errors import ModelError
from detoxrl.models.precision import resolve_dtype

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class LoadedPolicy:
    """A language model with its tokenizer and its shape."""

    model: Any  # PreTrainedModel or peft.PeftModel
    tokenizer: PreTrainedTokenizerBase
    is_seq2seq: bool
    name_or_path: str

    @property
    def pad_id(self) -> int:
        return int(self.tokenizer.pad_token_id)

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)


def _as_settings(settings: ModelSettings | str) -> ModelSettings:
    return settings if isinstance(settings, ModelSettings) else ModelSettings(name_or_path=str(settings))


def _check_local(path: str) -> None:
    p = Path(path)
    looks_local = p.is_absolute() or path.startswith((".", "~")) or p.exists() or path.count("/") > 1
    if looks_local and not p.is_dir():
        raise ModelError(f"model folder {path} does not exist")
    if p.is_dir() and not (p / "config.json").exists() and not (p / ADAPTER_CONFIG).exists():
        raise ModelError(f"model folder {path} has no config.json (is it a save_pretrained folder?)")


def load_tokenizer(name_or_path: str, *, is_seq2seq: bool, revision: str | None = None,
                   trust_remote_code: bool = False) -> PreTrainedTokenizerBase:
    """Load a tokenizer; decoder-only models get left padding and a pad token (their EOS if none)."""
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path, revision=revision,
                                            trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load a tokenizer from {name_or_path}: {exc}") from None
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"tokenizer of {name_or_path} has neither a pad nor an EOS token")
        tok.pad_token = tok.eos_token
    if tok.eos_token_id is None:
        raise ModelError(f"tokenizer of {name_or_path} has no EOS token; responses could never end")
    tok.padding_side = "right" if is_seq2seq else "left"
    return tok


def _model_class(is_seq2seq: bool):
    return AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM


def attention_kernel(config, requested: str) -> str | None:
    """The ``attn_implementation`` to load with: ``requested``, or for ``auto`` (see ``ModelSettings``)
    ``eager`` when the model adds a learned relative position bias to every attention (T5 family) and
    ``None`` (transformers decides) otherwise."""
    if requested != "auto":
        return requested
    return "eager" if getattr(config, "relative_attention_num_buckets", None) else None


def _is_seq2seq(config, kind: str) -> bool:
    if kind == "seq2seq":
        return True
    if kind == "causal":
        return False
    return bool(getattr(config, "is_encoder_decoder", False))


def load_policy_model(settings: ModelSettings | str, *, device: str | torch.device = "cpu",
                      apply_lora: bool = False) -> LoadedPolicy:
    """Load a policy from a hub id or a ``save_pretrained`` folder (safetensors only).

    A folder holding a peft adapter (``adapter_config.json``) loads its base model and the adapter;
    with ``apply_lora`` its adapters train (PPO or SFT continuing from a LoRA checkpoint, against the
    adapter's base model as the reference), without it they stay frozen. Otherwise, with ``apply_lora``
    and ``settings.lora.enabled``, fresh LoRA adapters are added for training.
    """
    s = _as_settings(settings)
    path = s.name_or_path
    _check_local(path)
    dtype = DTYPES[resolve_dtype(s.dtype, device).choice]  # auto: bfloat16 only where it is native
    common = dict(revision=s.revision, trust_remote_code=s.trust_remote_code)
    adapter = (Path(path) / ADAPTER_CONFIG).exists()
    try:
        if adapter:  # a peft adapter folder: the weights are its base model's
            from peft import PeftConfig, PeftModel  # lazy: peft takes seconds to import; only LoRA needs it

            weights = PeftConfig.from_pretrained(path).base_model_name_or_path
        else:
            weights = path
        config = AutoConfig.from_pretrained(weights, **common)
        seq2seq = _is_seq2seq(config, s.kind)
        model = _model_class(seq2seq).from_pretrained(
            weights, dtype=dtype, use_safetensors=True,
            attn_implementation=attention_kernel(config, s.attn_implementation), **common)
        if adapter:
            model = PeftModel.from_pretrained(model, path, is_trainable=apply_lora)
        has_tokenizer = (Path(path) / "tokenizer_config.json").exists()
        tok_src = weights if adapter and not has_tokenizer else path
    except ModelError:
        raise
    except (OSError, ValueError, KeyError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "safetensors" in msg or "pytorch_model.bin" in msg:
            msg += " (detoxrl loads safetensors weights only; convert pickle checkpoints first)"
        raise ModelError(f"cannot load model {path}: {msg}") from None
    tokenizer = load_tokenizer(tok_src, is_seq2seq=seq2seq, revision=s.revision,
                               trust_remote_code=s.trust_remote_code)
    _sync_special_tokens(model, tokenizer, seq2seq)
    if s.fused_activations:
        fuse_gelu_tanh(model)
    if apply_lora and s.lora.enabled and not adapter:
        model = add_lora(model, s, seq2seq)
    model.to(device)
    return LoadedPolicy(model=model, tokenizer=tokenizer, is_seq2seq=seq2seq, name_or_path=path)


def fuse_gelu_tanh(model: nn.Module) -> int:
    """Swap every ``gelu_new`` / ``gelu_fast`` module for transformers' ``GELUTanh`` (torch's fused kernel).

    Both are ``0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))``. transformers writes them as seven or eight
    elementwise operations, each a pass over the feed-forward activations and each keeping a tensor for
    the backward pass; ``F.gelu(x, approximate="tanh")`` is one pass forward and one backward. Float32
    results agree to 2.4e-7; in bfloat16 the fused kernel rounds once instead of after every operation.
    Only modules change, not the config or the weights, so ``save_pretrained`` writes the same model.
    Returns the number of modules swapped.
    """
    swapped = 0
    for parent in model.modules():
        for name, child in list(parent.named_children()):
            if type(child) in (NewGELUActivation, FastGELUActivation):
                setattr(parent, name, GELUTanh())
                swapped += 1
    return swapped


def _sync_special_tokens(model, tokenizer, seq2seq: bool) -> None:
    cfg = model.config
    if getattr(cfg, "pad_token_id", None) is None:
        cfg.pad_token_id = tokenizer.pad_token_id
    if seq2seq and getattr(cfg, "decoder_start_token_id", None) is None:
        cfg.decoder_start_token_id = tokenizer.pad_token_id


def add_lora(model: PreTrainedModel, s: ModelSettings, seq2seq: bool):
    from peft import LoraConfig, TaskType, get_peft_model  # lazy: see load_policy_model

    lcfg = LoraConfig(
        r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout,
        target_modules=list(s.lora.target_modules),
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ModelError(f"policy.lora.target_modules {s.lora.target_modules}: {exc}") from None
