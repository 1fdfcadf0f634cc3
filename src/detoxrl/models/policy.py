"""Policies: loading any Hugging Face seq2seq or causal LM, generating, and scoring responses.

Two shapes are first-class:

- **encoder-decoder** (FLAN-T5, BART): the query goes to the encoder; the response is the decoder
  sequence, which starts from ``decoder_start_token_id`` and does not continue the prompt.
- **decoder-only** (GPT-2, Llama-style): queries are left-padded so that every response starts at the
  same column; the response continues the prompt and position ids skip the padding.

Everything here works on a ``[B, T]`` grid of response tokens with a mask that is 1 up to and including
the first EOS. :func:`response_logits` returns the logits that *predicted* each response token, so
``logits[:, t]`` scores ``response_ids[:, t]`` in both shapes.
"""

from __future__ import annotations

import json
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
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from detoxrl.config import GenerationSettings, ModelSettings
from detoxrl.errors import ModelError
from detoxrl.models.tokens import truncate_after_eos

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ADAPTER_CONFIG = "adapter_config.json"


# ------------------------------------------------------------------------------------------ loading
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

    A folder holding a peft adapter (``adapter_config.json``) loads its base model and the adapter.
    With ``apply_lora`` and ``settings.lora.enabled``, fresh LoRA adapters are added for training.
    """
    s = _as_settings(settings)
    path = s.name_or_path
    _check_local(path)
    dtype = DTYPES[s.dtype]
    common = dict(revision=s.revision, trust_remote_code=s.trust_remote_code)
    adapter = (Path(path) / ADAPTER_CONFIG).exists()
    try:
        if adapter:  # a peft adapter folder: the weights are its base model's
            from peft import PeftConfig, PeftModel

            weights = PeftConfig.from_pretrained(path).base_model_name_or_path
        else:
            weights = path
        config = AutoConfig.from_pretrained(weights, **common)
        seq2seq = _is_seq2seq(config, s.kind)
        model = _model_class(seq2seq).from_pretrained(
            weights, dtype=dtype, use_safetensors=True,
            attn_implementation=attention_kernel(config, s.attn_implementation), **common)
        if adapter:
            model = PeftModel.from_pretrained(model, path)
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
    from transformers.activations import FastGELUActivation, GELUTanh, NewGELUActivation

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
    from peft import LoraConfig, TaskType, get_peft_model

    lcfg = LoraConfig(
        r=s.lora.r, lora_alpha=s.lora.alpha, lora_dropout=s.lora.dropout,
        target_modules=list(s.lora.target_modules),
        task_type=TaskType.SEQ_2_SEQ_LM if seq2seq else TaskType.CAUSAL_LM,
    )
    try:
        return get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ModelError(f"policy.lora.target_modules {s.lora.target_modules}: {exc}") from None


# ----------------------------------------------------------------------------------------- batches
def tokenize_prompts(tokenizer, prompts: list[str], max_prompt_tokens: int,
                     device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(prompts, return_tensors="pt", padding=True, truncation=True,
                    max_length=max_prompt_tokens)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@dataclass
class Generation:
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor  # padded with pad_id after the first EOS
    response_mask: torch.Tensor  # float, 1 up to and including EOS
    texts: list[str]
    encoder_hidden: torch.Tensor | None = None  # seq2seq: reusable encoder output

    @property
    def has_eos(self) -> torch.Tensor:
        return self.response_mask.sum(1) < self.response_mask.shape[1]


class InverseCDFSampler(LogitsProcessor):
    """Sampling done as the last logits processor of greedy decoding, with one uniform number per row.

    transformers samples with ``torch.multinomial``, which on CPU draws one exponential variate per
    vocabulary entry: 2.6 ms for 16 rows × 8,000 tokens against 0.08 ms here (a cumulative sum and a
    binary search per row), which was a fifth of a PPO step's generation time. The distribution is the
    same, softmax of the processed scores. The scores returned are 0 for the drawn token and -inf
    elsewhere, so greedy decoding picks it; ``torch.manual_seed`` makes the draws reproducible.
    """

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        # float64: the running sum over the vocabulary stays exact enough that u < cdf[-1] always holds
        cdf = torch.softmax(scores.double(), dim=-1).cumsum_(-1)
        u = torch.rand(cdf.shape[0], 1, dtype=cdf.dtype, device=cdf.device) * cdf[:, -1:]
        # right=True: the first token whose cumulative probability exceeds u, never a zero-probability one
        token = torch.searchsorted(cdf, u, right=True).clamp_(max=cdf.shape[1] - 1)
        out = torch.full_like(scores, float("-inf"))
        return out.scatter_(1, token, 0.0)


def sampling_processors(gen: GenerationSettings) -> LogitsProcessorList:
    """The processors after transformers' own (min length and the like) that sample: temperature, top-k,
    top-p as transformers orders them, then :class:`InverseCDFSampler`. Empty for greedy decoding."""
    if not gen.do_sample:
        return LogitsProcessorList()
    procs = LogitsProcessorList()
    if gen.temperature != 1.0:
        procs.append(TemperatureLogitsWarper(gen.temperature))
    if gen.top_k > 0:
        procs.append(TopKLogitsWarper(gen.top_k))
    if gen.top_p < 1.0:
        procs.append(TopPLogitsWarper(gen.top_p))
    procs.append(InverseCDFSampler())
    return procs


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


def generation_config(gen: GenerationSettings, lp: LoadedPolicy, max_new_tokens: int | None = None,
                      *, static_cache: bool = False) -> GenerationConfig:
    """An explicit generation config: nothing inherited that would change the sampling distribution.

    Decoding is greedy in transformers' terms; sampling, when ``gen.do_sample``, comes from
    :func:`sampling_processors`, passed to ``generate`` with this config. ``static_cache`` (see
    :func:`static_kv_cache`) asks for transformers' fixed-length key-value cache.
    """
    kw: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens or gen.max_new_tokens,
        min_new_tokens=gen.min_new_tokens or None,
        do_sample=False,
        top_k=None,
        top_p=None,
        temperature=None,
        pad_token_id=lp.pad_id,
        eos_token_id=lp.eos_id,
        use_cache=True,
        cache_implementation="static" if static_cache else None,
    )
    if lp.is_seq2seq:
        kw["decoder_start_token_id"] = lp.model.config.decoder_start_token_id
    return GenerationConfig(**kw)


@torch.no_grad()
def generate_from_ids(lp: LoadedPolicy, query_ids: torch.Tensor, query_mask: torch.Tensor,
                      gen: GenerationSettings, *, max_new_tokens: int | None = None,
                      model: Any | None = None) -> Generation:
    """Sample (or decode greedily) one response per query with the key-value cache.

    For an encoder-decoder the encoder runs once here and its output is returned for reuse.
    """
    m = model if model is not None else lp.model
    gcfg = generation_config(gen, lp, max_new_tokens, static_cache=static_kv_cache(gen, m))
    procs = sampling_processors(gen)
    encoder_hidden = None
    if lp.is_seq2seq:
        enc = m.get_encoder()(input_ids=query_ids, attention_mask=query_mask)
        encoder_hidden = enc.last_hidden_state
        out = m.generate(encoder_outputs=enc, attention_mask=query_mask, generation_config=gcfg,
                         logits_processor=procs)
        resp = out[:, 1:]  # drop decoder_start_token_id
    else:
        out = m.generate(input_ids=query_ids, attention_mask=query_mask, generation_config=gcfg,
                         logits_processor=procs)
        resp = out[:, query_ids.shape[1]:]
    if resp.shape[1] == 0:  # degenerate: max_new_tokens produced nothing
        resp = torch.full((query_ids.shape[0], 1), lp.eos_id, dtype=query_ids.dtype, device=query_ids.device)
    resp, mask, _ = truncate_after_eos(resp, lp.eos_id, lp.pad_id)
    texts = lp.tokenizer.batch_decode(resp, skip_special_tokens=True)
    return Generation(query_ids, query_mask, resp, mask, [t.strip() for t in texts], encoder_hidden)


def generate_responses(lp: LoadedPolicy, prompts: list[str], gen: GenerationSettings, *,
                       max_prompt_tokens: int, seed: int | None = None,
                       max_new_tokens: int | None = None) -> Generation:
    """Tokenize ``prompts`` and generate; a seed makes sampling reproducible."""
    device = next(lp.model.parameters()).device
    q, qm = tokenize_prompts(lp.tokenizer, prompts, max_prompt_tokens, device)
    if seed is not None:
        torch.manual_seed(seed)
    return generate_from_ids(lp, q, qm, gen, max_new_tokens=max_new_tokens)


# ------------------------------------------------------------------------------ scoring responses
def _causal_inputs(query_ids, query_mask, response_ids, response_mask):
    input_ids = torch.cat([query_ids, response_ids], dim=1)
    attn = torch.cat([query_mask, response_mask.to(query_mask.dtype)], dim=1)
    # Keep attention on every response slot (padding after EOS is never read by earlier tokens).
    attn[:, query_ids.shape[1]:] = 1
    position_ids = (attn.cumsum(1) - 1).clamp(min=0)
    return input_ids, attn, position_ids


def decoder_inputs(response_ids: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher forcing for an encoder-decoder: ``[start, y_0, ..., y_{T-2}]``."""
    start = torch.full_like(response_ids[:, :1], start_id)
    return torch.cat([start, response_ids[:, :-1]], dim=1)


def forward_response(model, is_seq2seq: bool, query_ids, query_mask, response_ids, response_mask,
                     *, encoder_hidden: torch.Tensor | None = None, output_hidden: bool = False):
    """Run the LM over (query, response) and return (logits [B,T,V], last hidden state [B,T,H] or None).

    ``logits[:, t]`` is the distribution that predicted ``response_ids[:, t]``.
    """
    if is_seq2seq:
        start_id = _base_config(model).decoder_start_token_id
        kwargs: dict[str, Any] = dict(attention_mask=query_mask,
                                      decoder_input_ids=decoder_inputs(response_ids, start_id),
                                      output_hidden_states=output_hidden, use_cache=False)
        if encoder_hidden is not None:
            kwargs["encoder_outputs"] = (encoder_hidden,)
        else:
            kwargs["input_ids"] = query_ids
        out = model(**kwargs)
        hidden = out.decoder_hidden_states[-1] if output_hidden else None
        return out.logits, hidden
    input_ids, attn, pos = _causal_inputs(query_ids, query_mask, response_ids, response_mask)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos,
                output_hidden_states=output_hidden, use_cache=False)
    lq, t = query_ids.shape[1], response_ids.shape[1]
    logits = out.logits[:, lq - 1: lq - 1 + t]
    hidden = out.hidden_states[-1][:, lq - 1: lq - 1 + t] if output_hidden else None
    return logits, hidden


def response_logits(model, is_seq2seq: bool, query_ids, query_mask, response_ids, response_mask) -> torch.Tensor:
    """Logits ``[B, T, V]`` aligned with the response tokens (see :func:`forward_response`)."""
    return forward_response(model, is_seq2seq, query_ids, query_mask, response_ids, response_mask)[0]


def _base_config(model):
    cfg = getattr(model, "config", None)
    if cfg is None and hasattr(model, "get_base_model"):
        cfg = model.get_base_model().config
    return cfg


# -------------------------------------------------------------------------------------- value head
class ValueHead(nn.Module):
    """A scalar value per token from the decoder's last hidden state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.summary.weight, std=1.0 / (hidden_size + 1) ** 0.5)
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


def hidden_size(model) -> int:
    cfg = _base_config(model)
    for key in ("d_model", "hidden_size", "n_embd", "dim"):
        if getattr(cfg, key, None):
            return int(getattr(cfg, key))
    raise ModelError("cannot tell the hidden size of the policy from its config")


class PolicyWithValue(nn.Module):
    """The trained module: the LM (possibly with LoRA adapters) and a value head, one optimiser."""

    def __init__(self, lm, is_seq2seq: bool):
        super().__init__()
        self.lm = lm
        self.is_seq2seq = is_seq2seq
        self.value_head = ValueHead(hidden_size(lm))

    def forward(self, query_ids, query_mask, response_ids, response_mask, *,
                encoder_hidden: torch.Tensor | None = None):
        logits, hidden = forward_response(self.lm, self.is_seq2seq, query_ids, query_mask,
                                          response_ids, response_mask,
                                          encoder_hidden=encoder_hidden, output_hidden=True)
        return logits, self.value_head(hidden)


# ------------------------------------------------------------------------------------------ saving
def is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def save_policy(model, tokenizer, out_dir: str | Path, *, value_head: nn.Module | None = None,
                base_name: str | None = None, extra: dict | None = None) -> None:
    """Write a normal ``save_pretrained`` folder that plain transformers loads.

    With LoRA, the merged weights go to ``out_dir`` and the adapter alone to ``out_dir/adapter``
    (its ``adapter_config.json`` names the base model). The value head, needed only to resume, is
    saved beside them as ``value_head.safetensors``.
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if is_peft(model):
        model.save_pretrained(out / "adapter", safe_serialization=True)
        merged = _merged_copy(model)
        merged.save_pretrained(out, safe_serialization=True)
    else:
        model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if value_head is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in value_head.state_dict().items()},
                  str(out / "value_head.safetensors"))
    note = {"saved_by": "detoxrl", "base_model": base_name, **(extra or {})}
    (out / "detoxrl.json").write_text(json.dumps(note, indent=2) + "\n", encoding="utf-8")


def _merged_copy(peft_model):
    """Merge LoRA weights into a copy of the base model without touching the training model."""
    import copy

    clone = copy.deepcopy(peft_model)
    return clone.merge_and_unload()
